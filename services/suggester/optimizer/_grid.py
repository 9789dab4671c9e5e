"""Grid search (``type: grid``): the product of every column's values, in a fixed order.

Columns are enumerated in `ExperimentSpec.columns` order (conditionals first), each over its
levels (categorical values, grid values, or every integer), the last column varying fastest.
Parameters made inactive by a conditional are dropped, which makes some products equal; those,
infeasible points and used points are skipped. When the grid is exhausted fewer than ``k``
candidates are returned.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

from services.suggester.optimizer._base import Candidate
from services.suggester.optimizer._base import Observation
from services.suggester.optimizer._base import Optimizer
from services.suggester.optimizer._base import Pending
from services.suggester.optimizer._base import SuggestResult
from services.suggester.optimizer._base import used_keys
from shared.space import Assignments
from shared.space import ExperimentSpec
from shared.space import assignment_key


class GridOptimizer(Optimizer):
    """The next unused points of the experiment's grid."""

    def suggest(
        self,
        spec: ExperimentSpec,
        observations: Sequence[Observation],
        pending: Sequence[Pending],
        k: int,
        seed: int,
        state: dict[str, Any] | None = None,
    ) -> SuggestResult:
        used = used_keys(observations, pending)
        out: list[Candidate] = []
        for index, assignments in enumerate(grid_points(spec)):
            if len(out) == k:
                break
            key = assignment_key(assignments, None)
            if key in used:
                continue
            used.add(key)
            out.append(Candidate(assignments, None, "grid", {"grid_index": index}))
        return SuggestResult(candidates=out, state=dict(state or {}))


def grid_points(spec: ExperimentSpec) -> Iterator[Assignments]:
    """Every distinct feasible grid point, in the deterministic order described above.

    Raises:
        ValueError: when a column has no finite set of values (a double without a grid).
    """
    columns = spec.columns
    for column in columns:
        if not column.levels:
            raise ValueError(f"parameter {column.name!r} has no grid values")
    seen: set[str] = set()
    for values in itertools.product(*(column.levels for column in columns)):
        raw = {
            column.name: _native(column.kind, column.parameter, v)
            for column, v in zip(columns, values, strict=True)
        }
        assignments = {
            name: value
            for name, value in raw.items()
            if not _is_parameter(spec, name) or spec.is_active(spec.parameter(name), raw)
        }
        key = assignment_key(assignments, None)
        if key in seen or not spec.is_feasible(assignments):
            continue
        seen.add(key)
        yield assignments


def _native(kind: str, parameter: Any, value: Any) -> Any:
    if kind == "grid" and parameter is not None and parameter.type == "int":
        return int(value)
    return value


def _is_parameter(spec: ExperimentSpec, name: str) -> bool:
    return any(p.name == name for p in spec.parameters)
