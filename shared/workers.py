"""The live workers' adverts in Redis, and what they say about an objective.

Each live worker keeps a `shared.messages.WorkerAdvert` at `shared.names.worker_key` with a TTL,
so the keys under `WORKER_KEY_PREFIX` are the live workers. The API reads them to check an
experiment's objective (`services.api.store.workers`); the suggester reads them to tell whether
a managed experiment's runs can be continued (`continuable`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from shared.messages import MessageError
from shared.messages import WorkerAdvert
from shared.names import WORKER_KEY_PREFIX

log = logging.getLogger(__name__)

#: Keys fetched per SCAN round trip.
_SCAN_COUNT = 500


def live_adverts(client: redis.Redis) -> list[WorkerAdvert]:
    """The adverts of the live workers (raises `redis.RedisError` when Redis fails). An
    unreadable advert is skipped: a worker of another version must not block experiments."""
    keys = sorted(client.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=_SCAN_COUNT))
    adverts = []
    for key, value in zip(keys, client.mget(keys) if keys else [], strict=True):
        if value is None:  # expired between SCAN and MGET
            continue
        try:
            adverts.append(WorkerAdvert.from_json(value))
        except MessageError as exc:
            log.warning("ignoring the unreadable worker advert %r: %s", key, exc)
    return adverts


def continuable(objective: str, adverts: Sequence[WorkerAdvert]) -> bool:
    """Whether runs of ``objective`` can continue from a cheaper run's checkpoint: some live
    worker provides it and every live worker that provides it says so (any of them may train
    the continuing run). With no live provider the answer is no: restarting is always safe."""
    providers = [a for a in adverts if objective in a.objectives]
    return bool(providers) and all(objective in a.continuable for a in providers)
