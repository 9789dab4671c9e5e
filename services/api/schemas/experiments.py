"""Experiment create/update bodies and the SigOpt rules that span several fields.

Shape errors come from pydantic; `check_definition` applies the cross-field rules (tasks,
metrics, conditionals, linear constraints) and raises `ApiError` naming the field.
"""

from __future__ import annotations

import math
from typing import Annotated
from typing import Any
from typing import Literal

import numpy as np
from pydantic import Field
from pydantic import StringConstraints

from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.schemas.common import EXAMPLE_METRICS
from services.api.schemas.common import EXAMPLE_PARAMETERS
from services.api.schemas.common import Metadata
from services.api.schemas.common import Name
from services.api.schemas.common import Number
from services.api.schemas.common import PageQuery
from services.api.schemas.common import StrictModel
from services.api.schemas.common import examples
from shared.design import random_unit
from shared.space import ExperimentSpec
from shared.states import ExperimentState
from shared.states import StateFilter

#: Smallest allowed ``max - min`` of a parameter's bounds.
MIN_RANGE = 1e-8
MAX_OPTIMIZED_METRICS = 2
MAX_CONSTRAINT_METRICS = 4
MAX_METRICS = 50
MAX_PARAMETERS = 200
MAX_CATEGORICAL_VALUES = 200
MAX_GRID_VALUES = 1000
MAX_CONSTRAINED_INTEGERS = 10

LevelName = Annotated[str, StringConstraints(min_length=1, max_length=50)]


class Bounds(StrictModel):
    min: Number
    max: Number


class Prior(StrictModel):
    name: Literal["normal", "beta"]
    mean: Number | None = None
    scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    shape_a: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    shape_b: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class CategoricalValue(StrictModel):
    name: LevelName
    enum_index: int | None = None


class Parameter(StrictModel):
    name: Name
    type: Literal["int", "double", "categorical"]
    bounds: Bounds | None = None
    categorical_values: (
        Annotated[list[LevelName | CategoricalValue], Field(max_length=MAX_CATEGORICAL_VALUES)]
        | None
    ) = None
    grid: Annotated[list[Number], Field(max_length=MAX_GRID_VALUES)] | None = None
    transformation: Literal["none", "log"] | None = None
    prior: Prior | None = None
    default_value: Number | Name | None = None
    conditions: dict[Name, Name | list[Name]] | None = None


class Metric(StrictModel):
    name: Name
    objective: Literal["maximize", "minimize"] = "maximize"
    strategy: Literal["optimize", "constraint", "store"] = "optimize"
    threshold: Number | None = None


class Task(StrictModel):
    name: Name
    cost: Number


class Conditional(StrictModel):
    name: Name
    values: Annotated[list[LevelName], Field(min_length=1, max_length=MAX_CATEGORICAL_VALUES)]


class ConstraintTerm(StrictModel):
    name: Name
    weight: Number


class LinearConstraint(StrictModel):
    type: Literal["greater_than", "less_than"]
    terms: Annotated[list[ConstraintTerm], Field(min_length=1)]
    threshold: Number


class Objective(StrictModel):
    """A registered objective the platform trains itself (a managed experiment)."""

    name: Name
    config: dict[str, Any] = Field(default_factory=dict)


#: A budget in cost units (a run or observation of task cost c consumes c).
Budget = Annotated[float, Field(gt=0, le=1e7, allow_inf_nan=False)]


class ExperimentFields(StrictModel):
    """What an experiment and an AI experiment are created with, but their budget (an AI
    experiment calls it ``budget``) and project (an AI experiment's is in its path)."""

    name: Name
    type: Literal["offline", "random", "grid"] = "offline"
    parameters: Annotated[list[Parameter], Field(min_length=1, max_length=MAX_PARAMETERS)]
    metrics: Annotated[list[Name | Metric], Field(max_length=MAX_METRICS)] | None = None
    conditionals: list[Conditional] | None = None
    linear_constraints: Annotated[list[LinearConstraint], Field(max_length=50)] | None = None
    tasks: Annotated[list[Task], Field(max_length=20)] | None = None
    parallel_bandwidth: Annotated[int, Field(ge=1, le=1000)] = 1
    num_solutions: Literal[1] = 1
    metadata: Metadata = None
    objective: Objective | None = None


