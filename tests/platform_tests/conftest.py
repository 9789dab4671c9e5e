"""Fixtures that run the whole platform as real processes: gunicorn API, suggester, Celery
workers, over Redis and SQLite."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from shared.api_client import ApiClient
from tests.services import Platform


@pytest.fixture()
def live(make_platform: Callable[..., Platform]) -> Platform:
    """Short leases and heartbeats, so a killed worker's run is noticed within seconds."""
    return make_platform(run_lease_s="4", heartbeat_s="0.5", max_attempts="3")


def client_for(platform: Platform) -> ApiClient:
    return ApiClient(platform.api_url, platform.token(), retry_for_s=30)


def check_finished_experiment(api: ApiClient, eid: str) -> dict[str, Any]:
    """The invariants every managed experiment must end with; returns the experiment.

    The budget consumed is the sum of the observations' task costs, less, for a run that
    continued another (the synthetic objectives are continuable), its source run's task cost."""
    experiment = api.get(f"/experiments/{eid}")
    assert experiment["state"] == "completed"
    observations = list(api.iterate(f"/experiments/{eid}/observations"))
    runs = list(api.iterate(f"/experiments/{eid}/training_runs"))
    run_cost = {r["id"]: r["task"]["cost"] for r in runs}
    continued = {r["observation"]: run_cost[r["continues"]] for r in runs if r["continues"]}
    total = sum(o["task"]["cost"] - continued.get(o["id"], 0.0) for o in observations)
    assert experiment["progress"]["observation_budget_consumed"] == pytest.approx(total)
    assert total >= experiment["observation_budget"]
    per_suggestion = Counter(o["suggestion"] for o in observations)
    assert per_suggestion and max(per_suggestion.values()) == 1, per_suggestion
    assert all(r["finished"] for r in runs), [r["state"] for r in runs]
    assert {r["suggestion"] for r in runs if r["state"] in ("completed", "failed", "lost")} == set(
        per_suggestion
    )
    best = api.get(f"/experiments/{eid}/best_assignments")["data"]
    full_cost = [o for o in observations if o["task"]["cost"] == 1.0 and not o["failed"]]
    if full_cost:
        assert best[0]["task"]["cost"] == 1.0
        pick = max if experiment["metrics"][0]["objective"] == "maximize" else min
        assert best[0]["value"] == pytest.approx(pick(o["value"] for o in full_cost))
    else:
        assert best == []
    return experiment
