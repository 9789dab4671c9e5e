"""Cheap tasks that point the wrong way: the full-cost optimum is still found.

On a 2-D problem the cheapest task's optimum sits 0.42 (in the unit square) from the full-cost
one, where the full-cost value is far from optimal; multitask BO with the input-offset model
(``model="shift"``), one evaluation at a time with a budget of 10 full-cost units, must end with
its best full-cost observation near the full-cost optimum (not the cheap one) in at least 2 of
3 seeds. Fixed seeds; about 30 s.

The default ICM model does not pass this test (its best ends 0.14, 0.35 and 0.22 from the
optimum on these seeds); on the 6-D shifted problem and LCBench of ``bench/optimizer.py`` the
input-offset model did worse than ICM, so it is not the default (docs/optimizer.md).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from services.suggester.optimizer import MultitaskOptimizer
from services.suggester.optimizer import Observation
from shared.best import best_observations
from shared.space import ExperimentSpec
from tests.suggester_tests.optimizer_tests._helpers import FAST

FULL_OPTIMUM = (0.3, 0.3)
#: The cheapest task's optimum is the full-cost one moved by this much along the diagonal.
SHIFT = (0.3, 0.3)
BUDGET = 10.0
RADIUS = 0.1
SEEDS = (0, 1, 2)
SPEC = ExperimentSpec.from_json(
    {
        "parameters": [
            {"name": "x", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
            {"name": "y", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
        ],
        "metrics": [{"name": "loss", "objective": "minimize"}],
        "tasks": [
            {"name": "e10", "cost": 0.125},
            {"name": "e40", "cost": 0.5},
            {"name": "e80", "cost": 1.0},
        ],
        "observation_budget": BUDGET,
    }
)


def loss(assignments: dict[str, Any], task: str | None) -> float:
    """A smooth basin whose centre moves with the task's cheapness; cheaper is worse."""
    cheapness = (1.0 - SPEC.task_cost(task)) / (1.0 - 0.125)
    cx = FULL_OPTIMUM[0] + SHIFT[0] * cheapness
    cy = FULL_OPTIMUM[1] + SHIFT[1] * cheapness
    d2 = (assignments["x"] - cx) ** 2 + (assignments["y"] - cy) ** 2
    return 1.0 - math.exp(-4.0 * d2) + 0.3 * cheapness


def best_after_budget(seed: int) -> dict[str, Any]:
    """The best full-cost assignments once the budget is spent, one evaluation at a time."""
    optimizer = MultitaskOptimizer(replace(FAST, model="shift"))
    observations: list[Observation] = []
    state: dict[str, Any] | None = None
    spent = 0.0
    while spent < BUDGET:
        result = optimizer.suggest(SPEC, observations, [], 1, seed, state)
        state = result.state
        candidate = result.candidates[0]
        spent += SPEC.task_cost(candidate.task)
        value = loss(candidate.assignments, candidate.task)
        observations.append(Observation(candidate.assignments, candidate.task, {"loss": value}))
    best = best_observations(SPEC, observations)
    assert best, "no full-cost observation within the budget"
    return best[0].assignments


def test_the_cheap_optimum_is_far_from_good_at_full_cost() -> None:
    cheap = {"x": FULL_OPTIMUM[0] + SHIFT[0], "y": FULL_OPTIMUM[1] + SHIFT[1]}
    full = {"x": FULL_OPTIMUM[0], "y": FULL_OPTIMUM[1]}
    assert loss(cheap, "e10") < loss(full, "e10")
    assert loss(cheap, "e80") - loss(full, "e80") > 0.4


def test_multitask_bo_finds_the_full_cost_optimum_despite_the_shift() -> None:
    distances = []
    for seed in SEEDS:
        best = best_after_budget(seed)
        distances.append(math.hypot(best["x"] - FULL_OPTIMUM[0], best["y"] - FULL_OPTIMUM[1]))
    near = sum(d <= RADIUS for d in distances)
    assert near >= 2, f"distances to the full-cost optimum: {distances}"
