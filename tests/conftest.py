"""Session-wide services: a Redis database and a PostgreSQL database, both real."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from tests import services
from tests.services import Platform

if TYPE_CHECKING:
    from tests.inprocess import InProcessApi


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if services.redis_answers(services.REDIS_URL):
        yield services.REDIS_URL
    else:
        with services.private_redis() as url:
            yield url


@pytest.fixture()
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with services.postgres_database() as url:
        yield url


@pytest.fixture()
def make_platform(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> Iterator[Callable[..., Platform]]:
    """``make_platform(**settings)``: live services over SQLite in a temp data dir, with
    ``MULTITUNE_<NAME>`` settings; ``start_api()``, ``start("suggester", "suggester")``, ...
    start them. Everything is stopped afterwards."""
    made: list[Platform] = []

    def make(**settings: str) -> Platform:
        made.append(Platform(tmp_path, redis_url, **settings))
        return made[-1]

    yield make
    for platform in made:
        platform.stop_all()


@pytest.fixture()
def platform(make_platform: Callable[..., Platform]) -> Platform:
    return make_platform()


@pytest.fixture()
def inprocess_api(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> Iterator[InProcessApi]:
    """The real API app served over HTTP in this process (`tests.inprocess.InProcessApi`), on a
    temp SQLite database and the (flushed) test Redis; short leases and heartbeats."""
    from tests.inprocess import serve_api  # imports the API app only for tests that use it

    with serve_api(tmp_path, redis_url, run_lease_s=5.0, heartbeat_s=0.05) as api:
        yield api
