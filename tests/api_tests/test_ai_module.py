"""SigOpt's AI module on multitune: projects, AI experiments, runs tracked by clients (MERGE,
archive, filters, paging, budget), the observation a run records when it ends, best runs, and
isolation between clients. Both databases, the Flask test client."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared.api_objects import Experiment as ExperimentView

SERVICE = {"Authorization": "Bearer service-secret"}
SKIP = {"X-Response-Content": "skip"}

PARAMETERS = [
    {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
    {"name": "n", "type": "int", "bounds": {"min": 1, "max": 8}},
    {"name": "opt", "type": "categorical", "categorical_values": ["sgd", "adam"]},
    {"name": "lr", "type": "double", "bounds": {"min": 1e-4, "max": 1}, "transformation": "log"},
]
POINT = {"x": 0.5, "n": 3, "opt": "adam", "lr": 0.01}
AI = {
    "name": "ai",
    "parameters": PARAMETERS,
    "metrics": [
        {"name": "acc", "objective": "maximize"},
        {"name": "loss", "objective": "minimize", "strategy": "store"},
    ],
    "budget": 3,
    "metadata": None,
}
TASKS = [{"name": "cheap", "cost": 0.25}, {"name": "full", "cost": 1.0}]


class Api:
    """One client's calls; ``client_id`` as ``/tokens/self`` says."""

    def __init__(self, client: FlaskClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers
        me = client.get("/v1/tokens/self", headers=headers).json
        self.client_id: str = me["client"]

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.open("/v1" + path, method=method, json=body, headers=headers, **kwargs)

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        response = self.call(method, path, body, **kwargs)
        assert 200 <= response.status_code < 300, (method, path, response.json)
        return response.json

    def project(self, project_id: str = "proj") -> str:
        self.ok("POST", f"/clients/{self.client_id}/projects", {"id": project_id})
        return f"/clients/{self.client_id}/projects/{project_id}"

    def ai(self, project: str, **changes: Any) -> dict[str, Any]:
        body = {**AI, **changes}
        created: dict[str, Any] = self.ok("POST", f"{project}/aiexperiments", body)
        return created

    def run(self, eid: str, body: Any = None) -> dict[str, Any]:
        run: dict[str, Any] = self.ok(
            "POST", f"/aiexperiments/{eid}/training_runs", body or {"metadata": None}
        )
        return run

    def merge(self, run_id: str, body: Any) -> Any:
        return self.call("MERGE", f"/training_runs/{run_id}", body)

    def observations(self, eid: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.ok("GET", f"/experiments/{eid}/observations")["data"]
        return data


@pytest.fixture()
def api(client: FlaskClient, auth: dict[str, str]) -> Api:
    return Api(client, auth)


def _message(response: Any, status: int = 400) -> str:
    assert response.status_code == status, response.json
    assert set(response.json) == {"message", "status"}
    message: str = response.json["message"]
    return message


def test_tokens_self_and_projects(api: Api, make_token: Callable[[str], dict[str, str]]) -> None:
    assert api.client_id.isdigit()
    service = api.client.get("/v1/tokens/self", headers=SERVICE).json
    assert service["client"] is None and service["token_type"] == "service"
    projects = f"/clients/{api.client_id}/projects"
    created = api.ok("POST", projects, {"id": "my.proj-1_a", "name": "Mine", "metadata": None})
    assert created["object"] == "project" and created["id"] == "my.proj-1_a"
    assert created["client"] == api.client_id and created["name"] == "Mine"
    assert "id" in _message(api.call("POST", projects, {"id": "my.proj-1_a"}), 409)
    for bad in ("Upper", "a" * 33, "", "a/b", "sp ace", 7):
        assert "id" in _message(api.call("POST", projects, {"id": bad})), bad
    assert "name" in _message(api.call("POST", projects, {"id": "p2", "name": ""}))
    fetched = api.ok("GET", f"{projects}/my.proj-1_a")
    assert fetched["training_run_count"] == 0 and fetched["experiment_count"] == 0
    _message(api.call("GET", f"{projects}/missing"), 404)
    _message(api.call("GET", f"/clients/{int(api.client_id) + 1}/projects/my.proj-1_a"), 404)
    _message(api.call("GET", "/clients/１/projects"), 404)
    assert api.ok("GET", projects)["count"] == 1
    other = Api(api.client, make_token("globex"))
    _message(other.call("GET", f"{projects}/my.proj-1_a"), 404)
    _message(other.call("POST", projects, {"id": "stolen"}), 404)
    other.project("my.proj-1_a")  # ids are per client
    assert api.ok("GET", projects)["count"] == 1
    assert "service" in _message(api.call("POST", projects, {"id": "x"}, headers=SERVICE), 403)


def test_ai_experiment_budget_progress_and_archive(api: Api) -> None:
    project = api.project()
    created = api.ai(project)
    eid = created["id"]
    assert created["object"] == "aiexperiment" and created["budget"] == 3
    assert "observation_budget" not in created and created["project"] == "proj"
    assert created["client"] == api.client_id
    assert created["progress"] == {
        "object": "progress",
        "active_run_count": 0,
        "finished_run_count": 0,
        "total_run_count": 0,
        "remaining_budget": 3,
    }
    # The suggester reads it as any experiment, through the core endpoint.
    view = ExperimentView.from_json(api.ok("GET", f"/experiments/{eid}"))
    assert view.observation_budget == 3 and not view.is_managed
    _message(api.call("GET", f"/aiexperiments/{int(eid) + 100}"), 404)

    runs = [api.run(eid) for _ in range(3)]
    for run in runs:
        assert run["state"] == "running" and run["experiment"] == eid
        assert run["project"] == "proj" and run["suggestion"] is not None
        assert set(run["assignments"]) == {"x", "n", "opt", "lr"}
        assert isinstance(run["assignments"]["n"], int) and run["task"] is None
    progress = api.ok("GET", f"/aiexperiments/{eid}")["progress"]
    assert (progress["active_run_count"], progress["remaining_budget"]) == (3, 0)
    assert "budget" in _message(api.call("POST", f"/aiexperiments/{eid}/training_runs", {}), 409)
    api.ok("DELETE", f"/training_runs/{runs[0]['id']}")  # archived runs leave the budget
    assert api.ok("GET", f"/training_runs/{runs[0]['id']}")["deleted"] is True
    explicit = api.run(eid, {"assignments": POINT, "name": "mine"})
    assert explicit["assignments"] == POINT and explicit["name"] == "mine"
    _message(api.call("POST", f"/aiexperiments/{eid}/training_runs", {}), 409)
    api.ok("PUT", f"/training_runs/{runs[0]['id']}", {"deleted": False})
    progress = api.ok("GET", f"/aiexperiments/{eid}")["progress"]
    assert (progress["total_run_count"], progress["remaining_budget"]) == (4, -1)
    raised = api.ok("PUT", f"/aiexperiments/{eid}", {"budget": 6, "name": "renamed"})
    assert raised["budget"] == 6 and raised["progress"]["remaining_budget"] == 2
    bad = {"assignments": {**POINT, "x": 7}}
    assert "assignments.x" in _message(
        api.call("POST", f"/aiexperiments/{eid}/training_runs", bad)
    )
    assert api.ok("GET", f"/aiexperiments/{eid}")["progress"]["total_run_count"] == 4

    api.ok("DELETE", f"/aiexperiments/{eid}", query_string={"include_runs": "true"})
    archived = api.ok("GET", f"/aiexperiments/{eid}")
    assert archived["state"] == "deleted" and archived["progress"]["total_run_count"] == 0
    assert "archived" in _message(api.call("POST", f"/aiexperiments/{eid}/training_runs", {}))
    assert api.ok("PUT", f"/aiexperiments/{eid}", {"state": "active"})["state"] == "active"
    assert api.ok("GET", f"/training_runs/{runs[1]['id']}")["deleted"] is True  # stays archived
    api.ok("MERGE", f"/training_runs/{runs[1]['id']}", {"deleted": False})
    assert api.ok("GET", f"/aiexperiments/{eid}")["progress"]["total_run_count"] == 1
    assert api.ok("GET", f"{project}/aiexperiments")["count"] == 1
    assert "include_runs" in _message(
        api.call("DELETE", f"/aiexperiments/{eid}", query_string={"include_runs": "maybe"})
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"budget": 0}, "budget"),
        ({"budget": "3"}, "budget"),
        ({"observation_budget": 3}, "observation_budget"),
        ({"tasks": TASKS, "budget": None}, "budget"),
        ({"tasks": [TASKS[1]]}, "tasks"),
        ({"parameters": []}, "parameters"),
        ({"metrics": [{"name": "acc", "objective": "up"}]}, "metrics[0]"),
        ({"project": "other"}, "project"),
    ],
)
def test_ai_experiment_bad_bodies_name_the_field(
    api: Api, changes: dict[str, Any], field: str
) -> None:
    project = api.project()
    body = {**AI, **changes}
    response = api.call("POST", f"{project}/aiexperiments", body)
    assert field in _message(response)
    assert api.ok("GET", f"{project}/aiexperiments")["count"] == 0


