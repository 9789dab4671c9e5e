"""Running one attempt of a script objective: the command of a worker's ``objectives.yaml``,
given the run context that ``sigopt run`` gives its child, so that a script written for
``sigopt run`` trains unchanged as a managed (multitask) run.

The child gets ``SIGOPT_CONTEXT`` (the run's JSON as ``GET /v1/training_runs/{id}`` returns it,
in the envelope the ``sigopt`` client decodes), ``SIGOPT_API_URL``, ``SIGOPT_API_TOKEN`` (a
token minted for this attempt, which can touch only this run and stops working when the run
moves on), ``SIGOPT_PROJECT`` when the run has a project, ``MULTITUNE_TASK_NAME``,
``MULTITUNE_TASK_COST``, ``MULTITUNE_EPOCHS``, ``MULTITUNE_CONFIG`` (JSON),
``MULTITUNE_ATTEMPT``, ``MULTITUNE_CHECKPOINT_DIR`` and the worker's ``CUDA_VISIBLE_DEVICES``;
nothing else of the worker's ``MULTITUNE_*``/``SIGOPT_*`` variables (its service token stays
with it). It runs in a process group of its own under `services/worker/supervise.py`, which
takes the whole group down if the worker dies.

While it runs, the worker heartbeats (`runner.Heartbeat`), keeps the last `LOG_TAIL_BYTES` of
stdout and stderr on the run (``MERGE`` of its ``logs``, every `LOG_PUSH_INTERVAL_S`), and on
stop, pause or lease loss sends SIGTERM to the group, then SIGKILL after the objective's
``stop_grace_s``. Exit 0: the run's logged ``values`` are the result; a non-zero exit, a run
the script marked failed, or no value for the optimized metric is a failed result whose reason
holds the exit status and the end of stderr.

The checkpoint directory is stored through the API (`services.worker.checkpoint_sync`) whenever
it changed, looked at every ``sync_interval_s`` on a thread of its own, and once more when the
script stops early (a pause), so that the next attempt can resume on any worker. A store that
refuses the checkpoint stops the script and fails the run with that reason.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import IO
from typing import Any
from typing import Protocol

from services.worker import results
from services.worker.checkpoint_sync import AttemptSuperseded
from services.worker.checkpoint_sync import CheckpointStoreError
from services.worker.checkpoint_sync import CheckpointSync
from services.worker.objectives._base import RunContext
from services.worker.objectives._base import task_epochs
from services.worker.objectives.scripts import ScriptObjective
from services.worker.objectives.scripts import child_path
from shared.api_client import ApiClient
from shared.api_client import ApiRequestError
from shared.messages import TrainRequest
from shared.messages import TrainResult
from shared.space import Metric
from shared.space import Task

log = logging.getLogger(__name__)

#: How much of the end of each of stdout and stderr the run keeps.
LOG_TAIL_BYTES = 16 * 1024
#: How often the tails are written to the run while the script runs (and once at its end).
LOG_PUSH_INTERVAL_S = 5.0
SUPERVISOR = Path(__file__).with_name("supervise.py")
#: What the client puts in its User-Agent for calls of this child (``sigopt run`` says "CLI").
USER_AGENT_INFO = ["multitune-worker"]
#: Run fields left out of ``SIGOPT_CONTEXT``: bulky, and not read by the client (Linux caps
#: one environment variable at 128 KiB).
CONTEXT_DROPPED_FIELDS = ("logs", "traceback", "source_code")
MAX_CONTEXT_CHARS = 100_000


class StopControl(RunContext, Protocol):
    """What a script run needs from the attempt's context: its directory and stop requests."""

    def supersede(self) -> None:
        """This attempt is no longer the run's: stop, and publish nothing."""


# ---------------------------------------------------------------- the child's environment
def sigopt_context(run: Mapping[str, Any]) -> str:
    """``SIGOPT_CONTEXT`` as ``sigopt run`` sets it: base64 of the JSON envelope the client's
    config decodes, whose ``global_run_context.run`` makes ``sigopt.params``,
    ``sigopt.log_metric`` and ``sigopt.log_checkpoint`` act on this run without a fetch."""
    slim = {k: v for k, v in run.items() if k not in CONTEXT_DROPPED_FIELDS}
    envelope = {"user_agent_info": USER_AGENT_INFO, "global_run_context": {"run": slim}}
    encoded = base64.b64encode(json.dumps(envelope).encode()).decode()
    if len(encoded) > MAX_CONTEXT_CHARS:
        raise ValueError(
            f"the run's JSON is too large for SIGOPT_CONTEXT ({len(encoded)} characters encoded; "
            f"at most {MAX_CONTEXT_CHARS}): make its metadata smaller"
        )
    return encoded


