"""The per-token request rate (``MULTITUNE_RATE_LIMIT``, ``MULTITUNE_RATE_LIMIT_BURST``), on a
live ``multitune api`` of two gunicorn processes over real HTTP: one bucket per token shared by
both processes (Redis), 429 with ``Retry-After`` beyond it, the service token never limited,
the sigopt client retrying through it, and every request let through while Redis is away."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import pytest
import requests
from sigopt import Connection

from services.api.ratelimit import REDIS_RETRY_S
from tests.services import Platform
from tests.services import RedisServer

#: One request every 2 s once the burst is spent: slow enough that a busy machine still meets
#: the limit.
RATE = 0.5
BURST = 6


def _get(platform: Platform, token: str, path: str = "/v1/tokens/self") -> requests.Response:
    """A request on a connection of its own, so that requests spread over the processes."""
    return requests.get(
        f"{platform.api_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _limited_platform(tmp_path: Path, redis_url: str) -> Platform:
    platform = Platform(tmp_path, redis_url, rate_limit=str(RATE), rate_limit_burst=str(BURST))
    platform.start_api(workers=2)
    return platform


def test_a_token_is_limited_across_processes_and_told_when_to_retry(
    tmp_path: Path, redis_url: str, redis_client: object, caplog: pytest.LogCaptureFixture
) -> None:
    platform = _limited_platform(tmp_path, redis_url)
    try:
        token = platform.token("acme")
        headers = {"Authorization": f"Bearer {token}"}
        experiment = requests.post(
            f"{platform.api_url}/v1/experiments",
            json={
                "name": "limited",
                "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
            },
            headers=headers,
            timeout=30,
        ).json()
        started = time.monotonic()
        answers = [_get(platform, token) for _ in range(4 * BURST)]
        elapsed = time.monotonic() - started
        allowed = [r for r in answers if r.status_code == 200]
        refused = [r for r in answers if r.status_code == 429]
        assert len(allowed) + len(refused) == len(answers)
        # One bucket for both processes: the burst and what refilled meanwhile, not twice that.
        assert len(allowed) <= BURST + RATE * elapsed, (len(allowed), elapsed)
        assert refused
        for response in refused:
            assert response.json()["status"] == 429
            assert "Too many requests" in response.json()["message"]
            assert 1 <= int(response.headers["Retry-After"]) <= math.ceil(1 / RATE)

        # The sigopt client, its bucket empty, retries through the 429s until it is served.
        connection = Connection(client_token=token)
        connection.set_api_url(platform.api_url)
        with caplog.at_level(logging.INFO, logger="backoff"):
            for _ in range(3):
                assert connection.experiments(experiment["id"]).fetch().name == "limited"
        assert any("429" in record.getMessage() for record in caplog.records)

        # Another token has a bucket of its own; the service token has none.
        assert _get(platform, platform.token("other")).status_code == 200
        service = platform.env["MULTITUNE_SERVICE_TOKEN"]
        assert all(_get(platform, service).status_code == 200 for _ in range(3 * BURST))
        # After the wait it was told, the token is served again.
        while (refusal := _get(platform, token)).status_code != 429:
            pass
        time.sleep(int(refusal.headers["Retry-After"]))
        assert _get(platform, token).status_code == 200
    finally:
        platform.stop_all()


def test_requests_go_through_while_redis_is_away(tmp_path: Path) -> None:
    server = RedisServer()
    server.start()
    platform = _limited_platform(tmp_path, server.url)
    try:
        token = platform.token("acme")
        answers = [_get(platform, token).status_code for _ in range(2 * BURST)]
        assert answers.count(429) > 0  # limited while Redis answers
        server.stop()
        answers = [_get(platform, token).status_code for _ in range(3 * BURST)]
        assert answers == [200] * len(answers)
        server.start()
        time.sleep(REDIS_RETRY_S + 0.5)  # the processes try Redis again a second later
        answers = [_get(platform, token).status_code for _ in range(4 * BURST)]
        assert answers.count(429) > 0, answers  # and limited again once it is back
    finally:
        platform.stop_all()
        server.close()
