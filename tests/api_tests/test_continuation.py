"""A training run that continues a cheaper run (``continues``), over SQLite and PostgreSQL: shown
in the run's JSON, charged only the difference of the task costs in the budget consumed, and
refused with a 400 naming ``continues`` unless the source is a completed, successful run of the
same experiment and assignments on a cheaper task with a stored checkpoint archive, and, for an
experiment that names an objective, the live workers (adverts in the real Redis) say its runs
can continue."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from services.api.auth import create_token
from services.api.db import get_session
from shared.messages import WorkerAdvert
from shared.names import OBJECTIVE_NAMES
from shared.names import WORKER_ADVERT_TTL_S
from shared.names import WORKER_KEY_PREFIX
from shared.names import worker_key
from tests.api_tests.conftest import MULTITASK

SERVICE = {"Authorization": "Bearer service-secret"}
POINT = {"x": 0.5, "lr": 0.01, "n": 3, "opt": "adam"}
OTHER_POINT = {**POINT, "x": 0.25}
ARCHIVE = b"a tar, as far as the API cares"


def _create(client: FlaskClient, auth: dict[str, str], eid: str, body: dict[str, Any]) -> Any:
    return client.post(f"/v1/experiments/{eid}/training_runs", json=body, headers=auth)


def _run(
    client: FlaskClient,
    auth: dict[str, str],
    eid: str,
    task: str,
    point: dict[str, Any] = POINT,
    *,
    archive: bool = True,
    ending: str | None = "completed",
) -> str:
    """A run of ``point`` on ``task``: claimed, its checkpoint archive stored (``archive``),
    then ended ``ending`` (None: left running)."""
    created = _create(client, auth, eid, {"suggestion": {"assignments": point, "task": task}})
    assert created.status_code == 200, created.json
    run = str(created.json["id"])
    claim = {"state": "running", "attempt": 1, "worker": "w", "heartbeat": True}
    assert client.put(f"/v1/training_runs/{run}", json=claim, headers=SERVICE).status_code == 200
    if archive:
        stored = client.put(
            f"/v1/training_runs/{run}/checkpoint_archive",
            query_string={"attempt": 1, "sha256": hashlib.sha256(ARCHIVE).hexdigest()},
            data=ARCHIVE,
            headers={**SERVICE, "Content-Type": "application/x-tar"},
        )
        assert stored.status_code == 200, stored.json
    if ending is not None:
        _end(client, run, ending)
    return run


def _end(client: FlaskClient, run: str, state: str) -> None:
    body: dict[str, Any] = {"attempt": 1, "state": state}
    if state == "completed":
        body["values"] = [{"name": "accuracy", "value": 0.5}]
    ended = client.post(f"/v1/training_runs/{run}/result", json=body, headers=SERVICE)
    assert ended.status_code == 200, ended.json


def _consumed(client: FlaskClient, auth: dict[str, str], eid: str) -> float:
    experiment = client.get(f"/v1/experiments/{eid}", headers=auth).json
    return float(experiment["progress"]["observation_budget_consumed"])


def test_a_continued_run_is_shown_and_charged_only_the_difference(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    source = _run(client, auth, eid, "short")
    assert client.get(f"/v1/training_runs/{source}", headers=auth).json["has_checkpoint_archive"]
    new = {"suggestion": {"assignments": POINT, "task": "full"}, "continues": source}
    created = _create(client, auth, eid, new)
    assert created.status_code == 200, created.json
    assert created.json["continues"] == source
    assert created.json["has_checkpoint_archive"] is False
    run = str(created.json["id"])
    claim = {"state": "running", "attempt": 1, "worker": "w", "heartbeat": True}
    client.put(f"/v1/training_runs/{run}", json=claim, headers=SERVICE)
    _end(client, run, "completed")
    assert client.get(f"/v1/training_runs/{run}", headers=auth).json["continues"] == source
    # short (0.25) + full continued from short (1.0 - 0.25), not 0.25 + 1.0
    assert _consumed(client, auth, eid) == pytest.approx(1.0)

    # An existing suggestion's run may continue too: medium (0.5) from short pays 0.25.
    suggestion = client.post(
        f"/v1/experiments/{eid}/suggestions",
        json={"assignments": POINT, "task": "medium"},
        headers=auth,
    ).json["id"]
    created = _create(client, auth, eid, {"suggestion": suggestion, "continues": int(source)})
    assert created.status_code == 200, created.json
    assert created.json["continues"] == source
    client.put(f"/v1/training_runs/{created.json['id']}", json=claim, headers=SERVICE)
    _end(client, str(created.json["id"]), "completed")
    assert _consumed(client, auth, eid) == pytest.approx(1.25)


def test_a_source_that_cannot_be_continued_is_a_400_naming_continues(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    other_eid = client.post("/v1/experiments", json=MULTITASK, headers=auth).json["id"]
    sources = {
        "unknown": "999999",
        "not a number": "abc",
        "another experiment": _run(client, auth, other_eid, "short"),
        "still running": _run(client, auth, eid, "short", OTHER_POINT, ending=None),
        "failed": _run(client, auth, eid, "short", {**POINT, "x": 0.1}, ending="failed"),
        "no archive": _run(client, auth, eid, "short", {**POINT, "x": 0.2}, archive=False),
        "other assignments": _run(client, auth, eid, "short", {**POINT, "x": 0.3}),
        "not cheaper": _run(client, auth, eid, "full", {**POINT, "x": 0.4}),
    }
    point_of = {"not cheaper": {**POINT, "x": 0.4}}
    for case, source in sources.items():
        body = {
            "suggestion": {"assignments": point_of.get(case, POINT), "task": "full"},
            "continues": source,
        }
        response = _create(client, auth, eid, body)
        assert response.status_code == 400, (case, response.json)
        assert "continues" in response.json["message"], (case, response.json)
    # Nothing refused was created: no run, no suggestion of POINT on full.
    runs = client.get(f"/v1/experiments/{eid}/training_runs", headers=auth).json
    assert all(r["continues"] is None for r in runs["data"])
    assert len(runs["data"]) == len(sources) - 3  # the unknown, bad and foreign sources


def test_a_managed_objective_continues_only_when_the_live_workers_say_so(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    """With an objective, `shared.workers.continuable` over the live adverts decides: no live
    worker, or a provider that does not declare it continuable, is a 400 naming ``continues``."""
    objective = "augmented_hartmann"
    managed = {**MULTITASK, "objective": {"name": objective, "config": {}}}
    eid = client.post("/v1/experiments", json=managed, headers=auth).json["id"]
    source = _run(client, auth, eid, "short")
    body = {"suggestion": {"assignments": POINT, "task": "full"}, "continues": source}
    adverts = {
        "no live worker": [],
        "a provider that cannot continue it": [("gpu0", [])],
        "one of two providers cannot": [("gpu0", [objective]), ("gpu1", [])],
    }
    for case, workers in adverts.items():
        for key in redis_client.scan_iter(match=f"{WORKER_KEY_PREFIX}*"):
            redis_client.delete(key)
        for name, continuable in workers:
            _advertise(redis_client, name, continuable)
        response = _create(client, auth, eid, body)
        assert response.status_code == 400, (case, response.json)
        assert "continues" in response.json["message"], (case, response.json)
        assert objective in response.json["message"], (case, response.json)
    runs = client.get(f"/v1/experiments/{eid}/training_runs", headers=auth).json["data"]
    assert [r["id"] for r in runs] == [source]

    _advertise(redis_client, "gpu1", [objective])
    created = _create(client, auth, eid, body)
    assert created.status_code == 200, created.json
    assert created.json["continues"] == source


def _advertise(redis_client: redis.Redis, name: str, continuable: list[str]) -> None:
    advert = WorkerAdvert(
        name=name, objectives=list(OBJECTIVE_NAMES), started=time.time(), continuable=continuable
    )
    redis_client.set(worker_key(name), advert.to_json(), px=WORKER_ADVERT_TTL_S * 1000)


def test_continuing_is_refused_while_the_adverts_cannot_be_read(
    app_without_redis: Flask,
) -> None:
    """Redis not answering: whether the objective can continue is unknown, so a 400 naming
    ``continues`` (restarting is always safe), not a 500."""
    with app_without_redis.app_context():
        token = create_token(get_session(), "acme", "test")
    client = app_without_redis.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    managed = {**MULTITASK, "objective": {"name": "augmented_hartmann", "config": {}}}
    eid = client.post("/v1/experiments", json=managed, headers=auth).json["id"]
    source = _run(client, auth, eid, "short")
    body = {"suggestion": {"assignments": POINT, "task": "full"}, "continues": source}
    response = _create(client, auth, eid, body)
    assert response.status_code == 400, response.json
    assert "continues" in response.json["message"] and "Redis" in response.json["message"]
