"""The plain parts of running a script objective, with real processes: the child's environment
(read back by the unmodified ``sigopt`` client in a child), bounded output tails, failure
reasons, and the supervised process group (exit statuses, SIGTERM then SIGKILL, leftovers
killed, and the whole group dying with a SIGKILLed worker)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from services.worker import results
from services.worker.objectives.scripts import ScriptObjective
from services.worker.script_runner import LogTail
from services.worker.script_runner import ScriptProcess
from services.worker.script_runner import child_environment
from services.worker.script_runner import failure_reason
from services.worker.script_runner import sigopt_context
from shared.messages import TrainRequest
from tests.services import REPO
from tests.services import wait_for

RUN = {
    "object": "training_run",
    "id": "17",
    "experiment": "3",
    "suggestion": "5",
    "state": "running",
    "assignments": {"lr": 0.01, "layers": 3, "optimizer": "adam"},
    "task": {"object": "task", "name": "cheap", "cost": 0.25},
    "project": "digits",
    "values": {},
    "logs": {"stdout": {"content": "x" * 50_000}},
    "metadata": None,
}


def _request(**changes: Any) -> TrainRequest:
    fields: dict[str, Any] = {
        "experiment_id": 3,
        "suggestion_id": 5,
        "run_id": 17,
        "attempt": 2,
        "objective": "mine",
        "config": {"batch_size": 32},
        "assignments": RUN["assignments"],
        "task": "cheap",
        "cost": 0.25,
        "metric": "accuracy",
    }
    return TrainRequest(**{**fields, **changes})


def _objective(tmp_path: Path, **changes: Any) -> ScriptObjective:
    fields: dict[str, Any] = {
        "name": "mine",
        "command": ("python", "train.py"),
        "cwd": tmp_path,
        "env": {"OMP_NUM_THREADS": "1"},
        "max_epochs": 10,
        "config": {"batch_size": 64, "width": 2},
    }
    return ScriptObjective(**{**fields, **changes})


def _environment(tmp_path: Path, run: dict[str, Any] = RUN, **request: Any) -> dict[str, str]:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/home/someone",
        "MULTITUNE_SERVICE_TOKEN": "mts_secret",
        "MULTITUNE_API_URL": "http://elsewhere",
        "SIGOPT_API_TOKEN": "someone-elses",
        "SIGOPT_PROJECT": "another",
        "CUDA_VISIBLE_DEVICES": "1",
    }
    return child_environment(
        base,
        _objective(tmp_path),
        run=run,
        api_url="http://127.0.0.1:8000",
        token="mtr_run_token",
        request=_request(**request),
        checkpoint_dir=tmp_path / "runs" / "17",
    )


def test_the_child_gets_the_run_context_and_none_of_the_workers_secrets(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    assert "MULTITUNE_SERVICE_TOKEN" not in env and "MULTITUNE_API_URL" not in env
    assert (env["HOME"], env["OMP_NUM_THREADS"]) == ("/home/someone", "1")
    assert env["PATH"] == f"{Path(sys.executable).parent}{os.pathsep}/usr/bin"
    assert env["SIGOPT_API_URL"] == "http://127.0.0.1:8000"
    assert env["SIGOPT_API_TOKEN"] == "mtr_run_token"
    assert env["SIGOPT_PROJECT"] == "digits"  # the run's, not the worker's
    assert env["CUDA_VISIBLE_DEVICES"] == "1"  # the worker's GPU pinning
    assert env["MULTITUNE_TASK_NAME"] == "cheap"
    assert float(env["MULTITUNE_TASK_COST"]) == 0.25
    assert env["MULTITUNE_EPOCHS"] == "2"  # round(0.25 x 10)
    assert json.loads(env["MULTITUNE_CONFIG"]) == {"max_epochs": 10, "batch_size": 32, "width": 2}
    assert env["MULTITUNE_ATTEMPT"] == "2"
    assert env["MULTITUNE_CHECKPOINT_DIR"] == str(tmp_path / "runs" / "17")
    context = json.loads(base64.b64decode(env["SIGOPT_CONTEXT"]))
    assert context["user_agent_info"] == ["multitune-worker"]
    run = context["global_run_context"]["run"]
    assert run == {k: v for k, v in RUN.items() if k != "logs"}  # the bulky logs left out


def test_epochs_are_at_least_one_and_a_run_without_project_or_task_sets_neither(
    tmp_path: Path,
) -> None:
    run = {k: v for k, v in RUN.items() if k not in ("project", "task")}
    env = _environment(tmp_path, run, task=None, cost=1.0, config={"max_epochs": 3})
    assert "SIGOPT_PROJECT" not in env
    assert (env["MULTITUNE_TASK_NAME"], float(env["MULTITUNE_TASK_COST"])) == ("", 1.0)
    assert env["MULTITUNE_EPOCHS"] == "3"
    tiny = _environment(tmp_path, task="tiny", cost=0.01)
    assert tiny["MULTITUNE_EPOCHS"] == "1"


def test_an_oversized_run_is_refused_for_the_context() -> None:
    with pytest.raises(ValueError, match="too large for SIGOPT_CONTEXT"):
        sigopt_context({**RUN, "metadata": {"blob": "y" * 200_000}})


SIGOPT_CHILD = """
import json, sigopt
print(json.dumps({"id": sigopt.get_run_id(), "params": dict(sigopt.params),
                  "lr": sigopt.params.lr}))
