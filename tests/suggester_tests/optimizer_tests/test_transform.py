"""`SpaceTransform`: model-space rows, exact decoding, branches and linear constraints."""

from __future__ import annotations

import numpy as np
import torch

from services.suggester.optimizer._transform import INACTIVE_VALUE
from services.suggester.optimizer._transform import SpaceTransform
from tests.suggester_tests.optimizer_tests._helpers import all_kinds
from tests.suggester_tests.optimizer_tests._helpers import with_conditionals
from tests.suggester_tests.optimizer_tests._helpers import with_constraints


def test_round_trip_keeps_exact_values_and_tasks() -> None:
    spec = all_kinds()
    transform = SpaceTransform(spec, {"cheap": 0.0, "mid": 1.0, "full": 2.0})
    assignments = {"lin": 0.5, "log": 1e-3, "count": -2, "width": 32, "ratio": 0.5, "act": "tanh"}
    row = transform.encode(assignments, "mid")
    assert row[5] == 2.0 and row[-1] == 1.0
    decoded, task = transform.decode(torch.as_tensor(row))
    assert task == "mid"
    assert decoded["act"] == "tanh" and decoded["count"] == -2 and decoded["width"] == 32
    assert np.isclose(decoded["log"], 1e-3) and np.isclose(decoded["lin"], 0.5)
    assert transform.cat_dims == {5: [0.0, 1.0, 2.0]}
    assert transform.discrete_dims[3] == [0.0, 0.5, 1.0]
    assert transform.bounds[1, 5] == 2.0


def test_inactive_parameters_are_imputed_and_branches_fix_them() -> None:
    spec = with_conditionals()
    transform = SpaceTransform(spec, {})
    row = transform.encode({"arch": "a", "lr": 0.2, "depth": 3}, None)
    assert row[0] == 0.0 and row[3] == 0.0  # arch code a; heads (categorical) inactive
    branches = transform.branches(8, np.random.default_rng(0))
    assert branches == [{0: 0.0, 3: 0.0}, {0: 1.0, 2: INACTIVE_VALUE}]


def test_inequality_constraints_agree_with_the_spec() -> None:
    spec = with_constraints()
    transform = SpaceTransform(spec, {})
    constraints = transform.inequality_constraints()
    assert constraints is not None
    rng = np.random.default_rng(0)
    for _ in range(200):
        unit = rng.random(4)
        unit[2:] = rng.integers(0, 6, size=2) / 5  # ints on their grid: decoding is exact
        row = torch.as_tensor(unit)
        inside = all(float((row[i] * c).sum()) >= rhs - 1e-9 for i, c, rhs in constraints)
        assert inside == spec.is_feasible(spec.decode(unit))