class ExperimentCreate(ExperimentFields):
    model_config = examples(
        {
            "name": "example",
            "parameters": EXAMPLE_PARAMETERS,
            "metrics": EXAMPLE_METRICS,
            "observation_budget": 10,
        }
    )

    observation_budget: Budget | None = None
    project: Name | None = None


class ExperimentUpdateFields(StrictModel):
    """What may change after creation (SigOpt's mutable set, plus run state), but the budget."""

    name: Name | None = None
    #: Sent as text; validated laxly so that a strict model accepts the wire string.
    state: Annotated[ExperimentState, Field(strict=False)] | None = None
    parallel_bandwidth: Annotated[int, Field(ge=1, le=1000)] | None = None
    metadata: Metadata = None
    parameters: list[Parameter] | None = None
    metrics: list[Name | Metric] | None = None
    no_optimize: bool | None = None


class ExperimentUpdate(ExperimentUpdateFields):
    model_config = examples({"name": "renamed", "observation_budget": 20})

    observation_budget: Budget | None = None
    project: Name | None = None


class ExperimentListQuery(PageQuery):
    """``GET /experiments``: paging plus a state filter and a name search."""

    state: ExperimentState | Literal[StateFilter.ALL] = ExperimentState.ACTIVE
    search: str | None = None


# --------------------------------------------------------------------------- rules
def normalized_metrics(metrics: list[str | Metric] | None) -> list[dict[str, Any]]:
    """Metrics as full objects; SigOpt allows a bare name, and a single unnamed metric."""
    if not metrics:
        return [{"name": "value", "objective": "maximize", "strategy": "optimize"}]
    out = []
    for metric in metrics:
        if isinstance(metric, str):
            metric = Metric(name=metric)
        out.append(metric.model_dump(exclude_none=True))
    return out


def normalized_parameter(parameter: Parameter) -> dict[str, Any]:
    data = parameter.model_dump(exclude_none=True)
    if parameter.type == "int" and parameter.bounds is not None:
        data["bounds"] = {"min": int(parameter.bounds.min), "max": int(parameter.bounds.max)}
    if parameter.type == "int" and isinstance(parameter.default_value, float):
        data["default_value"] = int(parameter.default_value)
    if parameter.categorical_values is not None:
        data["categorical_values"] = [
            {"name": v if isinstance(v, str) else v.name, "enum_index": i + 1}
            for i, v in enumerate(parameter.categorical_values)
        ]
    if parameter.grid is not None:
        grid = sorted(parameter.grid)
        data["grid"] = [int(g) for g in grid] if parameter.type == "int" else grid
        data["bounds"] = {"min": data["grid"][0], "max": data["grid"][-1]}
    if parameter.conditions:
        data["conditions"] = {
            k: v if isinstance(v, list) else [v] for k, v in parameter.conditions.items()
        }
    return data


def definition_from_create(
    body: ExperimentCreate, budget_field: str = "observation_budget"
) -> dict[str, Any]:
    """The stored definition; raises `ApiError` when a cross-field rule is broken. Errors about
    the budget name ``budget_field`` (an AI experiment calls it ``budget``)."""
    # Each parameter is judged before it is normalized: normalizing assumes a valid parameter
    # (a grid of at least 2 values, bounds of an int parameter that are integers).
    _check_parameters(body.parameters, body.conditionals or [])
    definition: dict[str, Any] = {
        "type": body.type,
        "parameters": [normalized_parameter(p) for p in body.parameters],
        "metrics": normalized_metrics(body.metrics),
        "conditionals": [c.model_dump() for c in body.conditionals or ()],
        "linear_constraints": [c.model_dump() for c in body.linear_constraints or ()],
        "tasks": [t.model_dump() for t in body.tasks or ()],
        "num_solutions": body.num_solutions,
        "observation_budget": body.observation_budget,
        "parallel_bandwidth": body.parallel_bandwidth,
    }
    if body.objective is not None:
        definition["objective"] = body.objective.model_dump()
    if body.project is not None:
        definition["project"] = body.project
    check_definition(body, definition, budget_field)
    return definition


