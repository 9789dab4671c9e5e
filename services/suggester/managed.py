"""Managed experiments: keep ``parallel_bandwidth`` training runs in flight until the budget
(sum of task costs) is spent, record results idempotently, and recover lost runs.

All state lives in the API (runs, attempts, heartbeats) and Redis (the Celery queue); this
class only reads it and acts, so a restarted suggester carries on where the last one stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from services.suggester import pools
from services.suggester.history import History
from services.suggester.optimizer import suggest
from services.suggester.publish import Publisher
from shared.api_client import ApiClient
from shared.api_client import ApiRequestError
from shared.messages import TrainRequest
from shared.messages import TrainResult
from shared.settings import Settings

log = logging.getLogger(__name__)

IN_FLIGHT = ("queued", "running")


class Managed:
    def __init__(
        self,
        client: ApiClient,
        publisher: Publisher,
        settings: Settings,
        redis_client: Any,
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
        eid = int(experiment["id"])
        state = experiment["state"]
        if state == "deleted":
            return False
        runs = self._unfinished_runs(eid)
        if self._look_after(history, runs):
            runs = self._unfinished_runs(eid)
        in_flight = [r for r in runs if r["state"] in IN_FLIGHT]
        consumed = float(experiment["progress"]["observation_budget_consumed"])
        budget = float(experiment["observation_budget"])
        committed = consumed + sum(history.spec.task_cost(_task(r)) for r in in_flight)
        if consumed >= budget and not in_flight and state == "active":
            self._api.put(f"/experiments/{eid}", {"state": "completed"})
            log.info(
                "experiment %s completed: budget %.3f of %.3f consumed", eid, consumed, budget
            )
            return False
        slots = int(experiment["parallel_bandwidth"]) - len(in_flight)
        if state == "active" and slots > 0 and committed < budget:
            self._fill(history, slots, budget - committed)
            return True
        return bool(in_flight)

    def _unfinished_runs(self, eid: int) -> list[dict[str, Any]]:
        return list(self._api.iterate(f"/experiments/{eid}/training_runs", state="unfinished"))

    def _look_after(self, history: History, runs: list[dict[str, Any]]) -> bool:
        """Resume or stop paused runs, reap lost ones, and start a run for any open suggestion
        left without one by a crash. Returns True if it changed a run."""
        state = history.experiment["state"]
        acted = False
        for run in runs:
            if run["state"] == "paused" and state in ("active", "stopped"):
                if state == "active":
                    self._retry(history, run)
                else:
                    self._stopped(run)
                acted = True
            elif run["state"] == "running":
                acted |= self._reap_if_lost(history, run)
        if state == "active":
            with_run = {r["suggestion"] for r in runs}
            for suggestion in history.open_suggestions:
                if suggestion["id"] not in with_run:
                    self._start(history, suggestion)
                    acted = True
        return acted

    def _fill(self, history: History, slots: int, budget_left: float) -> None:
        eid = int(history.experiment["id"])
        result = suggest(
            history.spec,
            history.observations,
            history.pending,
            slots,
            seed=eid,
            state=pools.load_state(self._redis, eid),
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
            run = self._api.post(f"/experiments/{eid}/training_runs", {"suggestion": suggestion})
            self._send(history, run)
            budget_left -= history.spec.task_cost(candidate.task)

    def _start(self, history: History, suggestion: dict[str, Any]) -> None:
        eid = int(history.experiment["id"])
        run = self._api.post(f"/experiments/{eid}/training_runs", {"suggestion": suggestion["id"]})
        if run["state"] == "queued":
            self._send(history, run)

    def _send(self, history: History, run: dict[str, Any]) -> None:
        objective = history.experiment["objective"]
        task = _task(run)
        self._publisher.send(
            TrainRequest(
                experiment_id=int(history.experiment["id"]),
                suggestion_id=int(run["suggestion"]),
                run_id=int(run["id"]),
                attempt=int(run["attempt"]),
                objective=objective["name"],
                config=objective.get("config") or {},
                assignments=run["assignments"],
                task=task,
                cost=history.spec.task_cost(task),
                metric=history.spec.metrics[0].name,
            )
        )

    def resend_queued(self, history: History) -> None:
        """After a restart: a queued run may never have reached the broker. A second copy of a
        message that did is harmless: only one worker can claim an attempt."""
        eid = int(history.experiment["id"])
        for run in self._api.iterate(f"/experiments/{eid}/training_runs", state="queued"):
            self._send(history, run)

    def _retry(self, history: History, run: dict[str, Any]) -> None:
        run = self._api.put(
            f"/training_runs/{run['id']}", {"new_attempt": True, "attempt": run["attempt"]}
        )
        self._send(history, run)

    def _reap_if_lost(self, history: History, run: dict[str, Any]) -> bool:
        """Retry or fail a run whose lease ran out; True if it did."""
        last_sign = run["heartbeat"] or run["started"] or run["updated"]
        if self._clock() - float(last_sign) <= self._settings.run_lease_s:
            return False
        try:
            if run["attempt"] < self._settings.max_attempts:
                log.warning(
                    "run %s attempt %s lost (no heartbeat for %.0fs); retrying",
                    run["id"],
                    run["attempt"],
                    self._clock() - float(last_sign),
                )
                self._retry(history, run)
            else:
                log.warning(
                    "run %s lost after %s attempts; failing its suggestion",
                    run["id"],
                    run["attempt"],
                )
                self._finish(
                    int(run["id"]),
                    int(run["attempt"]),
                    state="lost",
                    values=None,
                    reason="lost",
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
                run = self._api.get(f"/training_runs/{result.run_id}")
                if run["attempt"] == result.attempt and run["state"] in IN_FLIGHT:
                    self._stopped(run)
            except ApiRequestError as exc:
                if exc.status not in (404, 409):  # 409: the run moved on meanwhile
                    raise
            return
        self._finish(
            result.run_id,
            result.attempt,
            state="failed" if result.failed else "completed",
            values=None if result.failed else result.values,
            reason=result.reason,
            traceback=result.traceback,
        )

    def _stopped(self, run: dict[str, Any]) -> None:
        if run["experiment_state"] == "paused":
            self._api.put(
                f"/training_runs/{run['id']}", {"state": "paused", "attempt": run["attempt"]}
            )
            return
        self._api.put(
            f"/training_runs/{run['id']}", {"state": "stopped", "attempt": run["attempt"]}
        )
        self._api.delete(f"/experiments/{run['experiment']}/suggestions/{run['suggestion']}")

    def _finish(
        self,
        run_id: int,
        attempt: int,
        *,
        state: str,
        values: list[dict[str, Any]] | None,
        reason: str | None,
        traceback: str | None,
    ) -> None:
        """Record the observation and the run's final state in one call. A 409 means the
        attempt was superseded or the run already ended (a redelivered result): ignored."""
        body: dict[str, Any] = {"attempt": attempt, "state": state}
        if values is not None:
            body["values"] = values
        if reason:
            body["failure_reason"] = reason[:2000]
        if traceback:
            body["traceback"] = traceback[-60000:]
        try:
            self._api.post(f"/training_runs/{run_id}/result", body)
        except ApiRequestError as exc:
            if exc.status not in (404, 409):
                raise
            log.info("ignoring result of run %s attempt %s: %s", run_id, attempt, exc.message)


def _task(run: dict[str, Any]) -> str | None:
    return run["task"]["name"] if run.get("task") else None
