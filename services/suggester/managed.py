"""Managed experiments: keep ``parallel_bandwidth`` training runs in flight until the budget
(sum of charged costs: a run that continues another pays only the difference) is spent, record
results idempotently, and recover lost runs.

All state lives in the API (runs, attempts, heartbeats) and Redis (the Celery queue); this
class only reads it and acts, so a restarted suggester carries on where the last one stopped.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from services.suggester import pools
from services.suggester.history import History
from services.suggester.history import run_ref
from services.suggester.optimizer import Runs
from services.suggester.optimizer import suggest
from services.suggester.publish import Publisher
from shared import api_objects
from shared.api_client import ApiClient
from shared.api_client import ApiRequestError
from shared.api_objects import Suggestion
from shared.api_objects import TrainingRun
from shared.messages import TrainRequest
from shared.messages import TrainResult
from shared.settings import Settings
from shared.states import IN_FLIGHT_RUN_STATES
from shared.states import ExperimentState
from shared.states import RunState
from shared.states import StateFilter

log = logging.getLogger(__name__)

#: The optimizer library is not thread-safe (it seeds torch's global generator and sets warning
#: filters around a fit): experiments refreshed at once take turns calling `suggest`.
OPTIMIZER_LOCK = threading.Lock()


def sent_key(experiment_id: int) -> str:
    """Redis hash of the attempts of an experiment's runs sent to the broker (``run:attempt``
    -> time). A queued attempt missing from it never reached this Redis: the suggester died
    between creating and sending it, a create retried after a lost response made a second run,
    or Redis lost its data (queue and hash together). It is sent (again); a second copy of a
    message is harmless, as only one worker can claim an attempt."""
    return f"multitune:sent:{experiment_id}"


class Managed:
    def __init__(
        self,
        client: ApiClient,
        publisher: Publisher,
        settings: Settings,
        redis_client: redis.Redis,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = client
        self._publisher = publisher
        self._settings = settings
        self._redis = redis_client
        self._clock = clock

    # ------------------------------------------------------------------ scheduling
    def schedule(self, history: History) -> bool:
        """Start runs for free slots, resume paused runs, reap lost ones.

        Returns True while the experiment has runs in flight (the caller keeps checking it).
        """
        experiment = history.experiment
        eid = experiment.id
        state = experiment.state
        if state is ExperimentState.DELETED:
            return False
        runs = self._unfinished_runs(eid)
        if self._look_after(history, runs):
            runs = self._unfinished_runs(eid)
        in_flight = [r for r in runs if r.state in IN_FLIGHT_RUN_STATES]
        consumed = experiment.progress.observation_budget_consumed
        budget = experiment.observation_budget
        if budget is None:  # the API requires one of a managed experiment
            budget = math.inf
        charged = Runs(history.spec, history.observations).charged
        committed = consumed + sum(charged(r.task, run_ref(r.continues)) for r in in_flight)
        if consumed >= budget and not in_flight and state is ExperimentState.ACTIVE:
            api_objects.set_experiment_state(self._api, eid, ExperimentState.COMPLETED)
            log.info(
                "experiment %s completed: budget %.3f of %.3f consumed", eid, consumed, budget
            )
            return False
        slots = experiment.parallel_bandwidth - len(in_flight)
        if state is ExperimentState.ACTIVE and slots > 0 and committed < budget:
            self._fill(history, slots, budget - committed)
            return True
        return bool(in_flight)

    def _unfinished_runs(self, eid: int) -> list[TrainingRun]:
        return api_objects.list_training_runs(self._api, eid, StateFilter.UNFINISHED)

    def _look_after(self, history: History, runs: list[TrainingRun]) -> bool:
        """Resume or stop paused runs, reap lost ones, and start a run for any open suggestion
        left without one by a crash. Returns True if it changed a run."""
        state = history.experiment.state
        acted = False
        if state is ExperimentState.ACTIVE:  # first: the loop below sends runs of its own
            self._send_unsent(history, [r for r in runs if r.state is RunState.QUEUED])
        for run in runs:
            if run.state is RunState.PAUSED and state in (
                ExperimentState.ACTIVE,
                ExperimentState.STOPPED,
            ):
                if state is ExperimentState.ACTIVE:
                    self._retry(history, run)
                else:
                    self._stopped(run)
                acted = True
            elif run.state is RunState.RUNNING:
                acted |= self._reap_if_lost(history, run)
        if state is ExperimentState.ACTIVE:
            with_run = {r.suggestion for r in runs}
            for suggestion in history.open_suggestions:
                if suggestion.id not in with_run:
                    self._start(history, suggestion)
                    acted = True
        return acted

    def _send_unsent(self, history: History, queued: list[TrainingRun]) -> None:
        """Send the queued attempts that `sent_key` does not list (see there)."""
        key = sent_key(history.experiment.id)
        if not queued:
            self._redis.delete(key)  # what it lists was claimed or ended
            return
        marks = self._redis.hmget(key, [f"{r.id}:{r.attempt}" for r in queued])
        for run, mark in zip(queued, marks, strict=True):
            if mark is None:
                log.warning(
                    "run %s attempt %s is queued but was not sent to the broker; sending it",
                    run.id,
                    run.attempt,
                )
                self._send(history, run)

    def _fill(self, history: History, slots: int, budget_left: float) -> None:
        """Start up to ``slots`` runs the optimizer proposes while budget is left; a candidate
        that continues a run (`History` passes run ids only when that is allowed) becomes a
        run that continues it, and costs only the difference."""
        eid = history.experiment.id
        charged = Runs(history.spec, history.observations).charged
        state = pools.load_state(self._redis, eid)
        with OPTIMIZER_LOCK:
            result = suggest(
                history.spec, history.observations, history.pending, slots, seed=eid, state=state
            )
        pools.save_state(self._redis, eid, result.state)
        for candidate in result.candidates:
            if budget_left <= 0:
                break
            if candidate.source == "fallback":
                log.warning(
                    "experiment %s: optimizer fell back to random: %s",
                    eid,
                    candidate.info.get("error"),
                )
            suggestion: dict[str, Any] = {
                "assignments": candidate.assignments,
                "metadata": {"source": candidate.source},
            }
            if candidate.task is not None:
                suggestion["task"] = candidate.task
            continues = int(candidate.continues) if candidate.continues is not None else None
            run = api_objects.create_training_run(self._api, eid, suggestion, continues)
            self._send(history, run)
            budget_left -= charged(candidate.task, candidate.continues)

    def _start(self, history: History, suggestion: Suggestion) -> None:
        run = api_objects.create_training_run(self._api, history.experiment.id, suggestion.id)
        if run.state is RunState.QUEUED:
            self._send(history, run)

    def _send(self, history: History, run: TrainingRun) -> None:
        objective = history.experiment.objective
        assert objective is not None, "only a managed experiment has runs to send"
        self._publisher.send(
            TrainRequest(
                experiment_id=history.experiment.id,
                suggestion_id=run.suggestion,
                run_id=run.id,
                attempt=run.attempt,
                objective=objective.name,
                config=objective.config,
                assignments=run.assignments,
                task=run.task,
                cost=history.spec.task_cost(run.task),
                metric=history.spec.metrics[0].name,
                continues=run.continues,
            )
        )
        self._redis.hset(sent_key(history.experiment.id), f"{run.id}:{run.attempt}", time.time())

    def resend_queued(self, history: History) -> None:
        """After a restart, or Redis losing its data: a queued run may never have reached the
        broker, or its message is gone. A second copy of a message that is still there is
        harmless: only one worker can claim an attempt."""
        for run in api_objects.list_training_runs(
            self._api, history.experiment.id, RunState.QUEUED
        ):
            self._send(history, run)

    def _retry(self, history: History, run: TrainingRun) -> None:
        retried = api_objects.update_training_run(
            self._api, run.id, {"new_attempt": True, "attempt": run.attempt}
        )
        self._send(history, retried)

    def _reap_if_lost(self, history: History, run: TrainingRun) -> bool:
        """Retry or fail a run whose lease ran out; True if it did."""
        last_sign = run.heartbeat or run.started or run.updated
        silent_s = self._clock() - last_sign
        if silent_s <= self._settings.run_lease_s:
            return False
        try:
            if run.attempt < self._settings.max_attempts:
                log.warning(
                    "run %s attempt %s lost (no heartbeat for %.0fs); retrying",
                    run.id,
                    run.attempt,
                    silent_s,
                )
                self._retry(history, run)
            else:
                log.warning(
                    "run %s lost after %s attempts; failing its suggestion", run.id, run.attempt
                )
                self._finish(
                    run.id,
                    run.attempt,
                    state=RunState.LOST,
                    values=None,
                    reason=RunState.LOST,  # the failure reason names what happened
                    traceback=None,
                )
        except ApiRequestError as exc:
            if exc.status != 409:  # 409: the run moved on meanwhile (a result arrived)
                raise
        return True

    # ------------------------------------------------------------------ results
    def handle_result(self, result: TrainResult) -> None:
        """Record one attempt's outcome; results of superseded attempts are ignored."""
        if result.stopped:
            try:
                run = api_objects.get_training_run(self._api, result.run_id)
                if run.attempt == result.attempt and run.state in IN_FLIGHT_RUN_STATES:
                    self._stopped(run)
            except ApiRequestError as exc:
                if exc.status not in (404, 409):  # 409: the run moved on meanwhile
                    raise
            return
        self._finish(
            result.run_id,
            result.attempt,
            state=RunState.FAILED if result.failed else RunState.COMPLETED,
            values=None if result.failed else result.values,
            reason=result.reason,
            traceback=result.traceback,
        )

    def _stopped(self, run: TrainingRun) -> None:
        """A run that ended early: ``paused`` with its experiment, else ``stopped`` with its
        suggestion withdrawn."""
        if run.experiment_state is ExperimentState.PAUSED:
            api_objects.update_training_run(
                self._api, run.id, {"state": RunState.PAUSED, "attempt": run.attempt}
            )
            return
        api_objects.update_training_run(
            self._api, run.id, {"state": RunState.STOPPED, "attempt": run.attempt}
        )
        api_objects.delete_suggestion(self._api, run.experiment, run.suggestion)

    def _finish(
        self,
        run_id: int,
        attempt: int,
        *,
        state: RunState,
        values: list[dict[str, Any]] | None,
        reason: str | None,
        traceback: str | None,
    ) -> None:
        """Record the observation and the run's final state in one call. A 409 means the
        attempt was superseded or the run already ended (a redelivered result): ignored. Values
        the API refuses (a 400: e.g. a metric the experiment does not have) make the run a
        failure with the API's message as its reason, so a bad result never blocks the loop."""
        body: dict[str, Any] = {"attempt": attempt, "state": state}
        if values is not None:
            body["values"] = values
        if reason:
            body["failure_reason"] = reason[:2000]
        if traceback:
            body["traceback"] = traceback[-60000:]
        try:
            api_objects.record_result(self._api, run_id, body)
        except ApiRequestError as exc:
            if exc.status == 400 and values is not None:
                log.warning("run %s attempt %s: result refused: %s", run_id, attempt, exc.message)
                self._finish(
                    run_id,
                    attempt,
                    state=RunState.FAILED,
                    values=None,
                    reason=f"result refused by the API: {exc.message}",
                    traceback=traceback,
                )
                return
            if exc.status not in (404, 409):
                raise
            log.info("ignoring result of run %s attempt %s: %s", run_id, attempt, exc.message)
