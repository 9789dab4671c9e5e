"""What counts as "best": the one rule behind best assignments, progress, the dashboard and the
optimizer's incumbent.

An observation can be best (is a *candidate*) when all of these hold:

* it did not fail;
* it ran at full cost: every observation of a single-task experiment, and in a multitask one
  only those of the task whose cost is 1 (cheap tasks explore, they never win);
* it reports every optimized and every constraint metric, and each value meets its metric's
  threshold. A missing constraint value makes the observation infeasible: nothing shows that
  it satisfies a constraint it did not report. ``store`` metrics are ignored.

Among the candidates, one optimized metric gives the single best (the oldest of equal values);
two give the Pareto front; an experiment with constraint metrics only ("search") has every
candidate as a solution. Lists come best first by the first optimized metric, ties oldest first.

The rule reads observations through the `Scored` protocol, so the API's rows, the dashboard's
points and the optimizer's observations are judged by the same code. Observations are passed
oldest first.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Protocol
from typing import TypeVar

from shared.space import ExperimentSpec
from shared.space import Metric


class Scored(Protocol):
    """What the rule reads of an observation."""

    @property
    def task(self) -> str | None:
        """The task's name; None in a single-task experiment."""

    @property
    def failed(self) -> bool: ...

    @property
    def values(self) -> Mapping[str, float]:
        """Metric name to value; empty when failed."""


S = TypeVar("S", bound=Scored)


def is_full_cost(spec: ExperimentSpec, task: str | None) -> bool:
    """Whether an observation on ``task`` measures the real objective (the cost-1 task)."""
    full = spec.full_cost_task
    return full is None or task == full.name


def is_feasible(spec: ExperimentSpec, values: Mapping[str, float]) -> bool:
    """Every optimized and constraint metric is reported and meets its threshold."""
    return all(
        m.name in values and m.satisfies_threshold(values[m.name])
        for m in spec.metrics
        if m.strategy != "store"
    )


def is_candidate(spec: ExperimentSpec, observation: Scored) -> bool:
    """Succeeded, at full cost, and feasible: the observation may be best."""
    return (
        not observation.failed
        and is_full_cost(spec, observation.task)
        and is_feasible(spec, observation.values)
    )


def best_observations(spec: ExperimentSpec, observations: Sequence[S]) -> list[S]:
    """The best candidates: one for a single optimized metric, the Pareto front for two, every
    candidate when no metric is optimized; empty when there is no candidate."""
    candidates = [o for o in observations if is_candidate(spec, o)]
    metrics = spec.optimized_metrics
    scores = [_score(o, metrics) for o in candidates]
    order = sorted(range(len(candidates)), key=lambda i: scores[i], reverse=True)
    if len(metrics) == 1:
        order = order[:1]
    elif len(metrics) > 1:
        order = [i for i in order if not any(_dominates(t, scores[i]) for t in scores)]
    return [candidates[i] for i in order]


def best_observation(spec: ExperimentSpec, observations: Sequence[S]) -> S | None:
    """The single best candidate; None when there is none or the experiment optimizes two
    metrics (it then has a front, not a best)."""
    if len(spec.optimized_metrics) != 1:
        return None
    best = best_observations(spec, observations)
    return best[0] if best else None


def best_by(spec: ExperimentSpec, metric: Metric, observations: Sequence[S]) -> S | None:
    """The candidate best on ``metric`` alone (for a display that shows one metric).

    For the one optimized metric it is the best observation; for either of two it is the member
    of the Pareto front best on that metric (ties go to the one better on the others); for a
    constraint or stored metric it is the candidate with the best value of it.
    """
    running = running_best_by(spec, metric, observations)
    return running[-1] if running else None


def running_best_by(
    spec: ExperimentSpec, metric: Metric, observations: Sequence[S]
) -> list[S | None]:
    """`best_by` of every prefix of ``observations`` (the best-so-far curve), in one pass."""
    sign = 1.0 if metric.objective == "maximize" else -1.0
    out: list[S | None] = []
    best: S | None = None
    best_key: tuple[float, ...] = ()
    for o in observations:
        if is_candidate(spec, o) and metric.name in o.values:
            key = (sign * o.values[metric.name], *_score(o, spec.optimized_metrics))
            if best is None or key > best_key:
                best, best_key = o, key
        out.append(best)
    return out


def _score(observation: Scored, metrics: tuple[Metric, ...]) -> tuple[float, ...]:
    """Values signed so that larger is better, in metric order."""
    return tuple(
        observation.values[m.name] * (1.0 if m.objective == "maximize" else -1.0) for m in metrics
    )


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b
