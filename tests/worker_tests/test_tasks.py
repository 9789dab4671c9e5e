"""The Celery task (`tasks.register`) trains the message the suggester's `Publisher` left in the
Redis broker: the task name, queue and argument cross between them, and the task decodes it,
runs `runner.train` and publishes the result for the suggester."""

from __future__ import annotations

import socket

import redis

from services.suggester import history
from services.suggester.managed import Managed
from services.suggester.publish import Publisher
from services.worker.celery import create_celery
from shared import api_objects
from shared.messages import MessageError
from shared.messages import TrainResult
from shared.names import RESULTS_STREAM
from shared.names import TRAIN_TASK
from shared.names import train_queue
from shared.states import RunState
from tests.inprocess import BRANIN
from tests.inprocess import InProcessApi
from tests.inprocess import take_sent_tasks


def _results(client: redis.Redis) -> list[TrainResult]:
    return [TrainResult.from_json(f[b"result"]) for _, f in client.xrange(RESULTS_STREAM)]


def test_the_task_trains_what_the_suggester_sent(
    inprocess_api: InProcessApi, redis_client: redis.Redis
) -> None:
    api, settings = inprocess_api.service, inprocess_api.settings
    eid = int(inprocess_api.user.post("/experiments", {**BRANIN, "parallel_bandwidth": 1})["id"])
    publisher = Publisher(settings)
    try:
        Managed(api, publisher, settings, redis_client).schedule(history.load(api, eid))
    finally:
        publisher.close()
    (sent,) = take_sent_tasks(redis_client)
    assert (sent.name, sent.routing_key) == (TRAIN_TASK, train_queue("augmented_branin"))
    assert sent.task_id == f"run-{sent.request.run_id}-attempt-1"

    app = create_celery(settings)
    outcome = app.tasks[sent.name].apply(args=sent.args, task_id=sent.task_id)
    assert outcome.successful(), outcome.traceback
    (result,) = _results(redis_client)
    assert (result.run_id, result.attempt, result.failed) == (sent.request.run_id, 1, False)
    assert [v["name"] for v in result.values] == ["value"]
    run = api_objects.get_training_run(api, sent.request.run_id)
    assert (run.state, run.worker) == (RunState.RUNNING, socket.gethostname())


def test_a_malformed_message_fails_the_task_and_trains_nothing(
    inprocess_api: InProcessApi, redis_client: redis.Redis
) -> None:
    app = create_celery(inprocess_api.settings)
    outcome = app.tasks[TRAIN_TASK].apply(args=['{"schema": 1, "run_id": 1}'])
    assert outcome.failed() and isinstance(outcome.result, MessageError)
    assert _results(redis_client) == []