def check_definition(
    body: ExperimentCreate,
    definition: dict[str, Any],
    budget_field: str = "observation_budget",
) -> None:
    """The cross-field rules but the parameters' own (`_check_parameters`, judged first)."""
    _check_metrics(definition["metrics"], body, budget_field)
    _check_tasks(body)
    _check_linear_constraints(body)
    if body.type == "grid":
        for i, parameter in enumerate(body.parameters):
            if parameter.type != "categorical" and not parameter.grid:
                raise invalid(
                    f"parameters[{i}].grid",
                    "a grid experiment needs a grid on every numeric parameter",
                )
        if body.tasks:
            raise invalid("tasks", "tasks are not allowed in a grid experiment")
    if body.objective is not None:
        # Whether a worker provides the objective is `services.api.store.workers`' rule.
        if body.observation_budget is None:
            raise invalid(budget_field, "is required for a managed experiment (objective)")
    if body.linear_constraints:
        spec = ExperimentSpec.from_json(definition)
        try:
            random_unit(spec, np.random.default_rng(0), 1)
        except RuntimeError as exc:
            raise invalid("linear_constraints", "leave no feasible point in the bounds") from exc


def _check_parameters(parameters: list[Parameter], conditionals: list[Conditional]) -> None:
    names: set[str] = set()
    conditional_values = {c.name: set(c.values) for c in conditionals}
    for i, c in enumerate(conditionals):
        if len(set(c.values)) != len(c.values):
            raise invalid(f"conditionals[{i}].values", "values must be distinct")
        if c.name in names:
            raise invalid(f"conditionals[{i}].name", f"duplicate name {c.name!r}")
        names.add(c.name)
    for i, p in enumerate(parameters):
        field = f"parameters[{i}]"
        if p.name in names:
            raise invalid(f"{field}.name", f"duplicate name {p.name!r}")
        names.add(p.name)
        _check_parameter(p, field)
        for cond_name, allowed in (p.conditions or {}).items():
            if cond_name not in conditional_values:
                raise invalid(f"{field}.conditions", f"unknown conditional {cond_name!r}")
            for value in allowed if isinstance(allowed, list) else [allowed]:
                if value not in conditional_values[cond_name]:
                    raise invalid(f"{field}.conditions.{cond_name}", f"unknown value {value!r}")


def _check_parameter(p: Parameter, field: str) -> None:
    if p.type == "categorical":
        if p.bounds is not None or p.grid is not None or p.transformation not in (None, "none"):
            raise invalid(field, "a categorical parameter takes only categorical_values")
        if p.prior is not None:
            raise invalid(f"{field}.prior", "priors are only allowed on double parameters")
        values = [v if isinstance(v, str) else v.name for v in p.categorical_values or []]
        if len(values) < 2:
            raise invalid(f"{field}.categorical_values", "at least 2 values are required")
        if len(set(values)) != len(values):
            raise invalid(f"{field}.categorical_values", "values must be distinct")
        if p.default_value is not None and p.default_value not in values:
            raise invalid(f"{field}.default_value", "must be one of the categorical_values")
        return
    if p.categorical_values is not None:
        raise invalid(f"{field}.categorical_values", "only categorical parameters take them")
    if p.grid is not None:
        _check_grid(p, field)
    else:
        _check_bounds(p, field)
    if p.transformation == "log":
        if p.type != "double":
            raise invalid(f"{field}.transformation", "log is only allowed on double parameters")
        if p.grid is not None:
            raise invalid(f"{field}.transformation", "log is not allowed with a grid")
        assert p.bounds is not None
        if p.bounds.min <= 0:
            raise invalid(f"{field}.bounds.min", "must be > 0 with transformation log")
    if p.prior is not None:
        _check_prior(p, field)
    if p.default_value is not None:
        _check_default(p, field)


def _check_bounds(p: Parameter, field: str) -> None:
    if p.bounds is None:
        raise invalid(f"{field}.bounds", f"a {p.type} parameter needs bounds or a grid")
    lo, hi = p.bounds.min, p.bounds.max
    if p.type == "int" and (not float(lo).is_integer() or not float(hi).is_integer()):
        raise invalid(f"{field}.bounds", "int bounds must be integers")
    if hi - lo < MIN_RANGE:
        raise invalid(f"{field}.bounds", f"max must exceed min by at least {MIN_RANGE}")
    if abs(lo) > 1e15 or abs(hi) > 1e15:
        raise invalid(f"{field}.bounds", "bounds must lie within ±1e15")


