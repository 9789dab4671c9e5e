"""Managed multitask experiments run to completion through real processes, including when a
worker is SIGKILLed mid-run, when the suggester is killed and restarted, and when Redis
crashes and comes back."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.platform_tests.conftest import check_finished_experiment
from tests.platform_tests.conftest import client_for
from tests.services import HARTMANN
from tests.services import Platform
from tests.services import RedisServer
from tests.services import wait_for

pytestmark = pytest.mark.slow


def _start(live: Platform, workers: int = 2) -> None:
    live.start_api()
    live.start("suggester", "suggester")
    for i in range(1, workers + 1):
        live.start(f"w{i}", "worker", "--name", f"w{i}")


def test_managed_hartmann_runs_to_completion(live: Platform) -> None:
    _start(live)
    api = client_for(live)
    eid = api.post("/experiments", HARTMANN)["id"]
    wait_for(
        lambda: api.get(f"/experiments/{eid}")["state"] == "completed",
        300,
        "the experiment to complete",
        live,
    )
    experiment = check_finished_experiment(api, eid)
    runs = list(api.iterate(f"/experiments/{eid}/training_runs"))
    assert {r["worker"].split("@")[0] for r in runs} == {"w1", "w2"}  # both workers trained
    checkpoints = api.get(f"/training_runs/{runs[0]['id']}/checkpoints")
    assert checkpoints["count"] >= 1 and checkpoints["data"][0]["values"][0]["name"] == "value"
    tasks = {r["task"]["name"] for r in runs}
    assert len(tasks) >= 2  # cheap and full-cost tasks were both used
    assert experiment["progress"]["observation_count"] == len(runs)


def test_a_sigkilled_worker_run_is_retried_and_nothing_is_recorded_twice(live: Platform) -> None:
    _start(live)
    api = client_for(live)
    # Every task trains at least 4 epochs (the cheapest: 4 x 0.375 s), so whichever worker gets
    # whichever task, runs spend a while with an epoch done and more to do.
    max_epochs = 32
    body = {
        **HARTMANN,
        "observation_budget": 4,
        "parallel_bandwidth": 2,
        "objective": {
            "name": "augmented_hartmann",
            "config": {"sleep_per_cost": 12.0, "max_epochs": max_epochs},
        },
    }
    eid = api.post("/experiments", body)["id"]

    def running_mid_way() -> dict | None:
        """A run with at least one epoch done and two still to do."""
        for run in api.iterate(f"/experiments/{eid}/training_runs", state="running"):
            epochs = round(run["task"]["cost"] * max_epochs)
            if run["worker"] and 1 <= run["checkpoint_count"] < epochs - 2:
                return run
        return None

    victim = wait_for(running_mid_way, 120, "a run to be mid-way", live)
    killed = victim["worker"].split("@")[0]
    survivor = {"w1": "w2", "w2": "w1"}[killed]
    live.kill(killed, signal.SIGKILL)
    retried = wait_for(
        lambda: api.get(f"/training_runs/{victim['id']}")["attempt"] >= 2,
        60,
        "the lost run to be retried",
        live,
    )
    assert retried
    wait_for(
        lambda: api.get(f"/experiments/{eid}")["state"] == "completed",
        300,
        "the experiment to complete",
        live,
    )
    check_finished_experiment(api, eid)
    run = api.get(f"/training_runs/{victim['id']}")
    assert run["state"] == "completed" and run["worker"].startswith(f"{survivor}@")
    epochs = [c["epoch"] for c in api.iterate(f"/training_runs/{victim['id']}/checkpoints")]
    attempts = [c["attempt"] for c in api.iterate(f"/training_runs/{victim['id']}/checkpoints")]
    assert 1 in attempts and 2 in attempts
    assert len(epochs) == len(set(epochs))  # resumed from its checkpoint, no epoch trained twice


def _complete_despite(live: Platform, disrupt: Callable[[], None], sleep_per_cost: float) -> None:
    """Start the services, run a managed hartmann experiment, call ``disrupt`` once a few
    observations are in, and check that the experiment completes with the invariants."""
    _start(live)
    api = client_for(live)
    body = {
        **HARTMANN,
        "objective": {
            "name": "augmented_hartmann",
            "config": {"sleep_per_cost": sleep_per_cost, "max_epochs": 2},
        },
    }
    eid = api.post("/experiments", body)["id"]
    wait_for(
        lambda: api.get(f"/experiments/{eid}")["progress"]["observation_count"] >= 3,
        120,
        "a few observations",
        live,
    )
    disrupt()
    wait_for(
        lambda: api.get(f"/experiments/{eid}")["state"] == "completed",
        300,
        "the experiment to complete",
        live,
    )
    check_finished_experiment(api, eid)


def test_killing_and_restarting_the_suggester_loses_and_duplicates_nothing(live: Platform) -> None:
    def restart_suggester() -> None:
        live.kill("suggester", signal.SIGKILL)
        time.sleep(3)  # results arrive while no suggester runs
        live.start("suggester2", "suggester")

    _complete_despite(live, restart_suggester, sleep_per_cost=1.0)


def test_a_redis_crash_mid_experiment_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Redis is SIGKILLed while runs are in flight and restarted from its append-only file
    (as deployed): every service reconnects and the experiment completes."""
    server = RedisServer(persistent=True)
    server.start()
    live = Platform(tmp_path, server.url, run_lease_s="4", heartbeat_s="0.5", max_attempts="3")

    def crash_redis() -> None:
        server.stop(signal.SIGKILL)
        time.sleep(3)  # runs finish and heartbeat while Redis is gone
        server.start()

    try:
        _complete_despite(live, crash_redis, sleep_per_cost=2.0)
        assert all(process.poll() is None for process in live.running.values())
    finally:
        live.stop_all()
        server.close()