def child_environment(
    base: Mapping[str, str],
    objective: ScriptObjective,
    *,
    run: Mapping[str, Any],
    api_url: str,
    token: str,
    request: TrainRequest,
    checkpoint_dir: Path,
) -> dict[str, str]:
    """The environment of one attempt's child: ``base`` (the worker's) without its
    ``MULTITUNE_*`` and ``SIGOPT_*`` variables, the objective's ``env``, then the run context
    (see the module docstring)."""
    env = {k: v for k, v in base.items() if not k.startswith(("MULTITUNE_", "SIGOPT_"))}
    env["PATH"] = child_path(objective.env, base)
    env.setdefault("PYTHONUNBUFFERED", "1")  # live log tails (the objective's env may clear it)
    env.update(objective.env)
    task = _task(request)
    config = objective.run_config(request.config)
    env.update(
        {
            "SIGOPT_CONTEXT": sigopt_context(run),
            "SIGOPT_API_URL": api_url,
            "SIGOPT_API_TOKEN": token,
            "MULTITUNE_TASK_NAME": request.task or "",
            "MULTITUNE_TASK_COST": repr(request.cost if task is not None else 1.0),
            "MULTITUNE_EPOCHS": str(task_epochs(task, int(config["max_epochs"]))),
            "MULTITUNE_CONFIG": json.dumps(config),
            "MULTITUNE_ATTEMPT": str(request.attempt),
            "MULTITUNE_CHECKPOINT_DIR": str(checkpoint_dir),
        }
    )
    project = run.get("project")
    if isinstance(project, str) and project:
        env["SIGOPT_PROJECT"] = project
    if "CUDA_VISIBLE_DEVICES" in base:  # the worker's GPU pinning
        env["CUDA_VISIBLE_DEVICES"] = base["CUDA_VISIBLE_DEVICES"]
    return env


def _task(request: TrainRequest) -> Task | None:
    return Task(name=request.task, cost=request.cost) if request.task is not None else None


# ---------------------------------------------------------------- output and failure reasons
class LogTail:
    """The last ``limit`` bytes of one output stream (thread-safe), and how much came."""

    def __init__(self, limit: int = LOG_TAIL_BYTES) -> None:
        self.limit = limit
        self.total = 0
        #: Bumped on every write; a writer of the tail skips an unchanged one.
        self.version = 0
        self._data = bytearray()
        self._lock = threading.Lock()

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            self.total += len(chunk)
            self.version += 1
            self._data += chunk
            if len(self._data) > self.limit:
                del self._data[: len(self._data) - self.limit]

    def text(self) -> str:
        """The tail as text, after a line saying how much came before it, if anything did. NUL
        characters become U+FFFD: the API refuses them (no database stores them in text)."""
        with self._lock:
            data, dropped = bytes(self._data), self.total - len(self._data)
        if dropped:
            data = data.lstrip(bytes(range(0x80, 0xC0)))  # not from the middle of a character
        text = data.decode(errors="replace").replace("\x00", "\ufffd")
        return f"[{dropped} earlier bytes not kept]\n{text}" if dropped else text

    def follow(self, stream: IO[bytes]) -> threading.Thread:
        """Read ``stream`` to its end on a daemon thread (started and returned)."""

        def read() -> None:
            with stream:
                while chunk := os.read(stream.fileno(), 65536):
                    self.feed(chunk)

        thread = threading.Thread(target=read, name="log-tail", daemon=True)
        thread.start()
        return thread


def failure_reason(exit_code: int, stderr_tail: str, problem: str | None = None) -> str:
    """A failed attempt's reason: how the script ended (and ``problem``, for an exit 0 that
    still failed), then as much of the end of its stderr as fits the API's limit."""
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        head = f"script killed by {name}"
    else:
        head = f"script exited with code {exit_code}"
    if problem:
        head += f" but {problem}"
    stderr_tail = stderr_tail.rstrip()
    if not stderr_tail:
        return (head + "; its stderr was empty")[: results.MAX_REASON_CHARS]
    head += "; stderr ends with:\n"
    room = max(results.MAX_REASON_CHARS - len(head), 0)
    return head + stderr_tail[-room:] if room else head[: results.MAX_REASON_CHARS]


