"""Progress and best assignments. Only full-cost (cost 1) observations count as "best" in a
multitask experiment; cheap-task results never do."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.models import Experiment
from services.api.models import Observation
from shared.space import ExperimentSpec
from shared.space import Metric


@dataclass(frozen=True)
class ObservationStats:
    """Live observations of an experiment: how many, their summed task cost (the budget
    consumed), and when any observation (deleted ones included) last changed."""

    count: int
    cost: float
    last_change: float


def observation_stats_many(
    session: Session, experiment_ids: Iterable[int]
) -> dict[int, ObservationStats]:
    """One grouped aggregate query. Counting instead of keeping counters on the experiment row
    keeps concurrent observation writers from queueing on that row's lock."""
    ids = list(experiment_ids)
    live = Observation.deleted.is_(False)
    rows = session.execute(
        select(
            Observation.experiment_id,
            func.sum(case((live, 1), else_=0)),
            func.sum(case((live, Observation.cost), else_=0.0)),
            func.max(Observation.updated),
        )
        .where(Observation.experiment_id.in_(ids))
        .group_by(Observation.experiment_id)
    ).all()
    stats = {int(r[0]): ObservationStats(int(r[1]), float(r[2]), float(r[3])) for r in rows}
    return {i: stats.get(i, ObservationStats(0, 0.0, 0.0)) for i in ids}


def observation_stats(session: Session, experiment_id: int) -> ObservationStats:
    return observation_stats_many(session, [experiment_id])[experiment_id]


Values = list[dict[str, Any]]


def _value(values: Values, metric: Metric) -> float | None:
    for v in values:
        if v.get("name") in (metric.name, None):
            return float(v["value"])
    return None


def _feasible(values: Values, spec: ExperimentSpec) -> bool:
    """Has every optimized value and meets every metric threshold."""
    for metric in spec.metrics:
        if metric.strategy == "store":
            continue
        value = _value(values, metric)
        if value is None:
            if metric.strategy == "optimize":
                return False
            continue
        if not metric.satisfies_threshold(value):
            return False
    return True


def _candidates(
    session: Session, experiment: Experiment, spec: ExperimentSpec
) -> list[tuple[int, Values]]:
    """(id, values) of the feasible observations that may be best, oldest first. Only two
    columns: this runs on every experiment fetch, over every full-cost observation."""
    stmt = select(Observation.id, Observation.values).where(
        Observation.experiment_id == experiment.id,
        Observation.deleted.is_(False),
        Observation.failed.is_(False),
    )
    if spec.is_multitask:
        stmt = stmt.where(Observation.cost == 1.0)
    rows = session.execute(stmt.order_by(Observation.id)).tuples()
    return [(i, values) for i, values in rows if _feasible(values, spec)]


def best_observations(
    session: Session, experiment: Experiment, spec: ExperimentSpec
) -> list[Observation]:
    """One best observation (single optimized metric) or the Pareto front (two)."""
    candidates = _candidates(session, experiment, spec)
    optimized = spec.optimized_metrics
    if not candidates:
        return []
    if len(optimized) == 1:
        metric = optimized[0]
        best = candidates[0]
        for c in candidates[1:]:
            if metric.better(_value(c[1], metric), _value(best[1], metric)):  # type: ignore[arg-type]
                best = c
        ids = [best[0]]
    else:
        ids = _pareto_front(candidates, optimized)
    chosen = session.scalars(select(Observation).where(Observation.id.in_(ids))).all()
    return sorted(chosen, key=lambda o: o.id)


def _pareto_front(candidates: list[tuple[int, Values]], metrics: tuple[Metric, ...]) -> list[int]:
    def signed(values: Values) -> tuple[float, ...]:
        return tuple(
            _value(values, m) * (1 if m.objective == "maximize" else -1)  # type: ignore[operator]
            for m in metrics
        )

    points = [(signed(values), i) for i, values in candidates]
    return [
        i
        for p, i in points
        if not any(all(a >= b for a, b in zip(q, p, strict=True)) and q != p for q, _ in points)
    ]


def progress(session: Session, experiment: Experiment, spec: ExperimentSpec) -> dict[str, Any]:
    """SigOpt's progress object: counts, budget consumed (sum of task costs), first/last/best."""
    base = select(Observation).where(
        Observation.experiment_id == experiment.id, Observation.deleted.is_(False)
    )
    first = session.scalar(base.order_by(Observation.id.asc()).limit(1))
    last = session.scalar(base.order_by(Observation.id.desc()).limit(1))
    best = best_observations(session, experiment, spec) if first is not None else []
    stats = observation_stats(session, experiment.id)
    return {
        "observation_count": stats.count,
        "observation_budget_consumed": round(stats.cost, 12),
        "first_observation": first,
        "last_observation": last,
        "best_observation": best[0] if len(spec.optimized_metrics) == 1 and best else None,
    }
