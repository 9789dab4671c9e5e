"""Space-filling and random designs over an `ExperimentSpec` (numpy/scipy only, no torch).

Used by the API when the suggestion pool is empty and by the suggester for the initial design.
Everything is a pure function of the spec, an index or a seed: the ``i``-th design point of an
experiment is the same in every process.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats
from scipy.stats import qmc

from shared.space import Assignments
from shared.space import ExperimentSpec
from shared.space import Parameter
from shared.space import Task

#: Draws per wanted point when rejection-sampling linear constraints.
_REJECTION_FACTOR = 64


def initial_design_size(spec: ExperimentSpec) -> int:
    """Number of space-filling points before the model takes over.

    Scales with the dimension (``d + 2``, at least 4), covers one round of parallel workers,
    and never spends more than a third of the observation budget (counted in points).
    """
    size = max(spec.dimension + 2, 4, spec.parallel_bandwidth)
    if spec.observation_budget:
        size = min(
            size, max(2, int(spec.observation_budget // 3) * (2 if spec.is_multitask else 1))
        )
    return size


def task_weights(tasks: Sequence[Task]) -> np.ndarray:
    """Initial-design share of each task, proportional to ``1 / sqrt(cost)``.

    Cheap tasks get most points, the full-cost task still gets some: costs
    0.125/0.25/0.5/1 give shares of about 0.39/0.27/0.20/0.14.
    """
    costs = np.array([t.cost for t in tasks], dtype=float)
    weights = 1.0 / np.sqrt(costs)
    return np.asarray(weights / weights.sum(), dtype=float)


def design_tasks(spec: ExperimentSpec, n: int) -> list[str | None]:
    """Tasks for ``n`` design points: each task's share by `task_weights`, at least one point on
    every task and two on the full-cost one when ``n`` allows, cheap tasks first."""
    if not spec.tasks:
        return [None] * n
    tasks = sorted(spec.tasks, key=lambda t: t.cost)
    shares = task_weights(tasks) * n
    counts = np.floor(shares).astype(int)
    for i in np.argsort(-(shares - counts))[: n - counts.sum()]:
        counts[i] += 1
    minimum = np.ones(len(tasks), dtype=int)
    minimum[-1] = 2
    while n >= minimum.sum() and (counts < minimum).any():
        short = int(np.argmax(counts < minimum))
        donor = int(np.argmax(counts - minimum))
        counts[donor] -= 1
        counts[short] += 1
    out: list[str | None] = []
    # Interleave so that a prefix of the design already covers several tasks.
    remaining = counts.copy()
    while remaining.sum():
        for i, task in enumerate(tasks):
            if remaining[i]:
                out.append(task.name)
                remaining[i] -= 1
    return out


def sobol_unit(spec: ExperimentSpec, n: int, seed: int) -> np.ndarray:
    """``n x d`` scrambled Sobol points, warped by parameter priors, feasible under constraints."""
    d = spec.dimension
    draws = n * (_REJECTION_FACTOR if spec.linear_constraints else 1)
    m = max(int(np.ceil(np.log2(max(draws, 2)))), 1)
    sampler = qmc.Sobol(d=d, scramble=True, rng=np.random.default_rng(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unit = sampler.random_base2(m)[:draws]
    unit = _apply_priors(spec, unit)
    if spec.linear_constraints:
        feasible = [u for u in unit if spec.is_feasible(spec.decode(u))]
        if len(feasible) < n:
            rng = np.random.default_rng(seed)
            feasible.extend(random_unit(spec, rng, n - len(feasible)))
        unit = np.asarray(feasible[:n])
    return unit


def design_point(spec: ExperimentSpec, index: int, seed: int) -> tuple[Assignments, str | None]:
    """The ``index``-th point of the experiment's initial design (stable across processes)."""
    n = max(initial_design_size(spec), index + 1)
    unit = sobol_unit(spec, n, seed)[index]
    return spec.decode(unit), design_tasks(spec, n)[index]


def random_unit(spec: ExperimentSpec, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """``n`` uniform points of the unit cube whose decoded assignments satisfy the constraints.

    Raises:
        RuntimeError: when rejection sampling finds no feasible point (the API checks at create
            time that the constraints leave a feasible region, so this signals a tiny region).
    """
    out: list[np.ndarray] = []
    for _ in range(_REJECTION_FACTOR * 16):
        u = rng.random(spec.dimension)
        if spec.is_feasible(spec.decode(u)):
            out.append(u)
            if len(out) == n:
                return out
    if not out:
        raise RuntimeError("no feasible point found for the linear constraints")
    return out + [out[i % len(out)] for i in range(n - len(out))]


def random_point(spec: ExperimentSpec, rng: np.random.Generator) -> tuple[Assignments, str | None]:
    """A uniformly random feasible point and a uniformly random task."""
    unit = random_unit(spec, rng, 1)[0]
    task = spec.tasks[int(rng.integers(len(spec.tasks)))].name if spec.tasks else None
    return spec.decode(unit), task


def _apply_priors(spec: ExperimentSpec, unit: np.ndarray) -> np.ndarray:
    """Warp uniform columns through the inverse CDF of each parameter's prior on its bounds."""
    unit = unit.copy()
    for j, col in enumerate(spec.columns):
        parameter = col.parameter
        if parameter is None or parameter.prior is None or col.kind != "double":
            continue
        unit[:, j] = _prior_ppf(parameter, unit[:, j])
    return unit


def _prior_ppf(parameter: Parameter, u: np.ndarray) -> np.ndarray:
    prior = parameter.prior
    assert prior is not None and parameter.min is not None and parameter.max is not None
    lo, hi = parameter.min, parameter.max
    if prior.name == "beta":
        assert prior.shape_a is not None and prior.shape_b is not None
        return np.asarray(stats.beta(prior.shape_a, prior.shape_b).ppf(u))
    mean, scale = float(prior.mean or 0.0), float(prior.scale or 1.0)
    a, b = (lo - mean) / scale, (hi - mean) / scale
    values = stats.truncnorm(a, b, loc=mean, scale=scale).ppf(u)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)
