"""Search-space values shared by the API (validation) and the suggester (optimization).

An experiment definition arrives as SigOpt v1 JSON; the API validates its shape and rules, then
`ExperimentSpec.from_json` turns the stored JSON into these frozen values. Nothing here does I/O.

The unit-cube codec maps assignments to `d`-vectors in [0, 1]^d (one column per parameter and per
conditional, in definition order) and back, with exact types and bounds on the way back:

* double: affine (or log-affine with ``transformation: log``) map of ``[min, max]``;
* int: affine map of ``[min, max]``, rounded on decode;
* grid (a double or int with a ``grid`` list): index of the sorted grid value over ``n - 1``;
* categorical and conditional: level ``i`` of ``C`` encodes to ``(i + 0.5) / C``, and ``u`` decodes
  to level ``min(floor(u * C), C - 1)``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np

Assignments = dict[str, Any]


class InvalidAssignments(ValueError):
    """An assignment does not fit the space; ``field`` names the offending key."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Prior:
    """A prior belief for a double parameter, used by the initial design."""

    name: str  # "normal" | "beta"
    mean: float | None = None
    scale: float | None = None
    shape_a: float | None = None
    shape_b: float | None = None


@dataclass(frozen=True)
class Parameter:
    """One tunable parameter. ``values`` holds categorical levels or the sorted grid."""

    name: str
    type: str  # "int" | "double" | "categorical"
    min: float | None = None
    max: float | None = None
    log: bool = False
    categorical_values: tuple[str, ...] = ()
    grid: tuple[float, ...] = ()
    default_value: Any = None
    prior: Prior | None = None
    conditions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def is_categorical(self) -> bool:
        return self.type == "categorical"

    @property
    def is_grid(self) -> bool:
        return bool(self.grid)


@dataclass(frozen=True)
class Conditional:
    """A categorical switch that turns parameters on and off (SigOpt ``conditionals``)."""

    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class LinearConstraint:
    """``sum(weight * x[name]) > threshold`` (greater_than) or ``< threshold`` (less_than)."""

    type: str
    terms: tuple[tuple[str, float], ...]
    threshold: float

    def satisfied(self, assignments: Mapping[str, Any], slack: float = 1e-9) -> bool:
        total = sum(weight * float(assignments[name]) for name, weight in self.terms)
        if self.type == "greater_than":
            return total >= self.threshold - slack
        return total <= self.threshold + slack


@dataclass(frozen=True)
class Task:
    """A fidelity: ``cost`` in (0, 1]; exactly one task of a multitask experiment costs 1."""

    name: str
    cost: float


@dataclass(frozen=True)
class Metric:
    name: str
    objective: str = "maximize"  # "maximize" | "minimize"
    strategy: str = "optimize"  # "optimize" | "constraint" | "store"
    threshold: float | None = None

    def better(self, a: float, b: float) -> bool:
        """True when value ``a`` is strictly better than ``b`` for this metric."""
        return a > b if self.objective == "maximize" else a < b

    def satisfies_threshold(self, value: float) -> bool:
        if self.threshold is None:
            return True
        if self.objective == "maximize":
            return value >= self.threshold
        return value <= self.threshold


@dataclass(frozen=True)
class Column:
    """One coordinate of the unit cube: a parameter or a conditional."""

    name: str
    kind: str  # "double" | "int" | "grid" | "categorical"
    parameter: Parameter | None  # None for a conditional

    @property
    def levels(self) -> tuple[Any, ...]:
        """Allowed values of a discrete column (categorical levels, grid values, or ints)."""
        if self.kind == "categorical":
            if self.parameter is None:
                raise AssertionError("conditional columns carry their own levels")
            return self.parameter.categorical_values
        if self.kind == "grid":
            assert self.parameter is not None
            return self.parameter.grid
        if self.kind == "int":
            assert self.parameter is not None
            assert self.parameter.min is not None and self.parameter.max is not None
            return tuple(range(int(self.parameter.min), int(self.parameter.max) + 1))
        return ()


