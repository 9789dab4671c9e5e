"""Pausing, resuming and stopping a managed experiment are honoured within seconds: running
runs checkpoint and stop, resumed runs continue from their checkpoints, a stopped experiment
schedules nothing more.

"Nothing more is scheduled" is shown without sleeping: the test makes the suggester refresh the
experiment once more (an update, whose event it acknowledges only after the refresh) and waits
until the suggester's consumer group has read and acknowledged that event; then resuming shows
that a refresh does schedule when the state allows it.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from shared.api_client import ApiClient
from shared.messages import Event
from shared.messages import EventType
from shared.names import EVENTS_STREAM
from shared.names import SUGGESTER_GROUP
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


def _stream_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


def _acknowledged(client: redis.Redis, entry_id: bytes) -> bool:
    """The suggester's group has read the events-stream entry ``entry_id`` and acknowledged it."""
    groups = {g["name"]: g for g in client.xinfo_groups(EVENTS_STREAM)}
    group = groups.get(SUGGESTER_GROUP.encode())
    if group is None or _stream_id(group["last-delivered-id"]) < _stream_id(entry_id):
        return False
    return not client.xpending_range(
        EVENTS_STREAM, SUGGESTER_GROUP, min=entry_id, max=entry_id, count=1
    )


def refreshed_once_more(api: ApiClient, client: redis.Redis, eid: str, live: Platform) -> None:
    """Return once the suggester has refreshed experiment ``eid`` after everything before this
    call: an update (new metadata) writes ``experiment.updated``, which the suggester
    acknowledges only after refreshing the experiment, and it reads the stream in order."""
    last = client.xrevrange(EVENTS_STREAM, count=1)
    after = last[0][0] if last else b"0-0"

    def marker() -> bytes | None:
        for entry_id, fields in client.xrange(EVENTS_STREAM, min=f"({after.decode()}"):
            event = Event.from_json(fields[b"event"])
            if event.type is EventType.EXPERIMENT_UPDATED and event.experiment_id == int(eid):
                return bytes(entry_id)
        return None

    api.put(f"/experiments/{eid}", {"metadata": {"marker": uuid.uuid4().hex}})
    entry = wait_for(marker, 30, "the update's event on the stream", live)
    wait_for(lambda: _acknowledged(client, entry), 60, "the suggester to handle it", live)


def test_pause_resume_and_stop(live: Platform, redis_client: redis.Redis) -> None:
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
    refreshed_once_more(api, redis_client, eid, live)
    assert len(runs()) == count  # nothing new is scheduled while paused
    assert {r["id"] for r in runs("paused")} == {p["id"] for p in paused}

    api.put(f"/experiments/{eid}", {"state": "active"})  # the control: now a refresh acts
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
    refreshed_once_more(api, redis_client, eid, live)
    assert len(runs()) == count  # nothing new is scheduled once stopped
    assert api.get(f"/experiments/{eid}")["state"] == "stopped"

    api.put(f"/experiments/{eid}", {"state": "active"})  # the control: now a refresh acts
    wait_for(lambda: len(runs()) > count, 60, "runs to be scheduled again", live)
