"""Hundreds of malformed or hostile bodies: every one gets a 4xx naming the problem, never a
5xx, and nothing stored before is lost."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from typing import Any

from flask.testing import FlaskClient

from tests.api_tests.conftest import MULTITASK

WEIRD_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    2**70,
    -(2**70),
    1e308,
    -1e-320,
    "",
    "x" * 5000,
    "\u202e\U0001f600",
    [],
    [1, 2],
    {},
    {"a": {"b": {"c": []}}},
    "1",
    "NaN",
    3.5,
]


def _mutations(body: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (description, mutated body): every field replaced by every weird value, removed,
    and extra unknown fields added, recursively."""
    if isinstance(body, dict):
        for key, value in body.items():
            for weird in WEIRD_VALUES:
                mutated = copy.deepcopy(body)
                mutated[key] = weird
                yield f"{path}.{key}={weird!r:.20}", mutated
            removed = copy.deepcopy(body)
            del removed[key]
            yield f"{path}.{key} removed", removed
            for description, inner in _mutations(value, f"{path}.{key}"):
                mutated = copy.deepcopy(body)
                mutated[key] = inner
                yield description, mutated
        extra = copy.deepcopy(body)
        extra["unexpected_field"] = 1
        yield f"{path}+unknown", extra
    elif isinstance(body, list) and body:
        for description, inner in _mutations(body[0], f"{path}[0]"):
            yield description, [inner, *copy.deepcopy(body[1:])]


RAW_BODIES = [
    b"{",
    b"[]",
    b"null",
    b"42",
    b'"text"',
    b'{"name": "a", "name": "b"}',
    b'{"value": NaN}',
    b'{"value": Infinity}',
    b'{"value": -Infinity}',
    b"\xff\xfe",
    b'{"name": "a\\u0000"}',
    b"[" * 10000 + b"]" * 10000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    json.dumps({"name": "x" * 200}).encode(),
]


def _check(response: Any, description: str) -> None:
    assert response.status_code < 500, (description, response.status_code, response.data[:300])
    if response.status_code >= 400:
        body = response.json
        assert set(body) == {"message", "status"}, description
        assert body["status"] == response.status_code and body["message"], description