@dataclass(frozen=True)
class ExperimentSpec:
    """The optimizer-relevant part of an experiment definition."""

    parameters: tuple[Parameter, ...]
    metrics: tuple[Metric, ...] = (Metric(name="value"),)
    conditionals: tuple[Conditional, ...] = ()
    linear_constraints: tuple[LinearConstraint, ...] = ()
    tasks: tuple[Task, ...] = ()
    type: str = "offline"
    observation_budget: float | None = None
    parallel_bandwidth: int = 1

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_json(cls, definition: Mapping[str, Any]) -> ExperimentSpec:
        """Build from SigOpt v1 experiment JSON that has already been validated."""
        parameters = tuple(_parameter_from_json(p) for p in definition.get("parameters", ()))
        metrics = tuple(_metric_from_json(m) for m in definition.get("metrics") or ()) or (
            Metric(name="value"),
        )
        conditionals = tuple(
            Conditional(
                name=c["name"],
                values=tuple(_level_name(v) for v in c["values"]),
            )
            for c in definition.get("conditionals") or ()
        )
        constraints = tuple(
            LinearConstraint(
                type=c["type"],
                terms=tuple((t["name"], float(t["weight"])) for t in c["terms"]),
                threshold=float(c["threshold"]),
            )
            for c in definition.get("linear_constraints") or ()
        )
        tasks = tuple(
            Task(name=t["name"], cost=float(t["cost"])) for t in definition.get("tasks") or ()
        )
        budget = definition.get("observation_budget")
        return cls(
            parameters=parameters,
            metrics=metrics,
            conditionals=conditionals,
            linear_constraints=constraints,
            tasks=tasks,
            type=definition.get("type") or "offline",
            observation_budget=float(budget) if budget is not None else None,
            parallel_bandwidth=int(definition.get("parallel_bandwidth") or 1),
        )

    # ----------------------------------------------------------------- lookups
    @property
    def is_multitask(self) -> bool:
        return bool(self.tasks)

    @property
    def full_cost_task(self) -> Task | None:
        """The task with cost 1 (the "true" metric), or None for a single-task experiment."""
        return next((t for t in self.tasks if t.cost == 1.0), None)

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def task_cost(self, name: str | None) -> float:
        """Cost of a task by name; 1 for a single-task experiment."""
        if not self.tasks or name is None:
            return 1.0
        return self.task(name).cost

    @property
    def optimized_metrics(self) -> tuple[Metric, ...]:
        return tuple(m for m in self.metrics if m.strategy == "optimize")

    @property
    def constraint_metrics(self) -> tuple[Metric, ...]:
        return tuple(m for m in self.metrics if m.strategy == "constraint")

    def parameter(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(name)

    @property
    def columns(self) -> tuple[Column, ...]:
        """Unit-cube columns: conditionals first, then parameters, in definition order."""
        cols = [
            Column(
                name=c.name,
                kind="categorical",
                parameter=Parameter(name=c.name, type="categorical", categorical_values=c.values),
            )
            for c in self.conditionals
        ]
        for p in self.parameters:
            if p.is_categorical:
                kind = "categorical"
            elif p.is_grid:
                kind = "grid"
            else:
                kind = p.type
            cols.append(Column(name=p.name, kind=kind, parameter=p))
        return tuple(cols)

    @property
    def dimension(self) -> int:
        return len(self.columns)

    def is_active(self, parameter: Parameter, assignments: Mapping[str, Any]) -> bool:
        """A parameter is active when every condition it names holds in ``assignments``."""
        return all(
            assignments.get(cond_name) in allowed
            for cond_name, allowed in parameter.conditions.items()
        )

    def active_parameters(self, assignments: Mapping[str, Any]) -> tuple[Parameter, ...]:
        return tuple(p for p in self.parameters if self.is_active(p, assignments))

    def is_feasible(self, assignments: Mapping[str, Any]) -> bool:
        return all(c.satisfied(assignments) for c in self.linear_constraints)

    # ----------------------------------------------------------------- codec
    def decode(self, unit: np.ndarray) -> Assignments:
        """Map a point of [0, 1]^d (shape ``d``) to assignments with exact types and bounds.

        Parameters made inactive by the decoded conditionals are left out.
        """
        unit = np.clip(np.asarray(unit, dtype=float), 0.0, 1.0)
        if unit.shape != (self.dimension,):
            raise ValueError(f"expected a vector of length {self.dimension}, got {unit.shape}")
        values: Assignments = {}
        for u, col in zip(unit, self.columns, strict=True):
            values[col.name] = _decode_column(col, float(u))
        return {
            name: value
            for name, value in values.items()
            if not self._is_parameter_name(name) or self.is_active(self.parameter(name), values)
        }

    def encode(self, assignments: Mapping[str, Any]) -> np.ndarray:
        """Map assignments to a ``d``-vector in [0, 1]; inactive parameters encode to NaN."""
        out = np.full(self.dimension, np.nan)
        for i, col in enumerate(self.columns):
            if col.name in assignments:
                out[i] = _encode_column(col, assignments[col.name])
        return out

    def _is_parameter_name(self, name: str) -> bool:
        return any(p.name == name for p in self.parameters)

    # ----------------------------------------------------------------- validation
    def validate_assignments(
        self, assignments: Mapping[str, Any], prefix: str = "assignments"
    ) -> None:
        """Raise `InvalidAssignments` naming the field when ``assignments`` do not fit."""
        if not isinstance(assignments, Mapping):
            raise InvalidAssignments(prefix, "must be an object")
        for cond in self.conditionals:
            key = f"{prefix}.{cond.name}"
            if cond.name not in assignments:
                raise InvalidAssignments(key, "is required (a conditional)")
            if assignments[cond.name] not in cond.values:
                raise InvalidAssignments(key, f"must be one of {list(cond.values)}")
        known = {c.name for c in self.conditionals}
        for parameter in self.parameters:
            known.add(parameter.name)
            key = f"{prefix}.{parameter.name}"
            active = self.is_active(parameter, assignments)
            if parameter.name not in assignments:
                if active:
                    raise InvalidAssignments(key, "is required")
                continue
            if not active:
                raise InvalidAssignments(key, "is inactive under the given conditionals")
            _check_value(parameter, assignments[parameter.name], key)
        for name in assignments:
            if name not in known:
                raise InvalidAssignments(
                    f"{prefix}.{name}", "is not a parameter of this experiment"
                )
        for i, constraint in enumerate(self.linear_constraints):
            if not constraint.satisfied(assignments):
                raise InvalidAssignments(
                    f"linear_constraints[{i}]", "is violated by the given assignments"
                )


def assignment_key(assignments: Mapping[str, Any], task: str | None) -> str:
    """SHA-256 (hex) of the canonical text of an (assignments, task) pair: equal pairs, equal keys.

    Doubles are rounded to 12 significant digits so that values that round-trip through JSON
    or the unit cube compare equal.
    """

    def canonical(value: Any) -> Any:
        if isinstance(value, float):
            return float(f"{value:.12g}")
        return value

    body = {k: canonical(v) for k, v in sorted(assignments.items())}
    text = json.dumps([body, task], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- helpers
def _level_name(value: Any) -> str:
    return value["name"] if isinstance(value, Mapping) else str(value)


def _parameter_from_json(p: Mapping[str, Any]) -> Parameter:
    bounds = p.get("bounds") or {}
    grid = tuple(sorted(float(v) for v in p.get("grid") or ()))
    prior = p.get("prior")
    conditions = {
        name: tuple(v if isinstance(v, list) else [v])
        for name, v in (p.get("conditions") or {}).items()
    }
    lo = bounds.get("min")
    hi = bounds.get("max")
    if grid:
        lo, hi = grid[0], grid[-1]
    return Parameter(
        name=p["name"],
        type=p["type"],
        min=float(lo) if lo is not None else None,
        max=float(hi) if hi is not None else None,
        log=p.get("transformation") == "log",
        categorical_values=tuple(_level_name(v) for v in p.get("categorical_values") or ()),
        grid=grid,
        default_value=p.get("default_value"),
        prior=Prior(**{k: v for k, v in prior.items()}) if prior else None,
        conditions={k: tuple(str(x) for x in v) for k, v in conditions.items()},
    )


def _metric_from_json(m: Any) -> Metric:
    if isinstance(m, str):
        return Metric(name=m)
    return Metric(
        name=m.get("name") or "value",
        objective=m.get("objective") or "maximize",
        strategy=m.get("strategy") or "optimize",
        threshold=m.get("threshold"),
    )


def _decode_column(col: Column, u: float) -> Any:
    if col.kind == "categorical":
        levels = col.levels
        return levels[min(int(u * len(levels)), len(levels) - 1)]
    if col.kind == "grid":
        levels = col.levels
        value = levels[int(round(u * (len(levels) - 1)))]
        assert col.parameter is not None
        return int(value) if col.parameter.type == "int" else value
    p = col.parameter
    assert p is not None and p.min is not None and p.max is not None
    if col.kind == "int":
        return int(min(max(round(p.min + u * (p.max - p.min)), p.min), p.max))
    if p.log:
        value = math.exp(math.log(p.min) + u * (math.log(p.max) - math.log(p.min)))
    else:
        value = p.min + u * (p.max - p.min)
    return float(min(max(value, p.min), p.max))


def _encode_column(col: Column, value: Any) -> float:
    if col.kind == "categorical":
        levels = col.levels
        return (levels.index(value) + 0.5) / len(levels)
    if col.kind == "grid":
        levels = col.levels
        index = int(np.argmin([abs(float(value) - g) for g in levels]))
        return index / (len(levels) - 1)
    p = col.parameter
    assert p is not None and p.min is not None and p.max is not None
    if p.max == p.min:
        return 0.0
    if p.log:
        return (math.log(float(value)) - math.log(p.min)) / (math.log(p.max) - math.log(p.min))
    return (float(value) - p.min) / (p.max - p.min)


def _check_value(parameter: Parameter, value: Any, key: str) -> None:
    if parameter.is_categorical:
        if not isinstance(value, str) or value not in parameter.categorical_values:
            raise InvalidAssignments(key, f"must be one of {list(parameter.categorical_values)}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidAssignments(key, f"must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise InvalidAssignments(key, "must be finite")
    if parameter.type == "int" and float(value) != int(value):
        raise InvalidAssignments(key, f"must be an integer, got {value!r}")
    if parameter.is_grid:
        if not any(abs(float(value) - g) <= 1e-12 * max(1.0, abs(g)) for g in parameter.grid):
            raise InvalidAssignments(key, f"must be one of the grid values {list(parameter.grid)}")
        return
    assert parameter.min is not None and parameter.max is not None
    if value < parameter.min:
        raise InvalidAssignments(key, f"{value!r} is below the minimum {parameter.min!r}")
    if value > parameter.max:
        raise InvalidAssignments(key, f"{value!r} is above the maximum {parameter.max!r}")