def test_merge_put_and_the_skip_header(api: Api) -> None:
    project = api.project()
    run = api.ok(
        "POST",
        f"{project}/training_runs",
        {"name": "r", "metadata": None, "assignments": {"lr": 0.1, "layers": 2}},
    )
    rid = run["id"]
    assert isinstance(rid, str) and run["experiment"] is None and run["suggestion"] is None
    assert run["state"] == "running" and run["assignments"] == {"lr": 0.1, "layers": 2}
    fresh = api.ok("POST", f"{project}/training_runs", {"name": "empty", "metadata": None})
    assert fresh["assignments"] == {} and fresh["values"] == {}

    skipped = api.merge(rid, {"values": {"acc": {"value": 1, "value_stddev": 0.1}}})
    assert skipped.status_code == 200
    skipped = api.call("MERGE", f"/training_runs/{rid}", {"metadata": {"a": 1}}, headers=SKIP)
    assert skipped.status_code == 204 and skipped.data == b""
    for body in (
        {"metadata": {"b": "two"}},
        {"values": {"acc": {"value": 2}, "loss": {"value": 0.5}}},
        {"assignments": {"layers": None, "opt": "adam"}},
        {"logs": {"stdout": {"content": "hello"}}},
        {"logs": {"stderr": {"content": "oops"}}},
        {"model": {"type": "xgboost"}},
        {"datasets": {"mnist": {}}},
        {"datasets": {"cifar": {}}},
        {"source_code": {"content": "print(1)", "hash": "abc"}},
        {"sys_metadata": {"feature_importances": {"scores": {"a": 1}}}},
        {"dev_metadata": {"d": 1}},
        {"name": None},
    ):
        assert api.merge(rid, body).status_code == 200, body
    patched = api.ok("PATCH", f"/training_runs/{rid}", {"metadata": {"a": None}})
    assert patched["metadata"] == {"b": "two"}
    assert patched["values"]["acc"] == {
        "object": "metric_evaluation",
        "name": "acc",
        "value": 2,
        "value_stddev": None,  # a new value replaces the metric's old stddev
    }
    assert patched["values"]["loss"]["value"] == 0.5
    assert patched["assignments"] == {"lr": 0.1, "opt": "adam"}
    assert {k: v["content"] for k, v in patched["logs"].items()} == {
        "stdout": "hello",
        "stderr": "oops",
    }
    assert patched["model"]["type"] == "xgboost" and set(patched["datasets"]) == {"mnist", "cifar"}
    assert patched["source_code"]["hash"] == "abc" and patched["dev_metadata"] == {"d": 1}
    assert patched["sys_metadata"] == {"feature_importances": {"scores": {"a": 1}}}
    assert patched["name"] == "r"

    replaced = api.ok("PUT", f"/training_runs/{rid}", {"metadata": {"c": 3}, "datasets": None})
    assert replaced["metadata"] == {"c": 3} and replaced["datasets"] == {}
    assert replaced["values"]["loss"]["value"] == 0.5  # maps not sent are kept

    api.merge(rid, {"state": "failed"})
    assert api.merge(rid, {"state": "completed"}).status_code == 200  # failed outranks it
    ended = api.ok("GET", f"/training_runs/{rid}")
    assert ended["state"] == "failed" and ended["finished"] is True
    assert "state" in _message(api.merge(rid, {"state": "active"}), 409)
    completed = api.ok("MERGE", f"/training_runs/{fresh['id']}", {"state": "completed"})
    assert completed["completed"] is not None
    assert api.ok("MERGE", f"/training_runs/{fresh['id']}", {"state": "failed"})["state"] == (
        "failed"
    )

    for body, field in (
        ({"state": "done"}, "state"),
        ({"values": {"acc": {"value": "high"}}}, "values.acc.value"),
        ({"values": {"acc": {"value": 1, "value_stddev": -1}}}, "values.acc.value_stddev"),
        ({"assignments": {"x": [1, 2]}}, "assignments.x"),
        ({"metadata": {"k": {"nested": 1}}}, "metadata.k"),
        ({"logs": 5}, "logs"),
        ({"datasets": {"d": {"rows": 1}}}, "datasets.d.rows"),
        ({"unknown": 1}, "unknown"),
        ({"metadata": {f"k{i}": i for i in range(101)}}, "metadata"),
    ):
        assert field in _message(api.merge(rid, body)), body
    assert api.ok("GET", f"/training_runs/{rid}")["metadata"] == {"c": 3}  # nothing lost


