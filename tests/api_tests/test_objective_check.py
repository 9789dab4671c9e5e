"""An experiment naming an objective, against the live workers' adverts in the real Redis:
refused (400 naming ``objective.name``) when workers are live and none provides it; accepted
and waiting, saying why, when no worker is live or Redis does not answer; built-in objectives
always known. Over SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
from typing import Any

import redis
from flask import Flask
from flask.testing import FlaskClient

from services.api.auth import create_token
from services.api.db import get_session
from shared.messages import WorkerAdvert
from shared.names import OBJECTIVE_NAMES
from shared.names import WORKER_ADVERT_TTL_S
from shared.names import worker_key

MANAGED: dict[str, Any] = {
    "name": "managed",
    "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [{"name": "loss", "objective": "minimize"}],
    "observation_budget": 4,
}


def _create(client: FlaskClient, auth: dict[str, str], objective: str) -> Any:
    body = {**MANAGED, "objective": {"name": objective, "config": {}}}
    return client.post("/v1/experiments", json=body, headers=auth)


def advertise(
    redis_client: redis.Redis, name: str, objectives: list[str], ttl_ms: int | None = None
) -> None:
    """What a live worker keeps in Redis (`shared.messages.WorkerAdvert` with a TTL)."""
    advert = WorkerAdvert(name=name, objectives=objectives, started=time.time())
    redis_client.set(
        worker_key(name),
        advert.to_json(),
        px=ttl_ms if ttl_ms is not None else WORKER_ADVERT_TTL_S * 1000,
    )


def test_no_live_worker_accepts_and_says_why(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    created = _create(client, auth, "my_script")
    assert created.status_code == 200, created.json
    status = created.json["objective_status"]
    assert status["available"] is False
    assert "no live worker provides objective 'my_script'" in status["reason"]
    builtin = _create(client, auth, OBJECTIVE_NAMES[0])
    assert builtin.status_code == 200
    assert builtin.json["objective_status"] == {
        "object": "objective_status",
        "available": True,
        "reason": None,
    }
    plain = client.post("/v1/experiments", json=MANAGED, headers=auth).json
    assert plain["objective_status"] is None

    # A worker that provides it comes up: the experiment now says so.
    advertise(redis_client, "gpu0", ["my_script"])
    fetched = client.get(f"/v1/experiments/{created.json['id']}", headers=auth).json
    assert fetched["objective_status"]["available"] is True


def test_live_workers_decide(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    advertise(redis_client, "gpu0", [*OBJECTIVE_NAMES, "resnet_script"])
    advertise(redis_client, "cpu1", [*OBJECTIVE_NAMES, "tiny"])
    for name in ("resnet_script", "tiny", OBJECTIVE_NAMES[1]):
        created = _create(client, auth, name)
        assert created.status_code == 200, (name, created.json)
        assert created.json["objective_status"]["available"] is True
    refused = _create(client, auth, "nope")
    assert refused.status_code == 400
    message = refused.json["message"]
    assert "objective.name" in message and "'nope'" in message
    assert "resnet_script" in message and "tiny" in message
    listed = client.get("/v1/experiments", headers=auth).json
    assert listed["count"] == 3  # nothing was stored for the refused one


def test_expired_and_unreadable_adverts_are_not_live_workers(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    advertise(redis_client, "gone", ["other"], ttl_ms=100)
    redis_client.set(worker_key("garbled"), b"{not json", ex=WORKER_ADVERT_TTL_S)
    time.sleep(0.3)
    created = _create(client, auth, "mine")
    assert created.status_code == 200, created.json
    assert created.json["objective_status"]["available"] is False


def test_redis_failing_is_unknown_not_a_500(app_without_redis: Flask) -> None:
    with app_without_redis.app_context():
        token = create_token(get_session(), "acme", "test")
    client = app_without_redis.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    created = _create(client, auth, "my_script")
    assert created.status_code == 200, created.json
    status = created.json["objective_status"]
    assert status["available"] is None and "Redis" in status["reason"]
    assert _create(client, auth, OBJECTIVE_NAMES[0]).status_code == 200


def test_the_experiment_page_shows_why_it_waits(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    waiting = _create(client, auth, "my_script").json["id"]
    builtin = _create(client, auth, OBJECTIVE_NAMES[0]).json["id"]
    login = client.get("/login")
    csrf = re.search(rb'name="csrf" value="([^"]+)"', login.data)
    assert csrf is not None
    signed_in = client.post(
        "/login", data={"token": auth["Authorization"][7:], "csrf": csrf.group(1).decode()}
    )
    assert signed_in.status_code == 302
    page = client.get(f"/experiments/{waiting}").data.decode()
    assert 'id="objective-status"' in page
    assert "no live worker provides objective &#39;my_script&#39;" in page
    assert 'id="objective-status"' not in client.get(f"/experiments/{builtin}").data.decode()
    advertise(redis_client, "gpu0", ["my_script"])
    assert 'id="objective-status"' not in client.get(f"/experiments/{waiting}").data.decode()
