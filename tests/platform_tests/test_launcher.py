"""``multitune up`` on embedded defaults: a private Redis with AOF when none answers, SQLite,
API, suggester, workers and Flower; Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from shared.api_client import ApiClient
from tests.services import REPO
from tests.services import create_token
from tests.services import free_port
from tests.services import wait_for
from tests.services import wait_http

pytestmark = pytest.mark.slow

BRANIN = {
    "name": "branin via up",
    "parameters": [
        {"name": "x1", "type": "double", "bounds": {"min": -5, "max": 10}},
        {"name": "x2", "type": "double", "bounds": {"min": 0, "max": 15}},
    ],
    "metrics": [{"name": "value", "objective": "minimize"}],
    "tasks": [{"name": "cheap", "cost": 0.25}, {"name": "full", "cost": 1.0}],
    "observation_budget": 4,
    "parallel_bandwidth": 2,
    "objective": {"name": "augmented_branin", "config": {"sleep_per_cost": 0.5}},
}


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_runs_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    port, flower_port, dead_redis = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "MULTITUNE_DATA_DIR": str(tmp_path / "data"),
        "MULTITUNE_REDIS_URL": f"redis://127.0.0.1:{dead_redis}/0",
    }
    env.pop("MULTITUNE_DATABASE_URL", None)
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "up",
            "--port",
            str(port),
            "--workers",
            "2",
            "--flower-port",
            str(flower_port),
        ],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        # as a shell's background job gets it: Ctrl-C must still stop everything
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=120, process=up)
        token = create_token(env)
        api = ApiClient(f"http://127.0.0.1:{port}", token)
        eid = api.post("/experiments", BRANIN)["id"]
        wait_for(
            lambda: api.get(f"/experiments/{eid}")["state"] == "completed",
            240,
            "the experiment to complete",
        )
        aof = [p.name for p in (tmp_path / "data" / "redis").iterdir()]
        assert any(name.startswith("appendonly") for name in aof), aof  # private Redis, AOF on
        assert (tmp_path / "data" / "multitune.db").exists()  # embedded SQLite
        runs = list(api.iterate(f"/experiments/{eid}/training_runs"))

        def flower_tasks() -> dict:
            response = requests.get(f"http://127.0.0.1:{flower_port}/api/tasks", timeout=5)
            tasks = response.json() if response.ok else {}
            return tasks if len(tasks) >= len(runs) else {}

        tasks = wait_for(flower_tasks, 60, "Flower to list the training tasks")
        assert {t["name"] for t in tasks.values()} == {"multitune.train"}
        assert {f"run-{r['id']}-attempt-1" for r in runs} <= set(tasks)
        assert all(t["state"] == "SUCCESS" for t in tasks.values())
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
        log.close()
    assert up.returncode == 0, (tmp_path / "up.log").read_text()[-3000:]
    for p in (port, flower_port):
        assert not _port_open(p)