def test_checkpoints_of_a_tracked_run(api: Api) -> None:
    project = api.project()
    run = api.ok("POST", f"{project}/training_runs", {"name": "r"})
    path = f"/training_runs/{run['id']}/checkpoints"
    for i in range(3):
        body = {"values": [{"name": "loss", "value": 1 / (i + 1)}]}
        response = api.call("POST", path, body, headers=SKIP)
        assert response.status_code == 204 and response.data == b""
    assert api.ok("GET", f"/training_runs/{run['id']}")["checkpoint_count"] == 3
    assert [c["values"][0]["value"] for c in api.ok("GET", path)["data"]] == [1 / 3, 1 / 2, 1]
    assert "values" in _message(api.call("POST", path, {"values": []}))


def test_a_run_that_ends_records_its_observation(api: Api) -> None:
    project = api.project()
    eid = api.ai(project, budget=10)["id"]
    good, missing, failed, later, raced = (api.run(eid) for _ in range(5))

    api.merge(good["id"], {"values": {"acc": {"value": 0.9, "value_stddev": 0.01}}})
    api.merge(good["id"], {"values": {"other": {"value": 5}}})  # not a metric: not observed
    done = api.ok("MERGE", f"/training_runs/{good['id']}", {"state": "completed"})
    [observation] = api.observations(eid)
    assert done["observation"] == observation["id"] and done["state"] == "completed"
    assert observation["suggestion"] == good["suggestion"] and not observation["failed"]
    assert observation["assignments"] == good["assignments"]
    assert [(v["name"], v["value"], v["value_stddev"]) for v in observation["values"]] == [
        ("acc", 0.9, 0.01)
    ]
    assert observation["metadata"] == {"training_run": int(good["id"]), "attempt": 1}

    api.merge(missing["id"], {"values": {"loss": {"value": 0.1}}})  # a store metric only
    ended = api.ok("PUT", f"/training_runs/{missing['id']}", {"state": "completed"})
    assert ended["state"] == "completed"
    by_id = {o["id"]: o for o in api.observations(eid)}
    assert by_id[ended["observation"]]["failed"] is True
    assert "acc" in by_id[ended["observation"]]["metadata"]["failure_reason"]

    api.merge(failed["id"], {"values": {"acc": {"value": 0.5}}})
    ended = api.ok("MERGE", f"/training_runs/{failed['id']}", {"state": "failed"})
    assert {o["id"]: o for o in api.observations(eid)}[ended["observation"]]["failed"] is True

    api.merge(later["id"], {"values": {"acc": {"value": 0.7}}, "state": "completed"})
    api.merge(later["id"], {"state": "failed"})  # failed outranks completed: so does the obs.
    ended = api.ok("GET", f"/training_runs/{later['id']}")
    assert ended["state"] == "failed"
    observation = {o["id"]: o for o in api.observations(eid)}[ended["observation"]]
    assert observation["failed"] is True and observation["values"] == []

    # A state change and its observation commit together: when the observation is refused,
    # the run does not end either.
    api.ok(
        "POST",
        f"/experiments/{eid}/observations",
        {"suggestion": raced["suggestion"], "values": [{"name": "acc", "value": 0.1}]},
    )
    api.merge(raced["id"], {"values": {"acc": {"value": 0.2}}})
    assert "suggestion" in _message(api.merge(raced["id"], {"state": "completed"}), 409)
    assert api.ok("GET", f"/training_runs/{raced['id']}")["state"] == "running"
    assert len(api.observations(eid)) == 5
    progress = api.ok("GET", f"/aiexperiments/{eid}")["progress"]
    assert (progress["finished_run_count"], progress["active_run_count"]) == (4, 1)


