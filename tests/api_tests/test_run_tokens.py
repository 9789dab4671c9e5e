"""Run-scoped tokens: minted by the service for one attempt of one run, they may read and update
that run, its checkpoints and its files, nothing else (404 for another object, 403 for another
kind of call), and stop validating (401) when the run moves to a later attempt or finishes.
Over SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from services.api.db import get_session
from services.api.models import Token
from tests.api_tests.test_artifacts import png

SERVICE = {"Authorization": "Bearer service-secret"}


def _run(client: FlaskClient, auth: dict[str, str], experiment_id: str) -> str:
    sid = client.post(f"/v1/experiments/{experiment_id}/suggestions", headers=auth).json["id"]
    response = client.post(
        f"/v1/experiments/{experiment_id}/training_runs", json={"suggestion": sid}, headers=auth
    )
    assert response.status_code == 200, response.json
    return str(response.json["id"])


def _mint(client: FlaskClient, run: str, attempt: int = 1) -> tuple[dict[str, str], str]:
    response = client.post(
        f"/v1/training_runs/{run}/tokens", json={"attempt": attempt}, headers=SERVICE
    )
    assert response.status_code == 201, response.json
    body = response.json
    assert body["object"] == "token" and body["training_run"] == run
    assert body["attempt"] == attempt and body["token"].startswith("mtr_")
    return {"Authorization": f"Bearer {body['token']}"}, body["token"]


@pytest.fixture()
def runs(client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]) -> tuple[str, str]:
    """Two runs of the same client's experiment: the token's and a sibling."""
    return _run(client, auth, experiment["id"]), _run(client, auth, experiment["id"])


def _has_rule(app: Flask, method: str, rule: str) -> bool:
    return any(r.rule == rule and method in (r.methods or ()) for r in app.url_map.iter_rules())


def test_only_the_service_mints_them(
    app: Flask, client: FlaskClient, auth: dict[str, str], runs: tuple[str, str]
) -> None:
    run, _ = runs
    path = f"/v1/training_runs/{run}/tokens"
    assert client.post(path, json={"attempt": 1}, headers=auth).status_code == 403
    assert client.post(path, json={"attempt": 1}).status_code == 401
    missing = client.post("/v1/training_runs/999999/tokens", json={"attempt": 1}, headers=SERVICE)
    assert missing.status_code == 404
    stale = client.post(path, json={"attempt": 2}, headers=SERVICE)
    assert stale.status_code == 409 and "attempt" in stale.json["message"]
    for body in ({}, {"attempt": 0}, {"attempt": "1"}, {"attempt": 1, "x": 1}):
        response = client.post(path, json=body, headers=SERVICE)
        assert response.status_code == 400, body
        assert "attempt" in response.json["message"] or "x" in response.json["message"]
    headers, secret = _mint(client, run)
    # Only its digest is stored; it cannot mint tokens itself.
    with app.app_context():
        rows = get_session().scalars(select(Token).where(Token.training_run_id == int(run))).all()
        assert [r.digest for r in rows] == [hashlib.sha256(secret.encode()).hexdigest()]
        assert all(secret not in str(vars(r)) for r in rows)
    assert client.post(path, json={"attempt": 1}, headers=headers).status_code == 403


def test_it_touches_only_its_own_run(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    experiment: dict[str, Any],
    runs: tuple[str, str],
) -> None:
    run, sibling = runs
    sibling_file = client.post(
        f"/v1/training_runs/{sibling}/files?name=s.png",
        data=png(),
        headers={**auth, "Content-Type": "image/png"},
    ).json
    headers, _ = _mint(client, run)
    basic = {
        "Authorization": "Basic "
        + base64.b64encode(f"{headers['Authorization'][7:]}:".encode()).decode()
    }

    # What it may do, on its own run.
    for h in (headers, basic):
        fetched = client.get(f"/v1/training_runs/{run}", headers=h)
        assert fetched.status_code == 200 and fetched.json["id"] == run
    assert (
        client.put(
            f"/v1/training_runs/{run}", json={"heartbeat": True}, headers=headers
        ).status_code
        == 200
    )
    checkpoint = client.post(
        f"/v1/training_runs/{run}/checkpoints",
        json={"values": [{"name": "accuracy", "value": 0.5}]},
        headers=headers,
    )
    assert checkpoint.status_code == 200, checkpoint.json
    assert client.get(f"/v1/training_runs/{run}/checkpoints", headers=headers).json["count"] == 1
    image = png()
    declared = client.post(
        f"/v1/training_runs/{run}/files",
        json={
            "content_length": len(image),
            "content_md5": base64.b64encode(hashlib.md5(image).digest()).decode(),
            "content_type": "image/png",
            "name": "own.png",
        },
        headers=headers,
    )
    assert declared.status_code == 200, declared.json
    upload = declared.json["upload"]
    assert client.put(upload["url"], data=image, headers=upload["headers"]).status_code == 200
    own_file = client.get(f"/v1/files/{declared.json['id']}", headers=headers)
    assert own_file.status_code == 200 and own_file.json["training_run"] == run
    assert client.get(own_file.json["download"]["url"]).data == image
    if _has_rule(app, "GET", "/v1/tokens/self"):
        assert client.get("/v1/tokens/self", headers=headers).status_code == 200
    if _has_rule(app, "MERGE", "/v1/training_runs/<id:run_id>"):
        merged = client.open(
            f"/v1/training_runs/{run}",
            method="MERGE",
            json={"metadata": {"k": "v"}},
            headers=headers,
        )
        assert merged.status_code in (200, 204), merged.json

    # Another object: 404, as for anything the caller cannot see.
    eid = experiment["id"]
    for method, path in [
        ("get", f"/v1/training_runs/{sibling}"),
        ("put", f"/v1/training_runs/{sibling}"),
        ("get", f"/v1/training_runs/{sibling}/checkpoints"),
        ("post", f"/v1/training_runs/{sibling}/checkpoints"),
        ("post", f"/v1/training_runs/{sibling}/files"),
        ("get", f"/v1/files/{sibling_file['id']}"),
        ("get", "/v1/training_runs/999999"),
    ]:
        response = getattr(client, method)(path, json={}, headers=headers)
        assert response.status_code == 404, (method, path, response.json)

    # Another kind of call: 403, on its own run and experiment too.
    for method, path in [
        ("get", "/v1/experiments"),
        ("get", f"/v1/experiments/{eid}"),
        ("post", f"/v1/experiments/{eid}/suggestions"),
        ("get", f"/v1/experiments/{eid}/training_runs"),
        ("post", f"/v1/experiments/{eid}/observations"),
        ("post", f"/v1/training_runs/{run}/result"),
        ("get", f"/v1/training_runs/{run}/files"),
        ("delete", f"/v1/files/{declared.json['id']}"),
        ("get", f"/v1/files/{declared.json['id']}/content"),
        ("get", f"/v1/training_runs/{run}/analytics/curves"),
        ("get", "/v1/openapi.json"),
    ]:
        response = getattr(client, method)(path, json={}, headers=headers)
        assert response.status_code == 403, (method, path, response.json)
        assert "scoped to training run" in response.json["message"]

    # The dashboard does not take it.
    login = client.get("/login")
    csrf = re.search(rb'name="csrf" value="([^"]+)"', login.data)
    assert csrf is not None
    signed_in = client.post(
        "/login", data={"token": headers["Authorization"][7:], "csrf": csrf.group(1).decode()}
    )
    assert signed_in.status_code == 401


def test_it_stops_when_the_run_moves_on_or_ends(
    client: FlaskClient, runs: tuple[str, str]
) -> None:
    run, _ = runs
    first, _ = _mint(client, run)
    assert client.get(f"/v1/training_runs/{run}", headers=first).status_code == 200
    moved = client.put(f"/v1/training_runs/{run}", json={"new_attempt": True}, headers=SERVICE)
    assert moved.status_code == 200 and moved.json["attempt"] == 2
    assert client.get(f"/v1/training_runs/{run}", headers=first).status_code == 401

    second, _ = _mint(client, run, attempt=2)
    assert client.get(f"/v1/training_runs/{run}", headers=second).status_code == 200
    claimed = client.put(
        f"/v1/training_runs/{run}", json={"state": "running", "attempt": 2}, headers=SERVICE
    )
    assert claimed.status_code == 200
    result = client.post(
        f"/v1/training_runs/{run}/result",
        json={"attempt": 2, "state": "completed", "values": [{"name": "accuracy", "value": 0.9}]},
        headers=SERVICE,
    )
    assert result.status_code == 200, result.json
    refused = client.get(f"/v1/training_runs/{run}", headers=second)
    assert refused.status_code == 401 and "token" in refused.json["message"]
    finished = client.post(f"/v1/training_runs/{run}/tokens", json={"attempt": 2}, headers=SERVICE)
    assert finished.status_code == 409 and "finished" in finished.json["message"]
