"""The best observations of an experiment, model-free (SigOpt's ``best_assignments`` rule).

Only successful observations on the full-cost task count (all of them for a single-task
experiment), and only those that report every optimized and constraint metric and satisfy every
metric threshold. One optimized metric gives the single best; two give the Pareto front.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.suggester.optimizer._base import Observation
from shared.space import ExperimentSpec


def eligible_observations(
    spec: ExperimentSpec, observations: Sequence[Observation]
) -> list[Observation]:
    """Successful full-cost observations that report all metrics and meet every threshold."""
    full = spec.full_cost_task
    needed = [m for m in spec.metrics if m.strategy != "store"]
    out = []
    for obs in observations:
        if obs.failed or (full is not None and obs.task != full.name):
            continue
        if any(m.name not in obs.values for m in needed):
            continue
        if all(m.satisfies_threshold(obs.values[m.name]) for m in needed):
            out.append(obs)
    return out


def best_observations(
    spec: ExperimentSpec, observations: Sequence[Observation]
) -> list[Observation]:
    """The best eligible observations, best first.

    Returns:
        One observation for a single optimized metric (the first of equal values), the
        Pareto front sorted by the first optimized metric for several, every eligible
        observation for an all-constraint experiment, and an empty list when none is eligible.
    """
    eligible = eligible_observations(spec, observations)
    metrics = spec.optimized_metrics
    if not eligible or not metrics:
        return eligible
    sign = {m.name: 1.0 if m.objective == "maximize" else -1.0 for m in metrics}

    def score(obs: Observation) -> tuple[float, ...]:
        return tuple(sign[m.name] * obs.values[m.name] for m in metrics)

    scores = [score(o) for o in eligible]
    if len(metrics) == 1:
        best = max(range(len(eligible)), key=lambda i: (scores[i][0], -i))
        return [eligible[best]]
    front = [i for i, s in enumerate(scores) if not any(_dominates(t, s) for t in scores)]
    front.sort(key=lambda i: scores[i], reverse=True)
    return [eligible[i] for i in front]


def best_observation(
    spec: ExperimentSpec, observations: Sequence[Observation]
) -> Observation | None:
    """The single best eligible observation (first of the front for two metrics), or None."""
    best = best_observations(spec, observations)
    return best[0] if best else None


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b
