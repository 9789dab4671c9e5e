from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient


def _suggestion(client: FlaskClient, auth: dict[str, str], eid: str, task: str) -> dict[str, Any]:
    point = {"x": 0.5, "lr": 0.01, "n": 3, "opt": "adam"}
    response = client.post(
        f"/v1/experiments/{eid}/suggestions",
        json={"assignments": {**point, "x": hash(task) % 1000 / 1000}, "task": task},
        headers=auth,
    )
    assert response.status_code == 200, response.json
    return response.json


def _observe(
    client: FlaskClient,
    auth: dict[str, str],
    eid: str,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> Any:
    return client.post(
        f"/v1/experiments/{eid}/observations", json=body, headers={**auth, **(headers or {})}
    )


def test_budget_is_the_sum_of_task_costs_and_best_is_full_cost_only(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    cheap = _suggestion(client, auth, eid, "short")
    mid = _suggestion(client, auth, eid, "medium")
    full = _suggestion(client, auth, eid, "full")
    assert _observe(client, auth, eid, suggestion=cheap["id"], value=0.99).status_code == 200
    best = client.get(f"/v1/experiments/{eid}/best_assignments", headers=auth).json
    assert best["count"] == 0  # a cheap task never counts as best
    _observe(client, auth, eid, suggestion=mid["id"], failed=True)
    _observe(client, auth, eid, suggestion=full["id"], value=0.5, value_stddev=0.01)
    progress = client.get(f"/v1/experiments/{eid}", headers=auth).json["progress"]
    assert progress["observation_count"] == 3
    assert progress["observation_budget_consumed"] == pytest.approx(0.25 + 0.5 + 1.0)
    assert progress["best_observation"]["suggestion"] == full["id"]
    best = client.get(f"/v1/experiments/{eid}/best_assignments", headers=auth).json
    assert [b["value"] for b in best["data"]] == [0.5]
    assert best["data"][0]["task"]["cost"] == 1.0
    suggestion = client.get(f"/v1/experiments/{eid}/suggestions/{full['id']}", headers=auth).json
    assert suggestion["state"] == "closed"


def test_a_retried_post_never_double_counts(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    s = _suggestion(client, auth, eid, "full")
    first = _observe(client, auth, eid, {"Idempotency-Key": "abc"}, suggestion=s["id"], value=1.0)
    again = _observe(client, auth, eid, {"Idempotency-Key": "abc"}, suggestion=s["id"], value=1.0)
    assert first.json["id"] == again.json["id"]
    same_body = _observe(client, auth, eid, suggestion=s["id"], value=1.0)
    assert same_body.json["id"] == first.json["id"]
    different = _observe(client, auth, eid, suggestion=s["id"], value=2.0)
    assert different.status_code == 409 and "suggestion" in different.json["message"]
    progress = client.get(f"/v1/experiments/{eid}", headers=auth).json["progress"]
    assert progress["observation_count"] == 1 and progress["observation_budget_consumed"] == 1.0
    second = _observe(client, auth, eid, suggestion=s["id"], value=2.0, allow_multiple=True)
    assert second.status_code == 200 and second.json["id"] != first.json["id"]


def test_observation_body_rules(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    s = _suggestion(client, auth, eid, "short")
    point = {"x": 0.5, "lr": 0.01, "n": 3, "opt": "adam"}
    cases = [
        ({"suggestion": s["id"]}, "value"),
        ({"suggestion": s["id"], "value": 1, "failed": True}, "failed"),
        ({"suggestion": s["id"], "assignments": point, "value": 1}, "suggestion"),
        ({"value": 1}, "suggestion"),
        ({"assignments": point, "value": 1}, "task"),
        ({"assignments": point, "task": "bogus", "value": 1}, "task"),
        ({"assignments": {**point, "x": -1}, "task": "short", "value": 1}, "assignments.x"),
        ({"suggestion": s["id"], "values": [{"name": "nope", "value": 1}]}, "values[0].name"),
        ({"suggestion": s["id"], "value": "1"}, "value"),
        ({"suggestion": s["id"], "value": 1, "value_stddev": -1}, "value_stddev"),
        ({"suggestion": "999999", "value": 1}, "suggestion"),
        ({"suggestion": s["id"], "value": 1, "task": "full"}, "task"),
        ({"suggestion": s["id"], "value": 1, "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = _observe(client, auth, eid, **body)
        assert response.status_code == 400, (body, response.json)
        assert field in response.json["message"], (body, response.json)
    assert (
        client.get(f"/v1/experiments/{eid}", headers=auth).json["progress"]["observation_count"]
        == 0
    )


def test_batch_is_all_or_nothing(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    point = {"x": 0.5, "lr": 0.01, "n": 3, "opt": "adam"}
    good = [{"assignments": {**point, "x": i / 10}, "task": "short", "value": i} for i in range(5)]
    bad = [*good, {"assignments": point, "task": "short"}]
    response = client.post(
        f"/v1/experiments/{eid}/observations/batch", json={"observations": bad}, headers=auth
    )
    assert response.status_code == 400 and "observations[5]" in response.json["message"]
    assert client.get(f"/v1/experiments/{eid}/observations", headers=auth).json["count"] == 0
    response = client.post(
        f"/v1/experiments/{eid}/observations/batch", json={"observations": good}, headers=auth
    )
    assert response.status_code == 200 and response.json["count"] == 5
    progress = client.get(f"/v1/experiments/{eid}", headers=auth).json["progress"]
    assert progress["observation_budget_consumed"] == pytest.approx(5 * 0.25)


def test_update_and_delete_keep_counters_right(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    s = _suggestion(client, auth, eid, "medium")
    o = _observe(client, auth, eid, suggestion=s["id"], value=0.3).json
    path = f"/v1/experiments/{eid}/observations/{o['id']}"
    updated = client.put(path, json={"value": 0.7, "metadata": {"rerun": True}}, headers=auth).json
    assert updated["value"] == 0.7 and updated["metadata"] == {"rerun": True}
    assert client.get(path, headers=auth).json["value"] == 0.7
    assert client.delete(path, headers=auth).status_code == 204
    assert client.get(path, headers=auth).status_code == 404
    progress = client.get(f"/v1/experiments/{eid}", headers=auth).json["progress"]
    assert progress["observation_count"] == 0 and progress["observation_budget_consumed"] == 0
    reopened = client.get(f"/v1/experiments/{eid}/suggestions/{s['id']}", headers=auth).json
    assert reopened["state"] == "open"
    assert _observe(client, auth, eid, suggestion=s["id"], value=0.9).status_code == 200


def test_two_metric_best_is_the_pareto_front(client: FlaskClient, auth: dict[str, str]) -> None:
    body = {
        "name": "two",
        "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
        "metrics": [{"name": "a"}, {"name": "b", "objective": "minimize"}],
        "observation_budget": 10,
    }
    eid = client.post("/v1/experiments", json=body, headers=auth).json["id"]
    points = [(0.1, 1.0, 1.0), (0.2, 2.0, 2.0), (0.3, 0.5, 0.5), (0.4, 0.5, 3.0)]
    for x, a, b in points:
        _observe(
            client,
            auth,
            eid,
            assignments={"x": x},
            values=[{"name": "a", "value": a}, {"name": "b", "value": b}],
        )
    best = client.get(f"/v1/experiments/{eid}/best_assignments", headers=auth).json
    assert sorted(d["assignments"]["x"] for d in best["data"]) == [0.1, 0.2, 0.3]
    missing = _observe(
        client, auth, eid, assignments={"x": 0.5}, values=[{"name": "a", "value": 1}]
    )
    assert missing.status_code == 400 and "missing metric" in missing.json["message"]
