"""A committed change always produces its event, even when the process that committed it died
before relaying: the event waits in the outbox table for the next relay."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func
from sqlalchemy import select

from services.api.db import get_session
from services.api.models import OutboxEvent
from services.api.outbox import Relay
from shared.messages import Event
from shared.messages import PoolEntry
from shared.names import EVENTS_STREAM
from shared.names import pool_key
from tests.services import free_port


def _events(redis_client: redis.Redis) -> list[Event]:
    return [Event.from_json(fields[b"event"]) for _, fields in redis_client.xrange(EVENTS_STREAM)]


def test_events_survive_until_a_relay_sends_them(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    experiment: dict[str, Any],
    redis_client: redis.Redis,
) -> None:
    eid = experiment["id"]
    s = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json
    client.post(
        f"/v1/experiments/{eid}/observations",
        json={"suggestion": s["id"], "value": 1.0},
        headers=auth,
    )
    # The app's relay is not running (as if the process died right after each commit).
    assert _events(redis_client) == []
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(OutboxEvent)) == 3
    relay = Relay(app.extensions["db_sessionmaker"], redis_client)  # a fresh process's relay
    assert relay.relay_once() == 3
    events = _events(redis_client)
    assert [e.type for e in events] == [
        "experiment.created",
        "suggestion.created",
        "observation.created",
    ]
    assert events[-1].experiment_id == int(eid)
    assert relay.relay_once() == 0
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(OutboxEvent)) == 0


def test_nothing_is_lost_while_redis_is_unreachable(
    app: Flask, experiment: dict[str, Any], redis_client: redis.Redis
) -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    with pytest.raises(redis.ConnectionError):
        Relay(app.extensions["db_sessionmaker"], dead).relay_once()
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(OutboxEvent)) == 1
    assert Relay(app.extensions["db_sessionmaker"], redis_client).relay_once() == 1
    assert [e.type for e in _events(redis_client)] == ["experiment.created"]


def test_relay_thread_delivers_promptly(
    app: Flask, client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    import time

    relay = Relay(app.extensions["db_sessionmaker"], redis_client, poll_s=5.0)
    relay.start()
    try:
        from tests.api_tests.conftest import MULTITASK

        client.post("/v1/experiments", json=MULTITASK, headers=auth)
        relay.notify()
        deadline = time.monotonic() + 3
        while not _events(redis_client) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [e.type for e in _events(redis_client)] == ["experiment.created"]
    finally:
        relay.stop()


def test_a_pool_hit_records_an_event_only_when_it_empties_the_pool(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    experiment: dict[str, Any],
    redis_client: redis.Redis,
) -> None:
    eid = experiment["id"]
    for x in (0.1, 0.2):
        entry = PoolEntry({"x": x, "lr": 0.01, "n": 3, "opt": "adam"}, "full", 0, "model")
        redis_client.rpush(pool_key(eid), entry.to_json())

    def pending_events() -> list[str]:
        with app.app_context():
            return list(get_session().scalars(select(OutboxEvent.type).order_by(OutboxEvent.id)))

    assert client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json["source"] == "pool"
    assert pending_events() == ["experiment.created"]  # one entry left: nothing to tell
    assert client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json["source"] == "pool"
    assert pending_events() == ["experiment.created", "suggestion.created"]  # pool is empty now