def test_a_client_driven_experiment_run_ends_by_put(api: Api) -> None:
    body = {**AI, "observation_budget": 5}
    del body["budget"]
    eid = api.ok("POST", "/experiments", body)["id"]
    run = api.ok(
        "POST", f"/experiments/{eid}/training_runs", {"suggestion": {"assignments": POINT}}
    )
    assert run["state"] == "queued"
    _message(api.call("GET", f"/aiexperiments/{eid}"), 404)  # not an AI experiment
    ended = api.ok(
        "PUT",
        f"/training_runs/{run['id']}",
        {"values": {"acc": {"value": 3}}, "state": "completed"},
    )
    [observation] = api.observations(eid)
    assert ended["observation"] == observation["id"] and observation["value"] == 3
    assert ended["values"]["acc"]["value"] == 3


def test_multitask_runs_best_runs_full_cost_only(api: Api) -> None:
    project = api.project()
    created = api.ai(project, tasks=TASKS, budget=4)
    eid = created["id"]
    assert [t["cost"] for t in created["tasks"]] == [0.25, 1.0]
    served = api.run(eid)
    assert served["task"]["name"] in ("cheap", "full") and served["task"]["object"] == "task"
    assert "task" in _message(
        api.call("POST", f"/aiexperiments/{eid}/training_runs", {"assignments": POINT})
    )
    runs = {}
    for name, task, value in (
        ("cheap", "cheap", 10.0),
        ("one", "full", 1.0),
        ("two", "full", 2.0),
    ):
        run = api.run(eid, {"assignments": {**POINT, "x": value / 10}, "task": task})
        assert run["task"] == {
            "object": "task",
            "name": task,
            "cost": dict((t["name"], t["cost"]) for t in TASKS)[task],
        }
        api.merge(run["id"], {"values": {"acc": {"value": value}}, "state": "completed"})
        runs[name] = run
    remaining = 4 - 0.25 - 1 - 1 - served["task"]["cost"]
    progress = api.ok("GET", f"/aiexperiments/{eid}")["progress"]
    assert progress["remaining_budget"] == pytest.approx(remaining)
    best = api.ok("GET", f"/aiexperiments/{eid}/best_training_runs")
    assert [r["id"] for r in best["data"]] == [runs["two"]["id"]]  # the cheap 10 never wins
    assert best["data"][0]["values"]["acc"]["value"] == 2.0
    api.ok("DELETE", f"/training_runs/{runs['two']['id']}")  # leaves the history too
    best = api.ok("GET", f"/aiexperiments/{eid}/best_training_runs")["data"]
    assert [r["id"] for r in best] == [runs["one"]["id"]]
    assert api.ok("GET", f"/experiments/{eid}")["progress"]["observation_count"] == 2
    api.ok("PUT", f"/training_runs/{runs['two']['id']}", {"deleted": False})
    best = api.ok("GET", f"/aiexperiments/{eid}/best_training_runs")["data"]
    assert [r["id"] for r in best] == [runs["two"]["id"]]