def _check_grid(p: Parameter, field: str) -> None:
    assert p.grid is not None
    if p.bounds is not None:
        raise invalid(
            f"{field}.bounds", "a grid parameter takes no bounds (they come from the grid)"
        )
    if len(set(p.grid)) != len(p.grid) or len(p.grid) < 2:
        raise invalid(f"{field}.grid", "at least 2 distinct values are required")
    if p.type == "int" and not all(float(v).is_integer() for v in p.grid):
        raise invalid(f"{field}.grid", "int grid values must be integers")


def _check_prior(p: Parameter, field: str) -> None:
    prior = p.prior
    assert prior is not None
    if p.type != "double" or p.grid is not None or p.transformation == "log":
        raise invalid(f"{field}.prior", "priors are only allowed on plain double parameters")
    if prior.name == "normal":
        if prior.mean is None or prior.scale is None:
            raise invalid(f"{field}.prior", "a normal prior needs mean and scale")
        assert p.bounds is not None
        if not p.bounds.min <= prior.mean <= p.bounds.max:
            raise invalid(f"{field}.prior.mean", "must lie within the bounds")
    elif prior.shape_a is None or prior.shape_b is None:
        raise invalid(f"{field}.prior", "a beta prior needs shape_a and shape_b")


def _check_default(p: Parameter, field: str) -> None:
    value = p.default_value
    if isinstance(value, str) or isinstance(value, bool):
        raise invalid(f"{field}.default_value", "must be a number")
    assert value is not None
    if p.type == "int" and not float(value).is_integer():
        raise invalid(f"{field}.default_value", "must be an integer")
    if p.grid is not None:
        if value not in p.grid:
            raise invalid(f"{field}.default_value", "must be one of the grid values")
    elif p.bounds is not None and not p.bounds.min <= value <= p.bounds.max:
        raise invalid(f"{field}.default_value", "must lie within the bounds")


def _check_metrics(
    metrics: list[dict[str, Any]], body: ExperimentCreate, budget_field: str
) -> None:
    names = [m["name"] for m in metrics]
    if len(set(names)) != len(names):
        raise invalid("metrics", "metric names must be distinct")
    optimized = [m for m in metrics if m.get("strategy", "optimize") == "optimize"]
    constraints = [m for m in metrics if m.get("strategy") == "constraint"]
    if not optimized:
        raise invalid("metrics", "at least one metric must have strategy optimize")
    if len(optimized) > MAX_OPTIMIZED_METRICS:
        raise invalid("metrics", f"at most {MAX_OPTIMIZED_METRICS} metrics can be optimized")
    if len(constraints) > MAX_CONSTRAINT_METRICS:
        raise invalid("metrics", f"at most {MAX_CONSTRAINT_METRICS} constraint metrics")
    for i, m in enumerate(metrics):
        strategy = m.get("strategy", "optimize")
        if strategy == "constraint" and m.get("threshold") is None:
            raise invalid(f"metrics[{i}].threshold", "a constraint metric needs a threshold")
        if strategy == "store" and m.get("threshold") is not None:
            raise invalid(f"metrics[{i}].threshold", "a store metric takes no threshold")
        if strategy == "optimize" and m.get("threshold") is not None and len(optimized) < 2:
            raise invalid(
                f"metrics[{i}].threshold",
                "thresholds on optimized metrics need two optimized metrics",
            )
    needs_budget = len(optimized) > 1 or constraints or body.tasks
    if needs_budget and body.observation_budget is None:
        raise invalid(
            budget_field, "is required with tasks, constraint metrics or two optimized metrics"
        )


