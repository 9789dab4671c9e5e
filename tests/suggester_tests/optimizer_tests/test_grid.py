"""`GridOptimizer`: a fixed enumeration order, skipping used, inactive and infeasible points."""

from __future__ import annotations

import pytest

from services.suggester.optimizer import GridOptimizer
from services.suggester.optimizer import Observation
from services.suggester.optimizer import Pending
from services.suggester.optimizer._grid import grid_points
from shared.space import ExperimentSpec
from tests.suggester_tests.optimizer_tests._helpers import with_conditionals
from tests.suggester_tests.optimizer_tests._helpers import with_constraints

SPEC = ExperimentSpec.from_json(
    {
        "type": "grid",
        "parameters": [
            {"name": "a", "type": "int", "grid": [1, 2]},
            {"name": "b", "type": "categorical", "categorical_values": ["x", "y", "z"]},
        ],
    }
)


def test_enumerates_the_product_last_column_fastest() -> None:
    assert list(grid_points(SPEC)) == [{"a": a, "b": b} for a in (1, 2) for b in ("x", "y", "z")]


def test_skips_observed_and_pending_points_and_stops_when_exhausted() -> None:
    observed = [Observation({"a": 1, "b": "x"}, None, {"value": 1.0})]
    pending = [Pending({"a": 1, "b": "z"}, None)]
    result = GridOptimizer().suggest(SPEC, observed, pending, 10, 0)
    assert [c.assignments for c in result.candidates] == [
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
        {"a": 2, "b": "z"},
    ]
    assert all(c.source == "grid" for c in result.candidates)


def test_conditionals_collapse_to_distinct_points() -> None:
    points = list(grid_points(with_conditionals(grid=True)))
    assert len(points) == 3 * 3 + 3 * 3  # (lr x depth) under a, (lr x heads) under b


def test_constraints_filter_points() -> None:
    spec = with_constraints(grid=True)
    points = list(grid_points(spec))
    assert points and all(spec.is_feasible(p) for p in points)


def test_a_double_without_grid_is_rejected() -> None:
    spec = ExperimentSpec.from_json(
        {
            "type": "grid",
            "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
        }
    )
    with pytest.raises(ValueError, match="no grid values"):
        list(grid_points(spec))
