"""`runner.train` and its parts against the real API (in-process, over HTTP) and the real results
stream: the claim (only a queued attempt, once), heartbeats (the lease renewed; a refusal or a
paused experiment stops the objective), the published `TrainResult`, fencing of a superseded
attempt's checkpoints and result, and messages that do not describe their run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import redis

from services.worker import objectives
from services.worker import runner
from services.worker.objectives._base import Objective
from services.worker.objectives._base import ObjectiveResult
from services.worker.objectives._base import RunContext
from shared import api_objects
from shared.messages import TrainRequest
from shared.messages import TrainResult
from shared.names import RESULTS_STREAM
from shared.space import Task
from shared.states import ExperimentState
from shared.states import RunState
from tests.inprocess import BRANIN
from tests.inprocess import InProcessApi
from tests.services import wait_for

COSTS = {"cheap": 0.25, "full": 1.0}
CONFIG = {"sleep_per_cost": 0, "max_epochs": 4}


class WaitingObjective(Objective):
    """Trains until `release` is set or it is asked to stop, looking every 10 ms."""

    name = "test_waiting"
    release = threading.Event()

    def run(
        self,
        assignments: Mapping[str, Any],
        task: Task | None,
        config: Mapping[str, Any],
        context: RunContext,
    ) -> ObjectiveResult:
        deadline = time.monotonic() + 30
        while not (self.release.is_set() or context.should_stop()):
            if time.monotonic() > deadline:
                raise TimeoutError("neither released nor asked to stop")
            time.sleep(0.01)
        return ObjectiveResult(value=1.0, extra={"seconds": 0.5})


class FailingObjective(Objective):
    name = "test_failing"

    def run(
        self,
        assignments: Mapping[str, Any],
        task: Task | None,
        config: Mapping[str, Any],
        context: RunContext,
    ) -> ObjectiveResult:
        raise RuntimeError("diverged at epoch 3")


class Training:
    """A call of `runner.train` on a thread."""

    def __init__(self, call: Callable[[], TrainResult | None]) -> None:
        self._outcome: list[TrainResult | None] = []
        self._thread = threading.Thread(target=lambda: self._outcome.append(call()))
        self._thread.start()

    def result(self) -> TrainResult | None:
        """What `train` returned, once it has ended."""
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "train did not end"
        return self._outcome[0]


class Worker:
    """Runs, requests for them as the suggester sends them, and `runner.train` in the
    foreground or on a thread."""

    def __init__(self, server: InProcessApi, client: redis.Redis) -> None:
        self.server = server
        self.api = server.service
        self.redis = client
        self.experiment_id = int(server.user.post("/experiments", BRANIN)["id"])

    def new_run(self, task: str = "full", x1: float = 1.0) -> api_objects.TrainingRun:
        suggestion = {"assignments": {"x1": x1, "x2": 2.0}, "task": task}
        return api_objects.create_training_run(self.api, self.experiment_id, suggestion)

    def run(self, run_id: int) -> api_objects.TrainingRun:
        return api_objects.get_training_run(self.api, run_id)

    def request(
        self, run: api_objects.TrainingRun, objective: str = "augmented_branin", **changes: Any
    ) -> TrainRequest:
        fields: dict[str, Any] = {
            "experiment_id": run.experiment,
            "suggestion_id": run.suggestion,
            "run_id": run.id,
            "attempt": run.attempt,
            "objective": objective,
            "config": CONFIG,
            "assignments": run.assignments,
            "task": run.task,
            "cost": COSTS[run.task or ""],
            "metric": "value",
        }
        return TrainRequest(**{**fields, **changes})

    def train(self, request: TrainRequest, worker: str = "w1@host") -> TrainResult | None:
        return runner.train(request, self.server.settings, self.api, self.redis, worker)

    def train_in_background(self, request: TrainRequest) -> Training:
        return Training(lambda: self.train(request))

    def published(self) -> list[TrainResult]:
        return [TrainResult.from_json(f[b"result"]) for _, f in self.redis.xrange(RESULTS_STREAM)]

    def checkpoints(self, run_id: int) -> list[dict[str, Any]]:
        return list(self.api.iterate(f"/training_runs/{run_id}/checkpoints"))

    def supersede(self, run: api_objects.TrainingRun) -> None:
        """What the suggester does to a run whose lease ran out: start its next attempt."""
        body = {"new_attempt": True, "attempt": run.attempt}
        api_objects.update_training_run(self.api, run.id, body)

    def wait_until_training(self, run_id: int) -> api_objects.TrainingRun:
        def training() -> api_objects.TrainingRun | None:
            run = self.run(run_id)
            return run if run.state is RunState.RUNNING else None

        result: api_objects.TrainingRun = wait_for(training, 10, "the run to be claimed")
        return result


@pytest.fixture()
def worker(
    inprocess_api: InProcessApi, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> Worker:
    for objective in (WaitingObjective, FailingObjective):
        monkeypatch.setitem(
            objectives.REGISTRY, objective.name, f"{__name__}:{objective.__name__}"
        )
    monkeypatch.setattr(WaitingObjective, "release", threading.Event())
    return Worker(inprocess_api, redis_client)


def test_a_queued_attempt_is_claimed_trained_and_its_result_published(worker: Worker) -> None:
    run = worker.new_run("full")
    result = worker.train(worker.request(run), worker="w1@host")
    checkpoints = worker.checkpoints(run.id)  # newest first
    assert [c["epoch"] for c in checkpoints] == [4, 3, 2, 1]  # cost 1 x max_epochs 4
    assert {c["attempt"] for c in checkpoints} == {1}
    final = checkpoints[0]["values"][0]["value"]
    assert result == TrainResult(
        experiment_id=run.experiment,
        suggestion_id=run.suggestion,
        run_id=run.id,
        attempt=1,
        values=[{"name": "value", "value": final}],
    )
    assert worker.published() == [result]
    claimed = worker.run(run.id)
    assert (claimed.state, claimed.worker) == (RunState.RUNNING, "w1@host")  # the suggester
    assert claimed.started is not None and claimed.heartbeat is not None  # records the result


def test_an_attempt_is_claimed_only_once(worker: Worker) -> None:
    run = worker.new_run("cheap")
    request = worker.request(run)
    assert worker.train(request) is not None
    assert worker.train(request, worker="w2@host") is None  # a duplicate delivery
    assert len(worker.published()) == 1 and worker.run(run.id).worker == "w1@host"
    assert len(worker.checkpoints(run.id)) == 1


def test_a_superseded_attempt_is_not_trained(worker: Worker) -> None:
    run = worker.new_run()
    request = worker.request(run)
    worker.supersede(run)
    assert worker.train(request) is None
    after = worker.run(run.id)
    assert (after.state, after.attempt, after.worker) == (RunState.QUEUED, 2, None)
    assert worker.published() == [] and worker.checkpoints(run.id) == []


@pytest.mark.parametrize(
    "change",
    [
        {"assignments": {"x1": 9.0, "x2": 2.0}},
        {"task": "cheap", "cost": 0.25},
        {"suggestion_id": 999},
        {"experiment_id": 999},
        {"run_id": 999},
    ],
    ids=["assignments", "task", "suggestion", "experiment", "unknown run"],
)
def test_a_message_that_does_not_describe_its_run_trains_nothing(
    worker: Worker, change: dict[str, Any]
) -> None:
    run = worker.new_run()
    assert worker.train(worker.request(run, **change)) is None
    after = worker.run(run.id)
    assert (after.state, after.worker) == (RunState.QUEUED, None)
    assert worker.published() == [] and worker.checkpoints(run.id) == []


def test_heartbeats_renew_the_lease_while_the_objective_trains(worker: Worker) -> None:
    run = worker.new_run()
    training = worker.train_in_background(worker.request(run, "test_waiting"))
    claimed = worker.wait_until_training(run.id)
    assert claimed.heartbeat is not None
    wait_for(
        lambda: (worker.run(run.id).heartbeat or 0) > (claimed.heartbeat or 0),
        10,
        "a renewed heartbeat",
    )
    WaitingObjective.release.set()
    result = training.result()
    assert result is not None and not result.failed and not result.stopped
    # The experiment's metric; "seconds", a name the experiment does not have, is left out.
    assert result.values == [{"name": "value", "value": 1.0}]
    assert worker.published() == [result]


def test_a_refused_heartbeat_stops_a_superseded_attempt_without_a_result(
    worker: Worker,
) -> None:
    run = worker.new_run()
    training = worker.train_in_background(worker.request(run, "test_waiting"))
    worker.supersede(worker.wait_until_training(run.id))
    assert training.result() is None  # stopped by the 409, and its result dropped
    assert worker.published() == []
    after = worker.run(run.id)
    assert (after.state, after.attempt) == (RunState.QUEUED, 2)


def test_a_paused_experiment_stops_the_objective_and_a_stopped_result_is_published(
    worker: Worker,
) -> None:
    run = worker.new_run()
    training = worker.train_in_background(worker.request(run, "test_waiting"))
    worker.wait_until_training(run.id)
    worker.server.user.put(
        f"/experiments/{worker.experiment_id}", {"state": ExperimentState.PAUSED}
    )
    result = training.result()
    assert result is not None and result.stopped and not result.failed and result.values == []
    assert worker.published() == [result]


def test_a_run_of_an_inactive_experiment_stops_at_once(worker: Worker) -> None:
    run = worker.new_run()
    worker.server.user.put(
        f"/experiments/{worker.experiment_id}", {"state": ExperimentState.PAUSED}
    )
    result = worker.train(worker.request(run))
    assert result is not None and result.stopped
    assert worker.published() == [result] and worker.checkpoints(run.id) == []


def test_a_failing_objective_publishes_a_failure_with_its_reason(worker: Worker) -> None:
    run = worker.new_run()
    result = worker.train(worker.request(run, "test_failing"))
    assert result is not None and result.failed and result.values == []
    assert result.reason == "RuntimeError: diverged at epoch 3"
    assert result.traceback is not None and "diverged at epoch 3" in result.traceback
    assert worker.published() == [result]


def test_a_superseded_attempt_cannot_log_checkpoints(worker: Worker, tmp_path: Path) -> None:
    run = worker.new_run()
    old = worker.request(run)
    worker.supersede(run)
    context = runner.ApiRunContext(worker.api, old, tmp_path)
    context.report(1, {"value": 0.5})
    assert context.superseded.is_set() and context.should_stop()
    assert worker.checkpoints(run.id) == []
    current = runner.ApiRunContext(worker.api, worker.request(worker.run(run.id)), tmp_path)
    current.report(1, {"value": 0.5})
    assert not current.should_stop()
    (checkpoint,) = worker.checkpoints(run.id)
    assert (checkpoint["attempt"], checkpoint["epoch"]) == (2, 1)


def test_an_attempt_whose_lease_is_not_renewed_stops_as_lost(
    worker: Worker, tmp_path: Path
) -> None:
    """No heartbeat got through for a lease: the run is (or will be) retried elsewhere."""
    context = runner.ApiRunContext(worker.api, worker.request(worker.new_run()), tmp_path, 1.0)
    time.sleep(0.6)
    context.renewed(time.monotonic())
    time.sleep(0.3)
    assert not context.should_stop()  # renewed 0.3 s ago
    time.sleep(0.8)
    assert context.should_stop() and context.superseded.is_set()
