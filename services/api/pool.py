"""Reading the per-experiment pool of precomputed suggestions that the suggester fills.

Each entry is JSON ``{"assignments", "task", "observation_count", "source"}``; the observation
count tags the data it was computed from, so the API can tell a fresh entry from a stale one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from shared.names import pool_key


@dataclass(frozen=True)
class PoolEntry:
    assignments: dict[str, Any]
    task: str | None
    observation_count: int
    source: str
    #: Entries still in the pool after this one was taken.
    left: int = 0


def _parse(raw: bytes, left: int) -> PoolEntry | None:
    try:
        data = json.loads(raw)
        return PoolEntry(
            assignments=dict(data["assignments"]),
            task=data.get("task"),
            observation_count=int(data.get("observation_count", 0)),
            source=str(data.get("source", "model")),
            left=left,
        )
    except (ValueError, KeyError, TypeError):
        return None


def pop(client: redis.Redis, experiment_id: int, wait_s: float = 0.0) -> PoolEntry | None:
    """The oldest entry (unreadable ones are skipped); blocks up to ``wait_s`` for the suggester
    to push one when the pool is empty."""
    key = pool_key(experiment_id)
    while True:
        # One round trip, no MULTI: ``left`` only tells whether the pool ran dry (the event that
        # wakes the suggester), and a refill between the two commands means it did not.
        pipe = client.pipeline(transaction=False)
        pipe.lpop(key)
        pipe.llen(key)
        raw, left = pipe.execute()
        if raw is None:
            if wait_s <= 0:
                return None
            popped = client.blpop([key], timeout=wait_s)
            if popped is None:
                return None
            raw, left = popped[1], 0
        entry = _parse(raw, int(left))
        if entry is not None:
            return entry


def push_back(client: redis.Redis, experiment_id: int, entry: PoolEntry) -> None:
    """Return an entry to the head of the pool (it was popped but not used)."""
    client.lpush(
        pool_key(experiment_id),
        json.dumps(
            {
                "assignments": entry.assignments,
                "task": entry.task,
                "observation_count": entry.observation_count,
                "source": entry.source,
            }
        ),
    )