def test_list_filters_and_paging(api: Api) -> None:
    project = api.project()
    eid = api.ai(project, budget=10)["id"]
    in_experiment = [api.run(eid)["id"] for _ in range(3)]
    alone = [
        api.ok("POST", f"{project}/training_runs", {"name": f"r{i}", "state": state})["id"]
        for i, state in enumerate(("running", "failed", "completed", "active"))
    ]
    api.ok("DELETE", f"/training_runs/{alone[0]}")
    path = f"{project}/training_runs"

    def ids(*filters: dict[str, Any], limit: int = 100) -> list[str]:
        query: dict[str, Any] = {"limit": limit, "filters": json.dumps(list(filters))}
        found: list[str] = []
        while True:
            page = api.ok("GET", path, query_string=query)
            found += [r["id"] for r in page["data"]]
            if page["paging"]["before"] is None:
                return found
            query["before"] = page["paging"]["before"]

    everything = sorted([*in_experiment, *alone], key=int, reverse=True)
    assert ids() == everything
    assert ids(limit=2) == everything  # paged, newest first, before is null on the last page
    mine = {"field": "experiment", "operator": "==", "value": eid}
    assert ids(mine, limit=2) == in_experiment[::-1]
    assert ids({"field": "experiment", "operator": "isnull"}) == alone[::-1]
    assert ids({"field": "experiment", "operator": "!=", "value": int(eid)}) == alone[::-1]
    assert ids({"field": "state", "operator": "==", "value": "failed"}) == [alone[1]]
    assert ids({"field": "state", "operator": "==", "value": "active"}) == [
        alone[3],
        alone[0],
        *in_experiment[::-1],
    ]
    assert ids({"field": "deleted", "operator": "==", "value": True}) == [alone[0]]
    assert ids({"field": "name", "operator": "==", "value": "r2"}, mine) == []
    assert api.ok("GET", path, query_string={"filters": json.dumps([mine])})["count"] == 3
    for filters, field in (
        ([{"field": "colour", "operator": "==", "value": 1}], "filters[0].field"),
        ([{"field": "state", "operator": "~", "value": 1}], "filters[0].operator"),
        ([{"field": "experiment", "operator": "==", "value": "abc"}], "filters[0].value"),
        ([{"field": "state", "operator": "==", "value": ["x"]}], "filters[0].value"),
        ([{"field": "deleted", "operator": "isnull"}], "filters[0].operator"),
        ([{"operator": "=="}], "filters[0].field"),
    ):
        query = {"filters": json.dumps(filters)}
        assert field in _message(api.call("GET", path, query_string=query)), filters
    for raw in ("[", "{}", "null"):
        assert "filters" in _message(api.call("GET", path, query_string={"filters": raw}))
    assert "before" in _message(api.call("GET", path, query_string={"before": "１"}))


