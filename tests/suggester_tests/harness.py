"""What the suggester's fast tests share: a clock they move by hand, a suggester driven one step
at a time against the in-process API and the test Redis, and small readers of Redis and the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from services.suggester.service import Suggester
from shared import api_objects
from shared.messages import PoolEntry
from shared.names import SUGGESTER_GROUP
from shared.names import pool_key
from shared.states import StateFilter
from tests.inprocess import InProcessApi
from tests.inprocess import SentTask
from tests.inprocess import take_sent_tasks


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SuggesterLoop:
    """A `Suggester` stepped by the test: `step` relays the API's outbox to Redis first, so the
    events of everything done so far are there to read."""

    suggester: Suggester
    clock: ManualClock
    server: InProcessApi
    redis: redis.Redis

    def step(self) -> None:
        self.server.relay_events()
        self.suggester.step(block_ms=10)

    def create(self, definition: dict[str, Any]) -> int:
        """Create an experiment as a user; returns its id."""
        return int(self.server.user.post("/experiments", definition)["id"])

    def sent(self) -> list[SentTask]:
        return take_sent_tasks(self.redis)

    def unfinished_runs(self, experiment_id: int) -> list[api_objects.TrainingRun]:
        return api_objects.list_training_runs(
            self.server.service, experiment_id, StateFilter.UNFINISHED
        )

    def pool(self, experiment_id: int) -> list[PoolEntry]:
        return [
            PoolEntry.from_json(raw) for raw in self.redis.lrange(pool_key(experiment_id), 0, -1)
        ]

    def pending(self, stream: str) -> int:
        """Entries of ``stream`` the suggester's group has read and not acknowledged."""
        summary: dict[str, Any] = self.redis.xpending(stream, SUGGESTER_GROUP)
        return int(summary["pending"])
