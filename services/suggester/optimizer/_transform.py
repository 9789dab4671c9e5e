"""Model-space tensors for an `ExperimentSpec`: the unit-cube codec plus categorical codes.

A model-space row has one column per `ExperimentSpec.columns` entry and, for a multitask
experiment, one last task column:

* double, int and grid columns keep their unit-cube value from ``spec.encode`` (ints and grids
  sit on the grid ``i / (K - 1)``, declared as ``discrete_dims``), so no further input scaling
  is needed;
* categorical columns (conditionals included) hold the level's code ``0 .. C - 1`` and are
  declared as ``cat_dims`` for a Hamming kernel and the mixed optimizer;
* parameters inactive under the row's conditionals hold a constant (`INACTIVE_VALUE`, code 0)
  so the model sees one point per configuration and candidates never vary them;
* the task column holds the model's value for the task (an index or a fidelity), fixed during
  acquisition optimization.

Linear constraints become ``inequality_constraints`` on the unit-cube columns.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from shared.space import Assignments
from shared.space import ExperimentSpec

#: Unit-cube value of a numeric parameter that is inactive under the conditionals.
INACTIVE_VALUE = 0.5
DTYPE = torch.float64


class SpaceTransform:
    """Maps ``(assignments, task)`` pairs to ``n x D`` model-space tensors and back.

    Args:
        spec: The experiment.
        task_values: Model-space value of each task name (ignored for single-task).
    """

    def __init__(self, spec: ExperimentSpec, task_values: Mapping[str, float]) -> None:
        self.spec = spec
        self.columns = spec.columns
        self.d = len(self.columns)
        self.task_values = dict(task_values) if spec.is_multitask else {}
        self.task_column = self.d if spec.is_multitask else None
        self.dim = self.d + (1 if spec.is_multitask else 0)
        self.cat_dims: dict[int, list[float]] = {}
        self.discrete_dims: dict[int, list[float]] = {}
        self.constant_dims: dict[int, float] = {}
        for j, column in enumerate(self.columns):
            levels = len(column.levels)
            if column.kind == "categorical":
                self.cat_dims[j] = [float(i) for i in range(levels)]
            elif column.kind in ("int", "grid") and levels > 1:
                self.discrete_dims[j] = [i / (levels - 1) for i in range(levels)]
            elif column.kind in ("int", "grid"):
                self.constant_dims[j] = 0.0
        self.ordinal_dims = [j for j in range(self.d) if j not in self.cat_dims]
        lower = torch.zeros(self.dim, dtype=DTYPE)
        upper = torch.ones(self.dim, dtype=DTYPE)
        for j, codes in self.cat_dims.items():
            upper[j] = codes[-1]
        if self.task_column is not None:
            lower[-1] = min(self.task_values.values())
            upper[-1] = max(self.task_values.values())
        self.bounds = torch.stack([lower, upper])
        self._conditional_names = {c.name for c in spec.conditionals}

    # ----------------------------------------------------------------- rows
    def encode(self, assignments: Mapping[str, Any], task: str | None) -> np.ndarray:
        """Model-space row (length ``D``) of one configuration on one task."""
        unit = self.spec.encode(assignments)
        row = np.empty(self.dim)
        for j, column in enumerate(self.columns):
            if np.isnan(unit[j]):
                row[j] = 0.0 if j in self.cat_dims else INACTIVE_VALUE
            elif j in self.cat_dims:
                row[j] = float(int(unit[j] * len(column.levels)))
            else:
                row[j] = unit[j]
        if self.task_column is not None:
            row[-1] = self.task_values[task] if task is not None else self.target_value
        return row

    def encode_rows(self, pairs: Sequence[tuple[Mapping[str, Any], str | None]]) -> Tensor:
        """``n x D`` tensor of ``n`` ``(assignments, task)`` pairs."""
        rows = np.array([self.encode(a, t) for a, t in pairs]).reshape(len(pairs), self.dim)
        return torch.as_tensor(rows, dtype=DTYPE)

    def decode(self, x: Tensor) -> tuple[Assignments, str | None]:
        """Assignments (exact types, active parameters only) and task of a ``D``-dim row."""
        values = x.detach().cpu().double().numpy()
        unit = np.empty(self.d)
        for j, column in enumerate(self.columns):
            if j in self.cat_dims:
                code = int(np.clip(np.rint(values[j]), 0, len(column.levels) - 1))
                unit[j] = (code + 0.5) / len(column.levels)
            else:
                unit[j] = values[j]
        task = None
        if self.task_column is not None:
            task = min(self.task_values, key=lambda t: abs(self.task_values[t] - values[-1]))
        return self.spec.decode(unit), task

    def with_task(self, X: Tensor, task: str) -> Tensor:
        """Copy of an ``n x D`` tensor with every row moved to ``task``."""
        out = X.clone()
        out[..., -1] = self.task_values[task]
        return out

    @property
    def target_value(self) -> float:
        """Model-space value of the full-cost task."""
        full = self.spec.full_cost_task
        assert full is not None
        return self.task_values[full.name]

    # ----------------------------------------------------------------- optimization
    def branches(self, limit: int, rng: np.random.Generator) -> list[dict[int, float]]:
        """Fixed features of each conditional branch (at most ``limit``, drawn when more).

        Each branch fixes the conditional columns, the inactive parameters' columns and
        single-valued columns; a spec without conditionals has one branch.
        """
        conditionals = self.spec.conditionals
        combos = list(itertools.product(*(c.values for c in conditionals)))
        if len(combos) > limit:
            picked = rng.choice(len(combos), size=limit, replace=False)
            combos = [combos[i] for i in sorted(picked)]
        out = []
        for combo in combos:
            chosen = {c.name: v for c, v in zip(conditionals, combo, strict=True)}
            fixed = dict(self.constant_dims)
            for j, column in enumerate(self.columns):
                if column.name in chosen:
                    fixed[j] = float(column.levels.index(chosen[column.name]))
                elif column.name not in self._conditional_names:
                    assert column.parameter is not None
                    if not self.spec.is_active(column.parameter, chosen):
                        fixed[j] = 0.0 if j in self.cat_dims else INACTIVE_VALUE
            out.append(fixed)
        return out

    def inequality_constraints(self) -> list[tuple[Tensor, Tensor, float]] | None:
        """Linear constraints as BoTorch ``(indices, coefficients, rhs)`` with ``>= rhs``.

        Raises:
            ValueError: for a constraint on a log-scaled, grid or categorical parameter.
        """
        out = []
        index = {column.name: j for j, column in enumerate(self.columns)}
        for constraint in self.spec.linear_constraints:
            indices, coefficients, rhs = [], [], constraint.threshold
            for name, weight in constraint.terms:
                j = index[name]
                parameter = self.columns[j].parameter
                if (
                    parameter is None
                    or self.columns[j].kind not in ("int", "double")
                    or (parameter.log)
                ):
                    raise ValueError(f"linear constraint on unsupported parameter {name!r}")
                assert parameter.min is not None and parameter.max is not None
                indices.append(j)
                coefficients.append(weight * (parameter.max - parameter.min))
                rhs -= weight * parameter.min
            sign = 1.0 if constraint.type == "greater_than" else -1.0
            out.append(
                (
                    torch.tensor(indices, dtype=torch.long),
                    torch.tensor([sign * c for c in coefficients], dtype=DTYPE),
                    sign * rhs,
                )
            )
        return out or None
