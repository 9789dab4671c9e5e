"""`runner.train` of script objectives against the real API (in-process, over HTTP), with real
child processes using the unmodified ``sigopt`` client: the logged values become the result,
the output tails land on the run, a non-zero exit or a missing metric is a failure with the end
of stderr, and a paused experiment or a superseded attempt stops the whole process group."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis

from services.worker import runner
from services.worker import script_runner
from services.worker.objectives import Catalog
from services.worker.objectives.scripts import ScriptObjective
from shared import api_objects
from shared.messages import TrainResult
from shared.space import Metric
from shared.states import ExperimentState
from tests.inprocess import InProcessApi
from tests.services import wait_for
from tests.worker_tests.test_runner import Training
from tests.worker_tests.test_runner import Worker

LOGS_METRIC = """
import os, sys, sigopt
print("epochs", os.environ["MULTITUNE_EPOCHS"], "task", os.environ["MULTITUNE_TASK_NAME"])
print("something on stderr", file=sys.stderr)
sigopt.log_checkpoint({"value": 1.5})
sigopt.log_metric("value", sigopt.params.x1 + sigopt.params.x2, 0.1)
sigopt.log_metric("extra", 7)
"""

FAILS = """
import sys
print("loading data")
for i in range(300):
    print(f"warning {i}: deprecated", file=sys.stderr)
raise SystemExit("CUDA out of memory")
"""

LOGS_NOTHING = """
print("trained, but forgot to log")
"""

LOGS_FAILURE = """
import sigopt
sigopt.log_metric("value", 1.0)
sigopt.log_failure()
"""

WAITS = """
import pathlib, signal, sys, time
def stopped(*_):
    pathlib.Path("got-sigterm").write_text("yes")
    sys.exit(0)
signal.signal(signal.SIGTERM, stopped)
pathlib.Path("started").write_text("yes")
print("waiting", flush=True)
time.sleep(60)
"""

SCRIPTS = {
    "logs_metric": LOGS_METRIC,
    "fails": FAILS,
    "logs_nothing": LOGS_NOTHING,
    "logs_failure": LOGS_FAILURE,
    "waits": WAITS,
}


@pytest.fixture()
def catalog(tmp_path: Path) -> Catalog:
    scripts = {}
    for name, code in SCRIPTS.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "main.py").write_text(textwrap.dedent(code))
        scripts[name] = ScriptObjective(
            name=name,
            command=("python", "main.py"),
            cwd=folder,
            max_epochs=8,
            stop_grace_s=5,
        )
    return Catalog(scripts=scripts)


@pytest.fixture()
def worker(inprocess_api: InProcessApi, redis_client: redis.Redis) -> Worker:
    return Worker(inprocess_api, redis_client)


def _train(worker: Worker, catalog: Catalog, objective: str, **changes: Any) -> Training:
    run = worker.new_run(changes.pop("task", "cheap"), x1=2.0)
    changes.setdefault("config", {})  # max_epochs from the objective: 8
    request = worker.request(run, objective, **changes)
    settings = worker.server.settings
    return Training(
        lambda: runner.train(request, settings, worker.api, worker.redis, "w1", catalog)
    )


def _run(worker: Worker, result: TrainResult) -> dict[str, Any]:
    run: dict[str, Any] = worker.api.get(f"/training_runs/{result.run_id}")
    return run


def test_a_scripts_logged_values_are_its_result(worker: Worker, catalog: Catalog) -> None:
    result = _train(worker, catalog, "logs_metric").result()
    assert result is not None and not result.failed, result
    # x1 + x2 with its stddev; "extra" is no metric of the experiment and stays on the run.
    assert result.values == [{"name": "value", "value": 4.0, "value_stddev": 0.1}]
    assert worker.published() == [result]
    run = _run(worker, result)
    assert run["values"]["extra"]["value"] == 7
    assert run["logs"]["stdout"]["content"] == "epochs 2 task cheap\n"  # round(0.25 x 8)
    assert run["logs"]["stderr"]["content"] == "something on stderr\n"
    (checkpoint,) = worker.checkpoints(result.run_id)
    assert [(v["name"], v["value"]) for v in checkpoint["values"]] == [("value", 1.5)]
    assert checkpoint["attempt"] == 1


def test_a_non_zero_exit_is_a_failure_with_the_end_of_stderr(
    worker: Worker, catalog: Catalog
) -> None:
    result = _train(worker, catalog, "fails").result()
    assert result is not None and result.failed and result.values == []
    assert result.reason is not None
    assert result.reason.startswith("script exited with code 1; stderr ends with:\n")
    assert result.reason.endswith("warning 299: deprecated\nCUDA out of memory")
    assert result.traceback is not None and result.traceback.startswith("warning 0:")
    assert worker.published() == [result]


@pytest.mark.parametrize(
    ("objective", "problem"),
    [
        ("logs_nothing", "but no value for the optimized metric 'value' (logged: none)"),
        ("logs_failure", "but marked its run failed (sigopt.log_failure)"),
    ],
)
def test_an_exit_0_without_the_metric_or_marked_failed_is_a_failure(
    worker: Worker, catalog: Catalog, objective: str, problem: str
) -> None:
    result = _train(worker, catalog, objective).result()
    assert result is not None and result.failed
    assert result.reason is not None and result.reason.startswith(
        f"script exited with code 0 {problem}"
    )


def test_a_paused_experiment_stops_the_script_with_sigterm(
    worker: Worker, catalog: Catalog
) -> None:
    training = _train(worker, catalog, "waits")
    folder = catalog.scripts["waits"].cwd
    wait_for((folder / "started").exists, 30, "the script to start")
    worker.server.user.put(
        f"/experiments/{worker.experiment_id}", {"state": ExperimentState.PAUSED}
    )
    result = training.result()
    assert result is not None and result.stopped and not result.failed
    assert (folder / "got-sigterm").read_text() == "yes"
    assert worker.published() == [result]


def test_a_superseded_attempt_is_stopped_and_publishes_nothing(
    worker: Worker, catalog: Catalog
) -> None:
    training = _train(worker, catalog, "waits")
    folder = catalog.scripts["waits"].cwd
    wait_for((folder / "started").exists, 30, "the script to start")
    (run,) = [r for r in worker.api.iterate(f"/experiments/{worker.experiment_id}/training_runs")]
    worker.supersede(worker.run(int(run["id"])))
    assert training.result() is None
    assert (folder / "got-sigterm").read_text() == "yes"
    assert worker.published() == []


def test_the_output_tail_is_on_the_run_while_the_script_runs(
    worker: Worker, catalog: Catalog, tmp_path: Path
) -> None:
    run = worker.new_run("full")
    request = worker.request(run, "waits", config={})
    claim = {"state": "running", "attempt": run.attempt, "worker": "w1", "heartbeat": True}
    api_objects.update_training_run(worker.api, run.id, claim)
    context = runner.ApiRunContext(worker.api, request, tmp_path)
    metrics = [Metric("value", objective="minimize")]
    training = Training(
        lambda: script_runner.run_script(
            catalog.scripts["waits"],
            request,
            context,
            metrics,
            worker.api,
            worker.server.url,
            log_interval_s=0.2,
        )
    )

    def tail() -> str:
        logs = worker.api.get(f"/training_runs/{run.id}")["logs"] or {}
        return str(logs.get("stdout", {}).get("content", ""))

    wait_for(lambda: tail() == "waiting\n", 30, "the tail to reach the run")
    assert not (catalog.scripts["waits"].cwd / "got-sigterm").exists()  # still running
    context.stop()
    result = training.result()
    assert result is not None and result.stopped
