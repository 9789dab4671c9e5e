"""Faults a long-lived deployment meets, each survived by a managed experiment run by real
processes, which must end with the invariants (`check_finished_experiment`): the budget
completes, no suggestion has two observations, no run is lost, the recorded cost is the sum of
the task costs.

- PostgreSQL restarted mid-experiment (a private cluster): while it is away the API answers 503
  with ``Retry-After``, and the services and a sigopt client retry.
- The API SIGKILLed while workers publish, and started again.
- Redis restarted without its append-only file (all its data gone): the suggester rebuilds the
  consumer groups and pools and re-sends queued runs from the store.
- A worker frozen past its lease: its attempt is fenced (retried elsewhere) and its late
  result ignored.
- The API's checkpoint store unwritable: the run storing a checkpoint fails with that reason,
  and the platform goes on.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from requests.adapters import HTTPAdapter
from sigopt import Connection
from urllib3.util import Retry

from services.worker.results import publish
from shared.api_client import ApiClient
from shared.messages import TrainResult
from shared.names import pool_key
from tests import inprocess
from tests.platform_tests.conftest import check_finished_experiment
from tests.services import Platform
from tests.services import RedisServer
from tests.services import private_postgres
from tests.services import wait_for

pytestmark = pytest.mark.slow

MAX_EPOCHS = 4
#: Managed Branin: 3 runs in flight on 2 workers (so one is always queued), runs of 1 to 2 s.
BRANIN: dict[str, Any] = {
    **inprocess.BRANIN,
    "name": "branin under faults",
    "tasks": [{"name": "cheap", "cost": 0.5}, {"name": "full", "cost": 1.0}],
    "observation_budget": 5,
    "parallel_bandwidth": 3,
    "objective": {
        "name": "augmented_branin",
        "config": {"sleep_per_cost": 2.0, "max_epochs": MAX_EPOCHS},
    },
}
#: The same with 1 s epochs (4 for a cheap run, 8 for a full-cost one) and 2 runs in flight:
#: a run is easily caught mid-way, with a checkpoint stored and more to store.
SLOW_EPOCHS = 8
SLOW: dict[str, Any] = {
    **BRANIN,
    "observation_budget": 3,
    "parallel_bandwidth": 2,
    "objective": {
        "name": "augmented_branin",
        "config": {"sleep_per_cost": 8.0, "max_epochs": SLOW_EPOCHS},
    },
}
#: Short leases: a silent run is retried within seconds.
LEASES = {"run_lease_s": "4", "heartbeat_s": "0.5", "max_attempts": "4"}


def _start(platform: Platform, workers: int = 2) -> ApiClient:
    platform.start_api()
    platform.start("suggester", "suggester")
    for i in range(1, workers + 1):
        platform.start(f"w{i}", "worker", "--name", f"w{i}")
    return ApiClient(platform.api_url, platform.token(), retry_for_s=120)


def _observations(api: ApiClient, eid: str) -> int:
    return int(api.get(f"/experiments/{eid}")["progress"]["observation_count"])


def _running_mid_way(api: ApiClient, eid: str) -> dict[str, Any] | None:
    """A running run of ``eid`` (a `SLOW` experiment) with a checkpoint stored and at least two
    more to store."""
    for run in api.iterate(f"/experiments/{eid}/training_runs", state="running"):
        epochs = max(round(run["task"]["cost"] * SLOW_EPOCHS), 1)
        if run["worker"] and 1 <= run["checkpoint_count"] < epochs - 1:
            return dict(run)
    return None


def _completes(api: ApiClient, eid: str, platform: Platform) -> dict[str, Any]:
    wait_for(
        lambda: api.get(f"/experiments/{eid}")["state"] == "completed",
        240,
        "the experiment to complete",
        platform,
    )
    return check_finished_experiment(api, eid)


@pytest.fixture()
def private_redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


def test_redis_restarted_without_its_data_is_rebuilt_from_the_store(
    tmp_path: Path, private_redis_server: RedisServer
) -> None:
    """Redis is SIGKILLed and started empty (no append-only file) while runs are queued and
    running: consumer groups, Celery queues and bindings, pools and results in flight are all
    gone. The suggester notices, re-sends the queued runs and refills the pools from the API
    (the system of record); runs whose results were lost are retried after their lease."""
    server = private_redis_server
    platform = Platform(tmp_path, server.url, **LEASES)
    try:
        api = _start(platform)
        # A budget that leaves runs queued for a while after the first results (3 in flight
        # on 2 workers), however fast the machine trains them.
        eid = api.post("/experiments", {**BRANIN, "observation_budget": 12})["id"]
        client_driven = api.post(
            "/experiments", {**BRANIN, "name": "client driven", "objective": None}
        )["id"]
        client = redis.Redis.from_url(server.url)
        wait_for(lambda: client.llen(pool_key(client_driven)) > 0, 60, "a pool", platform)
        queued = wait_for(
            lambda: (
                _observations(api, eid) >= 2
                and list(api.iterate(f"/experiments/{eid}/training_runs", state="queued"))
            ),
            120,
            "two observations and a queued run",
            platform,
        )
        server.stop(signal.SIGKILL)
        server.start()  # empty: no append-only file
        wait_for(
            lambda: "Redis lost its data" in platform.log("suggester"),
            60,
            "the suggester to notice",
            platform,
        )
        wait_for(lambda: client.llen(pool_key(client_driven)) > 0, 60, "the pool back", platform)
        experiment = _completes(api, eid, platform)
        for run in queued:  # the queued runs lost with the broker's queue trained after all
            assert api.get(f"/training_runs/{run['id']}")["state"] == "completed"
        assert experiment["progress"]["observation_count"] >= 12
        assert all(process.poll() is None for process in platform.running.values())
    finally:
        platform.stop_all()


def test_the_api_sigkilled_while_workers_publish(live_leases: Platform) -> None:
    """The API dies mid-experiment (every gunicorn process, SIGKILL) while a run trains: the
    worker's next checkpoint and its heartbeats meet refused connections and are retried, and
    so are the suggester's calls. Started again on the same port, everything carries on."""
    platform = live_leases
    api = _start(platform)
    eid = api.post("/experiments", SLOW)["id"]
    victim = wait_for(lambda: _running_mid_way(api, eid), 120, "a run mid-way", platform)
    worker = victim["worker"].split("@")[0]
    refused = platform.log(worker).count("did not answer")
    platform.kill("api", signal.SIGKILL)
    wait_for(
        lambda: platform.log(worker).count("did not answer") > refused,
        60,
        "the worker to meet the dead API",
        platform,
    )
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{platform.api_url}/healthz", timeout=2)
    platform.start_api()
    _completes(api, eid, platform)
    run = api.get(f"/training_runs/{victim['id']}")
    assert run["state"] == "completed"