def test_batch_create(api: Api) -> None:
    project = api.project()
    path = f"{project}/training_runs/batch"
    runs = [
        {"name": "a", "assignments": {"x": 1}, "values": {"acc": {"value": 0.5}}},
        {"name": "b", "state": "completed", "metadata": {"k": "v"}},
        {"name": "c", "state": "failed"},
    ]
    created = api.ok("POST", path, {"runs": runs, "fields": "id"})
    assert created["object"] == "pagination" and created["count"] == 3
    assert all(set(r) == {"object", "id"} for r in created["data"])
    full = api.ok("POST", path, {"runs": runs[:1]})["data"][0]
    assert full["values"]["acc"]["value"] == 0.5 and full["assignments"] == {"x": 1}
    listed = api.ok("GET", f"{project}/training_runs")
    assert listed["count"] == 4
    assert "runs[1].state" in _message(
        api.call("POST", path, {"runs": [runs[0], {"state": "queued"}]})
    )
    assert "runs[1].values.acc.value" in _message(
        api.call("POST", path, {"runs": [runs[0], {"values": {"acc": {"value": None}}}]})
    )
    assert "runs" in _message(api.call("POST", path, {"runs": [{}] * 10_001}))
    assert "runs" in _message(api.call("POST", path, {"runs": []}))
    assert api.ok("GET", f"{project}/training_runs")["count"] == 4  # all or nothing


