"""Specs, fast settings and a driver loop shared by the optimizer tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from services.suggester.optimizer import AcquisitionSettings
from services.suggester.optimizer import BayesSettings
from services.suggester.optimizer import Candidate
from services.suggester.optimizer import FitSettings
from services.suggester.optimizer import Observation
from services.suggester.optimizer import Optimizer
from services.suggester.optimizer import Pending
from shared.space import ExperimentSpec

#: Small effort so that the whole optimizer suite runs in a couple of minutes on 2 cores.
FAST = BayesSettings(
    fit=FitSettings(maxiter=30, refit_every=3),
    acquisition=AcquisitionSettings(
        num_restarts=2, raw_samples=32, mc_samples=32, maxiter_alternating=3, max_branches=4
    ),
)
TASKS = [
    {"name": "cheap", "cost": 0.125},
    {"name": "mid", "cost": 0.5},
    {"name": "full", "cost": 1.0},
]


def all_kinds(grid: bool = False, tasks: bool = True, budget: float = 30.0) -> ExperimentSpec:
    """Every parameter kind; with ``grid`` every double and int gets grid values instead."""
    parameters: list[dict[str, Any]] = [
        {"name": "lin", "type": "double", "bounds": {"min": -2.0, "max": 3.0}},
        {
            "name": "log",
            "type": "double",
            "bounds": {"min": 1e-4, "max": 1e-1},
            "transformation": "log",
        },
        {"name": "count", "type": "int", "bounds": {"min": -3, "max": 4}},
        {"name": "width", "type": "int", "grid": [16, 32, 64]},
        {"name": "ratio", "type": "double", "grid": [0.1, 0.25, 0.5]},
        {"name": "act", "type": "categorical", "categorical_values": ["relu", "gelu", "tanh"]},
    ]
    if grid:
        parameters[0] = {"name": "lin", "type": "double", "grid": [-2.0, 0.5, 3.0]}
        parameters[1] = {"name": "log", "type": "double", "grid": [1e-4, 1e-2]}
        parameters[2] = {"name": "count", "type": "int", "grid": [-3, 0, 4]}
    definition: dict[str, Any] = {
        "type": "grid" if grid else "offline",
        "parameters": parameters,
        "observation_budget": budget,
    }
    if tasks and not grid:
        definition["tasks"] = TASKS
    return ExperimentSpec.from_json(definition)


def with_conditionals(grid: bool = False) -> ExperimentSpec:
    """A conditional ``arch`` switching ``depth`` (a) and ``heads`` (b); ``lr`` always on."""
    lr: dict[str, Any] = {"name": "lr", "type": "double", "bounds": {"min": 0.0, "max": 1.0}}
    if grid:
        lr = {"name": "lr", "type": "double", "grid": [0.0, 0.5, 1.0]}
    return ExperimentSpec.from_json(
        {
            "type": "grid" if grid else "offline",
            "conditionals": [{"name": "arch", "values": ["a", "b"]}],
            "parameters": [
                lr,
                {
                    "name": "depth",
                    "type": "int",
                    "bounds": {"min": 1, "max": 3},
                    "conditions": {"arch": ["a"]},
                },
                {
                    "name": "heads",
                    "type": "categorical",
                    "categorical_values": ["1", "2", "4"],
                    "conditions": {"arch": "b"},
                },
            ],
            "observation_budget": 30,
        }
    )


def with_constraints(grid: bool = False) -> ExperimentSpec:
    """``x + y <= 1`` (doubles) and ``2 i - j >= 0`` (ints)."""
    if grid:
        x = {"name": "x", "type": "double", "grid": [0.0, 0.25, 0.5, 0.75, 1.0]}
        y = {"name": "y", "type": "double", "grid": [0.0, 0.5, 1.0]}
    else:
        x = {"name": "x", "type": "double", "bounds": {"min": 0.0, "max": 1.0}}
        y = {"name": "y", "type": "double", "bounds": {"min": 0.0, "max": 1.0}}
    return ExperimentSpec.from_json(
        {
            "type": "grid" if grid else "offline",
            "parameters": [
                x,
                y,
                {"name": "i", "type": "int", "bounds": {"min": 0, "max": 5}},
                {"name": "j", "type": "int", "bounds": {"min": 0, "max": 5}},
            ],
            "linear_constraints": [
                {
                    "type": "less_than",
                    "threshold": 1.0,
                    "terms": [{"name": "x", "weight": 1.0}, {"name": "y", "weight": 1.0}],
                },
                {
                    "type": "greater_than",
                    "threshold": 0.0,
                    "terms": [{"name": "i", "weight": 2.0}, {"name": "j", "weight": -1.0}],
                },
            ],
            "observation_budget": 30,
        }
    )


def smooth_value(spec: ExperimentSpec, assignments: dict[str, Any], task: str | None) -> float:
    """A deterministic objective over any spec: a bowl in the unit cube, lower on cheap tasks."""
    unit = spec.encode(assignments)
    active = [u for u in unit if not math.isnan(u)]
    bowl = -sum((u - 0.3) ** 2 for u in active)
    return bowl - 0.2 * (1.0 - spec.task_cost(task))


def drive(
    optimizer: Optimizer,
    spec: ExperimentSpec,
    steps: int,
    seed: int = 0,
    k: int = 1,
    value: Callable[[dict[str, Any], str | None], float | None] | None = None,
    on_step: Callable[[list[Candidate], list[Observation], list[Pending]], None] | None = None,
) -> tuple[list[Candidate], list[Observation]]:
    """Ask for ``k`` candidates ``steps`` times; the oldest candidate is observed each step,
    the others stay pending. ``value`` returning None records a failure."""
    value = value or (lambda a, t: smooth_value(spec, a, t))
    observations: list[Observation] = []
    pending: list[Pending] = []
    every: list[Candidate] = []
    state: dict[str, Any] | None = None
    for _ in range(steps):
        result = optimizer.suggest(spec, observations, pending, k, seed, state)
        state = result.state
        if on_step is not None:
            on_step(result.candidates, observations, pending)
        every.extend(result.candidates)
        pending.extend(Pending(c.assignments, c.task) for c in result.candidates)
        while len(pending) > k - 1 and pending:
            done = pending.pop(0)
            v = value(done.assignments, done.task)
            values = {} if v is None else {"value": v}
            observations.append(Observation(done.assignments, done.task, values, failed=v is None))
    return every, observations