# ---------------------------------------------------------------- the process
class ScriptProcess:
    """A command run under the supervisor as the leader of a new process group, with its
    stdout and stderr tails kept."""

    def __init__(
        self,
        command: tuple[str, ...] | list[str],
        cwd: Path,
        env: Mapping[str, str],
        tail_bytes: int = LOG_TAIL_BYTES,
    ) -> None:
        argv = [sys.executable, "-I", "-S", str(SUPERVISOR), str(os.getpid()), "--", *command]
        self.stdout = LogTail(tail_bytes)
        self.stderr = LogTail(tail_bytes)
        self._process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self._process.pid
        assert self._process.stdout is not None and self._process.stderr is not None
        self._readers = [
            self.stdout.follow(self._process.stdout),
            self.stderr.follow(self._process.stderr),
        ]

    def exited(self) -> bool:
        """Whether the command has ended, without reaping it (its group id stays reserved
        until `finish`, so signalling the group cannot reach another process)."""
        if self._process.returncode is not None:
            return True
        flags = os.WEXITED | os.WNOWAIT | os.WNOHANG
        return os.waitid(os.P_PID, self.pid, flags) is not None

    def wait(self, timeout_s: float, poll_s: float = 0.01) -> bool:
        """Whether the command ended within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.exited():
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True

    def signal_group(self, number: int) -> None:
        try:
            os.killpg(self.pid, number)
        except ProcessLookupError:
            pass

    def stop(self, grace_s: float) -> None:
        """SIGTERM to the whole group, then SIGKILL if the command is still there after
        ``grace_s``."""
        self.signal_group(signal.SIGTERM)
        if not self.wait(grace_s):
            log.warning("script pid %s ignored SIGTERM for %.0fs; killing it", self.pid, grace_s)
            self.signal_group(signal.SIGKILL)

    def finish_when_done(self, timeout_s: float) -> int:
        """`finish` once the command has ended, or after ``timeout_s`` (killing it)."""
        self.wait(timeout_s)
        return self.finish()

    def finish(self) -> int:
        """Kill what is left of the group (whatever the command left behind, or all of it when
        called before it ended), reap the command and read its output to the end. Returns the
        exit status (negative: the signal that ended it)."""
        self.signal_group(signal.SIGKILL)
        code = self._process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        return code


# ---------------------------------------------------------------- one attempt
def mint_run_token(api: ApiClient, request: TrainRequest) -> str:
    """A token for this attempt of the run alone (``POST /training_runs/{id}/tokens``)."""
    body = api.post(f"/training_runs/{request.run_id}/tokens", {"attempt": request.attempt})
    token = body.get("token") if isinstance(body, Mapping) else None
    if not isinstance(token, str) or not token:
        raise ValueError("token: the API's answer has no 'token'")
    return token


def run_script(
    objective: ScriptObjective,
    request: TrainRequest,
    context: StopControl,
    metrics: Sequence[Metric],
    api: ApiClient,
    api_url: str,
    base_env: Mapping[str, str] | None = None,
    log_interval_s: float = LOG_PUSH_INTERVAL_S,
    checkpoints: CheckpointSync | None = None,
    sync_interval_s: float = LOG_PUSH_INTERVAL_S,
) -> TrainResult:
    """Run one attempt of ``objective`` (see the module docstring). ``api`` is the worker's
    (service) client: it reads the run and writes its log tails, fenced by the attempt; the
    child alone gets the token of this attempt. ``checkpoints`` stores the checkpoint
    directory every ``sync_interval_s`` while the script runs."""
    path = f"/training_runs/{request.run_id}"
    try:
        token = mint_run_token(api, request)
    except ApiRequestError as exc:
        if exc.status not in (404, 409):
            raise
        log.info("run %s attempt %s is not current: %s", request.run_id, request.attempt, exc)
        context.supersede()
        return results.stopped(request)
    env = child_environment(
        os.environ if base_env is None else base_env,
        objective,
        run=api.get(path),
        api_url=api_url,
        token=token,
        request=request,
        checkpoint_dir=context.checkpoint_dir,
    )
    process = ScriptProcess(objective.command, objective.cwd, env)
    logs = _LogWriter(api, path, request.attempt, process, context, log_interval_s)
    syncer = (
        None if checkpoints is None else _CheckpointWatcher(checkpoints, context, sync_interval_s)
    )
    try:
        while not process.wait(0.1):
            if context.should_stop() or (syncer is not None and syncer.error is not None):
                process.stop(objective.stop_grace_s)
                break
    finally:
        code = process.finish()
        logs.close()
        if syncer is not None:
            syncer.close()
    if syncer is not None and syncer.error is not None:
        return results.failed(request, syncer.error)
    if context.should_stop():
        if syncer is not None:
            failure = syncer.last_sync()  # what the script saved when it was asked to stop
            if failure is not None:
                return results.failed(request, failure)
        return results.stopped(request)
    stderr = process.stderr.text()
    if code != 0:
        return results.failed(request, failure_reason(code, stderr), traceback=stderr)
    run = api.get(path)
    if run.get("state") == "failed":
        problem = "marked its run failed (sigopt.log_failure)"
        return results.failed(request, failure_reason(code, stderr, problem), traceback=stderr)
    values = run.get("values") or {}
    outcome = results.from_values(request, values if isinstance(values, Mapping) else {}, metrics)
    if outcome.failed:
        reason = failure_reason(code, stderr, outcome.reason)
        return results.failed(request, reason, traceback=stderr)
    return outcome


class _CheckpointWatcher:
    """Stores the checkpoint directory when it changed, every ``interval_s`` on a thread of its
    own (an upload never delays a stop or a heartbeat). A superseded attempt stops the script;
    after a store refused the checkpoint, `error` says why (and the script is stopped)."""

    def __init__(self, sync: CheckpointSync, context: StopControl, interval_s: float) -> None:
        self._sync = sync
        self._context = context
        self.error: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(interval_s,), name="checkpoint-sync", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._done.set()
        self._thread.join()

    def _run(self, interval_s: float) -> None:
        while not self._done.wait(interval_s):
            if self._context.should_stop():
                return
            self.error = self._save()
            if self.error is not None:
                return

    def _save(self) -> str | None:
        try:
            self._sync.save()
        except AttemptSuperseded:
            self._context.supersede()
        except (CheckpointStoreError, OSError) as exc:  # OSError: this worker's own disk
            log.warning("run %s: %s", self._sync.run_id, exc)
            return f"{type(exc).__name__}: {exc}"
        return None

    def last_sync(self) -> str | None:
        """Store the directory once more after the script stopped early (a superseded
        attempt's upload is refused, and changes nothing); returns the reason of a failure."""
        return self._save()


class _LogWriter:
    """Writes the output tails to the run when they changed (``MERGE`` of its ``logs``, fenced
    by the attempt) every ``interval_s`` on a thread of its own, so a slow API never delays a
    stop; `close` writes them a last time."""

    def __init__(
        self,
        api: ApiClient,
        path: str,
        attempt: int,
        process: ScriptProcess,
        context: StopControl,
        interval_s: float,
    ) -> None:
        self._api = api
        self._path = path
        self._attempt = attempt
        self._process = process
        self._context = context
        self._written = (0, 0)
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(interval_s,), name="log-writer", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._write()

    def _run(self, interval_s: float) -> None:
        while not self._done.wait(interval_s):
            self._write()

    def _write(self) -> None:
        out, err = self._process.stdout, self._process.stderr
        versions = (out.version, err.version)
        if versions == self._written:
            return
        logs = {"stdout": {"content": out.text()}, "stderr": {"content": err.text()}}
        body = {"attempt": self._attempt, "logs": logs}
        try:
            self._api.request(
                "MERGE", self._path, json=body, headers={"X-Response-Content": "skip"}
            )
        except ApiRequestError as exc:
            if exc.status == 409:
                log.info("writing logs of %s: this attempt is no longer the run's", self._path)
                self._context.supersede()
            else:
                log.warning("writing the logs of %s failed: %s", self._path, exc)
            return
        except OSError as exc:
            log.warning("writing the logs of %s failed: %s", self._path, exc)
            return
        self._written = versions
