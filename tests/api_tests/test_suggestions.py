from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func
from sqlalchemy import select

from services.api.db import get_session
from services.api.models import OutboxEvent
from shared.messages import EventType
from shared.messages import PoolEntry
from shared.names import pool_key
from tests.services import RedisServer


def _suggest(client: FlaskClient, auth: dict[str, str], eid: str, **body: Any) -> Any:
    return client.post(f"/v1/experiments/{eid}/suggestions", json=body, headers=auth)


def _entry(assignments: dict[str, Any], task: str | None, observation_count: int = 0) -> str:
    """A pool entry as the suggester writes it."""
    return PoolEntry(assignments, task, observation_count, source="model").to_json()


def test_initial_design_fits_the_space(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    tasks = []
    seen = set()
    for _ in range(6):
        s = _suggest(client, auth, eid).json
        a = s["assignments"]
        assert s["source"] == "design" and s["state"] == "open"
        assert 0 <= a["x"] <= 1 and 1e-4 <= a["lr"] <= 1
        assert isinstance(a["n"], int) and 1 <= a["n"] <= 8
        assert a["opt"] in ("sgd", "adam")
        tasks.append(s["task"]["name"])
        seen.add(json.dumps(a, sort_keys=True))
    assert len(seen) == 6
    assert "short" in tasks and "full" in tasks  # spread over tasks, not only the cheapest


def test_pool_entries_are_served_first_once_and_only_when_fresh(
    client: FlaskClient,
    auth: dict[str, str],
    experiment: dict[str, Any],
    redis_client: redis.Redis,
) -> None:
    eid = experiment["id"]
    point = {"x": 0.5, "lr": 0.01, "n": 3, "opt": "adam"}
    stale = _entry({**point, "x": 0.1}, "full", observation_count=-1)
    fresh = _entry(point, "medium")
    invalid = _entry({**point, "n": 99}, "medium")
    unversioned = json.dumps({"assignments": point, "task": "short", "observation_count": 0})
    other_version = json.dumps({**json.loads(_entry(point, "short")), "schema": 99})
    wrong_types = json.loads(_entry(point, "short"))
    wrong_types["observation_count"] = "0"
    unreadable = [b"\xff not json", unversioned, other_version, json.dumps(wrong_types)]
    redis_client.rpush(pool_key(eid), *unreadable, stale, invalid, fresh)
    s = _suggest(client, auth, eid).json
    assert s["source"] == "pool" and s["assignments"] == point and s["task"]["name"] == "medium"
    assert redis_client.llen(pool_key(eid)) == 0
    # the same point again is a duplicate of a live suggestion and is skipped
    redis_client.rpush(pool_key(eid), fresh)
    assert _suggest(client, auth, eid).json["source"] == "design"


def test_queued_suggestions_come_first_once(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    point = {"x": 0.25, "lr": 0.001, "n": 2, "opt": "sgd"}
    q = client.post(
        f"/v1/experiments/{eid}/queued_suggestions",
        json={"assignments": point, "task": "full"},
        headers=auth,
    )
    assert q.status_code == 200 and q.json["object"] == "queued_suggestion"
    listed = client.get(f"/v1/experiments/{eid}/queued_suggestions", headers=auth).json
    assert listed["count"] == 1
    s = _suggest(client, auth, eid).json
    assert s["source"] == "queued" and s["assignments"] == point
    assert _suggest(client, auth, eid).json["source"] == "design"
    assert client.get(f"/v1/experiments/{eid}/queued_suggestions", headers=auth).json["count"] == 0
    bad = client.post(
        f"/v1/experiments/{eid}/queued_suggestions",
        json={"assignments": point, "task": "nope"},
        headers=auth,
    )
    assert bad.status_code == 400 and "task" in bad.json["message"]


def test_explicit_assignments_are_validated(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    point = {"x": 0.5, "lr": 0.01, "n": 3, "opt": "adam"}
    ok = _suggest(client, auth, eid, assignments=point, task="short")
    assert ok.status_code == 200 and ok.json["source"] == "user"
    assert ok.json["task"] == {"object": "task", "name": "short", "cost": 0.25}
    for assignments, task, field in [
        ({**point, "x": 1.5}, "short", "assignments.x"),
        ({**point, "n": 2.5}, "short", "assignments.n"),
        ({**point, "opt": "rmsprop"}, "short", "assignments.opt"),
        ({k: v for k, v in point.items() if k != "lr"}, "short", "assignments.lr"),
        ({**point, "extra": 1}, "short", "assignments.extra"),
        (point, "unknown", "task"),
        (point, None, "task"),
    ]:
        body: dict[str, Any] = {"assignments": assignments}
        if task is not None:
            body["task"] = task
        response = _suggest(client, auth, eid, **body)
        assert response.status_code == 400, (field, response.json)
        assert field in response.json["message"], (field, response.json)


def test_list_fetch_update_and_delete(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    ids = [_suggest(client, auth, eid).json["id"] for _ in range(3)]
    sid = ids[0]
    assert client.get(f"/v1/experiments/{eid}/suggestions/{sid}", headers=auth).json["id"] == sid
    updated = client.put(
        f"/v1/experiments/{eid}/suggestions/{sid}", json={"metadata": {"note": "x"}}, headers=auth
    )
    assert updated.json["metadata"] == {"note": "x"}
    assert (
        client.delete(f"/v1/experiments/{eid}/suggestions/{sid}", headers=auth).status_code == 204
    )
    listed = client.get(
        f"/v1/experiments/{eid}/suggestions", query_string={"state": "open"}, headers=auth
    ).json
    assert listed["count"] == 2 and sid not in [s["id"] for s in listed["data"]]
    response = client.post(
        f"/v1/experiments/{eid}/observations", json={"suggestion": sid, "value": 1.0}, headers=auth
    )
    assert response.status_code == 400
    assert "deleted" in response.json["message"] and "suggestion" in response.json["message"]
    assert (
        client.delete(
            f"/v1/experiments/{eid}/suggestions", query_string={"state": "open"}, headers=auth
        ).status_code
        == 204
    )
    assert client.get(f"/v1/experiments/{eid}/suggestions", headers=auth).json["count"] == 0


def test_empty_pool_after_the_design_waits_then_falls_back(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    sources = [_suggest(client, auth, eid).json["source"] for _ in range(12)]
    design = sources.count("design")
    assert design >= 4
    assert sources[design:] == ["random"] * (12 - design)  # no suggester running in this test


def test_a_queued_suggestion_goes_before_the_pool_and_the_pool_entry_is_kept(
    client: FlaskClient,
    auth: dict[str, str],
    experiment: dict[str, Any],
    redis_client: redis.Redis,
) -> None:
    eid = experiment["id"]
    pooled = {"x": 0.7, "lr": 0.02, "n": 5, "opt": "sgd"}
    redis_client.rpush(pool_key(eid), _entry(pooled, "short"))
    queued = {"x": 0.3, "lr": 0.002, "n": 1, "opt": "adam"}
    client.post(
        f"/v1/experiments/{eid}/queued_suggestions",
        json={"assignments": queued, "task": "full"},
        headers=auth,
    )
    first = _suggest(client, auth, eid).json
    second = _suggest(client, auth, eid).json
    assert (first["source"], first["assignments"]) == ("queued", queued)
    assert (second["source"], second["assignments"]) == ("pool", pooled)
    assert redis_client.llen(pool_key(eid)) == 0  # the entry pushed back was readable and taken


def test_a_pool_suggestion_is_stored_whole_and_an_emptied_pool_wakes_the_suggester(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    experiment: dict[str, Any],
    redis_client: redis.Redis,
) -> None:
    eid = experiment["id"]
    first = {"x": 0.6, "lr": 0.03, "n": 4, "opt": "sgd"}
    last = {"x": 0.4, "lr": 0.003, "n": 2, "opt": "adam"}
    for point in (first, last):
        redis_client.rpush(pool_key(eid), _entry(point, "short"))

    served = _suggest(client, auth, eid, metadata={"host": "gpu-3"}).json
    assert served["source"] == "pool" and served["metadata"] == {"host": "gpu-3"}
    stored = client.get(f"/v1/experiments/{eid}/suggestions/{served['id']}", headers=auth).json
    assert stored == served and stored["state"] == "open"
    assert _suggestion_events(app) == 0  # one entry is left: the suggester need not hear of it
    assert _suggest(client, auth, eid).json["assignments"] == last
    assert _suggestion_events(app) == 1  # the pool is empty now

    # a fresh entry that repeats an observed point is skipped like one repeating a suggestion
    observed = {"x": 0.9, "lr": 0.5, "n": 8, "opt": "sgd"}
    client.post(
        f"/v1/experiments/{eid}/observations",
        json={"assignments": observed, "task": "full", "value": 1.0},
        headers=auth,
    )
    redis_client.rpush(pool_key(eid), _entry(observed, "full", observation_count=1))
    assert _suggest(client, auth, eid).json["source"] == "design"


def _suggestion_events(app: Flask) -> int:
    with app.app_context():
        stmt = select(func.count()).where(OutboxEvent.type == EventType.SUGGESTION_CREATED)
        return int(get_session().scalar(stmt) or 0)


@pytest.fixture()
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


def test_through_a_redis_outage_suggestions_keep_coming_and_observations_are_kept(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    experiment: dict[str, Any],
    redis_server: RedisServer,
) -> None:
    app.extensions["redis"] = redis.Redis.from_url(redis_server.url)  # a Redis we can stop
    pool = redis.Redis.from_url(redis_server.url)
    eid = experiment["id"]
    point = {"x": 0.5, "lr": 0.01, "n": 3, "opt": "adam"}
    pool.rpush(pool_key(eid), _entry(point, "full"))
    assert _suggest(client, auth, eid).json["source"] == "pool"

    redis_server.stop()
    served = [_suggest(client, auth, eid) for _ in range(12)]
    assert [r.status_code for r in served] == [200] * 12
    sources = [r.json["source"] for r in served]
    design = sources.count("design")
    assert design >= 4 and sources[design:] == ["fallback"] * (12 - design)
    observed = client.post(
        f"/v1/experiments/{eid}/observations",
        json={"suggestion": served[-1].json["id"], "value": 0.5},
        headers=auth,
    )
    assert observed.status_code == 200
    assert client.get("/readyz").status_code == 503

    redis_server.start()
    pool.rpush(pool_key(eid), _entry({**point, "x": 0.9}, "full", observation_count=1))
    assert _suggest(client, auth, eid).json["source"] == "pool"
    listed = client.get(
        f"/v1/experiments/{eid}/suggestions", query_string={"limit": 100}, headers=auth
    )
    assert listed.json["count"] == 14
    assert (
        client.get(f"/v1/experiments/{eid}", headers=auth).json["progress"]["observation_count"]
        == 1
    )
