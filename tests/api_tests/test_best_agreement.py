"""Every place that shows "best" names the same observation as `shared.best`: the experiment's
progress, best assignments, the analytics summary, history and importance, the dashboard's
pages, and the rule itself run over the optimizer's view of the same observations."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from services.api.db import get_session
from services.api.models import Observation as StoredObservation
from services.suggester.optimizer import Observation
from shared import best as best_rule
from shared.space import ExperimentSpec

CONSTRAINED = {
    "name": "constrained multitask",
    "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [
        {"name": "accuracy", "objective": "maximize"},
        {"name": "memory", "objective": "minimize", "strategy": "constraint", "threshold": 4.0},
    ],
    "tasks": [{"name": "cheap", "cost": 0.1}, {"name": "full", "cost": 1.0}],
    "observation_budget": 30,
}

WINNER_VALUE = 0.8125


def _observe(
    client: FlaskClient,
    auth: dict[str, str],
    eid: str,
    x: float,
    task: str,
    values: dict[str, float] | None,
) -> str:
    body: dict[str, Any] = {"assignments": {"x": x}, "task": task}
    if values is None:
        body["failed"] = True
    else:
        body["values"] = [{"name": name, "value": value} for name, value in values.items()]
    response = client.post(f"/v1/experiments/{eid}/observations", json=body, headers=auth)
    assert response.status_code == 200, response.json
    observation_id: str = response.json["id"]
    return observation_id


def _drop_value(app: Flask, observation_id: str, metric: str) -> None:
    """Make a stored observation lack ``metric``, as a row stored before the API required every
    constraint metric does (the API refuses such an observation now)."""
    with app.app_context():
        session = get_session()
        stored = session.get(StoredObservation, int(observation_id))
        assert stored is not None
        stored.values = [v for v in stored.values if v["name"] != metric]
        session.commit()


def _optimizer_view(
    client: FlaskClient, auth: dict[str, str], eid: str
) -> tuple[ExperimentSpec, list[Observation]]:
    """The experiment's spec and its live observations as the suggester's optimizer sees them,
    oldest first."""
    experiment = client.get(f"/v1/experiments/{eid}", headers=auth).json
    listed = client.get(
        f"/v1/experiments/{eid}/observations", query_string={"limit": 1000}, headers=auth
    ).json["data"]
    observations = [
        Observation(
            assignments=o["assignments"],
            task=o["task"]["name"] if o["task"] else None,
            values={v["name"]: v["value"] for v in o["values"]},
            failed=o["failed"],
        )
        for o in reversed(listed)
    ]
    return ExperimentSpec.from_json(experiment), observations


def _sign_in(client: FlaskClient, auth: dict[str, str]) -> None:
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None, page
    token = auth["Authorization"].removeprefix("Bearer ")
    assert client.post("/login", data={"token": token, "csrf": csrf.group(1)}).status_code == 302


def _row(page: str, eid: str) -> str:
    found = re.search(rf'<tr data-id="{eid}">(.*?)</tr>', page, re.DOTALL)
    assert found is not None, page
    return found.group(1)


def _list_page_best(client: FlaskClient, eid: str) -> str:
    """The best value the dashboard's experiment list shows (the cell before the metric name)."""
    row = _row(client.get("/experiments?state=all").get_data(as_text=True), eid)
    found = re.search(r'<td class="num">([^<]*) <span class="muted">', row)
    assert found is not None, row
    return found.group(1)


def _compare_page_best(client: FlaskClient, eid: str) -> str:
    row = _row(client.get(f"/compare?experiments={eid}").get_data(as_text=True), eid)
    found = re.search(r'<td class="num">([^<]*)</td>$', row.strip())
    assert found is not None, row
    return found.group(1)


