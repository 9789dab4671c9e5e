from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.api_tests.conftest import MULTITASK


def _create(client: FlaskClient, auth: dict[str, str], **changes: Any) -> Any:
    body = copy.deepcopy(MULTITASK)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return client.post("/v1/experiments", json=body, headers=auth)


def test_create_returns_sigopt_shape(experiment: dict[str, Any]) -> None:
    assert experiment["object"] == "experiment"
    assert isinstance(experiment["id"], str)
    assert [t["name"] for t in experiment["tasks"]] == ["short", "medium", "full"]
    assert experiment["parameters"][2]["bounds"] == {"min": 1, "max": 8}
    assert experiment["parameters"][3]["categorical_values"][0] == {"name": "sgd", "enum_index": 1}
    progress = experiment["progress"]
    assert progress["observation_count"] == 0 and progress["observation_budget_consumed"] == 0


@pytest.mark.parametrize(
    ("tasks", "field"),
    [
        ([{"name": "a", "cost": 1.0}], "tasks"),  # fewer than 2
        ([{"name": "a", "cost": 0.5}, {"name": "b", "cost": 0.7}], "tasks"),  # no cost 1
        ([{"name": "a", "cost": 1.0}, {"name": "b", "cost": 1.0}], "tasks"),  # two cost 1
        ([{"name": "a", "cost": 0.5}, {"name": "a", "cost": 1.0}], "tasks"),  # names repeat
        ([{"name": "a", "cost": 0.0}, {"name": "b", "cost": 1.0}], "tasks[0].cost"),
        ([{"name": "a", "cost": 1.5}, {"name": "b", "cost": 1.0}], "tasks[0].cost"),
        ([{"name": "a", "cost": "0.5"}, {"name": "b", "cost": 1.0}], "tasks[0].cost"),
    ],
)
def test_task_rules(
    client: FlaskClient, auth: dict[str, str], tasks: list[Any], field: str
) -> None:
    response = _create(client, auth, tasks=tasks)
    assert response.status_code == 400
    assert field in response.json["message"], response.json


def test_multitask_needs_a_budget(client: FlaskClient, auth: dict[str, str]) -> None:
    response = _create(client, auth, observation_budget=None)
    assert response.status_code == 400
    assert "observation_budget" in response.json["message"]