"""


def test_the_sigopt_client_in_the_child_sees_the_run_as_under_sigopt_run(tmp_path: Path) -> None:
    """The unmodified client reads the run from SIGOPT_CONTEXT: its id and its assignments as
    ``sigopt.params`` (no API call is needed for either)."""
    (tmp_path / "child.py").write_text(SIGOPT_CHILD)
    env = _environment(tmp_path)
    process = ScriptProcess(("python", "child.py"), tmp_path, env)
    assert process.finish_when_done(30) == 0, process.stderr.text()
    seen = json.loads(process.stdout.text())
    assert seen == {"id": "17", "params": RUN["assignments"], "lr": 0.01}


def test_a_log_tail_keeps_the_end_within_its_bound() -> None:
    tail = LogTail(limit=1000)
    assert tail.text() == ""
    tail.feed(b"first line\n")
    assert tail.text() == "first line\n"
    for i in range(2000):
        tail.feed(f"line {i}\n".encode())
    text = tail.text()
    assert text.startswith(f"[{tail.total - 1000} earlier bytes not kept]\n")
    assert text.endswith("line 1998\nline 1999\n")
    assert len(text.split("\n", 1)[1]) == 1000
    tail.feed("é".encode() * 600)  # 1200 bytes: the cut falls inside a character
    assert tail.text().split("\n", 1)[1] == "é" * 500


def test_a_log_tail_never_carries_a_nul_the_api_would_refuse() -> None:
    tail = LogTail(limit=1000)
    tail.feed(b"binary\x00junk\n")
    assert tail.text() == "binary\ufffdjunk\n"


def test_a_failure_reason_holds_the_exit_and_the_end_of_stderr() -> None:
    stderr = "".join(f"warning {i}\n" for i in range(1000)) + "ValueError: diverged\n"
    reason = failure_reason(1, stderr)
    assert reason.startswith("script exited with code 1; stderr ends with:\n")
    assert reason.endswith("warning 999\nValueError: diverged")
    assert len(reason) == results.MAX_REASON_CHARS
    assert failure_reason(-9, "") == "script killed by SIGKILL; its stderr was empty"
    missing = failure_reason(0, "done\n", "no value for the optimized metric 'accuracy'")
    assert missing == (
        "script exited with code 0 but no value for the optimized metric 'accuracy'; "
        "stderr ends with:\ndone"
    )


def _python(tmp_path: Path, code: str) -> ScriptProcess:
    (tmp_path / "child.py").write_text(textwrap.dedent(code))
    return ScriptProcess(("python", "child.py"), tmp_path, dict(os.environ))


def test_exit_statuses_come_back_as_the_command_ended(tmp_path: Path) -> None:
    done = _python(tmp_path, "import sys; print('out'); sys.exit(3)")
    assert done.finish_when_done(30) == 3 and done.stdout.text() == "out\n"
    killed = _python(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert killed.finish_when_done(30) == -signal.SIGSEGV
    missing = ScriptProcess(("no-such-program-here",), tmp_path, dict(os.environ))
    assert missing.finish_when_done(30) == 127
    assert "cannot run 'no-such-program-here': not found" in missing.stderr.text()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


FAMILY = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN if {ignore} else signal.SIG_DFL)
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open("pids.tmp", "w") as f:
    f.write(f"{{os.getpid()}} {{grandchild.pid}}")
os.replace("pids.tmp", "pids")
time.sleep({sleep})
"""


def _family(tmp_path: Path) -> list[int]:
    pids_file = tmp_path / "pids"
    wait_for(pids_file.exists, 30, "the command to start its own child")
    return [int(p) for p in pids_file.read_text().split()]


def test_stop_sends_sigterm_then_sigkill_to_the_whole_group(tmp_path: Path) -> None:
    process = _python(tmp_path, FAMILY.format(ignore=True, sleep=600))
    pids = _family(tmp_path)
    started = time.monotonic()
    process.stop(grace_s=1.0)
    assert process.finish() == -signal.SIGKILL  # it ignored SIGTERM
    assert time.monotonic() - started >= 1.0
    wait_for(lambda: not any(_alive(p) for p in pids), 10, "the group to die")


def test_what_a_command_leaves_running_is_killed_when_it_exits(tmp_path: Path) -> None:
    process = _python(tmp_path, FAMILY.format(ignore=False, sleep=0))
    pids = _family(tmp_path)
    assert process.finish_when_done(30) == 0
    wait_for(lambda: not _alive(pids[1]), 10, "the left-over grandchild to die")


WORKER = """
import os, sys
from pathlib import Path
from services.worker.script_runner import ScriptProcess
folder = Path(sys.argv[1])
process = ScriptProcess(("python", "child.py"), folder, dict(os.environ))
print(process.pid, flush=True)
process.finish_when_done(600)
"""


def test_the_whole_group_dies_with_a_sigkilled_worker(tmp_path: Path) -> None:
    (tmp_path / "child.py").write_text(FAMILY.format(ignore=True, sleep=600))
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        supervisor = int(worker.stdout.readline())
        pids = [supervisor, *_family(tmp_path)]
        assert all(_alive(p) for p in pids)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        wait_for(lambda: not any(_alive(p) for p in pids), 10, "the group to die with the worker")
    finally:
        worker.kill()
        worker.wait(10)
