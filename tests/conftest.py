"""Session-wide services: a Redis database and a PostgreSQL database, both real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests import services
from tests.services import Platform


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
def platform(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> Iterator[Platform]:
    """A live API (gunicorn) on a free port over SQLite in a temp data dir; call
    ``platform.start("suggester")`` etc. for more services. Everything is stopped afterwards."""
    live = Platform(tmp_path, redis_url)
    try:
        yield live
    finally:
        live.stop_all()
