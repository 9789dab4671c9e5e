"""``multitune up`` keeps going: a worker whose main process is SIGKILLed is restarted (its
orphaned pool child killed with it), the other services keep running, the lost run is retried
and the managed experiment completes with the invariants; SIGTERM then stops everything."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis

from services.cli.launcher import Supervisor
from shared.api_client import ApiClient
from shared.settings import Settings
from tests import inprocess
from tests.platform_tests.conftest import check_finished_experiment
from tests.services import REPO
from tests.services import create_token
from tests.services import free_port
from tests.services import wait_for
from tests.services import wait_http

pytestmark = pytest.mark.slow

MAX_EPOCHS = 8
BRANIN = {
    **inprocess.BRANIN,
    "name": "branin under a supervisor",
    "tasks": [{"name": "cheap", "cost": 0.5}, {"name": "full", "cost": 1.0}],
    # A cheap run trains 4 epochs of 1 s, a full-cost one 8: long enough to be caught mid-way.
    "objective": {
        "name": "augmented_branin",
        "config": {"sleep_per_cost": 8.0, "max_epochs": MAX_EPOCHS},
    },
}


def _service_processes(up: subprocess.Popen[bytes]) -> dict[str, psutil.Process]:
    """The main process of each service `up` started, by its `--name` or subcommand."""
    found = {}
    for child in psutil.Process(up.pid).children():
        argv = child.cmdline()
        if "services.cli" not in argv:
            continue
        command = argv[argv.index("services.cli") + 1]
        found[argv[argv.index("--name") + 1] if "--name" in argv else command] = child
    return found


def _group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    alive = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def test_a_sigkilled_worker_is_restarted_and_the_experiment_completes(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    port, flower_port = free_port(), free_port()
    env = {
        **os.environ,
        "MULTITUNE_DATA_DIR": str(tmp_path / "data"),
        "MULTITUNE_REDIS_URL": redis_url,
        "MULTITUNE_RUN_LEASE_S": "4",
        "MULTITUNE_HEARTBEAT_S": "0.5",
        "MULTITUNE_MAX_ATTEMPTS": "3",
    }
    env.pop("MULTITUNE_DATABASE_URL", None)
    output = tmp_path / "up.log"
    with open(output, "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--port", str(port)]
            + ["--workers", "2", "--flower-port", str(flower_port)],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def printed() -> str:
        return output.read_text(errors="replace")

    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=120, process=up)
        token = create_token(env)
        api = ApiClient(f"http://127.0.0.1:{port}", token, retry_for_s=30)
        wait_for(lambda: "status: " in printed(), 120, "up's first status line")
        eid = api.post("/experiments", BRANIN)["id"]

        def running_mid_way() -> dict | None:
            for run in api.iterate(f"/experiments/{eid}/training_runs", state="running"):
                epochs = round(run["task"]["cost"] * MAX_EPOCHS)
                if run["worker"] and 1 <= run["checkpoint_count"] < epochs - 1:
                    return run
            return None

        victim = wait_for(running_mid_way, 180, "a run to be mid-way")
        node = victim["worker"].split("@")[0]  # cpu0 or cpu1, as worker0 or worker1
        before = _service_processes(up)
        assert set(before) == {"api", "suggester", "cpu0", "cpu1", "flower"}, before
        killed = before[node]
        pool_children = [c.pid for c in killed.children(recursive=True)]
        assert pool_children  # the Celery pool child that trains the run
        killed.send_signal(signal.SIGKILL)  # the main process only, as a crash would

        name = f"worker{node.removeprefix('cpu')}"
        wait_for(lambda: f"{name} killed by SIGKILL" in printed(), 30, "the death to be noticed")
        wait_for(lambda: f"{name} up (1 restart)" in printed(), 30, "a status line after it")
        assert _group(killed.pid) == []  # the orphaned pool child was killed with its group
        after = _service_processes(up)
        assert after[node].pid != killed.pid
        for other in set(before) - {node}:  # the rest kept running, untouched
            assert after[other].pid == before[other].pid, other
        log = (tmp_path / "data" / "logs" / f"{name}.log").read_text(errors="replace")
        assert f"--- multitune up: {name} killed by SIGKILL; restart 1" in log

        wait_for(
            lambda: api.get(f"/training_runs/{victim['id']}")["attempt"] >= 2,
            60,
            "the lost run to be retried",
        )
        wait_for(
            lambda: api.get(f"/experiments/{eid}")["state"] == "completed",
            180,
            "the experiment to complete",
        )
        check_finished_experiment(api, eid)
        assert api.get(f"/training_runs/{victim['id']}")["state"] == "completed"
        deaths = printed().count(" killed by ") + printed().count(" exited with ")
        assert deaths == 1, printed()  # nothing else died
    finally:
        descendants = psutil.Process(up.pid).children(recursive=True)
        up.send_signal(signal.SIGTERM)
        up.wait(60)
    assert up.returncode == 0, printed()[-3000:]
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert alive == []  # every service, and whatever it started, stopped
    for port_used in (port, flower_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port_used)) != 0


def test_a_service_that_keeps_dying_is_restarted_with_growing_backoff(tmp_path: Path) -> None:
    """`Supervisor.watch` on real child processes: one that exits at once is restarted after
    a doubling delay up to the cap, the status line counts its restarts, a steady one is left
    alone, and `stop` ends both."""
    lines: list[str] = []
    supervisor = Supervisor(
        Settings.from_env(env={}, data_dir=tmp_path),
        echo=lines.append,
        backoff_s=0.05,
        backoff_cap_s=0.2,
    )
    supervisor.spawn("crasher", [sys.executable, "-c", "import sys; sys.exit(3)"])
    steady = supervisor.spawn("steady", [sys.executable, "-c", "import time; time.sleep(120)"])
    crasher = supervisor.services[0]
    try:

        def restarted_five_times() -> bool:
            supervisor.watch()
            return crasher.restarts >= 5

        wait_for(restarted_five_times, 60, "five restarts")
    finally:
        supervisor.stop()
    text = "\n".join(lines)
    delays = re.findall(r"crasher exited with 3 after \d+s; restarting in ([\d.]+)s", text)
    assert [float(d) for d in delays[:5]] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert re.search(
        r"status: crasher (up|down|restarting) \(5 restarts\), steady up$", text, re.M
    )
    assert supervisor.services[1].process is steady and supervisor.services[1].restarts == 0
    assert steady.returncode == -signal.SIGTERM  # stopped, never restarted
    log = (tmp_path / "logs" / "crasher.log").read_text()
    assert log.count("--- multitune up: crasher exited with 3; restart ") == crasher.restarts