def _check_tasks(body: ExperimentCreate) -> None:
    if body.tasks is None:
        return
    tasks = body.tasks
    if len(tasks) < 2:
        raise invalid("tasks", "a multitask experiment needs at least 2 tasks")
    for i, task in enumerate(tasks):
        if not 0 < task.cost <= 1:
            raise invalid(f"tasks[{i}].cost", "must be in (0, 1]")
    if len({t.name for t in tasks}) != len(tasks):
        raise invalid("tasks", "task names must be distinct")
    if len({t.cost for t in tasks}) != len(tasks):
        raise invalid("tasks", "task costs must be distinct")
    if sum(1 for t in tasks if t.cost == 1) != 1:
        raise invalid("tasks", "exactly one task must have cost 1")
    if body.type != "offline":
        raise invalid("type", "tasks need type offline")


def _check_linear_constraints(body: ExperimentCreate) -> None:
    by_name = {p.name: p for p in body.parameters}
    constrained_ints: set[str] = set()
    for i, constraint in enumerate(body.linear_constraints or ()):
        kinds = set()
        seen = set()
        for j, term in enumerate(constraint.terms):
            field = f"linear_constraints[{i}].terms[{j}].name"
            p = by_name.get(term.name)
            if p is None:
                raise invalid(field, f"unknown parameter {term.name!r}")
            if term.name in seen:
                raise invalid(field, f"parameter {term.name!r} appears twice")
            seen.add(term.name)
            if p.type == "categorical" or p.grid is not None or p.transformation == "log":
                raise invalid(field, "only int and double parameters without grid or log")
            if p.conditions:
                raise invalid(field, "conditioned parameters cannot be constrained")
            if not math.isfinite(term.weight):
                raise invalid(f"linear_constraints[{i}].terms[{j}].weight", "must be finite")
            kinds.add(p.type)
            if p.type == "int":
                constrained_ints.add(p.name)
        if len(kinds) > 1:
            raise invalid(f"linear_constraints[{i}]", "cannot mix int and double parameters")
    if len(constrained_ints) > MAX_CONSTRAINED_INTEGERS:
        raise invalid(
            "linear_constraints",
            f"at most {MAX_CONSTRAINED_INTEGERS} int parameters can be constrained",
        )


def apply_update(definition: dict[str, Any], body: ExperimentUpdate) -> dict[str, Any]:
    """The definition after an update; immutable parts changing is a 400 naming the field."""
    updated = dict(definition)
    if body.parameters is not None:
        old = {p["name"]: p for p in definition["parameters"]}
        names = [p.name for p in body.parameters]
        if len(names) != len(old) or set(names) != set(old):
            raise invalid("parameters", "adding or removing parameters is not supported")
        for i, p in enumerate(body.parameters):
            _check_parameter(p, f"parameters[{i}]")
        new = [normalized_parameter(p) for p in body.parameters]
        for i, parameter in enumerate(new):
            before = old[parameter["name"]]
            for key in ("type", "transformation", "conditions"):
                if parameter.get(key) != before.get(key):
                    raise invalid(f"parameters[{i}].{key}", "cannot change after creation")
        updated["parameters"] = new
    if body.metrics is not None:
        new_metrics = normalized_metrics(body.metrics)
        old_metrics = definition["metrics"]
        if len(new_metrics) != len(old_metrics):
            raise invalid("metrics", "metrics cannot be added or removed")
        for i, (m, before) in enumerate(zip(new_metrics, old_metrics, strict=True)):
            for key in ("name", "objective", "strategy"):
                if m.get(key, Metric.model_fields[key].default) != before.get(
                    key, Metric.model_fields[key].default
                ):
                    raise invalid(f"metrics[{i}].{key}", "cannot change after creation")
            if before.get("strategy") == "constraint" and m.get("threshold") is None:
                raise invalid(f"metrics[{i}].threshold", "a constraint metric needs a threshold")
        updated["metrics"] = new_metrics
    if body.observation_budget is not None:
        updated["observation_budget"] = body.observation_budget
    if body.parallel_bandwidth is not None:
        updated["parallel_bandwidth"] = body.parallel_bandwidth
    if body.project is not None:
        updated["project"] = body.project
    if updated.get("linear_constraints") and body.parameters is not None:
        spec = ExperimentSpec.from_json(updated)
        try:
            random_unit(spec, np.random.default_rng(0), 1)
        except RuntimeError as exc:
            raise ApiError(
                400,
                "Invalid value for parameters: the new bounds leave no point "
                "that satisfies linear_constraints",
            ) from exc
    return updated
