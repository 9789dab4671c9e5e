"""Training data for the surrogate: outcomes, failure imputation, per-task centering, noise.

Every modelled metric becomes one outcome column, signed so that larger is better (an optimized
metric) or feasible means ``y >= threshold`` (a constraint metric). Then, per outcome:

* a failed observation, or one missing the metric, gets the worst value seen on its own task
  (the worst overall when its task has none), so the model learns to avoid the region;
* with ``center`` (for the fidelity model, whose kernel cannot represent a per-task offset;
  the ICM model learns a mean per task instead), each task's values are shifted so that its
  mean equals the full-cost task's mean, leaving the full-cost scale, where thresholds live,
  untouched. The shift is biased when tasks sampled different regions, hence not the default;
* reported ``value_stddev`` becomes a fixed noise variance (the median of the reported ones where
  some are missing); with none reported the noise is learned.

Above ``max_points`` rows the cheapest tasks are subsampled first (see `subsample`): an exact
GP on 300 points keeps a suggestion within seconds on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from services.suggester.optimizer._base import Observation
from services.suggester.optimizer._transform import DTYPE
from services.suggester.optimizer._transform import SpaceTransform
from shared.space import ExperimentSpec

#: Smallest fixed noise variance, relative to the outcome's variance.
_MIN_RELATIVE_NOISE = 1e-6


@dataclass(frozen=True)
class Outcome:
    """One modelled metric: values are multiplied by ``sign``; feasible iff ``>= threshold``."""

    name: str
    sign: float
    objective: bool
    threshold: float | None = None


@dataclass(frozen=True)
class TrainingData:
    """Model inputs: ``X`` is ``n x D``, ``Y`` is ``n x m``, ``Yvar`` is ``n x m`` or None."""

    X: Tensor
    Y: Tensor
    Yvar: Tensor | None
    failed: Tensor
    tasks: tuple[str | None, ...]
    outcomes: tuple[Outcome, ...]

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


def outcomes_of(spec: ExperimentSpec) -> tuple[Outcome, ...]:
    """Optimized metrics first (in definition order), then constraint metrics."""
    out = []
    for metric in spec.optimized_metrics:
        out.append(Outcome(metric.name, 1.0 if metric.objective == "maximize" else -1.0, True))
    for metric in spec.constraint_metrics:
        sign = 1.0 if metric.objective == "maximize" else -1.0
        threshold = None if metric.threshold is None else sign * metric.threshold
        out.append(Outcome(metric.name, sign, False, threshold))
    return tuple(out)


def build_training_data(
    spec: ExperimentSpec,
    transform: SpaceTransform,
    observations: Sequence[Observation],
    max_points: int,
    seed: int,
    center: bool,
) -> TrainingData:
    """Training tensors from the history (see the module docstring)."""
    observations = subsample(spec, observations, max_points, seed)
    outcomes = outcomes_of(spec)
    X = transform.encode_rows([(o.assignments, o.task) for o in observations])
    tasks = tuple(o.task for o in observations)
    n, m = len(observations), len(outcomes)
    Y = np.full((n, m), np.nan)
    S = np.full((n, m), np.nan)
    for i, obs in enumerate(observations):
        for j, outcome in enumerate(outcomes):
            if not obs.failed and outcome.name in obs.values:
                Y[i, j] = outcome.sign * float(obs.values[outcome.name])
                if outcome.name in obs.stddevs:
                    S[i, j] = float(obs.stddevs[outcome.name]) ** 2
    failed = np.isnan(Y).any(axis=1)
    target = spec.full_cost_task.name if spec.full_cost_task else None
    for j in range(m):
        Y[:, j] = _impute(Y[:, j], tasks, target, center)
    Yvar = _noise(S, Y)
    return TrainingData(
        X=X,
        Y=torch.as_tensor(Y, dtype=DTYPE),
        Yvar=None if Yvar is None else torch.as_tensor(Yvar, dtype=DTYPE),
        failed=torch.as_tensor(failed),
        tasks=tasks,
        outcomes=outcomes,
    )


def subsample(
    spec: ExperimentSpec, observations: Sequence[Observation], max_points: int, seed: int
) -> list[Observation]:
    """At most ``max_points`` observations, spending the room on costlier tasks first.

    Every task first keeps up to ``max_points / (2 * tasks)`` observations, so the task
    correlations stay learnable; the rest of the room goes to tasks in decreasing cost. A task
    that cannot keep all its observations keeps its best half (by the first optimized metric)
    and a seeded random draw of the others.
    """
    if len(observations) <= max_points:
        return list(observations)
    rng = np.random.default_rng(seed)
    costs = sorted({spec.task_cost(o.task) for o in observations}, reverse=True)
    groups = [
        sorted(
            (i for i, o in enumerate(observations) if spec.task_cost(o.task) == cost),
            key=lambda i: -_score(spec, observations[i]),
        )
        for cost in costs
    ]
    quota = [min(len(g), max_points // (2 * len(groups))) for g in groups]
    room = max_points - sum(quota)
    for t, group in enumerate(groups):
        extra = min(len(group) - quota[t], room)
        quota[t] += extra
        room -= extra
    keep: list[int] = []
    for group, size in zip(groups, quota, strict=True):
        best = group[: size // 2]
        rest = group[size // 2 :]
        keep.extend(best)
        keep.extend(int(i) for i in rng.choice(rest, size=size - len(best), replace=False))
    return [observations[i] for i in sorted(keep)]


def _score(spec: ExperimentSpec, obs: Observation) -> float:
    metrics = spec.optimized_metrics or spec.metrics
    metric = metrics[0]
    if obs.failed or metric.name not in obs.values:
        return -np.inf
    return (1.0 if metric.objective == "maximize" else -1.0) * float(obs.values[metric.name])


def _impute(
    y: np.ndarray, tasks: Sequence[str | None], target: str | None, center: bool
) -> np.ndarray:
    y = y.copy()
    ok = ~np.isnan(y)
    if not ok.any():
        return np.zeros_like(y)
    labels = np.array([str(t) for t in tasks])
    target_rows = ok & (labels == str(target)) if target is not None else ok
    reference = float(y[target_rows].mean()) if target_rows.any() else float(y[ok].mean())
    worst = float(y[ok].min())
    for label in np.unique(labels):
        rows = labels == label
        good = rows & ok
        if not good.any():
            y[rows] = worst
            continue
        y[rows & ~ok] = y[good].min()
        if center:
            y[rows] += reference - y[good].mean()
    return y


def _noise(S: np.ndarray, Y: np.ndarray) -> np.ndarray | None:
    if np.isnan(S).all():
        return None
    floor = _MIN_RELATIVE_NOISE * max(float(np.var(Y)), 1e-12)
    filled = S.copy()
    for j in range(S.shape[1]):
        column = filled[:, j]
        given = column[~np.isnan(column)]
        column[np.isnan(column)] = float(np.median(given)) if given.size else floor
    noise: np.ndarray = np.maximum(filled, floor)
    return noise
