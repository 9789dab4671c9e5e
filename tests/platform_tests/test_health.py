"""``multitune health ROLE`` (compose.yaml's health checks) against live services: healthy while
they work, unhealthy when they are frozen (SIGSTOP) or gone, healthy again when they resume."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.services import REPO
from tests.services import Platform
from tests.services import free_port
from tests.services import wait_for
from tests.services import wait_http

pytestmark = pytest.mark.slow


def _health(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "health", *args],
        env=platform.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_health_checks_tell_working_services_from_frozen_or_dead_ones(platform: Platform) -> None:
    flower_port = free_port()
    platform.start_api()
    platform.start("suggester", "suggester")
    platform.start("w1", "worker", "--name", "w1")
    flower = platform.start("flower", "flower", "--port", str(flower_port))
    wait_http(f"http://127.0.0.1:{flower_port}/healthcheck", process=flower)
    checks = {
        "api": ("api",),
        "suggester": ("suggester", "--max-age", "3"),
        "w1": ("worker", "--name", "w1", "--timeout", "3"),
        "flower": ("flower", "--port", str(flower_port)),
    }
    for name, args in checks.items():
        wait_for(lambda args=args: _health(platform, *args).returncode == 0, 90, f"{name} healthy")

    wrong = _health(platform, "worker", "--name", "nobody", "--timeout", "1")
    assert wrong.returncode == 1 and "did not answer a ping" in wrong.stderr

    for name in ("suggester", "w1"):  # a frozen loop, a frozen consumer
        platform.send(name, signal.SIGSTOP)
    try:
        frozen = wait_for(
            lambda: (r := _health(platform, *checks["suggester"])).returncode == 1 and r,
            30,
            "the frozen suggester to be unhealthy",
        )
        assert "last turned" in frozen.stderr
        worker = _health(platform, *checks["w1"])
        assert worker.returncode == 1 and "did not answer a ping" in worker.stderr
    finally:
        for name in ("suggester", "w1"):
            platform.send(name, signal.SIGCONT)
    for name in ("suggester", "w1"):
        wait_for(lambda n=name: _health(platform, *checks[n]).returncode == 0, 60, f"{name} back")

    platform.kill("flower", signal.SIGTERM)
    platform.kill("api", signal.SIGTERM)
    for name in ("flower", "api"):
        dead = _health(platform, *checks[name])
        assert dead.returncode == 1 and "does not answer" in dead.stderr, dead.stderr
