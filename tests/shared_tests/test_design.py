from __future__ import annotations

import numpy as np

from shared.design import design_point
from shared.design import design_tasks
from shared.design import initial_design_size
from shared.design import random_point
from shared.design import sobol_unit
from shared.space import ExperimentSpec
from shared.space import assignment_key

MULTITASK = ExperimentSpec.from_json(
    {
        "parameters": [
            {"name": f"x{i}", "type": "double", "bounds": {"min": 0, "max": 1}} for i in range(4)
        ],
        "tasks": [
            {"name": "t1", "cost": 0.125},
            {"name": "t2", "cost": 0.25},
            {"name": "t3", "cost": 0.5},
            {"name": "full", "cost": 1.0},
        ],
        "observation_budget": 40,
    }
)


def test_design_is_deterministic_and_distinct() -> None:
    n = initial_design_size(MULTITASK)
    points = [design_point(MULTITASK, i, seed=7) for i in range(n)]
    assert points == [design_point(MULTITASK, i, seed=7) for i in range(n)]
    assert points != [design_point(MULTITASK, i, seed=8) for i in range(n)]
    assert len({assignment_key(a, t) for a, t in points}) == n


def test_tasks_lean_cheap_but_cover_the_full_cost_task() -> None:
    tasks = design_tasks(MULTITASK, 12)
    counts = {name: tasks.count(name) for name in ("t1", "t2", "t3", "full")}
    assert counts["t1"] > counts["full"] >= 2
    assert all(c >= 1 for c in counts.values()) and sum(counts.values()) == 12
    assert tasks[:4] != ["t1"] * 4  # not "always the cheapest" first


def test_priors_pull_the_design_towards_their_mean() -> None:
    spec = ExperimentSpec.from_json(
        {
            "parameters": [
                {
                    "name": "a",
                    "type": "double",
                    "bounds": {"min": 0, "max": 10},
                    "prior": {"name": "normal", "mean": 8, "scale": 0.5},
                },
                {"name": "b", "type": "double", "bounds": {"min": 0, "max": 10}},
            ]
        }
    )
    unit = sobol_unit(spec, 64, seed=0)
    a = [spec.decode(u)["a"] for u in unit]
    b = [spec.decode(u)["b"] for u in unit]
    assert abs(np.median(a) - 8) < 0.5 and abs(np.median(b) - 5) < 1.5


def test_random_points_respect_linear_constraints() -> None:
    spec = ExperimentSpec.from_json(
        {
            "parameters": [
                {"name": "a", "type": "double", "bounds": {"min": 0, "max": 1}},
                {"name": "b", "type": "double", "bounds": {"min": 0, "max": 1}},
            ],
            "linear_constraints": [
                {
                    "type": "less_than",
                    "terms": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}],
                    "threshold": 0.3,
                }
            ],
        }
    )
    rng = np.random.default_rng(1)
    for _ in range(50):
        a, task = random_point(spec, rng)
        assert a["a"] + a["b"] <= 0.3 + 1e-9 and task is None
    for i in range(5):
        a, _ = design_point(spec, i, seed=3)
        assert spec.is_feasible(a)
