"""Progress and best assignments. What counts as best is `shared.best`'s rule; this module
reads the rows it judges."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import and_
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.models import Experiment
from services.api.models import Observation
from shared import best as best_rule
from shared.space import ExperimentSpec


@dataclass(frozen=True)
class ObservationStats:
    """Live observations of an experiment: how many, their summed charged cost (the budget
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


def values_by_name(values: Iterable[Mapping[str, Any]] | None, unnamed: str) -> dict[str, float]:
    """Stored metric values ``[{"name", "value", "value_stddev"}]`` as ``{name: value}``; an
    entry without a name (a single unnamed metric) is named ``unnamed``."""
    return {v.get("name") or unnamed: float(v["value"]) for v in values or ()}


@dataclass(frozen=True)
class ScoredObservation:
    """What `shared.best` reads of a stored observation, and its id."""

    id: int
    task: str | None
    failed: bool
    #: metric name -> value (`values_by_name`)
    values: dict[str, float]


def _may_be_candidate(experiment_id: int, spec: ExperimentSpec) -> ColumnElement[bool]:
    """A pre-filter for speed: the observation belongs to the experiment and, in a multitask
    one, to its full-cost task. `shared.best` still decides."""
    belongs = Observation.experiment_id == experiment_id
    full = spec.full_cost_task
    return belongs if full is None else and_(belongs, Observation.task == full.name)


def candidate_rows(
    session: Session, specs: Mapping[int, ExperimentSpec]
) -> dict[int, list[ScoredObservation]]:
    """The live, successful full-cost observations of each experiment (by id), oldest first:
    the rows among which `shared.best` finds the best. One query for all of them, reading
    only the columns the rule needs."""
    out: dict[int, list[ScoredObservation]] = {experiment_id: [] for experiment_id in specs}
    if not specs:
        return out
    rows = session.execute(
        select(Observation.id, Observation.experiment_id, Observation.task, Observation.values)
        .where(
            or_(*(_may_be_candidate(i, spec) for i, spec in specs.items())),
            Observation.deleted.is_(False),
            Observation.failed.is_(False),
        )
        .order_by(Observation.id)
    ).tuples()
    for observation_id, experiment_id, task, values in rows:
        unnamed = specs[experiment_id].metrics[0].name
        out[experiment_id].append(
            ScoredObservation(observation_id, task, False, values_by_name(values, unnamed))
        )
    return out


def _rows_of(
    session: Session, experiment: Experiment, spec: ExperimentSpec
) -> list[ScoredObservation]:
    return candidate_rows(session, {experiment.id: spec})[experiment.id]


def best_observations(
    session: Session, experiment: Experiment, spec: ExperimentSpec
) -> list[Observation]:
    """`shared.best.best_observations`: one best observation (single optimized metric), the
    Pareto front (two) or every candidate (none), best first."""
    ids = [
        row.id for row in best_rule.best_observations(spec, _rows_of(session, experiment, spec))
    ]
    if not ids:
        return []
    found = {o.id: o for o in session.scalars(select(Observation).where(Observation.id.in_(ids)))}
    return [found[i] for i in ids]


def best_observation(
    session: Session, experiment: Experiment, spec: ExperimentSpec
) -> Observation | None:
    """`shared.best.best_observation`: None without a candidate or with two optimized
    metrics."""
    row = best_rule.best_observation(spec, _rows_of(session, experiment, spec))
    return None if row is None else session.get(Observation, row.id)


def progress(session: Session, experiment: Experiment, spec: ExperimentSpec) -> dict[str, Any]:
    """SigOpt's progress object: counts, budget consumed (sum of charged costs),
    first/last/best."""
    base = select(Observation).where(
        Observation.experiment_id == experiment.id, Observation.deleted.is_(False)
    )
    first = session.scalar(base.order_by(Observation.id.asc()).limit(1))
    last = session.scalar(base.order_by(Observation.id.desc()).limit(1))
    best = best_observation(session, experiment, spec) if first is not None else None
    stats = observation_stats(session, experiment.id)
    return {
        "observation_count": stats.count,
        "observation_budget_consumed": round(stats.cost, 12),
        "first_observation": first,
        "last_observation": last,
        "best_observation": best,
    }
