"""`best_observation` / `best_observations`: model-free, full-cost only, thresholds, Pareto."""

from __future__ import annotations

from services.suggester.optimizer import Observation
from services.suggester.optimizer import best_observation
from services.suggester.optimizer import best_observations
from shared.space import ExperimentSpec

PARAMETERS = [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}]
TASKS = [{"name": "cheap", "cost": 0.25}, {"name": "full", "cost": 1.0}]


def _spec(**extra: object) -> ExperimentSpec:
    return ExperimentSpec.from_json({"parameters": PARAMETERS, **extra})


def test_multitask_best_comes_from_full_cost_observations_only() -> None:
    spec = _spec(tasks=TASKS, observation_budget=10)
    observations = [
        Observation({"x": 0.1}, "cheap", {"value": 9.0}),
        Observation({"x": 0.2}, "full", {"value": 1.0}),
        Observation({"x": 0.3}, "full", {"value": 2.0}),
        Observation({"x": 0.4}, "full", {}, failed=True),
    ]
    assert best_observation(spec, observations) == observations[2]
    assert best_observation(spec, observations[:1]) is None


def test_single_task_uses_every_observation_and_the_objective() -> None:
    spec = _spec(metrics=[{"name": "loss", "objective": "minimize"}])
    observations = [
        Observation({"x": 0.1}, None, {"loss": 3.0}),
        Observation({"x": 0.2}, None, {"loss": 1.0}),
        Observation({"x": 0.3}, None, {"loss": 1.0}),
    ]
    assert best_observation(spec, observations) == observations[1]


def test_thresholds_of_constraint_metrics_exclude_observations() -> None:
    spec = _spec(
        metrics=[
            {"name": "acc", "objective": "maximize"},
            {"name": "ms", "objective": "minimize", "strategy": "constraint", "threshold": 10},
        ],
        observation_budget=10,
    )
    observations = [
        Observation({"x": 0.1}, None, {"acc": 0.9, "ms": 20.0}),
        Observation({"x": 0.2}, None, {"acc": 0.8, "ms": 5.0}),
        Observation({"x": 0.3}, None, {"acc": 0.99}),
    ]
    assert best_observation(spec, observations) == observations[1]


def test_two_metrics_give_the_pareto_front_sorted_by_the_first() -> None:
    spec = _spec(
        metrics=[{"name": "a", "objective": "maximize"}, {"name": "b", "objective": "minimize"}],
        observation_budget=10,
    )
    front_low = Observation({"x": 0.1}, None, {"a": 1.0, "b": 1.0})
    front_high = Observation({"x": 0.2}, None, {"a": 2.0, "b": 3.0})
    dominated = Observation({"x": 0.3}, None, {"a": 0.5, "b": 2.0})
    front = best_observations(spec, [front_low, dominated, front_high])
    assert front == [front_high, front_low]
    assert best_observation(spec, [front_low, dominated, front_high]) == front_high
