"""An experiment's live observations, loaded in one query, and the metric being analysed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.errors import invalid
from services.api.models import Experiment
from services.api.models import Observation
from services.api.store.results import values_by_name
from shared import best as best_rule
from shared.space import ExperimentSpec
from shared.space import Metric


@dataclass(frozen=True)
class Point:
    """One live observation."""

    id: int
    suggestion_id: int | None
    created: float
    task: str | None
    cost: float
    failed: bool
    assignments: dict[str, Any]
    #: metric name -> value (empty when failed)
    values: dict[str, float]


@dataclass(frozen=True)
class Dataset:
    """Observations (oldest first) of one experiment and the metric every analysis uses."""

    spec: ExperimentSpec
    metric: Metric
    points: tuple[Point, ...]

    def value(self, point: Point) -> float | None:
        return None if point.failed else point.values.get(self.metric.name)

    def is_full_cost(self, point: Point) -> bool:
        """`shared.best.is_full_cost`: the cost-1 task's observations (all, single-task)."""
        return best_rule.is_full_cost(self.spec, point.task)

    def is_feasible(self, point: Point) -> bool:
        """Succeeded, and `shared.best.is_feasible`: reports every optimized and constraint
        metric, each within its threshold (on any task)."""
        return not point.failed and best_rule.is_feasible(self.spec, point.values)

    def is_candidate(self, point: Point) -> bool:
        """`shared.best.is_candidate`: may be the best (succeeded, full cost, feasible)."""
        return best_rule.is_candidate(self.spec, point)


def choose_metric(spec: ExperimentSpec, name: str | None) -> Metric:
    """The named metric, else the first optimized one (else the first)."""
    if name is not None:
        for metric in spec.metrics:
            if metric.name == name:
                return metric
        names = [m.name for m in spec.metrics]
        raise invalid("metric", f"unknown metric {name!r}; one of {names}")
    return (spec.optimized_metrics or spec.metrics)[0]


def load(session: Session, experiment: Experiment, metric: str | None = None) -> Dataset:
    """Every live observation of ``experiment`` in one query, oldest first."""
    spec = ExperimentSpec.from_json(experiment.definition)
    rows = session.execute(
        select(
            Observation.id,
            Observation.suggestion_id,
            Observation.created,
            Observation.task,
            Observation.cost,
            Observation.failed,
            Observation.assignments,
            Observation.values,
        )
        .where(Observation.experiment_id == experiment.id, Observation.deleted.is_(False))
        .order_by(Observation.id)
    ).all()
    unnamed = spec.metrics[0].name
    points = tuple(
        Point(
            id=r[0],
            suggestion_id=r[1],
            created=r[2],
            task=r[3],
            cost=r[4],
            failed=r[5],
            assignments=r[6] or {},
            values=values_by_name(r[7], unnamed),
        )
        for r in rows
    )
    return Dataset(spec=spec, metric=choose_metric(spec, metric), points=points)
