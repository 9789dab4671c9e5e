from __future__ import annotations

import numpy as np
import pytest

from shared.space import ExperimentSpec
from shared.space import InvalidAssignments
from shared.space import assignment_key

DEFINITION = {
    "parameters": [
        {"name": "x", "type": "double", "bounds": {"min": -2, "max": 3}},
        {
            "name": "lr",
            "type": "double",
            "bounds": {"min": 1e-5, "max": 1},
            "transformation": "log",
        },
        {"name": "n", "type": "int", "bounds": {"min": 1, "max": 6}},
        {
            "name": "opt",
            "type": "categorical",
            "categorical_values": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        },
        {"name": "g", "type": "int", "grid": [8, 2, 32]},
        {
            "name": "depth",
            "type": "int",
            "bounds": {"min": 1, "max": 4},
            "conditions": {"model": ["tree"]},
        },
    ],
    "conditionals": [{"name": "model", "values": ["tree", "linear"]}],
    "linear_constraints": [
        {
            "type": "less_than",
            "terms": [{"name": "x", "weight": 1}, {"name": "n", "weight": 0.5}],
            "threshold": 3,
        }
    ],
    "tasks": [{"name": "cheap", "cost": 0.25}, {"name": "full", "cost": 1}],
}


@pytest.fixture()
def spec() -> ExperimentSpec:
    return ExperimentSpec.from_json(DEFINITION)


def test_columns_and_lookups(spec: ExperimentSpec) -> None:
    assert [c.name for c in spec.columns] == ["model", "x", "lr", "n", "opt", "g", "depth"]
    assert [c.kind for c in spec.columns] == [
        "categorical",
        "double",
        "double",
        "int",
        "categorical",
        "grid",
        "int",
    ]
    assert spec.full_cost_task is not None and spec.full_cost_task.name == "full"
    assert spec.task_cost("cheap") == 0.25 and spec.parameter("g").grid == (2.0, 8.0, 32.0)


def test_decode_gives_exact_types_and_bounds_everywhere(spec: ExperimentSpec) -> None:
    rng = np.random.default_rng(0)
    corners = [np.zeros(spec.dimension), np.ones(spec.dimension)]
    for unit in corners + [rng.random(spec.dimension) for _ in range(500)]:
        a = spec.decode(unit)
        assert -2 <= a["x"] <= 3 and isinstance(a["x"], float)
        assert 1e-5 <= a["lr"] <= 1
        assert isinstance(a["n"], int) and 1 <= a["n"] <= 6
        assert a["opt"] in ("a", "b", "c") and a["g"] in (2, 8, 32) and isinstance(a["g"], int)
        assert ("depth" in a) == (a["model"] == "tree")


def test_encode_decode_round_trip(spec: ExperimentSpec) -> None:
    a = {"model": "tree", "x": 0.5, "lr": 1e-3, "n": 2, "opt": "c", "g": 8, "depth": 3}
    assert spec.decode(spec.encode(a)) == pytest.approx(a)
    encoded = spec.encode({**a, "model": "linear"} | {"depth": 3})
    assert np.all((encoded >= 0) & (encoded <= 1))
    inactive = spec.encode({k: v for k, v in a.items() if k != "depth"})
    assert np.isnan(inactive[-1])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"x": 3.5}, "assignments.x"),
        ({"n": 2.5}, "assignments.n"),
        ({"opt": "z"}, "assignments.opt"),
        ({"g": 4}, "assignments.g"),
        ({"model": "forest"}, "assignments.model"),
        ({"x": "1"}, "assignments.x"),
        ({"x": True}, "assignments.x"),
        ({"extra": 1}, "assignments.extra"),
        ({"x": 2.9, "n": 6}, "linear_constraints[0]"),
        ({"model": "linear"}, "assignments.depth"),
    ],
)
def test_validation_names_the_field(spec: ExperimentSpec, change: dict, field: str) -> None:
    a = {"model": "tree", "x": 0.5, "lr": 1e-3, "n": 2, "opt": "c", "g": 8, "depth": 3}
    with pytest.raises(InvalidAssignments) as excinfo:
        spec.validate_assignments({**a, **change})
    assert excinfo.value.field == field


def test_assignment_key_ignores_float_noise_and_order() -> None:
    assert assignment_key({"a": 0.1 + 0.2, "b": 1}, "t") == assignment_key({"b": 1, "a": 0.3}, "t")
    assert assignment_key({"a": 0.3}, "t") != assignment_key({"a": 0.3}, "u")
    assert assignment_key({"a": 0.3}, None) != assignment_key({"a": 0.31}, None)