def test_every_best_names_the_feasible_full_cost_winner(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    created = client.post("/v1/experiments", json=CONSTRAINED, headers=auth)
    assert created.status_code == 200, created.json
    eid = created.json["id"]
    _observe(client, auth, eid, 0.1, "full", {"accuracy": 0.6, "memory": 3.0})
    winner = _observe(client, auth, eid, 0.2, "full", {"accuracy": WINNER_VALUE, "memory": 2.0})
    # best accuracy of all full-cost rows, but it never reported the constraint metric
    unproven = _observe(client, auth, eid, 0.3, "full", {"accuracy": 0.95, "memory": 1.0})
    _drop_value(app, unproven, "memory")
    _observe(client, auth, eid, 0.4, "full", {"accuracy": 0.9, "memory": 9.0})  # over 4.0
    _observe(client, auth, eid, 0.5, "cheap", {"accuracy": 0.99, "memory": 1.0})  # cheap
    _observe(client, auth, eid, 0.6, "full", None)
    _observe(client, auth, eid, 0.7, "cheap", None)
    # ties the winner later: the oldest of equal values wins
    _observe(client, auth, eid, 0.8, "full", {"accuracy": WINNER_VALUE, "memory": 1.0})
    deleted = _observe(client, auth, eid, 0.9, "full", {"accuracy": 0.97, "memory": 1.0})
    removed = client.delete(f"/v1/experiments/{eid}/observations/{deleted}", headers=auth)
    assert removed.status_code == 204
    winner_point = {"x": 0.2}

    spec, observations = _optimizer_view(client, auth, eid)
    by_rule = best_rule.best_observation(spec, observations)
    assert by_rule is not None and by_rule.assignments == winner_point

    progress = client.get(f"/v1/experiments/{eid}", headers=auth).json["progress"]
    assert progress["best_observation"]["id"] == winner

    best = client.get(f"/v1/experiments/{eid}/best_assignments", headers=auth).json
    assert [b["id"] for b in best["data"]] == [winner]
    assert best["data"][0]["assignments"] == winner_point

    summary = client.get(f"/v1/experiments/{eid}/analytics/summary", headers=auth).json
    assert summary["best"]["observation"] == winner and summary["best"]["value"] == WINNER_VALUE
    # a task's own best is the best feasible value on it; the cheap task has one too
    by_task = {t["task"]: t["best_value"] for t in summary["tasks"]}
    assert by_task == {"cheap": 0.99, "full": WINNER_VALUE}

    history = client.get(f"/v1/experiments/{eid}/analytics/history", headers=auth).json
    assert history["data"][-1]["best_full_cost"] == WINNER_VALUE
    assert history["best_vs_cost"][-1]["observation"] == winner

    importance = f"/v1/experiments/{eid}/analytics/importance"
    full = client.get(importance, query_string={"task": "full"}, headers=auth).json
    across = client.get(importance, query_string={"task": "all"}, headers=auth).json
    candidates = [o for o in observations if best_rule.is_candidate(spec, o)]
    feasible = [o for o in observations if not o.failed and best_rule.is_feasible(spec, o.values)]
    assert full["observation_count"] == len(candidates) == 3
    assert across["observation_count"] == len(feasible) == 4

    _sign_in(client, auth)
    shown = f"{WINNER_VALUE:.5g}"
    assert _list_page_best(client, eid) == shown
    assert _compare_page_best(client, eid) == shown
    page = client.get(f"/experiments/{eid}").get_data(as_text=True)
    assert f'<p id="best-value">{WINNER_VALUE:.6g}</p>' in page


TWO_OBJECTIVES = {
    "name": "two objectives",
    "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [
        {"name": "a", "objective": "maximize"},
        {"name": "b", "objective": "maximize"},
        {"name": "c", "objective": "maximize", "strategy": "constraint", "threshold": 0.5},
    ],
    "tasks": [{"name": "cheap", "cost": 0.5}, {"name": "full", "cost": 1.0}],
    "observation_budget": 30,
}


def test_the_pareto_front_comes_best_first_everywhere(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    created = client.post("/v1/experiments", json=TWO_OBJECTIVES, headers=auth)
    assert created.status_code == 200, created.json
    eid = created.json["id"]
    front_by_id = [
        _observe(client, auth, eid, 0.1, "full", {"a": 1.0, "b": 3.0, "c": 1.0}),
        _observe(client, auth, eid, 0.2, "full", {"a": 3.0, "b": 1.0, "c": 1.0}),
        _observe(client, auth, eid, 0.3, "full", {"a": 2.0, "b": 2.0, "c": 1.0}),
    ]
    _observe(client, auth, eid, 0.4, "full", {"a": 0.5, "b": 0.5, "c": 1.0})  # dominated
    _observe(client, auth, eid, 0.5, "full", {"a": 4.0, "b": 4.0, "c": 0.0})  # infeasible
    _observe(client, auth, eid, 0.6, "cheap", {"a": 5.0, "b": 5.0, "c": 1.0})  # cheap
    best_first = [front_by_id[1], front_by_id[2], front_by_id[0]]  # by a, the first metric

    spec, observations = _optimizer_view(client, auth, eid)
    by_rule = [o.assignments["x"] for o in best_rule.best_observations(spec, observations)]
    assert by_rule == [0.2, 0.3, 0.1]
    assert best_rule.best_observation(spec, observations) is None

    best = client.get(f"/v1/experiments/{eid}/best_assignments", headers=auth).json
    assert [b["id"] for b in best["data"]] == best_first
    assert [b["assignments"]["x"] for b in best["data"]] == by_rule
    progress = client.get(f"/v1/experiments/{eid}", headers=auth).json["progress"]
    assert progress["best_observation"] is None

    summary = f"/v1/experiments/{eid}/analytics/summary"
    on_a = client.get(summary, headers=auth).json["best"]
    on_b = client.get(summary, query_string={"metric": "b"}, headers=auth).json["best"]
    assert (on_a["observation"], on_a["value"]) == (front_by_id[1], 3.0)
    assert (on_b["observation"], on_b["value"]) == (front_by_id[0], 3.0)
    history = client.get(f"/v1/experiments/{eid}/analytics/history", headers=auth).json
    assert history["data"][-1]["best_full_cost"] == 3.0

    _sign_in(client, auth)
    assert _list_page_best(client, eid) == "3"
