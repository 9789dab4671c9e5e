"""Analytics: the pure functions on synthetic data, then every ``/v1/.../analytics`` endpoint
over SQLite and PostgreSQL, including the dashboard session as an alternative to a token."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from services.api.analytics.correlation import spearman
from services.api.analytics.dataset import Dataset
from services.api.analytics.dataset import Point
from services.api.analytics.importance import extra_trees_importance
from services.api.analytics.importance import parameter_importance
from shared.space import ExperimentSpec

SERVICE = {"Authorization": "Bearer service-secret"}

SYNTHETIC = {
    "name": "one parameter dominates",
    "parameters": [
        {"name": p, "type": "double", "bounds": {"min": 0, "max": 1}}
        for p in ("noise", "dominant", "minor")
    ],
    "metrics": [{"name": "loss", "objective": "minimize"}],
    "tasks": [{"name": "cheap", "cost": 0.25}, {"name": "full", "cost": 1.0}],
    "observation_budget": 100,
}


def synthetic_loss(a: dict[str, float], task: str) -> float:
    """``dominant`` explains almost everything, ``minor`` a little, ``noise`` nothing; the cheap
    task adds a constant offset."""
    return 10 * a["dominant"] ** 2 + 1.0 * a["minor"] + (0.5 if task == "cheap" else 0.0)


def synthetic_points(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = {name: float(rng.random()) for name in ("noise", "dominant", "minor")}
        task = "full" if i % 2 else "cheap"
        out.append({"assignments": a, "task": task, "value": synthetic_loss(a, task)})
    return out


# ----------------------------------------------------------------------------- pure units
def test_importance_ranks_the_dominant_parameter_first_and_the_irrelevant_last() -> None:
    spec = ExperimentSpec.from_json(SYNTHETIC)
    points = tuple(
        Point(
            id=i,
            suggestion_id=None,
            created=0.0,
            task=p["task"],
            cost=spec.task_cost(p["task"]),
            failed=False,
            assignments=p["assignments"],
            values={"loss": p["value"]},
        )
        for i, p in enumerate(synthetic_points(200))
    )
    data = Dataset(spec=spec, metric=spec.metrics[0], points=points)

    full = parameter_importance(data, "full")
    assert full["observation_count"] == 100  # only the cost-1 half
    assert [d["parameter"] for d in full["data"]] == ["dominant", "minor", "noise"]
    shares = {d["parameter"]: d["importance"] for d in full["data"]}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["dominant"] > 0.75 and shares["noise"] < 0.05
    assert full["task_importance"] is None

    across = parameter_importance(data, "all")
    assert across["observation_count"] == 200
    assert [d["parameter"] for d in across["data"]] == ["dominant", "minor", "noise"]
    assert sum(d["importance"] for d in across["data"]) == pytest.approx(1.0)
    assert 0 < across["task_importance"] < 0.5  # the cheap task's offset explains some


def test_importance_needs_enough_observations_and_a_varying_metric() -> None:
    spec = ExperimentSpec.from_json(SYNTHETIC)
    few = Dataset(
        spec=spec,
        metric=spec.metrics[0],
        points=tuple(
            Point(
                id=i,
                suggestion_id=None,
                created=0.0,
                task="full" if i < 3 else "cheap",
                cost=1.0 if i < 3 else 0.25,
                failed=False,
                assignments=p["assignments"],
                values={"loss": 1.0},
            )
            for i, p in enumerate(synthetic_points(8))
        ),
    )
    assert parameter_importance(few, "full")["data"] == []
    assert "at least" in parameter_importance(few, "full")["message"]
    constant = parameter_importance(few, "all")  # 8 points, all the same value
    assert constant["data"] == [] and "same value" in constant["message"]
    assert not extra_trees_importance(np.zeros((4, 2)), np.ones(4)).any()


def test_spearman_matches_rank_definition() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert spearman([1, 2], [1, 2]) is None  # too few
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # constant: undefined, no warning


# ----------------------------------------------------------------------------- endpoints
def _experiment(client: FlaskClient, auth: dict[str, str], body: dict[str, Any]) -> str:
    response = client.post("/v1/experiments", json=body, headers=auth)
    assert response.status_code == 200, response.json
    return str(response.json["id"])


def _observe(
    client: FlaskClient, auth: dict[str, str], eid: str, observations: list[dict[str, Any]]
) -> None:
    response = client.post(
        f"/v1/experiments/{eid}/observations/batch",
        json={"observations": observations},
        headers=auth,
    )
    assert response.status_code == 200, response.json


def test_importance_endpoint_ranks_parameters(client: FlaskClient, auth: dict[str, str]) -> None:
    eid = _experiment(client, auth, SYNTHETIC)
    _observe(client, auth, eid, synthetic_points(120))
    path = f"/v1/experiments/{eid}/analytics/importance"
    full = client.get(path, headers=auth).json
    assert full["task"] == "full" and full["observation_count"] == 60
    assert [d["parameter"] for d in full["data"]] == ["dominant", "minor", "noise"]
    assert sum(d["importance"] for d in full["data"]) == pytest.approx(1.0)
    assert "ExtraTreesRegressor" in full["method"]
    across = client.get(path, query_string={"task": "all"}, headers=auth).json
    assert across["observation_count"] == 120 and across["data"][0]["parameter"] == "dominant"
    assert across["task_importance"] is not None
    assert client.get(path, headers=auth).json == full  # cached result is the same

    bad = client.get(path, query_string={"task": "cheap"}, headers=auth)
    assert bad.status_code == 400 and "task" in bad.json["message"]
    unknown = client.get(path, query_string={"metric": "nope"}, headers=auth)
    assert unknown.status_code == 400 and "metric" in unknown.json["message"]


def test_history_has_cumulative_cost_and_best_full_cost_so_far(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    eid = _experiment(client, auth, SYNTHETIC)
    a = {"noise": 0.5, "dominant": 0.5, "minor": 0.5}
    _observe(
        client,
        auth,
        eid,
        [
            {"assignments": a, "task": "cheap", "value": 5.0},
            {"assignments": a, "task": "full", "value": 3.0},
            {"assignments": a, "task": "cheap", "value": 1.0},  # better, but cheap: not "best"
            {"assignments": a, "task": "full", "value": 2.0},
            {"assignments": a, "task": "full", "failed": True},
            {"assignments": a, "task": "full", "value": 2.5},
        ],
    )
    history = client.get(f"/v1/experiments/{eid}/analytics/history", headers=auth).json
    assert history["metric"] == "loss" and history["objective"] == "minimize"
    assert history["full_cost_task"] == "full" and history["count"] == 6
    assert [e["cumulative_cost"] for e in history["data"]] == [0.25, 1.25, 1.5, 2.5, 3.5, 4.5]
    assert [e["best_full_cost"] for e in history["data"]] == [None, 3.0, 3.0, 2.0, 2.0, 2.0]
    assert [e["value"] for e in history["data"]] == [5.0, 3.0, 1.0, 2.0, None, 2.5]
    assert [e["task"] for e in history["data"]][:2] == ["cheap", "full"]
    assert history["data"][0]["assignments"] == a
    assert [s["best_full_cost"] for s in history["best_vs_cost"]] == [3.0, 2.0]
    assert [s["cumulative_cost"] for s in history["best_vs_cost"]] == [1.25, 2.5]
    assert [p["name"] for p in history["parameters"]] == ["noise", "dominant", "minor"]

    summary = client.get(f"/v1/experiments/{eid}/analytics/summary", headers=auth).json
    assert summary["best"]["value"] == 2.0 and summary["budget_consumed"] == 4.5
    assert summary["budget_fraction"] == pytest.approx(0.045) and summary["owner"] == "acme"
    by_task = {t["task"]: t for t in summary["tasks"]}
    assert by_task["cheap"]["observations"] == 2 and by_task["cheap"]["cost_consumed"] == 0.5
    assert by_task["full"]["observations"] == 4 and by_task["full"]["failed"] == 1
    assert by_task["full"]["best_value"] == 2.0 and by_task["cheap"]["best_value"] == 1.0


def test_task_correlation_over_shared_configurations(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    body = {
        **SYNTHETIC,
        "tasks": [
            {"name": "tiny", "cost": 0.1},
            {"name": "cheap", "cost": 0.25},
            {"name": "full", "cost": 1.0},
        ],
    }
    eid = _experiment(client, auth, body)
    observations = []
    for i in range(5):
        a = {"noise": 0.1, "dominant": i / 10, "minor": 0.2}
        observations += [
            {"assignments": a, "task": "full", "value": float(i)},
            {"assignments": a, "task": "cheap", "value": float(i) + 0.5},
            {"assignments": a, "task": "tiny", "value": float(-i)},
        ]
    observations.append(
        {
            "assignments": {"noise": 0.9, "dominant": 0.9, "minor": 0.9},
            "task": "cheap",
            "value": 7.0,
        }
    )  # seen at one task only
    _observe(client, auth, eid, observations)
    result = client.get(f"/v1/experiments/{eid}/analytics/task_correlation", headers=auth).json
    assert result["full_cost_task"] == "full"
    rows = {r["task"]: r for r in result["data"]}
    assert list(rows) == ["tiny", "cheap"]  # cheapest first, full-cost task excluded
    assert rows["cheap"]["configurations"] == 5 and rows["cheap"]["spearman"] == pytest.approx(1)
    assert rows["tiny"]["spearman"] == pytest.approx(-1)
    assert len(result["configurations"]) == 5 and result["message"] is None

    single = _experiment(client, auth, {k: v for k, v in SYNTHETIC.items() if k != "tasks"})
    alone = client.get(f"/v1/experiments/{single}/analytics/task_correlation", headers=auth).json
    assert alone["data"] == [] and "single-task" in alone["message"]


def test_suggestion_table_joins_runs_states_and_attempts(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    eid = _experiment(client, auth, SYNTHETIC)

    def suggest() -> str:
        return str(client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json["id"])

    def run_of(sid: str) -> str:
        response = client.post(
            f"/v1/experiments/{eid}/training_runs", json={"suggestion": sid}, headers=auth
        )
        return str(response.json["id"])

    lost, running, observed, deleted, open_ = (suggest() for _ in range(5))
    lost_run = run_of(lost)
    client.put(f"/v1/training_runs/{lost_run}", json={"state": "running"}, headers=SERVICE)
    client.put(f"/v1/training_runs/{lost_run}", json={"new_attempt": True}, headers=SERVICE)
    client.put(
        f"/v1/training_runs/{lost_run}", json={"state": "lost", "attempt": 2}, headers=SERVICE
    )
    client.put(f"/v1/training_runs/{run_of(running)}", json={"state": "running"}, headers=SERVICE)
    client.post(
        f"/v1/experiments/{eid}/observations",
        json={"suggestion": observed, "value": 1.5},
        headers=auth,
    )
    client.delete(f"/v1/experiments/{eid}/suggestions/{deleted}", headers=auth)

    page = client.get(f"/v1/experiments/{eid}/analytics/suggestions", headers=auth).json
    rows = {r["suggestion"]: r for r in page["data"]}
    assert page["count"] == 5 and list(rows) == [open_, deleted, observed, running, lost]
    assert rows[lost]["state"] == "lost" and rows[lost]["attempts"] == 2
    assert rows[lost]["training_run"] == lost_run
    assert rows[running]["state"] == "running" and rows[running]["attempts"] == 1
    assert rows[observed]["state"] == "observed" and rows[observed]["value"] == 1.5
    assert rows[deleted]["state"] == "deleted" and rows[open_]["state"] == "open"
    assert rows[open_]["attempts"] == 0 and rows[open_]["training_run"] is None
    limited = client.get(f"/v1/experiments/{eid}/analytics/suggestions?limit=2", headers=auth)
    assert [r["suggestion"] for r in limited.json["data"]] == [open_, deleted]
    too_many = client.get(f"/v1/experiments/{eid}/analytics/suggestions?limit=5000", headers=auth)
    assert too_many.status_code == 400 and "limit" in too_many.json["message"]
    summary = client.get(f"/v1/experiments/{eid}/analytics/summary", headers=auth).json
    assert summary["runs"] == {"lost": 1, "running": 1}


def test_curves_of_one_and_many_runs(client: FlaskClient, auth: dict[str, str]) -> None:
    eid = _experiment(client, auth, SYNTHETIC)
    runs = []
    for r in range(2):
        sid = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json["id"]
        run = client.post(
            f"/v1/experiments/{eid}/training_runs", json={"suggestion": sid}, headers=auth
        ).json["id"]
        for epoch in range(3):
            client.post(
                f"/v1/training_runs/{run}/checkpoints",
                headers=auth,
                json={
                    "epoch": epoch,
                    "values": [
                        {"name": "loss", "value": 1.0 / (epoch + 1 + r)},
                        {"name": "acc", "value": epoch / 3},
                    ],
                },
            )
        runs.append(str(run))
    one = client.get(f"/v1/training_runs/{runs[0]}/analytics/curves", headers=auth).json
    assert one["metrics"] == ["loss", "acc"] and [c["epoch"] for c in one["data"]] == [0, 1, 2]
    assert one["data"][1]["values"] == {"loss": 0.5, "acc": pytest.approx(1 / 3)}
    assert one["run"]["state"] == "queued" and one["run"]["checkpoint_count"] == 3
    many = client.get(
        "/v1/analytics/curves", query_string={"runs": ",".join(runs[::-1])}, headers=auth
    ).json
    assert [c["training_run"] for c in many["data"]] == runs[::-1]
    bad = client.get("/v1/analytics/curves?runs=1,x", headers=auth)
    assert bad.status_code == 400 and "runs" in bad.json["message"]
    missing = client.get("/v1/analytics/curves?runs=" + runs[0] + ",99999", headers=auth)
    assert missing.status_code == 404 and "99999" in missing.json["message"]


def test_observations_csv(client: FlaskClient, auth: dict[str, str]) -> None:
    body = {
        **SYNTHETIC,
        "parameters": [
            *SYNTHETIC["parameters"],
            {"name": "kind", "type": "categorical", "categorical_values": ["=cmd()", "plain"]},
        ],
    }
    eid = _experiment(client, auth, body)
    points = synthetic_points(4)
    for i, p in enumerate(points):
        p["assignments"]["kind"] = "=cmd()" if i == 0 else "plain"
    _observe(client, auth, eid, points)
    response = client.get(f"/v1/experiments/{eid}/analytics/observations.csv", headers=auth)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 4
    assert list(rows[0]) == [
        "id",
        "created",
        "suggestion",
        "task",
        "cost",
        "failed",
        "loss",
        "noise",
        "dominant",
        "minor",
        "kind",
    ]
    assert float(rows[1]["loss"]) == pytest.approx(points[1]["value"])
    assert rows[0]["kind"] == "'=cmd()"  # a spreadsheet would not run it


def test_analytics_are_scoped_to_the_client(
    client: FlaskClient, auth: dict[str, str], make_token: Callable[[str], dict[str, str]]
) -> None:
    eid = _experiment(client, auth, SYNTHETIC)
    other = make_token("globex")
    for path in (
        "summary",
        "history",
        "importance",
        "task_correlation",
        "suggestions",
        "observations.csv",
    ):
        url = f"/v1/experiments/{eid}/analytics/{path}"
        assert client.get(url, headers=other).status_code == 404, path
        assert client.get(url).status_code == 401, path
        assert client.get(url, headers=auth).status_code == 200, path
        assert client.get(url, headers=SERVICE).status_code == 200, path


def _csrf(client: FlaskClient) -> str:
    page = client.get("/login").get_data(as_text=True)
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def test_dashboard_session_reads_but_never_writes(
    client: FlaskClient, auth: dict[str, str], make_token: Callable[[str], dict[str, str]]
) -> None:
    eid = _experiment(client, auth, SYNTHETIC)
    url = f"/v1/experiments/{eid}/analytics/history"
    token = auth["Authorization"].removeprefix("Bearer ")
    assert client.get(f"/experiments/{eid}").status_code == 302  # to /login

    refused = client.post("/login", data={"token": token, "csrf": "forged"})
    assert refused.status_code == 400 and "csrf" in refused.get_data(as_text=True)
    wrong = client.post("/login", data={"token": "mt_wrong", "csrf": _csrf(client)})
    assert wrong.status_code == 401 and "Invalid value for token" in wrong.get_data(as_text=True)
    assert client.get(url).status_code == 401

    signed_in = client.post(
        "/login", data={"token": token, "csrf": _csrf(client), "next": "//evil.example/x"}
    )
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/experiments"
    cookie = client.get_cookie("multitune_session")
    assert cookie is not None and token not in cookie.value and cookie.http_only
    assert client.get(url).status_code == 200  # the cookie is enough for GET
    sid = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json["id"]
    run = client.post(
        f"/v1/experiments/{eid}/training_runs", json={"suggestion": sid}, headers=auth
    ).json["id"]
    upload = client.post(
        f"/v1/training_runs/{run}/files?name=a.txt", data=b"hi", content_type="text/plain"
    )
    assert upload.status_code == 401  # writes need a token, never the cookie
    page = client.get(f"/experiments/{eid}")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]

    other = make_token("globex")
    client.post("/logout", data={"csrf": _csrf(client)})
    assert client.get(url).status_code == 401
    # A chart poll sent before the logout and answered after it carries the old cookie: its
    # answer must not set that cookie again (the browser race a dashboard test once hit).
    client.set_cookie("multitune_session", cookie.value)
    late_poll = client.get(url)
    assert late_poll.status_code == 200 and "Set-Cookie" not in late_poll.headers
    client.post("/logout", data={"csrf": _csrf(client)})
    client.post(
        "/login",
        data={"token": other["Authorization"].removeprefix("Bearer "), "csrf": _csrf(client)},
    )
    assert client.get(url).status_code == 404
    assert client.get(f"/experiments/{eid}").status_code == 404
    assert client.get(f"/runs/{run}").status_code == 404
    assert client.get(f"/compare?runs={run}").status_code == 404
    assert client.get(f"/compare?experiments={eid}").status_code == 404
    listed = client.get("/experiments").get_data(as_text=True)
    assert SYNTHETIC["name"] not in listed
    bad = client.get("/compare?runs=1,abc")
    assert bad.status_code == 400 and "Invalid value for runs" in bad.get_data(as_text=True)
