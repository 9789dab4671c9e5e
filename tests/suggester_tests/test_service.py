"""`Suggester.step` against the real API (in-process, over HTTP) and real Redis streams: events
fill pools and schedule runs, malformed entries are acknowledged and dropped, a managed
experiment's own echoes cause no refresh, results are recorded, and a managed experiment runs to
completion with the worker's `runner.train` doing the training."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from services.suggester import pools
from services.suggester.optimizer import Candidate
from services.suggester.publish import Publisher
from services.suggester.service import LEASE_CHECK_S
from services.suggester.service import POOL_SLACK
from services.suggester.service import READ_BATCH
from services.suggester.service import SWEEP_S
from services.suggester.service import Suggester
from services.worker import runner
from shared import api_objects
from shared.messages import Event
from shared.messages import EventType
from shared.messages import TrainResult
from shared.names import EVENTS_STREAM
from shared.names import RESULTS_STREAM
from shared.names import SUGGESTER_GROUP
from shared.names import TRAIN_TASK
from shared.names import pool_key
from shared.names import pool_version_key
from shared.names import train_queue
from shared.states import ExperimentState
from shared.states import RunState
from shared.states import StateFilter
from tests.inprocess import BRANIN
from tests.inprocess import CLIENT_DRIVEN
from tests.services import RedisServer
from tests.services import wait_for
from tests.suggester_tests.harness import SuggesterLoop

#: A managed experiment with a budget no test here spends, whose first 4 points come from the
#: initial design (no model to fit).
MANAGED: dict[str, Any] = {**BRANIN, "observation_budget": 20}


def _completed(run: api_objects.TrainingRun, value: float) -> TrainResult:
    return TrainResult(
        experiment_id=run.experiment,
        suggestion_id=run.suggestion,
        run_id=run.id,
        attempt=run.attempt,
        values=[{"name": "value", "value": value}],
    )


def test_a_created_experiment_gets_a_fresh_pool(loop: SuggesterLoop) -> None:
    eid = loop.create(CLIENT_DRIVEN)
    assert loop.pool(eid) == []
    loop.step()
    pool = loop.pool(eid)
    assert len(pool) == CLIENT_DRIVEN["parallel_bandwidth"] + POOL_SLACK
    assert all(e.observation_count == 0 and e.task is None for e in pool)
    assert len({e.assignments["x"] for e in pool}) == len(pool)
    assert loop.redis.get(pool_version_key(eid)) == b"0"
    assert loop.pending(EVENTS_STREAM) == 0  # the event was acknowledged after the refresh


def test_malformed_events_and_results_are_acknowledged_and_dropped(loop: SuggesterLoop) -> None:
    bad_events = [
        {"event": "not json"},
        {"something": "else"},
        {"event": '{"schema": 1, "type": "experiment.exploded", "experiment_id": 1}'},
        {"event": '{"schema": 99, "type": "experiment.created", "experiment_id": 1}'},
    ]
    for fields in bad_events:
        loop.redis.xadd(EVENTS_STREAM, fields)
    loop.redis.xadd(RESULTS_STREAM, {"result": "{}"})
    loop.redis.xadd(RESULTS_STREAM, {"other": "x"})
    eid = loop.create(CLIENT_DRIVEN)  # a good event behind the bad ones
    loop.step()
    assert loop.pending(EVENTS_STREAM) == 0 and loop.pending(RESULTS_STREAM) == 0
    groups = {g["name"]: g for g in loop.redis.xinfo_groups(EVENTS_STREAM)}
    assert groups[SUGGESTER_GROUP.encode()]["entries-read"] == len(bad_events) + 1
    assert len(loop.pool(eid)) == CLIENT_DRIVEN["parallel_bandwidth"] + POOL_SLACK


def test_an_event_read_but_not_acknowledged_is_handled_after_a_restart(
    loop: SuggesterLoop, redis_client: redis.Redis, publisher: Publisher
) -> None:
    eid = loop.create(CLIENT_DRIVEN)
    loop.server.relay_events()
    # A suggester that read the event and died before refreshing: the entry stays pending.
    redis_client.xreadgroup(SUGGESTER_GROUP, "test", {EVENTS_STREAM: ">"}, count=10)
    assert loop.pending(EVENTS_STREAM) == 1
    restarted = Suggester(
        loop.server.settings, redis_client, loop.server.service, publisher, "test", loop.clock
    )
    restarted.step(block_ms=10)
    assert loop.pending(EVENTS_STREAM) == 0
    assert len(loop.pool(eid)) == CLIENT_DRIVEN["parallel_bandwidth"] + POOL_SLACK


def test_a_new_observation_makes_the_pool_stale_and_it_is_refilled(loop: SuggesterLoop) -> None:
    eid = loop.create(CLIENT_DRIVEN)
    loop.step()
    suggestion = loop.server.user.post(f"/experiments/{eid}/suggestions")
    body = {"suggestion": suggestion["id"], "value": 0.3}
    loop.server.user.post(f"/experiments/{eid}/observations", body)
    loop.step()
    pool = loop.pool(eid)
    assert len(pool) == CLIENT_DRIVEN["parallel_bandwidth"] + POOL_SLACK
    assert {e.observation_count for e in pool} == {1}
    assert loop.redis.get(pool_version_key(eid)) == b"1"


def test_a_fresh_pool_is_kept_unless_an_event_forces_a_refill(loop: SuggesterLoop) -> None:
    eid = loop.create(CLIENT_DRIVEN)
    loop.step()
    full = CLIENT_DRIVEN["parallel_bandwidth"] + POOL_SLACK
    loop.redis.lpop(pool_key(eid))  # one entry served; the rest is still fresh
    explicit = {"assignments": {"x": 0.123}}
    loop.server.user.post(f"/experiments/{eid}/suggestions", explicit)
    assert loop.server.relay_events() == 1  # suggestion.created
    loop.step()
    assert len(loop.pool(eid)) == full - 1  # fresh: not recomputed
    assert loop.pending(EVENTS_STREAM) == 0
    loop.server.user.put(f"/experiments/{eid}", {"name": "renamed"})  # experiment.updated
    loop.step()
    assert len(loop.pool(eid)) == full


def test_a_deleted_experiment_loses_its_pool(loop: SuggesterLoop) -> None:
    eid = loop.create(CLIENT_DRIVEN)
    loop.step()
    assert loop.redis.exists(pool_key(eid), pool_version_key(eid)) == 2
    loop.server.user.delete(f"/experiments/{eid}")
    loop.step()
    assert loop.redis.exists(pool_key(eid), pool_version_key(eid)) == 0


def test_the_pool_of_an_experiment_the_api_does_not_know_is_dropped(loop: SuggesterLoop) -> None:
    """E.g. left in Redis across a database reset: its next event finds a 404."""
    unknown = 999
    pools.replace(loop.redis, unknown, [Candidate({"x": 0.5}, None, "design")], 0)
    event = Event(type=EventType.EXPERIMENT_UPDATED, experiment_id=unknown, id=1)
    loop.redis.xadd(EVENTS_STREAM, {"event": event.to_json()})
    loop.step()
    assert loop.redis.exists(pool_key(unknown), pool_version_key(unknown)) == 0
    assert loop.pending(EVENTS_STREAM) == 0


def test_a_created_managed_experiment_gets_parallel_bandwidth_runs(loop: SuggesterLoop) -> None:
    eid = loop.create(MANAGED)
    loop.step()
    sent = loop.sent()
    runs = loop.unfinished_runs(eid)
    assert len(sent) == len(runs) == MANAGED["parallel_bandwidth"]
    assert {t.name for t in sent} == {TRAIN_TASK} and {t.routing_key for t in sent} == {
        train_queue(MANAGED["objective"]["name"])
    }
    by_run = {t.request.run_id: t.request for t in sent}
    for run in runs:
        request = by_run[run.id]
        assert (request.experiment_id, request.suggestion_id) == (eid, run.suggestion)
        assert (request.attempt, request.assignments, request.task) == (
            1,
            run.assignments,
            run.task,
        )
        assert request.objective == MANAGED["objective"]["name"]
        assert request.config == MANAGED["objective"]["config"]
        assert request.cost == {"cheap": 0.25, "full": 1.0}[run.task] and request.metric == "value"
    assert loop.pool(eid) == []  # a managed experiment has no pool


def test_own_echo_events_of_a_managed_experiment_cause_no_refresh(loop: SuggesterLoop) -> None:
    eid = loop.create(MANAGED)
    loop.step()
    first, second = loop.unfinished_runs(eid)
    loop.sent()
    api = loop.server.service
    # A worker claims one run, the other's result is recorded: training_run.updated and
    # observation.created events, all caused by the managed loop itself.
    claim = {"state": RunState.RUNNING, "attempt": 1, "worker": "w", "heartbeat": True}
    api_objects.update_training_run(api, first.id, claim)
    result = _completed(second, 1.0)
    body = {"attempt": 1, "state": RunState.COMPLETED, "values": result.values}
    api_objects.record_result(api, second.id, body)
    assert loop.server.relay_events() >= 3
    loop.step()
    assert loop.pending(EVENTS_STREAM) == 0
    assert loop.sent() == [] and len(loop.unfinished_runs(eid)) == 1  # no refresh: slot empty
    loop.clock.advance(LEASE_CHECK_S)  # the lease check refreshes it
    loop.step()
    assert len(loop.sent()) == 1 and len(loop.unfinished_runs(eid)) == 2


def test_a_non_echo_event_refreshes_a_managed_experiment(loop: SuggesterLoop) -> None:
    eid = loop.create(MANAGED)
    loop.step()
    loop.sent()
    loop.server.user.put(f"/experiments/{eid}", {"parallel_bandwidth": 3})
    loop.step()
    assert len(loop.sent()) == 1 and len(loop.unfinished_runs(eid)) == 3


def test_a_result_is_recorded_acknowledged_and_the_freed_slot_filled(loop: SuggesterLoop) -> None:
    eid = loop.create(MANAGED)
    loop.step()
    run, other = loop.unfinished_runs(eid)
    loop.sent()
    loop.redis.xadd(RESULTS_STREAM, {"result": _completed(run, 7.5).to_json()})
    unknown = TrainResult(experiment_id=eid, suggestion_id=1, run_id=999, attempt=1, failed=True)
    loop.redis.xadd(RESULTS_STREAM, {"result": unknown.to_json()})  # a 404: ignored
    loop.step()
    assert loop.pending(RESULTS_STREAM) == 0
    (observation,) = api_objects.list_observations(loop.server.service, eid)
    assert observation.suggestion == run.suggestion and observation.values[0].value == 7.5
    assert api_objects.get_training_run(loop.server.service, run.id).state is RunState.COMPLETED
    (sent,) = loop.sent()
    assert sent.request.run_id not in (run.id, other.id)
    assert len(loop.unfinished_runs(eid)) == 2


def test_recover_resends_the_queued_runs_of_active_managed_experiments(
    loop: SuggesterLoop, redis_client: redis.Redis, publisher: Publisher
) -> None:
    eid = loop.create(MANAGED)
    loop.step()
    queued = {t.request.run_id for t in loop.sent()}  # as if lost with the broker
    paused = loop.create(MANAGED)
    loop.step()
    loop.server.user.put(f"/experiments/{paused}", {"state": ExperimentState.PAUSED})
    loop.sent()
    restarted = Suggester(
        loop.server.settings, redis_client, loop.server.service, publisher, "other", loop.clock
    )
    restarted.recover()
    assert {t.request.run_id for t in loop.sent()} == queued
    assert {r.id for r in loop.unfinished_runs(eid)} == queued


def test_a_managed_experiment_runs_to_completion_with_the_worker_runner(
    loop: SuggesterLoop,
) -> None:
    """The model-based optimizer, budget 3 in task costs, 2 runs in flight; `runner.train`
    trains each sent request as a worker would, and its results drive the loop."""
    eid = loop.create(BRANIN)
    api = loop.server.service
    trained = 0
    for _ in range(40):
        loop.step()
        for task in loop.sent():
            assert runner.train(task.request, loop.server.settings, api, loop.redis, "w1")
            trained += 1
        experiment = api_objects.get_experiment(api, eid)
        if experiment.state is ExperimentState.COMPLETED:
            break
    assert experiment.state is ExperimentState.COMPLETED
    assert loop.pending(RESULTS_STREAM) == 0 and loop.pending(EVENTS_STREAM) == 0
    observations = api_objects.list_observations(api, eid)
    runs = api_objects.list_training_runs(api, eid, StateFilter.ALL)
    assert len(observations) == len(runs) == trained
    assert {r.state for r in runs} == {RunState.COMPLETED}
    costs = [{"cheap": 0.25, "full": 1.0}[o.task or ""] for o in observations]
    consumed = experiment.progress.observation_budget_consumed
    assert consumed == sum(costs) >= BRANIN["observation_budget"]
    assert consumed - max(costs) < BRANIN["observation_budget"]  # no run started past it
    assert len({o.suggestion for o in observations}) == len(observations)
    for _ in range(2):  # nothing more happens
        loop.clock.advance(LEASE_CHECK_S)
        loop.step()
    assert (
        loop.sent() == []
        and len(api_objects.list_training_runs(api, eid, StateFilter.ALL)) == trained
    )


def test_redis_losing_its_data_is_noticed_and_rebuilt_from_the_api(
    loop: SuggesterLoop, redis_client: redis.Redis
) -> None:
    """Redis restarted without its append-only file: the consumer groups, the broker's queues
    and bindings and the pools are gone. The running loop notices the missing group, recreates
    it, re-sends the queued runs and refills the pools, all from the API."""
    managed = loop.create(MANAGED)
    client_driven = loop.create(CLIENT_DRIVEN)
    loop.step()
    queued = {t.request.run_id for t in loop.sent()}
    assert len(queued) == MANAGED["parallel_bandwidth"] and loop.pool(client_driven)
    redis_client.flushdb()
    thread = threading.Thread(target=loop.suggester.run_forever, name="suggester")
    thread.start()
    resent: set[int] = set()

    def all_resent() -> bool:
        resent.update(t.request.run_id for t in loop.sent())
        return resent >= queued

    try:
        wait_for(all_resent, 30, "the queued runs to be sent again")
        wait_for(lambda: loop.pool(client_driven), 30, "the pool to be refilled")
    finally:
        loop.suggester.stop()
        thread.join(30)
    assert resent == queued
    assert {r.id for r in loop.unfinished_runs(managed)} == queued  # no run was added
    for stream in (EVENTS_STREAM, RESULTS_STREAM):
        assert [g["name"] for g in redis_client.xinfo_groups(stream)] == [SUGGESTER_GROUP.encode()]


def test_a_sweep_refreshes_only_the_experiments_that_need_it(loop: SuggesterLoop) -> None:
    """Every active experiment is listed, but only one whose pool went stale without an event
    is refreshed: an abandoned client-driven experiment stays active for ever, and a sweep
    must not cost an API round trip for each."""
    fresh = loop.create(CLIENT_DRIVEN)
    stale = loop.create(CLIENT_DRIVEN)
    loop.step()
    full = CLIENT_DRIVEN["parallel_bandwidth"] + POOL_SLACK
    assert len(loop.pool(fresh)) == len(loop.pool(stale)) == full
    loop.redis.delete(pool_key(stale))  # gone without an event (evicted, or Redis restarted)
    paths: list[str] = []
    session = loop.server.service._session  # the suggester's own HTTP session
    session.hooks["response"].append(lambda r, *_, **__: paths.append(r.request.path_url))
    loop.clock.advance(SWEEP_S)
    loop.step()
    assert len(loop.pool(stale)) == full
    assert any(p.startswith("/v1/experiments?") for p in paths)  # the sweep's listing
    assert any(f"/experiments/{stale}" in p for p in paths)
    assert not any(f"/experiments/{fresh}" in p for p in paths), paths


def test_a_pass_reads_every_waiting_event_not_just_one_batch(loop: SuggesterLoop) -> None:
    """Events that arrived while the last pass refreshed experiments are all read by the next
    pass (and coalesce into one refresh): reading one batch a pass, a busy stream would outrun
    the loop, and an experiment's creation would wait behind a backlog growing without end."""
    busy = loop.create(CLIENT_DRIVEN)
    loop.step()
    event = Event(type=EventType.SUGGESTION_CREATED, experiment_id=busy).to_json()
    for _ in range(3 * READ_BATCH + 7):
        loop.redis.xadd(EVENTS_STREAM, {"event": event})
    created = loop.create(CLIENT_DRIVEN)  # behind them
    loop.step()
    assert loop.pending(EVENTS_STREAM) == 0
    (group,) = loop.redis.xinfo_groups(EVENTS_STREAM)
    assert group["lag"] == 0  # everything in the stream was read
    assert len(loop.pool(created)) == CLIENT_DRIVEN["parallel_bandwidth"] + POOL_SLACK


def test_a_suggester_started_before_redis_gets_going_once_redis_answers(
    loop: SuggesterLoop, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    """`start` with its Redis not up yet neither raises nor gives up: `run_forever` retries
    until Redis answers, then creates its consumer groups, recovers and schedules."""
    eid = loop.create(MANAGED)
    own = RedisServer()
    client = redis.Redis.from_url(own.url, socket_connect_timeout=1)
    suggester = Suggester(
        loop.server.settings, client, loop.server.service, publisher, "late", loop.clock
    )
    thread = threading.Thread(target=suggester.run_forever)
    try:
        suggester.start()
        thread.start()
        wait_for(lambda: "suggester step failed" in caplog.text, 10, "a step to fail")
        assert thread.is_alive() and loop.sent() == []
        own.start()
        sent = wait_for(loop.sent, 30, "the runs to be sent once Redis answers")
        assert {t.request.run_id for t in sent} == {r.id for r in loop.unfinished_runs(eid)}
    finally:
        suggester.stop()
        thread.join(10)
        suggester.close()
        client.close()
        own.stop()
