"""`_data`: outcome signs, failure imputation, centering, noise and subsampling."""

from __future__ import annotations

import numpy as np

from services.suggester.optimizer import Observation
from services.suggester.optimizer._data import build_training_data
from services.suggester.optimizer._data import subsample
from services.suggester.optimizer._model import task_values
from services.suggester.optimizer._transform import SpaceTransform
from shared.space import ExperimentSpec

SPEC = ExperimentSpec.from_json(
    {
        "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
        "metrics": [
            {"name": "loss", "objective": "minimize"},
            {"name": "mem", "objective": "minimize", "strategy": "constraint", "threshold": 2.0},
        ],
        "tasks": [{"name": "cheap", "cost": 0.25}, {"name": "full", "cost": 1.0}],
        "observation_budget": 10,
    }
)
HISTORY = [
    Observation({"x": 0.1}, "cheap", {"loss": 5.0, "mem": 1.0}),
    Observation({"x": 0.2}, "cheap", {"loss": 7.0, "mem": 3.0}),
    Observation({"x": 0.3}, "cheap", {}, failed=True),
    Observation({"x": 0.4}, "full", {"loss": 1.0, "mem": 1.0}, {"loss": 0.1}),
    Observation({"x": 0.5}, "full", {"loss": 3.0, "mem": 1.0}),
]


def _data(center: bool):  # type: ignore[no-untyped-def]
    transform = SpaceTransform(SPEC, task_values(SPEC, "task"))
    return build_training_data(SPEC, transform, HISTORY, 100, 0, center)


def test_signs_thresholds_and_failures_imputed_with_the_worst_on_the_same_task() -> None:
    data = _data(center=False)
    assert [o.name for o in data.outcomes] == ["loss", "mem"]
    assert data.outcomes[1].threshold == -2.0
    np.testing.assert_allclose(data.Y[:, 0].numpy(), [-5, -7, -7, -1, -3])
    np.testing.assert_allclose(data.Y[:, 1].numpy(), [-1, -3, -3, -1, -1])
    assert data.failed.tolist() == [False, False, True, False, False]


def test_centering_moves_each_task_to_the_full_cost_mean() -> None:
    y = _data(center=True).Y[:, 0].numpy()
    assert np.isclose(y[:2].mean(), -2.0) and np.isclose(y[3:].mean(), -2.0)
    np.testing.assert_allclose(y[3:], [-1, -3])


def test_reported_stddevs_become_fixed_noise_filled_with_the_median() -> None:
    data = _data(center=False)
    assert data.Yvar is not None
    np.testing.assert_allclose(data.Yvar[:, 0].numpy(), [0.01] * 5)


def test_subsample_keeps_costly_tasks_first_and_some_of_every_task() -> None:
    history = [Observation({"x": i / 100}, "cheap", {"loss": float(i)}) for i in range(80)]
    history += [Observation({"x": i / 100}, "full", {"loss": float(i)}) for i in range(30)]
    kept = subsample(SPEC, history, 40, seed=0)
    assert len(kept) == 40
    assert sum(o.task == "full" for o in kept) == 30
    cheap = [o.values["loss"] for o in kept if o.task == "cheap"]
    assert len(cheap) == 10 and min(cheap) == 0.0
