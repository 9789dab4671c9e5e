"""Writing an experiment's suggestion pool (read by the API) and the optimizer state.

A pool is a Redis list of `shared.messages.PoolEntry` messages, tagged with the observation
count they were computed from (also kept in `names.pool_version_key`), so that a pool computed
from older data is known to be stale."""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import redis

from services.suggester.optimizer import Candidate
from shared.messages import PoolEntry
from shared.names import pool_key
from shared.names import pool_ready_channel
from shared.names import pool_version_key


def state_key(experiment_id: int) -> str:
    return f"multitune:optimizer_state:{experiment_id}"


def replace(
    client: redis.Redis,
    experiment_id: int,
    candidates: Sequence[Candidate],
    observation_count: int,
) -> None:
    """Atomically swap the pool for ``candidates``, tagged with the data behind them."""
    entries = [
        PoolEntry(
            assignments=c.assignments,
            task=c.task,
            observation_count=observation_count,
            source=c.source,
        ).to_json()
        for c in candidates
    ]
    pipe = client.pipeline(transaction=True)
    pipe.delete(pool_key(experiment_id))
    if entries:
        pipe.rpush(pool_key(experiment_id), *entries)
    pipe.set(pool_version_key(experiment_id), observation_count)
    pipe.publish(pool_ready_channel(experiment_id), observation_count)
    pipe.execute()


def is_fresh(client: redis.Redis, experiment_id: int, observation_count: int) -> bool:
    """The pool has entries computed from (at least) ``observation_count`` observations."""
    return experiment_id in fresh_pools(client, {experiment_id: observation_count})


def fresh_pools(client: redis.Redis, observation_counts: Mapping[int, int]) -> set[int]:
    """Of the experiments of ``observation_counts`` (id -> observations), those whose pool is
    fresh (`is_fresh`), in one round trip."""
    pipe = client.pipeline(transaction=False)
    for experiment_id in observation_counts:
        pipe.llen(pool_key(experiment_id))
        pipe.get(pool_version_key(experiment_id))
    replies = pipe.execute()
    fresh = set()
    for i, (experiment_id, count) in enumerate(observation_counts.items()):
        length, version = replies[2 * i], replies[2 * i + 1]
        if length and version is not None and int(version) >= count:
            fresh.add(experiment_id)
    return fresh


def drop(client: redis.Redis, experiment_id: int) -> None:
    client.delete(
        pool_key(experiment_id), pool_version_key(experiment_id), state_key(experiment_id)
    )


def load_state(client: redis.Redis, experiment_id: int) -> dict[str, Any] | None:
    raw = client.get(state_key(experiment_id))
    return json.loads(raw) if raw else None


def save_state(client: redis.Redis, experiment_id: int, state: dict[str, Any]) -> None:
    client.set(state_key(experiment_id), json.dumps(state))
