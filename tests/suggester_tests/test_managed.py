"""`Managed`: scheduling, the budget in task costs, completion, lease expiry and re-attempts,
fencing of superseded results, pause/resume/stop, against the real API (in-process, over HTTP)
and the real `Publisher` (its messages read back from the Redis broker). Its clock is moved by
hand, so a lease runs out without waiting."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
import redis

from services.suggester import history
from services.suggester.managed import Managed
from services.suggester.managed import sent_key
from services.suggester.publish import BrokerUnavailable
from services.suggester.publish import Publisher
from shared import api_objects
from shared.api_client import ApiRequestError
from shared.messages import TrainRequest
from shared.messages import TrainResult
from shared.states import ExperimentState
from shared.states import RunState
from shared.states import StateFilter
from shared.states import SuggestionState
from tests.inprocess import BRANIN
from tests.inprocess import InProcessApi
from tests.inprocess import take_sent_tasks
from tests.services import free_port
from tests.suggester_tests.harness import ManualClock

MAX_ATTEMPTS = 2
COSTS = {"cheap": 0.25, "full": 1.0}


class Scheduler:
    """A `Managed` with a hand-moved clock, and the calls a test makes around it."""

    def __init__(self, server: InProcessApi, client: redis.Redis, publisher: Publisher) -> None:
        self.server = server
        self.api = server.service
        self.redis = client
        self.settings = replace(server.settings, max_attempts=MAX_ATTEMPTS)
        self.clock = ManualClock(time.time())
        self.managed = Managed(self.api, publisher, self.settings, client, self.clock)

    def create(self, **changes: Any) -> int:
        return int(self.server.user.post("/experiments", {**BRANIN, **changes})["id"])

    def schedule(self, experiment_id: int) -> bool:
        return self.managed.schedule(history.load(self.api, experiment_id))

    def sent(self) -> list[TrainRequest]:
        return [t.request for t in take_sent_tasks(self.redis)]

    def runs(
        self, experiment_id: int, state: RunState | StateFilter = StateFilter.UNFINISHED
    ) -> list[api_objects.TrainingRun]:
        return api_objects.list_training_runs(self.api, experiment_id, state)

    def run(self, run_id: int) -> api_objects.TrainingRun:
        return api_objects.get_training_run(self.api, run_id)

    def claim(self, run: api_objects.TrainingRun | TrainRequest) -> None:
        """What a worker does first: take the queued attempt."""
        run_id = run.id if isinstance(run, api_objects.TrainingRun) else run.run_id
        body = {"state": RunState.RUNNING, "attempt": run.attempt, "heartbeat": True}
        api_objects.update_training_run(self.api, run_id, body)

    def set_state(self, experiment_id: int, state: ExperimentState) -> None:
        self.server.user.put(f"/experiments/{experiment_id}", {"state": state})

    def observations(self, experiment_id: int) -> list[api_objects.Observation]:
        return api_objects.list_observations(self.api, experiment_id)

    def lease_runs_out(self) -> None:
        self.clock.advance(self.settings.run_lease_s + 1)


def _result(
    run: api_objects.TrainingRun, attempt: int | None = None, **fields: Any
) -> TrainResult:
    if not fields:
        fields = {"values": [{"name": "value", "value": 2.0}]}
    return TrainResult(
        experiment_id=run.experiment,
        suggestion_id=run.suggestion,
        run_id=run.id,
        attempt=run.attempt if attempt is None else attempt,
        **fields,
    )


@pytest.fixture()
def scheduler(
    inprocess_api: InProcessApi, redis_client: redis.Redis, publisher: Publisher
) -> Scheduler:
    return Scheduler(inprocess_api, redis_client, publisher)


def test_parallel_bandwidth_runs_are_kept_in_flight(scheduler: Scheduler) -> None:
    eid = scheduler.create(observation_budget=20, parallel_bandwidth=2)
    assert scheduler.schedule(eid)
    first = scheduler.runs(eid)
    assert len(first) == 2 and {r.state for r in first} == {RunState.QUEUED}
    assert {(r.run_id, r.attempt) for r in scheduler.sent()} == {(r.id, 1) for r in first}
    assert scheduler.schedule(eid)  # full: nothing more
    assert scheduler.sent() == [] and len(scheduler.runs(eid)) == 2

    done, failing = first
    scheduler.managed.handle_result(_result(done))
    reason, trace = "RuntimeError: boom", "Traceback ...boom"
    scheduler.managed.handle_result(_result(failing, failed=True, reason=reason, traceback=trace))
    assert scheduler.run(done.id).state is RunState.COMPLETED
    assert scheduler.run(failing.id).state is RunState.FAILED
    failed, completed = scheduler.observations(eid)
    assert failed.failed and failed.suggestion == failing.suggestion
    assert completed.values[0].value == 2.0 and completed.suggestion == done.suggestion
    raw = scheduler.api.get(f"/training_runs/{failing.id}")
    assert (raw["failure_reason"], raw["traceback"]) == (reason, trace)
    assert scheduler.schedule(eid)
    assert len(scheduler.sent()) == 2 and len(scheduler.runs(eid)) == 2


def test_the_budget_is_counted_in_task_costs_and_then_the_experiment_completes(
    scheduler: Scheduler,
) -> None:
    eid = scheduler.create(observation_budget=1.0, parallel_bandwidth=8)
    cheap = [
        api_objects.create_training_run(
            scheduler.api, eid, {"assignments": {"x1": float(i), "x2": 1.0}, "task": "cheap"}
        )
        for i in range(3)
    ]  # 0.75 of the budget committed, 5 slots free
    assert scheduler.schedule(eid)
    sent = scheduler.sent()  # the 3 runs never sent to the broker, and one more for 0.25 left
    assert sorted(r.run_id for r in sent if r.run_id in {c.id for c in cheap}) == sorted(
        r.id for r in cheap
    )
    (extra,) = [r for r in sent if r.run_id not in {c.id for c in cheap}]
    assert len(scheduler.runs(eid)) == 4
    for run in cheap:
        scheduler.managed.handle_result(_result(run))
    assert scheduler.schedule(eid)  # 0.75 consumed, the extra run still committed
    assert scheduler.sent() == []
    experiment = api_objects.get_experiment(scheduler.api, eid)
    assert experiment.progress.observation_budget_consumed == 0.75
    assert experiment.state is ExperimentState.ACTIVE
    scheduler.managed.handle_result(_result(scheduler.run(extra.run_id)))
    assert not scheduler.schedule(eid)
    experiment = api_objects.get_experiment(scheduler.api, eid)
    assert experiment.state is ExperimentState.COMPLETED
    assert experiment.progress.observation_budget_consumed == 0.75 + COSTS[extra.task or ""]
    assert scheduler.sent() == [] and scheduler.runs(eid) == []


def test_a_lost_run_is_retried_and_after_max_attempts_failed_as_lost(
    scheduler: Scheduler,
) -> None:
    eid = scheduler.create(observation_budget=20, parallel_bandwidth=1)
    scheduler.schedule(eid)
    (request,) = scheduler.sent()
    scheduler.claim(request)
    assert scheduler.schedule(eid)  # within its lease: left alone
    assert scheduler.sent() == [] and scheduler.run(request.run_id).attempt == 1

    scheduler.lease_runs_out()
    assert scheduler.schedule(eid)
    (retry,) = scheduler.sent()
    assert (retry.run_id, retry.attempt) == (request.run_id, 2)
    assert retry.assignments == request.assignments and retry.task == request.task
    run = scheduler.run(request.run_id)
    assert (run.state, run.attempt, run.heartbeat) == (RunState.QUEUED, 2, None)
    scheduler.lease_runs_out()
    scheduler.schedule(eid)  # a queued attempt has no lease to lose
    assert scheduler.sent() == [] and scheduler.run(request.run_id).attempt == 2

    with pytest.raises(ApiRequestError) as refused:
        scheduler.claim(request)  # the lost attempt 1 cannot come back
    assert refused.value.status == 409
    scheduler.claim(retry)
    scheduler.lease_runs_out()
    assert scheduler.schedule(eid)
    run = scheduler.run(request.run_id)
    assert (run.state, run.attempt) == (RunState.LOST, MAX_ATTEMPTS)
    assert scheduler.api.get(f"/training_runs/{run.id}")["failure_reason"] == "lost"
    (observation,) = scheduler.observations(eid)
    assert observation.failed and observation.suggestion == run.suggestion
    (replacement,) = scheduler.sent()  # the freed slot is filled
    assert replacement.run_id != run.id and replacement.attempt == 1


def test_superseded_and_repeated_results_are_ignored(scheduler: Scheduler) -> None:
    eid = scheduler.create(observation_budget=20, parallel_bandwidth=1)
    scheduler.schedule(eid)
    (request,) = scheduler.sent()
    scheduler.claim(request)
    scheduler.lease_runs_out()
    scheduler.schedule(eid)
    run = scheduler.run(request.run_id)
    assert run.attempt == 2
    late = _result(run, attempt=1)
    scheduler.managed.handle_result(late)  # the lost attempt's late result: a 409, ignored
    scheduler.managed.handle_result(_result(run, attempt=1, stopped=True))
    assert scheduler.observations(eid) == []
    assert (scheduler.run(run.id).state, scheduler.run(run.id).attempt) == (RunState.QUEUED, 2)
    scheduler.managed.handle_result(_result(run, values=[{"name": "value", "value": 4.0}]))
    scheduler.managed.handle_result(_result(run, values=[{"name": "value", "value": 5.0}]))
    (observation,) = scheduler.observations(eid)  # a redelivered result is not recorded again
    assert observation.values[0].value == 4.0
    assert scheduler.run(run.id).state is RunState.COMPLETED


def test_a_result_the_api_refuses_fails_the_run_instead_of_blocking(
    scheduler: Scheduler,
) -> None:
    eid = scheduler.create(observation_budget=20, parallel_bandwidth=1)
    scheduler.schedule(eid)
    (request,) = scheduler.sent()
    scheduler.claim(request)
    run = scheduler.run(request.run_id)
    scheduler.managed.handle_result(_result(run, values=[{"name": "nope", "value": 1.0}]))
    (observation,) = scheduler.observations(eid)
    assert observation.failed
    finished = scheduler.run(run.id)
    assert finished.state is RunState.FAILED


def test_paused_runs_resume_with_a_new_attempt(scheduler: Scheduler) -> None:
    eid = scheduler.create(observation_budget=20, parallel_bandwidth=2)
    scheduler.schedule(eid)
    runs = scheduler.runs(eid)
    scheduler.sent()
    for run in runs:
        scheduler.claim(run)
    scheduler.set_state(eid, ExperimentState.PAUSED)
    for run in runs:  # the workers stop at the next heartbeat and say so
        scheduler.managed.handle_result(_result(run, stopped=True))
    paused = scheduler.runs(eid, RunState.PAUSED)
    assert {r.id for r in paused} == {r.id for r in runs}
    assert not scheduler.schedule(eid)  # paused: nothing in flight, nothing new
    assert scheduler.sent() == [] and len(scheduler.runs(eid, StateFilter.ALL)) == 2

    scheduler.set_state(eid, ExperimentState.ACTIVE)
    assert scheduler.schedule(eid)
    sent = scheduler.sent()
    assert {(r.run_id, r.attempt) for r in sent} == {(r.id, 2) for r in runs}
    assert {r.state for r in scheduler.runs(eid)} == {RunState.QUEUED}
    assert len(scheduler.runs(eid, StateFilter.ALL)) == 2


def test_stopping_stops_runs_and_withdraws_their_suggestions(scheduler: Scheduler) -> None:
    eid = scheduler.create(observation_budget=20, parallel_bandwidth=2)
    scheduler.schedule(eid)
    paused_run, queued_run = scheduler.runs(eid)
    scheduler.sent()
    scheduler.claim(paused_run)
    scheduler.set_state(eid, ExperimentState.PAUSED)
    scheduler.managed.handle_result(_result(paused_run, stopped=True))
    assert scheduler.run(paused_run.id).state is RunState.PAUSED
    scheduler.set_state(eid, ExperimentState.STOPPED)
    assert scheduler.schedule(eid)  # the queued run is still in flight
    assert scheduler.run(paused_run.id).state is RunState.STOPPED
    assert scheduler.sent() == []
    # The queued run's worker finds the experiment stopped and says so.
    scheduler.managed.handle_result(_result(queued_run, stopped=True))
    assert {r.state for r in scheduler.runs(eid, StateFilter.ALL)} == {RunState.STOPPED}
    open_suggestions = api_objects.list_suggestions(scheduler.api, eid, SuggestionState.OPEN)
    assert open_suggestions == []
    assert not scheduler.schedule(eid)
    assert scheduler.sent() == [] and scheduler.observations(eid) == []


def test_an_open_suggestion_without_a_run_gets_one(scheduler: Scheduler) -> None:
    eid = scheduler.create(observation_budget=20, parallel_bandwidth=2)
    orphan = api_objects.Suggestion.from_json(
        scheduler.server.user.post(
            f"/experiments/{eid}/suggestions",
            {"assignments": {"x1": 1.0, "x2": 2.0}, "task": "full"},
        )
    )
    assert scheduler.schedule(eid)
    sent = scheduler.sent()
    assert len(sent) == 2 and orphan.id in {r.suggestion_id for r in sent}
    assert {r.suggestion for r in scheduler.runs(eid)} == {r.suggestion_id for r in sent}


def test_a_queued_run_missing_from_the_broker_is_sent_once(scheduler: Scheduler) -> None:
    """A queued run whose create answered but was never sent (a suggester crash, a create
    retried after a lost response), or whose message went with Redis's data, is sent when the
    experiment is next scheduled; one that was sent is not sent again."""
    eid = scheduler.create(observation_budget=20, parallel_bandwidth=2)
    assert scheduler.schedule(eid)
    sent = {(r.run_id, r.attempt) for r in scheduler.sent()}
    unsent = api_objects.create_training_run(
        scheduler.api, eid, {"assignments": {"x1": 1.0, "x2": 2.0}, "task": "full"}
    )
    assert scheduler.schedule(eid)
    assert [(r.run_id, r.attempt) for r in scheduler.sent()] == [(unsent.id, 1)]
    assert scheduler.schedule(eid)
    assert scheduler.sent() == []  # each is sent once
    scheduler.redis.delete(sent_key(eid))  # Redis lost its data: the queue went with it
    assert scheduler.schedule(eid)
    assert {(r.run_id, r.attempt) for r in scheduler.sent()} == sent | {(unsent.id, 1)}
    for run in scheduler.runs(eid):
        scheduler.claim(run)
    assert scheduler.schedule(eid)
    assert scheduler.sent() == [] and not scheduler.redis.exists(sent_key(eid))


def test_a_broker_that_is_down_leaves_the_run_unsent_until_it_is_back(
    scheduler: Scheduler,
) -> None:
    """Celery's error for a broker that refuses connections is no `OSError`: it used to escape
    the suggester's loop and kill the process when Redis died mid-send. It is now an `OSError`
    the loop retries, and the run it could not send is sent at the next schedule."""
    eid = scheduler.create(observation_budget=20, parallel_bandwidth=1)
    down = Publisher(replace(scheduler.settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        broken = Managed(scheduler.api, down, scheduler.settings, scheduler.redis, scheduler.clock)
        with pytest.raises(BrokerUnavailable) as raised:
            broken.schedule(history.load(scheduler.api, eid))
        assert isinstance(raised.value, OSError)
    finally:
        down.close()
    [run] = scheduler.runs(eid)
    assert run.state is RunState.QUEUED and scheduler.sent() == []
    assert scheduler.schedule(eid)
    assert [(r.run_id, r.attempt) for r in scheduler.sent()] == [(run.id, run.attempt)]
