"""Reading the per-experiment pool of precomputed suggestions that the suggester fills.

Each entry is a `shared.messages.PoolEntry`; its observation count tags the data it was computed
from, so the API can tell a fresh entry from a stale one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from shared.messages import MessageError
from shared.messages import PoolEntry
from shared.names import pool_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Taken:
    """An entry popped from the pool."""

    entry: PoolEntry
    #: Entries still in the pool after this one was taken.
    left: int


def _read(raw: bytes) -> PoolEntry | None:
    """The entry, or None for one that is not a `PoolEntry` of this schema version or whose
    fields have the wrong types (it is skipped)."""
    try:
        entry = PoolEntry.from_json(raw)
    except MessageError as exc:
        log.warning("skipping an unreadable pool entry: %s", exc)
        return None
    well_formed = (
        isinstance(entry.assignments, dict)
        and (entry.task is None or isinstance(entry.task, str))
        and isinstance(entry.observation_count, int)
        and not isinstance(entry.observation_count, bool)
        and isinstance(entry.source, str)
    )
    if not well_formed:
        log.warning("skipping a pool entry with fields of the wrong type")
        return None
    return entry


def pop(client: redis.Redis, experiment_id: int, wait_s: float = 0.0) -> Taken | None:
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
        entry = _read(raw)
        if entry is not None:
            return Taken(entry, int(left))


def push_back(client: redis.Redis, experiment_id: int, entry: PoolEntry) -> None:
    """Return an entry to the head of the pool (it was popped but not used)."""
    client.lpush(pool_key(experiment_id), entry.to_json())