@pytest.mark.parametrize(
    ("parameter", "field"),
    [
        ({"name": "p", "type": "int", "bounds": {"min": 0.5, "max": 3}}, "parameters[4].bounds"),
        ({"name": "p", "type": "double", "bounds": {"min": 1, "max": 1}}, "parameters[4].bounds"),
        (
            {
                "name": "p",
                "type": "double",
                "bounds": {"min": 0, "max": 1},
                "transformation": "log",
            },
            "parameters[4].bounds.min",
        ),
        (
            {"name": "p", "type": "categorical", "categorical_values": ["a"]},
            "parameters[4].categorical_values",
        ),
        ({"name": "p", "type": "double", "grid": [0.1]}, "parameters[4].grid"),
        (
            {
                "name": "p",
                "type": "double",
                "bounds": {"min": 0, "max": 1},
                "prior": {"name": "normal", "mean": 2, "scale": 1},
            },
            "parameters[4].prior.mean",
        ),
        ({"name": "p", "type": "double"}, "parameters[4].bounds"),
        ({"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}, "parameters[4].name"),
        ({"name": "p", "type": "float", "bounds": {"min": 0, "max": 1}}, "parameters[4].type"),
        (
            {"name": "p", "type": "double", "bounds": {"min": 0, "max": 1}, "tunable": True},
            "parameters[4].tunable",
        ),
    ],
)
def test_parameter_rules(
    client: FlaskClient, auth: dict[str, str], parameter: dict[str, Any], field: str
) -> None:
    response = _create(client, auth, parameters=[*MULTITASK["parameters"], parameter])
    assert response.status_code == 400
    assert field in response.json["message"], response.json


def test_metric_rules(client: FlaskClient, auth: dict[str, str]) -> None:
    constraint = {"name": "size", "strategy": "constraint", "objective": "minimize"}
    response = _create(client, auth, metrics=[{"name": "a"}, constraint])
    assert response.status_code == 400 and "metrics[1].threshold" in response.json["message"]
    response = _create(client, auth, metrics=[{"name": "a", "threshold": 1.0}])
    assert response.status_code == 400 and "metrics[0].threshold" in response.json["message"]
    ok = _create(client, auth, metrics=[{"name": "a"}, {**constraint, "threshold": 3.0}])
    assert ok.status_code == 200, ok.json


def test_conditionals_and_linear_constraints_are_validated_and_stored(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    parameters = [
        {"name": "a", "type": "double", "bounds": {"min": 0, "max": 1}},
        {"name": "b", "type": "double", "bounds": {"min": 0, "max": 1}},
        {
            "name": "depth",
            "type": "int",
            "bounds": {"min": 1, "max": 4},
            "conditions": {"model": ["tree"]},
        },
    ]
    conditionals = [{"name": "model", "values": ["tree", "linear"]}]
    constraints = [
        {
            "type": "less_than",
            "terms": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}],
            "threshold": 1,
        }
    ]
    ok = _create(
        client,
        auth,
        parameters=parameters,
        conditionals=conditionals,
        linear_constraints=constraints,
        tasks=None,
        observation_budget=None,
    )
    assert ok.status_code == 200, ok.json
    assert ok.json["conditionals"][0]["values"] == ["tree", "linear"]
    assert ok.json["linear_constraints"][0]["threshold"] == 1
    bad_term = [{"type": "less_than", "terms": [{"name": "depth", "weight": 1}], "threshold": 2}]
    response = _create(
        client,
        auth,
        parameters=parameters,
        conditionals=conditionals,
        linear_constraints=bad_term,
        tasks=None,
    )
    assert response.status_code == 400
    assert "linear_constraints[0].terms[0].name" in response.json["message"]
    infeasible = [{"type": "greater_than", "terms": [{"name": "a", "weight": 1}], "threshold": 2}]
    response = _create(
        client,
        auth,
        parameters=parameters,
        conditionals=conditionals,
        linear_constraints=infeasible,
        tasks=None,
    )
    assert response.status_code == 400 and "feasible" in response.json["message"]
    unknown = [{**parameters[2], "conditions": {"model": ["forest"]}}]
    response = _create(
        client, auth, parameters=[*parameters[:2], *unknown], conditionals=conditionals, tasks=None
    )
    assert response.status_code == 400 and "conditions" in response.json["message"]


def test_fetch_list_update_delete(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    assert client.get(f"/v1/experiments/{eid}", headers=auth).json["name"] == "multitask"
    update = {
        "name": "renamed",
        "observation_budget": 30,
        "parallel_bandwidth": 3,
        "metadata": {"owner": "ana"},
        "parameters": [
            {**MULTITASK["parameters"][0], "bounds": {"min": 0, "max": 2}},
            *MULTITASK["parameters"][1:],
        ],
    }
    response = client.put(f"/v1/experiments/{eid}", json=update, headers=auth)
    assert response.status_code == 200, response.json
    assert response.json["name"] == "renamed" and response.json["observation_budget"] == 30
    assert response.json["parameters"][0]["bounds"]["max"] == 2
    # immutable: tasks, parameter type
    response = client.put(f"/v1/experiments/{eid}", json={"tasks": []}, headers=auth)
    assert response.status_code == 400 and "tasks" in response.json["message"]
    changed = [
        {**MULTITASK["parameters"][0], "type": "int", "bounds": {"min": 0, "max": 2}},
        *MULTITASK["parameters"][1:],
    ]
    response = client.put(f"/v1/experiments/{eid}", json={"parameters": changed}, headers=auth)
    assert response.status_code == 400 and "parameters[0].type" in response.json["message"]
    page = client.get("/v1/experiments", headers=auth).json
    assert page["object"] == "pagination" and page["count"] == 1
    assert client.delete(f"/v1/experiments/{eid}", headers=auth).status_code == 204
    assert client.get("/v1/experiments", headers=auth).json["count"] == 0
    assert client.get(f"/v1/experiments/{eid}", headers=auth).json["state"] == "deleted"
    response = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth)
    assert response.status_code == 400 and "deleted" in response.json["message"]


def test_paging_walks_every_experiment(client: FlaskClient, auth: dict[str, str]) -> None:
    ids = [_create(client, auth, name=f"e{i}").json["id"] for i in range(7)]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = client.get("/v1/experiments", query_string=params, headers=auth).json
        seen += [e["id"] for e in page["data"]]
        if not page["paging"]["before"]:
            break
        params["before"] = page["paging"]["before"]
    assert seen == ids[::-1]
    response = client.get("/v1/experiments", query_string={"limit": 0}, headers=auth)
    assert response.status_code == 400 and "limit" in response.json["message"]


def test_a_token_never_sees_another_clients_experiment(
    client: FlaskClient, make_token: Callable[[str], dict[str, str]], experiment: dict[str, Any]
) -> None:
    other = make_token("globex")
    eid = experiment["id"]
    for method, path in [
        ("get", f"/v1/experiments/{eid}"),
        ("put", f"/v1/experiments/{eid}"),
        ("delete", f"/v1/experiments/{eid}"),
        ("post", f"/v1/experiments/{eid}/suggestions"),
        ("get", f"/v1/experiments/{eid}/observations"),
        ("get", f"/v1/experiments/{eid}/best_assignments"),
    ]:
        response = getattr(client, method)(path, json={}, headers=other)
        assert response.status_code == 404, (method, path, response.json)
    assert client.get("/v1/experiments", headers=other).json["count"] == 0


def test_managed_experiment_names_its_objective(client: FlaskClient, auth: dict[str, str]) -> None:
    """A built-in objective is always available; another name waits for a worker that provides
    it (tests/api_tests/test_objective_check.py has the rule with live workers)."""
    response = _create(client, auth, objective={"name": "augmented_hartmann", "config": {}})
    assert response.status_code == 200
    assert response.json["objective"]["name"] == "augmented_hartmann"
    assert response.json["objective_status"]["available"] is True
    response = _create(client, auth, objective={"name": "nope", "config": {}})
    assert response.status_code == 200
    assert response.json["objective_status"]["available"] is not True
    assert "nope" in response.json["objective_status"]["reason"]
