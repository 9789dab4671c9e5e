"""Continuation end to end: a managed multitask experiment on a continuable synthetic objective,
with a live worker advert that says so, driven by the real `Managed` scheduler, the real
Publisher (messages read back from the Redis broker), `runner.train` and the real API served
in-process. The optimizer continues cheap runs to the full task: such a run's first epoch comes
after its source's last one, and the budget consumed is the sum of the charged costs (the
difference of the tasks' costs for a continued run), below the sum of the task costs."""

from __future__ import annotations

import math
from typing import Any

import pytest
import redis

from services.suggester import history
from services.suggester.managed import Managed
from services.suggester.publish import Publisher
from services.worker import runner
from services.worker.advert import Advertiser
from services.worker.advert import make_advert
from services.worker.objectives import Catalog
from shared import api_objects
from shared.states import ExperimentState
from shared.states import StateFilter
from tests.inprocess import BRANIN
from tests.inprocess import InProcessApi
from tests.inprocess import take_sent_tasks

COSTS = {task["name"]: task["cost"] for task in BRANIN["tasks"]}
EXPERIMENT: dict[str, Any] = {
    **BRANIN,
    "observation_budget": 6,
    "parallel_bandwidth": 2,
    "objective": {"name": "augmented_branin", "config": {"sleep_per_cost": 0, "max_epochs": 4}},
}


@pytest.fixture()
def advertised(redis_client: redis.Redis) -> Advertiser:
    """What a live worker with the built-in objectives keeps in Redis."""
    catalog = Catalog.discover()
    advert = make_advert("w1@test", catalog.names(), catalog.continuable())
    advertiser = Advertiser(redis_client, advert)
    assert advertiser.publish()
    return advertiser


def _run_to_completion(
    server: InProcessApi, redis_client: redis.Redis, publisher: Publisher, eid: int
) -> None:
    """Schedule, train what was sent and record each result, until the experiment completes."""
    api = server.service
    managed = Managed(api, publisher, server.settings, redis_client)
    for _ in range(100):
        if not managed.schedule(history.load(api, eid, redis_client)):
            return
        for sent in take_sent_tasks(redis_client):
            result = runner.train(sent.request, server.settings, api, redis_client, "w1")
            assert result is not None and not result.failed, result
            managed.handle_result(result)
    raise AssertionError("the experiment did not complete in 100 rounds")


def test_cheap_runs_are_continued_to_the_full_task_and_charged_the_difference(
    inprocess_api: InProcessApi,
    redis_client: redis.Redis,
    publisher: Publisher,
    advertised: Advertiser,
) -> None:
    assert "augmented_branin" in advertised.advert.continuable
    api = inprocess_api.service
    eid = int(inprocess_api.user.post("/experiments", EXPERIMENT)["id"])
    _run_to_completion(inprocess_api, redis_client, publisher, eid)

    experiment = api_objects.get_experiment(api, eid)
    assert experiment.state is ExperimentState.COMPLETED
    runs = {r.id: r for r in api_objects.list_training_runs(api, eid, StateFilter.ALL)}
    continued = [r for r in runs.values() if r.continues is not None]
    assert continued, "no run continued another"

    def epochs(run_id: int) -> list[int]:
        return sorted(c["epoch"] for c in api.iterate(f"/training_runs/{run_id}/checkpoints"))

    for run in continued:
        assert run.continues is not None
        source = runs[run.continues]
        assert (source.task, run.task) == ("cheap", "full")
        assert source.assignments == run.assignments
        assert epochs(run.id)[0] == epochs(source.id)[-1] + 1  # it did not restart
        assert epochs(run.id)[-1] == 4

    def charged(run: api_objects.TrainingRun) -> float:
        cost = COSTS[run.task or ""]
        return cost - COSTS[runs[run.continues].task or ""] if run.continues else cost

    observed = [r for r in runs.values() if r.observation is not None]
    consumed = experiment.progress.observation_budget_consumed
    assert math.isclose(consumed, sum(charged(r) for r in observed))
    assert consumed < sum(COSTS[r.task or ""] for r in observed)

    # Run ids reach the optimizer only while the live workers can continue the objective.
    assert any(o.run for o in history.load(api, eid, redis_client).observations)
    advertised.stop()  # the worker leaves: its advert is removed
    assert not any(o.run for o in history.load(api, eid, redis_client).observations)