def test_managed_ai_experiment_runs_are_the_platforms(api: Api) -> None:
    project = api.project()
    objective = {"name": "augmented_branin", "config": {"sleep_per_cost": 0}}
    eid = api.ai(project, objective=objective)["id"]
    assert "objective" in _message(
        api.call("POST", f"/aiexperiments/{eid}/training_runs", {}), 409
    )


def test_other_clients_get_404_on_everything(
    api: Api, make_token: Callable[[str], dict[str, str]]
) -> None:
    project = api.project()
    eid = api.ai(project)["id"]
    ai_run = api.run(eid)
    alone = api.ok("POST", f"{project}/training_runs", {"name": "alone"})
    other = Api(api.client, make_token("globex"))
    calls: list[tuple[str, str, Any]] = [
        ("GET", project, None),
        ("GET", f"{project}/aiexperiments", None),
        ("POST", f"{project}/aiexperiments", AI),
        ("GET", f"{project}/training_runs", None),
        ("POST", f"{project}/training_runs", {"name": "x"}),
        ("POST", f"{project}/training_runs/batch", {"runs": [{}]}),
        ("GET", f"/aiexperiments/{eid}", None),
        ("PUT", f"/aiexperiments/{eid}", {"name": "mine"}),
        ("DELETE", f"/aiexperiments/{eid}", None),
        ("POST", f"/aiexperiments/{eid}/training_runs", {}),
        ("GET", f"/aiexperiments/{eid}/best_training_runs", None),
        ("GET", f"/experiments/{eid}", None),
    ]
    for rid in (ai_run["id"], alone["id"]):
        calls += [
            ("GET", f"/training_runs/{rid}", None),
            ("PUT", f"/training_runs/{rid}", {"name": "mine"}),
            ("MERGE", f"/training_runs/{rid}", {"state": "failed"}),
            ("PATCH", f"/training_runs/{rid}", {"state": "failed"}),
            ("DELETE", f"/training_runs/{rid}", None),
            ("POST", f"/training_runs/{rid}/checkpoints", {"values": [{"value": 1}]}),
            ("GET", f"/training_runs/{rid}/checkpoints", None),
        ]
    # Malformed bodies too: the object's absence answers first, as in SigOpt.
    calls += [
        ("POST", f"{project}/aiexperiments", {"name": "x", "parameters": []}),
        ("MERGE", f"/training_runs/{ai_run['id']}", {"state": "done"}),
        ("GET", f"{project}/training_runs?filters=nope", None),
        ("DELETE", f"/aiexperiments/{eid}?include_runs=maybe", None),
    ]
    for method, path, body in calls:
        _message(other.call(method, path, body), 404)
    assert "state" in _message(api.merge(ai_run["id"], {"state": "done"}))  # the owner: 400
    assert api.ok("GET", f"/aiexperiments/{eid}")["name"] == "ai"
    for rid in (ai_run["id"], alone["id"]):
        run = api.ok("GET", f"/training_runs/{rid}")
        assert run["state"] == "running" and not run["deleted"] and run["name"] != "mine"
    assert api.ok("GET", f"/training_runs/{alone['id']}", headers=SERVICE)["id"] == alone["id"]