@pytest.fixture()
def live_leases(make_platform: Callable[..., Platform]) -> Platform:
    return make_platform(**LEASES)


def retrying_session() -> requests.Session:
    """What a sigopt client needs to ride out a database restart: the client retries only 429
    by itself, so its session retries 503 (and refused connections), waiting what
    ``Retry-After`` asks. ``Connection(token, session=retrying_session())``."""
    retry = Retry(
        total=60,
        connect=60,
        status=60,
        status_forcelist=[503],
        allowed_methods=None,  # a 503 means nothing was committed: any method may be resent
        backoff_factor=0.2,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class SigoptLoop(threading.Thread):
    """A sigopt client's ask/tell loop on a client-driven experiment of its own."""

    def __init__(self, url: str, token: str, budget: int) -> None:
        super().__init__(name="sigopt-loop", daemon=True)
        self.connection = Connection(client_token=token, session=retrying_session())
        self.connection.set_api_url(url)
        self.budget = budget
        self.experiment_id: str | None = None
        self.error: BaseException | None = None
        self.told = 0

    def run(self) -> None:
        try:
            experiment = self.connection.experiments().create(
                name="sigopt loop",
                parameters=[{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
                metrics=[{"name": "y", "objective": "maximize"}],
                observation_budget=self.budget,
            )
            self.experiment_id = experiment.id
            for _ in range(self.budget):
                suggestion = self.connection.experiments(experiment.id).suggestions().create()
                value = -((suggestion.assignments["x"] - 0.3) ** 2)
                self.connection.experiments(experiment.id).observations().create(
                    suggestion=suggestion.id, value=value
                )
                self.told += 1
                time.sleep(0.1)  # a user's loop paced like training, so it spans the outage
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_postgresql_restarted_mid_experiment(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    """PostgreSQL (a private cluster) is stopped with runs in flight and started again. While
    it is away the API answers 503 with ``Retry-After`` and ``/readyz`` says not ready; the
    suggester, the workers, the outbox relay and a sigopt client retry; the experiment
    completes."""
    with private_postgres() as postgres:
        database_url = postgres.create_database()
        platform = Platform(tmp_path, redis_url, database_url, **LEASES)
        try:
            api = _start(platform)
            token = platform.token("sigopt-user")
            eid = api.post("/experiments", BRANIN)["id"]
            user = SigoptLoop(platform.api_url, token, budget=40)
            user.start()
            wait_for(lambda: _observations(api, eid) >= 2, 120, "two observations", platform)
            wait_for(lambda: user.told >= 3 or user.error, 60, "the sigopt loop", platform)
            told_before = user.told
            postgres.stop("fast")
            away = requests.get(
                f"{platform.api_url}/v1/experiments/{eid}", auth=(token, ""), timeout=30
            )
            assert away.status_code == 503, away.text
            assert away.headers["Retry-After"] == "2"
            assert away.json() == {
                "message": "The database is unavailable; retry shortly",
                "status": 503,
            }
            ready = requests.get(f"{platform.api_url}/readyz", timeout=30)
            assert ready.status_code == 503 and ready.headers["Retry-After"] == "2"
            assert ready.json()["database"].startswith("error") and ready.json()["redis"] == "ok"
            wait_for(  # the services and the sigopt client keep trying meanwhile
                lambda: platform.log("api").count("database unavailable") >= 20,
                60,
                "the services to meet the outage",
                platform,
            )
            postgres.start()
            _completes(api, eid, platform)
            user.join(120)
            assert user.error is None, user.error
            assert user.told == 40 > told_before
            assert requests.get(f"{platform.api_url}/readyz", timeout=30).status_code == 200
            observations = list(
                api_for(platform, token).iterate(f"/experiments/{user.experiment_id}/observations")
            )
            suggestions = [o["suggestion"] for o in observations]
            assert len(suggestions) == len(set(suggestions)) == 40  # none lost, none doubled
        finally:
            platform.stop_all()


def api_for(platform: Platform, token: str) -> ApiClient:
    return ApiClient(platform.api_url, token, retry_for_s=60)


def test_a_worker_frozen_past_its_lease_is_fenced_and_its_late_result_ignored(
    live_leases: Platform,
) -> None:
    """A worker is cut off (SIGSTOP of its whole process group: no Redis, no API, no
    heartbeat) for longer than its lease while it trains. The run's next attempt trains on the
    other worker. Let go, the frozen worker finds its attempt superseded and drops it; a late
    result of the old attempt on the results stream is ignored; nothing is recorded twice."""
    platform = live_leases
    api = _start(platform)
    eid = api.post("/experiments", SLOW)["id"]
    victim = wait_for(lambda: _running_mid_way(api, eid), 120, "a run mid-way", platform)
    frozen = victim["worker"].split("@")[0]
    other = {"w1": "w2", "w2": "w1"}[frozen]
    platform.send(frozen, signal.SIGSTOP)
    try:
        retried = wait_for(
            lambda: (
                (r := api.get(f"/training_runs/{victim['id']}"))["attempt"] >= 2
                and r["worker"]
                and r
            ),
            120,
            "the next attempt to run on the other worker",
            platform,
        )
        assert retried["worker"].startswith(f"{other}@")
    finally:
        platform.send(frozen, signal.SIGCONT)
    wait_for(
        lambda: "was superseded; dropping its result" in platform.log(frozen),
        60,
        "the woken worker to drop its attempt",
        platform,
    )
    _completes(api, eid, platform)
    run = api.get(f"/training_runs/{victim['id']}")
    assert run["state"] == "completed" and run["worker"].startswith(f"{other}@")
    observations = list(api.iterate(f"/experiments/{eid}/observations"))

    # The result the frozen attempt would have published had it finished before noticing.
    late = TrainResult(
        experiment_id=int(eid),
        suggestion_id=int(victim["suggestion"]),
        run_id=int(victim["id"]),
        attempt=victim["attempt"],
        values=[{"name": "value", "value": -1000.0}],
    )
    publish(redis.Redis.from_url(platform.env["MULTITUNE_REDIS_URL"]), late)
    wait_for(
        lambda: (
            f"ignoring result of run {victim['id']} attempt {victim['attempt']}"
            in platform.log("suggester")
        ),
        60,
        "the suggester to ignore the late result",
        platform,
    )
    assert list(api.iterate(f"/experiments/{eid}/observations")) == observations
    assert api.get(f"/training_runs/{victim['id']}") == run
    check_finished_experiment(api, eid)


def test_an_unwritable_checkpoint_store_fails_the_run_and_the_platform_goes_on(
    live_leases: Platform, tmp_path: Path
) -> None:
    """The API's checkpoint store (its directory under the data dir) cannot be written: a file
    stands where the directory was, which no process, root included, can write into. The API
    answers 507, the run whose checkpoint it refused fails with that reason (a retry could not
    do better), the others carry on; once the store is writable again the experiment
    completes."""
    platform = live_leases
    api = _start(platform)
    eid = api.post("/experiments", BRANIN)["id"]
    wait_for(lambda: _observations(api, eid) >= 2, 120, "two observations", platform)
    store = tmp_path / "data" / "checkpoints"
    away = store.with_name("checkpoints.away")
    assert store.is_dir()
    store.rename(away)
    store.write_text("not a directory: the checkpoint store cannot be written")

    def failed_by_the_store() -> dict[str, Any] | None:
        for run in api.iterate(f"/experiments/{eid}/training_runs", state="failed"):
            return run
        return None

    try:
        failed = wait_for(failed_by_the_store, 120, "a run to fail", platform)
    finally:
        store.unlink()
        away.rename(store)
    reason = failed["failure_reason"]
    assert "507" in reason and "full or unwritable" in reason, reason
    assert str(tmp_path) not in reason  # no machine paths in what a client sees
    restored = time.time()
    experiment = _completes(api, eid, platform)
    observations = list(api.iterate(f"/experiments/{eid}/observations"))
    (refused,) = [o for o in observations if o["suggestion"] == failed["suggestion"]]
    assert refused["failed"]
    runs = list(api.iterate(f"/experiments/{eid}/training_runs"))
    assert [r for r in runs if r["state"] == "completed" and r["started"] >= restored - 1]
    assert experiment["progress"]["observation_count"] == len(runs)
    assert all(process.poll() is None for process in platform.running.values())
