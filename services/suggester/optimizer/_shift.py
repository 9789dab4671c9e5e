"""A task-dependent input shift: a cheap task's optimum may sit elsewhere than full cost's.

The best learning rate, batch size or regularization of a short run is often not that of a long
one. The ICM kernel ``k_x(x, x') B[t, t']`` can only say that the tasks are less correlated when
that happens, which leaves every cheap result pointing at the cheap task's optimum. `TaskShift`
instead evaluates the data kernel at shifted inputs, ``k_x(x - d[t], x' - d[t'])``, with a
learned offset ``d[t]`` per cheap task over the numeric (unit-cube) columns and ``d[full] = 0``:
a cheap task is then a full-cost function seen through a moved window, and its optimum maps
back onto where the full-cost optimum should be. The offsets start at 0 (the plain ICM model)
with a ``N(0, SCALE^2)`` prior, so they only move where cheap and full-cost results of nearby
configurations disagree consistently.
"""

from __future__ import annotations

from typing import Any

import torch
from gpytorch.kernels import Kernel
from gpytorch.priors import NormalPrior
from torch import Tensor

#: Prior scale of each offset, in unit-cube units.
SCALE = 0.2


class TaskShift(Kernel):  # type: ignore[misc]  # gpytorch ships no types
    """``base(x - d[t(x)], x' - d[t(x')])`` where column ``task_column`` holds ``t``.

    Args:
        base: The data kernel (its own ``active_dims`` select the columns it reads).
        dim: Columns of a row, the task column included.
        task_column: Index of the task column (task indices ``0 .. tasks - 1``).
        tasks: Number of tasks.
        target: Index of the full-cost task, whose offset is fixed at 0.
        dims: The numeric columns that shift.
    """

    def __init__(
        self, base: Kernel, dim: int, task_column: int, tasks: int, target: int, dims: list[int]
    ) -> None:
        super().__init__(active_dims=torch.arange(dim))
        self.base = base
        self.task_column = task_column
        self.dims = list(dims)
        mask = torch.ones(tasks, len(self.dims), dtype=torch.float64)
        mask[target] = 0.0
        self.register_buffer("mask", mask)
        self.register_parameter("raw_shift", torch.nn.Parameter(torch.zeros_like(mask)))
        self.register_prior("shift_prior", NormalPrior(0.0, SCALE), "raw_shift")

    @property
    def shift(self) -> Tensor:
        """``tasks x len(dims)`` offsets (the full-cost row is 0)."""
        shift: Tensor = self.raw_shift * self.mask
        return shift

    def _moved(self, x: Tensor) -> Tensor:
        tasks = x[..., self.task_column].round().long().clamp(0, self.mask.shape[0] - 1)
        moved = x.clone()
        moved[..., self.dims] = x[..., self.dims] - self.shift.to(x)[tasks]
        return moved

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params: Any) -> Any:
        return self.base(self._moved(x1), self._moved(x2), diag=diag, **params)
