from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

SERVICE = {"Authorization": "Bearer service-secret"}


@pytest.fixture()
def run(client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]) -> dict[str, Any]:
    eid = experiment["id"]
    s = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json
    response = client.post(
        f"/v1/experiments/{eid}/training_runs", json={"suggestion": s["id"]}, headers=auth
    )
    assert response.status_code == 200, response.json
    return response.json


def test_create_is_idempotent_per_suggestion(
    client: FlaskClient, auth: dict[str, str], run: dict[str, Any]
) -> None:
    again = client.post(
        f"/v1/experiments/{run['experiment']}/training_runs",
        json={"suggestion": run["suggestion"]},
        headers=auth,
    ).json
    assert again["id"] == run["id"]
    assert run["state"] == "queued" and run["attempt"] == 1 and run["checkpoint_count"] == 0
    listed = client.get(f"/v1/experiments/{run['experiment']}/training_runs", headers=auth).json
    assert listed["count"] == 1


def test_a_new_suggestion_and_its_run_are_created_together(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    path = f"/v1/experiments/{eid}/training_runs"
    point = {"assignments": {"x": 1, "lr": 0.01, "n": 3, "opt": "sgd"}, "task": "full"}
    for bad, field in (
        (
            {**point, "assignments": {**point["assignments"], "x": 10**6}},
            "suggestion.assignments.x",
        ),
        ({**point, "task": "nope"}, "suggestion.task"),
        ({"task": "full"}, "suggestion"),
    ):
        response = client.post(path, json={"suggestion": bad}, headers=auth)
        assert response.status_code == 400 and field in response.json["message"], response.json
    listed = client.get(f"/v1/experiments/{eid}/suggestions", headers=auth).json
    assert listed["count"] == 0  # nothing half-created
    run = client.post(
        path, json={"suggestion": {**point, "metadata": {"source": "model"}}}, headers=auth
    ).json
    assert run["state"] == "queued" and run["assignments"] == point["assignments"]
    suggestion = client.get(
        f"/v1/experiments/{eid}/suggestions/{run['suggestion']}", headers=auth
    ).json
    assert suggestion["state"] == "open" and suggestion["metadata"] == {"source": "model"}
    assert suggestion["task"]["name"] == "full"


def test_claim_heartbeat_and_attempt_fencing(
    client: FlaskClient, auth: dict[str, str], run: dict[str, Any]
) -> None:
    path = f"/v1/training_runs/{run['id']}"
    claimed = client.put(
        path,
        json={"state": "running", "attempt": 1, "worker": "w1", "heartbeat": True},
        headers=SERVICE,
    )
    assert claimed.status_code == 200 and claimed.json["state"] == "running"
    assert claimed.json["heartbeat"] is not None and claimed.json["started"] is not None
    second = client.put(
        path, json={"state": "running", "attempt": 1, "worker": "w2"}, headers=auth
    )
    assert second.status_code == 409 and "another worker" in second.json["message"]
    bumped = client.put(path, json={"new_attempt": True, "attempt": 1}, headers=auth).json
    assert bumped["attempt"] == 2 and bumped["state"] == "queued"
    late = client.put(path, json={"heartbeat": True, "attempt": 1}, headers=auth)
    assert late.status_code == 409 and "attempt" in late.json["message"]
    late_checkpoint = client.post(
        f"{path}/checkpoints",
        json={"attempt": 1, "values": [{"name": "loss", "value": 1.0}]},
        headers=auth,
    )
    assert late_checkpoint.status_code == 409
    listing = f"/v1/experiments/{run['experiment']}/training_runs"
    assert client.get(f"{listing}?state=unfinished", headers=auth).json["count"] == 1
    done = client.put(path, json={"state": "completed", "attempt": 2}, headers=auth).json
    assert done["finished"] is True and done["completed"] is not None
    assert client.get(f"{listing}?state=unfinished", headers=auth).json["count"] == 0
    assert client.get(f"{listing}?state=completed", headers=auth).json["count"] == 1
    bad = client.get(f"{listing}?state=done", headers=auth)
    assert bad.status_code == 400 and "state" in bad.json["message"]


def _observations(client: FlaskClient, auth: dict[str, str], eid: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = client.get(
        f"/v1/experiments/{eid}/observations", headers=auth
    ).json["data"]
    return listed


def test_a_result_records_the_observation_and_the_final_state_together(
    client: FlaskClient, auth: dict[str, str], run: dict[str, Any]
) -> None:
    path = f"/v1/training_runs/{run['id']}"
    client.put(path, json={"state": "running", "attempt": 1, "worker": "w1"}, headers=SERVICE)
    client.put(path, json={"new_attempt": True, "attempt": 1}, headers=SERVICE)
    result = {"attempt": 2, "state": "completed", "values": [{"name": "accuracy", "value": 0.7}]}
    late = client.post(f"{path}/result", json={**result, "attempt": 1}, headers=SERVICE)
    assert late.status_code == 409 and "attempt" in late.json["message"]
    for bad, field in (
        ({**result, "values": None}, "values"),
        ({**result, "values": [{"name": "nope", "value": 1}]}, "values"),
        ({**result, "state": "running"}, "state"),
    ):
        response = client.post(f"{path}/result", json=bad, headers=SERVICE)
        assert response.status_code == 400 and field in response.json["message"], bad
    assert _observations(client, auth, run["experiment"]) == []

    done = client.post(f"{path}/result", json=result, headers=SERVICE)
    assert done.status_code == 200, done.json
    assert done.json["state"] == "completed" and done.json["observation"] is not None
    [observation] = _observations(client, auth, run["experiment"])
    assert observation["id"] == done.json["observation"]
    assert observation["suggestion"] == run["suggestion"] and observation["value"] == 0.7
    assert observation["metadata"] == {"training_run": int(run["id"]), "attempt": 2}
    again = client.post(f"{path}/result", json=result, headers=SERVICE)  # a redelivered result
    assert again.status_code == 409 and "completed" in again.json["message"]
    assert len(_observations(client, auth, run["experiment"])) == 1


def test_a_failed_result_and_a_deleted_suggestion(
    client: FlaskClient, auth: dict[str, str], run: dict[str, Any]
) -> None:
    failed = client.post(
        f"/v1/training_runs/{run['id']}/result",
        json={"attempt": 1, "state": "failed", "failure_reason": "CUDA OOM", "traceback": "tb"},
        headers=SERVICE,
    ).json
    assert failed["state"] == "failed" and failed["failure_reason"] == "CUDA OOM"
    [observation] = _observations(client, auth, run["experiment"])
    assert observation["failed"] is True
    assert observation["metadata"]["failure_reason"] == "CUDA OOM"

    eid = run["experiment"]
    s = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json
    other = client.post(
        f"/v1/experiments/{eid}/training_runs", json={"suggestion": s["id"]}, headers=auth
    ).json
    client.delete(f"/v1/experiments/{eid}/suggestions/{s['id']}", headers=auth)
    stopped = client.post(
        f"/v1/training_runs/{other['id']}/result",
        json={"attempt": 1, "state": "completed", "values": [{"value": 0.9}]},
        headers=SERVICE,
    ).json
    assert stopped["state"] == "stopped" and stopped["observation"] is None
    assert len(_observations(client, auth, eid)) == 1


def test_thousands_of_checkpoints_are_kept_and_paged(
    database_url: str, client: FlaskClient, auth: dict[str, str], run: dict[str, Any]
) -> None:
    """More than 10,000 on SQLite; PostgreSQL checks the same paging on fewer (suite time)."""
    path = f"/v1/training_runs/{run['id']}/checkpoints"
    total = 10_050 if database_url.startswith("sqlite") else 1_500
    for epoch in range(total):
        response = client.post(
            path,
            json={
                "epoch": epoch,
                "values": [
                    {"name": "val_top1", "value": epoch / total},
                    {"name": "loss", "value": 1 - epoch / total},
                ],
            },
            headers=auth,
        )
        assert response.status_code == 200
    assert (
        client.get(f"/v1/training_runs/{run['id']}", headers=auth).json["checkpoint_count"]
        == total
    )
    epochs: list[int] = []
    params: dict[str, Any] = {"limit": 1000}
    while True:
        page = client.get(path, query_string=params, headers=auth).json
        assert page["count"] == total
        epochs += [c["epoch"] for c in page["data"]]
        if not page["paging"]["before"]:
            break
        params["before"] = page["paging"]["before"]
    assert epochs == list(range(total))[::-1]


def test_runs_are_private_to_their_client(
    client: FlaskClient, make_token: Any, run: dict[str, Any]
) -> None:
    other = make_token("globex")
    assert client.get(f"/v1/training_runs/{run['id']}", headers=other).status_code == 404
    response = client.post(
        f"/v1/training_runs/{run['id']}/checkpoints",
        json={"values": [{"name": "x", "value": 1}]},
        headers=other,
    )
    assert response.status_code == 404
    assert client.get(f"/v1/training_runs/{run['id']}", headers=SERVICE).status_code == 200
