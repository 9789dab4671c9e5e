"""Fixtures that run the whole platform as real processes: gunicorn API, suggester, Celery
workers, over Redis and SQLite."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.api_client import ApiClient
from tests.services import Platform

HARTMANN = {
    "name": "managed hartmann",
    "parameters": [{"name": f"x{i}", "type": "double", "bounds": {"min": 0, "max": 1}}
                   for i in range(1, 7)],
    "metrics": [{"name": "value", "objective": "minimize"}],
    "tasks": [{"name": "s0.125", "cost": 0.125}, {"name": "s0.25", "cost": 0.25},
              {"name": "s0.5", "cost": 0.5}, {"name": "s1", "cost": 1.0}],
    "observation_budget": 12,
    "parallel_bandwidth": 3,
    "objective": {"name": "augmented_hartmann", "config": {"sleep_per_cost": 1.0, "max_epochs": 4}},
}


@pytest.fixture()
def live(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> Iterator[Platform]:
    platform = Platform(tmp_path, redis_url, run_lease_s="4", heartbeat_s="0.5", max_attempts="3")
    try:
        yield platform
    finally:
        platform.stop_all()


def client_for(platform: Platform) -> ApiClient:
    return ApiClient(platform.api_url, platform.token(), retry_for_s=30)


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str,
             platform: Platform | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    logs = ""
    if platform is not None:
        logs = "\n".join(f"--- {name}\n{platform.log(name)[-3000:]}" for name in platform.running)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def check_finished_experiment(api: ApiClient, eid: str) -> dict[str, Any]:
    """The invariants every managed experiment must end with; returns the experiment."""
    experiment = api.get(f"/experiments/{eid}")
    assert experiment["state"] == "completed"
    observations = list(api.iterate(f"/experiments/{eid}/observations"))
    costs = {t["name"]: t["cost"] for t in experiment["tasks"]}
    total = sum(costs[o["task"]["name"]] for o in observations)
    assert experiment["progress"]["observation_budget_consumed"] == pytest.approx(total)
    assert total >= experiment["observation_budget"]
    per_suggestion = Counter(o["suggestion"] for o in observations)
    assert per_suggestion and max(per_suggestion.values()) == 1, per_suggestion
    runs = list(api.iterate(f"/experiments/{eid}/training_runs"))
    assert all(r["finished"] for r in runs), [r["state"] for r in runs]
    assert {r["suggestion"] for r in runs if r["state"] in ("completed", "failed", "lost")} == set(
        per_suggestion)
    best = api.get(f"/experiments/{eid}/best_assignments")["data"]
    full_cost = [o for o in observations if o["task"]["cost"] == 1.0 and not o["failed"]]
    if full_cost:
        assert best[0]["task"]["cost"] == 1.0
        assert best[0]["value"] == pytest.approx(min(o["value"] for o in full_cost))
    else:
        assert best == []
    return experiment