def test_parallel_creates_never_overshoot_the_budget(
    app: Any, api: Api, auth: dict[str, str]
) -> None:
    """Eight clients race for a budget of 3: exactly 3 runs, the rest 409 naming budget."""
    project = api.project()
    eid = api.ai(project, budget=3)["id"]
    start = threading.Barrier(8)
    statuses: list[int] = []

    def race(i: int) -> None:
        client = app.test_client()
        start.wait()
        for _ in range(3):
            body = {"assignments": {**POINT, "x": (i * 3 + _) / 100}} if i % 2 else {}
            response = client.post(
                f"/v1/aiexperiments/{eid}/training_runs", json=body, headers=auth
            )
            statuses.append(response.status_code)
            if response.status_code == 409:
                assert "budget" in response.json["message"]

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(set(statuses)) == [200, 409] and statuses.count(200) == 3
    progress = api.ok("GET", f"/aiexperiments/{eid}")["progress"]
    assert (progress["total_run_count"], progress["remaining_budget"]) == (3, 0)
    open_suggestions = api.ok("GET", f"/experiments/{eid}/suggestions")["count"]
    assert open_suggestions == 3  # suggestions served for refused runs were withdrawn


def test_runs_are_served_in_the_suggestions_order(api: Api) -> None:
    """Queued first, then the initial design: the order of ``POST .../suggestions``."""
    project = api.project()
    eid = api.ai(project, budget=5)["id"]
    api.ok("POST", f"/experiments/{eid}/queued_suggestions", {"assignments": POINT})
    first = api.run(eid)
    assert first["assignments"] == POINT
    second = api.run(eid)
    sources = [s["source"] for s in api.ok("GET", f"/experiments/{eid}/suggestions")["data"][::-1]]
    assert sources == ["queued", "design"] and second["assignments"] != POINT
    assert api.ok("GET", f"/experiments/{eid}/suggestions/{second['suggestion']}")["state"] == (
        "open"
    )


def test_a_continued_run_is_charged_the_difference_in_the_remaining_budget(api: Api) -> None:
    eid = api.ai(api.project(), tasks=TASKS, budget=4)["id"]
    cheap = api.run(eid, {"assignments": POINT, "task": "cheap"})
    archive = b"the cheap run's checkpoints"
    stored = api.call(
        "PUT",
        f"/training_runs/{cheap['id']}/checkpoint_archive",
        query_string={"attempt": cheap["attempt"], "sha256": hashlib.sha256(archive).hexdigest()},
        data=archive,
        headers={"Content-Type": "application/x-tar", "Authorization": "Bearer service-secret"},
    )  # as a worker stores it: clients cannot
    assert stored.status_code == 200, stored.json
    api.merge(cheap["id"], {"values": {"acc": {"value": 1.0}}, "state": "completed"})
    body = {"suggestion": {"assignments": POINT, "task": "full"}, "continues": cheap["id"]}
    continued = api.ok("POST", f"/experiments/{eid}/training_runs", body)
    assert continued["continues"] == cheap["id"]
    # cheap (0.25) + full continued from cheap (1 - 0.25): 1 of 4 spent, not 1.25
    progress = api.ok("GET", f"/aiexperiments/{eid}")["progress"]
    assert progress["total_run_count"] == 2
    assert progress["remaining_budget"] == pytest.approx(3.0)
