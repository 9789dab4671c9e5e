"""Fixtures of the suggester's fast tests: the real `Publisher` against the test Redis (its
messages are read back from the broker's queue) and a `Suggester` stepped by hand."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from services.suggester.publish import Publisher
from services.suggester.service import Suggester
from tests.inprocess import InProcessApi
from tests.suggester_tests.harness import ManualClock
from tests.suggester_tests.harness import SuggesterLoop


@pytest.fixture()
def publisher(inprocess_api: InProcessApi) -> Iterator[Publisher]:
    publisher = Publisher(inprocess_api.settings)
    yield publisher
    publisher.close()


@pytest.fixture()
def loop(
    inprocess_api: InProcessApi, redis_client: redis.Redis, publisher: Publisher
) -> SuggesterLoop:
    """A started suggester (groups created, a first step taken on the empty platform, so its
    first sweep is behind it); its sweep and lease checks follow ``loop.clock``."""
    clock = ManualClock(time.monotonic())
    suggester = Suggester(
        inprocess_api.settings, redis_client, inprocess_api.service, publisher, "test", clock
    )
    suggester.ensure_groups()
    suggester.step(block_ms=10)
    return SuggesterLoop(suggester, clock, inprocess_api, redis_client)
