"""Entry point: pick the strategy by the experiment's ``type`` and ask it for candidates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.suggester.optimizer._base import Observation
from services.suggester.optimizer._base import Optimizer
from services.suggester.optimizer._base import Pending
from services.suggester.optimizer._base import SuggestResult
from services.suggester.optimizer._grid import GridOptimizer
from services.suggester.optimizer._multitask import MultitaskOptimizer
from services.suggester.optimizer._random import RandomOptimizer
from shared.space import ExperimentSpec


def optimizer_for(spec: ExperimentSpec) -> Optimizer:
    """The strategy of ``spec.type``: ``offline`` (Bayesian), ``random`` or ``grid``.

    Raises:
        ValueError: for any other type.
    """
    if spec.type == "offline":
        return MultitaskOptimizer()
    if spec.type == "random":
        return RandomOptimizer()
    if spec.type == "grid":
        return GridOptimizer()
    raise ValueError(f"unknown experiment type {spec.type!r}")


def suggest(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    pending: Sequence[Pending],
    k: int,
    seed: int,
    state: dict[str, Any] | None = None,
) -> SuggestResult:
    """``k`` candidates for ``spec`` from its strategy; see `Optimizer.suggest`."""
    return optimizer_for(spec).suggest(spec, observations, pending, k, seed, state)
