"""The surrogate's model kinds (`_model`)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from services.suggester.optimizer import FitSettings
from services.suggester.optimizer import MultitaskOptimizer
from services.suggester.optimizer import Observation
from services.suggester.optimizer._data import build_training_data
from services.suggester.optimizer._model import fit_models
from services.suggester.optimizer._model import task_values
from services.suggester.optimizer._transform import SpaceTransform
from shared.space import ExperimentSpec
from tests.suggester_tests.optimizer_tests._helpers import FAST
from tests.suggester_tests.optimizer_tests._helpers import all_kinds
from tests.suggester_tests.optimizer_tests._helpers import drive

PLANE = ExperimentSpec.from_json(
    {
        "parameters": [
            {"name": "x", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
            {"name": "y", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
        ],
        "tasks": [{"name": "cheap", "cost": 0.25}, {"name": "full", "cost": 1.0}],
        "metrics": [{"name": "value", "objective": "maximize"}],
    }
)


def _plane_value(x: float, y: float, task: str) -> float:
    """Full cost varies in ``x`` only; the cheap task adds a discrepancy along ``y``."""
    return float(np.sin(6 * x) + (0.5 * np.cos(3 * y) if task == "cheap" else 0.0))


def _full_cost_rmse(kind: str, observations: list[Observation], points: np.ndarray) -> float:
    transform = SpaceTransform(PLANE, task_values(PLANE, kind))
    data = build_training_data(PLANE, transform, observations, 300, 0, False)
    with warnings.catch_warnings():  # numerics notices the optimizer also silences
        warnings.simplefilter("ignore")
        models, _, _ = fit_models(kind, transform, data, len(observations), None, FitSettings())
    rows = transform.encode_rows([({"x": x, "y": y}, "full") for x, y in points])
    with torch.no_grad():
        mean = models[0].posterior(rows).mean.reshape(-1).numpy()
    truth = np.array([_plane_value(x, y, "full") for x, y in points])
    return float(np.sqrt(np.mean((mean - truth) ** 2)))


def test_the_discrepancy_term_learns_a_task_difference_along_its_own_direction() -> None:
    rng = np.random.default_rng(0)
    observations = []
    for task, count in (("cheap", 40), ("full", 14)):
        for x, y in rng.random((count, 2)):
            value = _plane_value(x, y, task)
            observations.append(Observation({"x": x, "y": y}, task, {"value": value}))
    points = rng.random((200, 2))
    icm = _full_cost_rmse("task", observations, points)
    lcm = _full_cost_rmse("lcm", observations, points)
    assert lcm < 0.5 * icm, (lcm, icm)


def _bump(x: float, y: float, task: str) -> float:
    """A basin whose centre sits 0.3 further along x on the cheap task."""
    cx = 0.35 if task == "full" else 0.65
    return float(np.exp(-8 * ((x - cx) ** 2 + (y - 0.5) ** 2)) - (0.2 if task == "cheap" else 0))


def test_the_shift_kernel_learns_where_a_cheap_optimum_moved() -> None:
    rng = np.random.default_rng(1)
    observations = []
    for task, count in (("cheap", 40), ("full", 8)):
        for x, y in rng.random((count, 2)):
            observations.append(Observation({"x": x, "y": y}, task, {"value": _bump(x, y, task)}))
    transform = SpaceTransform(PLANE, task_values(PLANE, "shift"))
    data = build_training_data(PLANE, transform, observations, 300, 0, False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models, _, _ = fit_models("shift", transform, data, len(observations), None, FitSettings())
    shift = next(k for k in models[0].covar_module.kernels if hasattr(k, "shift")).shift.detach()
    assert 0.15 < float(shift[0, 0]) < 0.45 and abs(float(shift[0, 1])) < 0.1, shift
    assert float(shift[1].abs().max()) == 0.0  # the full-cost task does not move


@pytest.mark.parametrize("kind", ["fidelity", "lcm", "shift"])
def test_the_benchmark_only_kinds_suggest_from_the_model_and_warm_start(kind: str) -> None:
    settings = dataclasses.replace(FAST, model=kind)
    spec = all_kinds()
    _, observations = drive(MultitaskOptimizer(settings), spec, 10)
    first = MultitaskOptimizer(settings).suggest(spec, observations[:-1], [], 1, 0)
    second = MultitaskOptimizer(settings).suggest(spec, observations, [], 1, 0, first.state)
    assert [c.source for c in (*first.candidates, *second.candidates)] == ["model", "model"]
    assert second.candidates[0].info["refit"] is False
    params = first.state["model"]["params"][0]
    if kind == "lcm":  # the discrepancy term is the second kernel of the sum
        assert any(name.startswith("covar_module.kernels.1.") for name in params)
    elif kind == "shift":  # the input offsets are fitted
        assert any("raw_shift" in name for name in params), sorted(params)
    else:  # the downsampling kernel's offset and power are fitted
        assert any("power" in name for name in params), sorted(params)
