"""Pausing, resuming and stopping a managed experiment are honoured within seconds: running
runs checkpoint and stop, resumed runs continue from their checkpoints, a stopped experiment
schedules nothing more."""

from __future__ import annotations

import time

import pytest

from tests.platform_tests.conftest import client_for
from tests.services import HARTMANN
from tests.services import Platform
from tests.services import wait_for

pytestmark = pytest.mark.slow

SLOW = {
    **HARTMANN,
    "observation_budget": 6,
    "parallel_bandwidth": 2,
    "objective": {
        "name": "augmented_hartmann",
        "config": {"sleep_per_cost": 16.0, "max_epochs": 16},
    },
}


def test_pause_resume_and_stop(live: Platform) -> None:
    live.start_api()
    live.start("suggester", "suggester")
    live.start("w1", "worker", "--name", "w1")
    live.start("w2", "worker", "--name", "w2")
    api = client_for(live)
    eid = api.post("/experiments", SLOW)["id"]

    def runs(state: str | None = None) -> list[dict]:
        params = {"state": state} if state else {}
        return list(api.iterate(f"/experiments/{eid}/training_runs", **params))

    wait_for(
        lambda: [r for r in runs("running") if r["checkpoint_count"] >= 1],
        120,
        "runs to be training",
        live,
    )
    api.put(f"/experiments/{eid}", {"state": "paused"})
    paused_at = time.monotonic()
    wait_for(lambda: not runs("running") and not runs("queued"), 30, "runs to stop", live)
    assert time.monotonic() - paused_at < 15
    paused = runs("paused")
    assert paused and all(r["attempt"] == 1 for r in paused)
    count = len(runs())
    time.sleep(3)
    assert len(runs()) == count  # nothing new is scheduled while paused

    api.put(f"/experiments/{eid}", {"state": "active"})
    resumed = wait_for(
        lambda: [
            r
            for r in runs("running")
            if r["id"] in {p["id"] for p in paused} and r["attempt"] == 2
        ],
        60,
        "paused runs to resume with a new attempt",
        live,
    )
    checkpoints = list(api.iterate(f"/training_runs/{resumed[0]['id']}/checkpoints"))
    before = {c["epoch"] for c in checkpoints if c["attempt"] == 1}
    wait_for(
        lambda: any(
            c["attempt"] == 2
            for c in api.iterate(f"/training_runs/{resumed[0]['id']}/checkpoints")
        ),
        60,
        "the resumed run to report",
        live,
    )
    after = {
        c["epoch"]
        for c in api.iterate(f"/training_runs/{resumed[0]['id']}/checkpoints")
        if c["attempt"] == 2
    }
    assert before and min(after) == max(before) + 1  # continued from its checkpoint

    api.put(f"/experiments/{eid}", {"state": "stopped"})
    wait_for(lambda: not runs("running") and not runs("queued"), 30, "runs to stop", live)
    stopped = runs("stopped")
    assert stopped
    open_ids = {s["id"] for s in api.iterate(f"/experiments/{eid}/suggestions", state="open")}
    assert not open_ids & {r["suggestion"] for r in stopped}  # withdrawn, not pending forever
    count = len(runs())
    time.sleep(3)
    assert len(runs()) == count
    assert api.get(f"/experiments/{eid}")["state"] == "stopped"