def test_malformed_bodies_never_cause_a_5xx(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    s = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json
    point = s["assignments"]
    targets = {
        "/v1/experiments": MULTITASK,
        f"/v1/experiments/{eid}/observations": {
            "suggestion": s["id"],
            "value": 1.0,
            "metadata": {"k": "v"},
        },
        f"/v1/experiments/{eid}/observations/batch": {
            "observations": [
                {
                    "assignments": point,
                    "task": "short",
                    "values": [{"name": "accuracy", "value": 1}],
                }
            ]
        },
        f"/v1/experiments/{eid}/suggestions": {"assignments": point, "task": "short"},
    }
    rng = random.Random(0)
    sent = 0
    for path, body in targets.items():
        mutations = list(_mutations(body))
        for description, mutated in rng.sample(mutations, min(len(mutations), 150)):
            _check(client.post(path, json=mutated, headers=auth), f"POST {path} {description}")
            sent += 1
        for raw in RAW_BODIES:
            response = client.post(
                path, data=raw, headers={**auth, "Content-Type": "application/json"}
            )
            _check(response, f"POST {path} raw {raw[:30]!r}")
            assert response.status_code >= 400 or path.endswith("suggestions")
            sent += 1
    for description, mutated in list(
        _mutations({"name": "n", "observation_budget": 5, "state": "active", "metadata": {"a": 1}})
    )[:80]:
        _check(client.put(f"/v1/experiments/{eid}", json=mutated, headers=auth), description)
        sent += 1
    for query in [
        {"limit": "x"},
        {"limit": 10**9},
        {"before": "abc"},
        {"after": "-1"},
        {"state": "weird"},
        {"before": "9" * 40},
    ]:
        _check(
            client.get(f"/v1/experiments/{eid}/observations", query_string=query, headers=auth),
            str(query),
        )
        sent += 1
    for path in [
        f"/v1/experiments/{eid}/suggestions/99999999999999999999",
        "/v1/experiments/0",
        "/v1/experiments/-1",
        "/v1/training_runs/2147483648",
        f"/v1/experiments/{eid}/observations/%00",
    ]:
        assert client.get(path, headers=auth).status_code == 404, path
        sent += 1
    # An id out of range is not found whatever the method, not "method not allowed" (the rule
    # of another method on the same path).
    for method, path in [
        ("GET", "/v1/experiments/2629673039/suggestions"),
        ("PUT", "/v1/experiments/2147483648"),
        ("PATCH", "/v1/training_runs/8281508708"),
        ("GET", f"/v1/experiments/{eid}/observations/2147483648"),
    ]:
        response = client.open(path, method=method, json={}, headers=auth)
        assert response.status_code == 404, (method, path, response.status_code)
        sent += 1
    assert sent >= 200
    # Nothing stored before was lost: the experiment and its suggestion are intact.
    after = client.get(f"/v1/experiments/{eid}", headers=auth).json
    assert after["parameters"] == experiment["parameters"]
    assert (
        client.get(f"/v1/experiments/{eid}/suggestions/{s['id']}", headers=auth).status_code == 200
    )


def test_bodies_over_the_limit_get_413(client: FlaskClient, auth: dict[str, str]) -> None:
    big = {**MULTITASK, "metadata": {"k": "x" * 300_000}}
    response = client.post("/v1/experiments", json=big, headers=auth)
    assert response.status_code == 413
    assert response.json["status"] == 413 and "limit" in response.json["message"]


def test_field_names_appear_in_messages(client: FlaskClient, auth: dict[str, str]) -> None:
    body = copy.deepcopy(MULTITASK)
    body["parameters"][1]["bounds"]["max"] = "high"
    message = client.post("/v1/experiments", json=body, headers=auth).json["message"]
    assert "parameters[1].bounds.max" in message
    body = copy.deepcopy(MULTITASK)
    body["parallel_bandwidth"] = 1.5
    assert (
        "parallel_bandwidth"
        in client.post("/v1/experiments", json=body, headers=auth).json["message"]
    )


#: A valid body per documented operation (``{}`` for the others): the walk below mutates it.
SEEDS: dict[tuple[str, str], Any] = {
    ("post", "/v1/clients/{client}/projects"): {"id": "fuzz", "name": "n", "metadata": {"a": 1}},
    ("post", "/v1/clients/{client}/projects/{project}/aiexperiments"): {
        **{k: v for k, v in MULTITASK.items() if k != "observation_budget"},
        "budget": 5,
    },
    ("post", "/v1/clients/{client}/projects/{project}/training_runs"): {
        "name": "r",
        "state": "running",
        "assignments": {"x": 1},
        "values": {"acc": {"value": 1, "value_stddev": 0.1}},
        "logs": {"stdout": {"content": "x"}},
        "metadata": {"k": "v"},
    },
    ("post", "/v1/clients/{client}/projects/{project}/training_runs/batch"): {
        "runs": [{"name": "r", "values": {"acc": {"value": 1}}}],
        "fields": "id",
    },
    ("patch", "/v1/training_runs/{run_id}"): {
        "values": {"accuracy": {"value": 1}},
        "metadata": {"k": 1},
        "model": {"type": "m"},
        "datasets": {"d": {}},
        "source_code": {"content": "c", "hash": "h"},
    },
    ("put", "/v1/training_runs/{run_id}"): {"name": "n", "metadata": {"k": 1}, "deleted": False},
    ("post", "/v1/training_runs/{run_id}/checkpoints"): {"values": [{"name": "a", "value": 1}]},
    ("post", "/v1/aiexperiments/{experiment_id}/training_runs"): {"name": "n", "metadata": None},
    ("put", "/v1/aiexperiments/{experiment_id}"): {"name": "n", "budget": 9, "state": "active"},
}


def _properties(doc: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    content = operation["requestBody"]["content"]
    if "application/json" not in content:
        return []
    ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    return list(doc["components"]["schemas"][ref].get("properties", {}))


def test_every_documented_body_and_query_is_fuzzed(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    """Walk the OpenAPI document: every operation that takes a body or a query gets malformed
    ones, and the AI module's objects survive them."""
    eid = experiment["id"]
    me = client.get("/v1/tokens/self", headers=auth).json["client"]
    project = f"/v1/clients/{me}/projects"
    client.post(project, json={"id": "proj"}, headers=auth)
    ai = client.post(
        f"{project}/proj/aiexperiments",
        json=SEEDS[("post", "/v1/clients/{client}/projects/{project}/aiexperiments")],
        headers=auth,
    ).json
    run = client.post(f"/v1/aiexperiments/{ai['id']}/training_runs", json={}, headers=auth).json
    s = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json
    observation = client.post(
        f"/v1/experiments/{eid}/observations",
        json={"suggestion": s["id"], "values": [{"name": "accuracy", "value": 1}]},
        headers=auth,
    ).json
    queued = client.post(
        f"/v1/experiments/{eid}/queued_suggestions",
        json={"assignments": s["assignments"], "task": "short"},
        headers=auth,
    ).json
    values = {
        "experiment_id": eid,
        "suggestion_id": s["id"],
        "observation_id": observation["id"],
        "queued_id": queued["id"],
        "run_id": run["id"],
        "file_id": "999999",
        "client": me,
        "project": "proj",
    }
    doc = client.get("/v1/openapi.json", headers=auth).json
    rng = random.Random(1)
    sent = 0
    for template, item in doc["paths"].items():
        path = template
        for name, value in values.items():
            if template.startswith("/v1/aiexperiments") and name == "experiment_id":
                value = ai["id"]
            path = path.replace("{" + name + "}", value)
        assert "{" not in path, template
        for method, operation in item.items():
            if method == "delete":
                continue  # deleting the objects under test would end the walk early
            queries = [p["name"] for p in operation["parameters"] if p["in"] == "query"]
            for name in queries:
                for weird in rng.sample(WEIRD_VALUES, 6):
                    query = {name: weird if isinstance(weird, str) else json.dumps(weird)}
                    response = client.open(path, method=method, query_string=query, headers=auth)
                    _check(response, f"{method} {template} ?{name}={weird!r:.20}")
                    sent += 1
            if "requestBody" not in operation:
                continue
            seed = SEEDS.get((method, template), {})
            mutated = [m for _, m in _mutations(seed)]
            for prop in _properties(doc, operation):
                mutated += [{**seed, prop: weird} for weird in WEIRD_VALUES]
            for body in rng.sample(mutated, min(len(mutated), 40)):
                response = client.open(path, method=method, json=body, headers=auth)
                _check(response, f"{method} {template} {json.dumps(body)[:80]}")
                sent += 1
            for raw in RAW_BODIES[:6]:
                response = client.open(
                    path,
                    method=method,
                    data=raw,
                    headers={**auth, "Content-Type": "application/json"},
                )
                _check(response, f"{method} {template} raw {raw[:20]!r}")
                sent += 1
    assert sent > 500
    # Valid mutations may rename or re-budget; nothing is lost.
    kept = client.get(f"/v1/aiexperiments/{ai['id']}", headers=auth).json
    assert kept["parameters"] == ai["parameters"] and kept["tasks"] == ai["tasks"]
    after = client.get(f"/v1/training_runs/{run['id']}", headers=auth).json
    assert after["assignments"] == run["assignments"] and after["experiment"] == ai["id"]
    assert client.get(f"{project}/proj", headers=auth).status_code == 200


def test_an_empty_or_short_grid_is_a_400_naming_the_field(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    """Issue 19: ``grid: []`` was normalized (its first and last values read) before it was
    judged, a 500. Every way in: an experiment, an AI experiment, an update."""
    me = client.get("/v1/tokens/self", headers=auth).json["client"]
    assert client.post(f"/v1/clients/{me}/projects", json={"id": "p"}, headers=auth).status_code
    creates = {
        "/v1/experiments": "observation_budget",
        f"/v1/clients/{me}/projects/p/aiexperiments": "budget",
    }
    for path, budget in creates.items():
        for kind in ("double", "int"):
            for grid in ([], [3], [2, 2]):
                body = {
                    "name": "g",
                    "parameters": [
                        {"name": "ok", "type": "double", "bounds": {"min": 0, "max": 1}},
                        {"name": "a", "type": kind, "grid": grid},
                    ],
                    budget: 5,
                }
                response = client.post(path, json=body, headers=auth)
                assert response.status_code == 400, (path, kind, grid, response.json)
                assert response.json["message"].startswith(
                    "Invalid value for parameters[1].grid:"
                ), response.json
    listed = client.get("/v1/experiments", query_string={"state": "all"}, headers=auth).json
    assert [e["id"] for e in listed["data"]] == [experiment["id"]]  # nothing else was stored
    # An update: the same rule, and the stored parameters unchanged.
    parameters = copy.deepcopy(MULTITASK["parameters"])
    parameters[0] = {"name": "x", "type": "double", "grid": []}
    update = {"parameters": parameters}
    response = client.put(f"/v1/experiments/{experiment['id']}", json=update, headers=auth)
    assert response.status_code == 400
    assert response.json["message"].startswith("Invalid value for parameters[0].grid:")
    kept = client.get(f"/v1/experiments/{experiment['id']}", headers=auth).json
    assert kept["parameters"] == experiment["parameters"]


def test_an_update_cannot_duplicate_a_parameter(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    """Naming every stored parameter but one of them twice was taken as the same set."""
    parameters = copy.deepcopy(MULTITASK["parameters"])
    parameters[1] = copy.deepcopy(parameters[0])
    parameters.append(copy.deepcopy(MULTITASK["parameters"][1]))
    parameters[0]["bounds"] = {"min": 0, "max": 2}
    response = client.put(
        f"/v1/experiments/{experiment['id']}", json={"parameters": parameters}, headers=auth
    )
    assert response.status_code == 400, response.json
    assert response.json["message"].startswith("Invalid value for parameters:")
    kept = client.get(f"/v1/experiments/{experiment['id']}", headers=auth).json
    assert kept["parameters"] == experiment["parameters"]


def test_what_postgresql_cannot_store_is_a_4xx_naming_the_field(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    """Found by the fuzzer on PostgreSQL (500s there): a NUL sent escaped (``\\u0000``) in a
    body, a query or a path, and integers past a 32-bit column."""
    eid = experiment["id"]
    run = client.post(
        f"/v1/experiments/{eid}/training_runs",
        json={
            "suggestion": {
                "assignments": {"x": 0.5, "lr": 0.1, "n": 2, "opt": "sgd"},
                "task": "full",
            }
        },
        headers=auth,
    ).json
    me = client.get("/v1/tokens/self", headers=auth).json["client"]
    nul = {"data": b'{"traceback": "a\\u0000b"}', "content_type": "application/json"}
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("PATCH", f"/v1/training_runs/{run['id']}", nul, 400, "traceback"),
        (
            "POST",
            f"/v1/experiments/{eid}/observations",
            {"json": {"suggestion": "1", "value": 1, "metadata": {"k": "\x00"}}},
            400,
            "metadata.k",
        ),
        ("GET", "/v1/experiments?search=a%00", {}, 400, "search"),
        ("GET", f"/v1/clients/{me}/projects/a%00b", {}, 404, "No project"),
        ("POST", f"/v1/clients/{me}/projects/%00/aiexperiments", {"json": {}}, 404, "No project"),
        (
            "POST",
            f"/v1/training_runs/{run['id']}/checkpoints",
            {"json": {"values": [{"value": 1}], "epoch": 2**53}},
            400,
            "epoch",
        ),
        (
            "POST",
            f"/v1/training_runs/{run['id']}/checkpoints",
            {"json": {"values": [{"value": 1}], "attempt": 2**31}},
            400,
            "attempt",
        ),
        ("PUT", f"/v1/training_runs/{run['id']}", {"json": {"attempt": 2**40}}, 400, "attempt"),
    ]
    for method, path, kwargs, status, named in cases:
        response = client.open(path, method=method, headers=auth, **kwargs)
        assert response.status_code == status, (method, path, response.json)
        assert named in response.json["message"], (method, path, response.json)
    kept = client.get(f"/v1/training_runs/{run['id']}", headers=auth).json
    assert kept["traceback"] is None and kept["checkpoint_count"] == 0
