"""What the experiment page shows besides the charts: budget, best value, progress by task, run
states, and the suggestions with their training runs' states and attempts."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.analytics.dataset import Dataset
from services.api.analytics.dataset import Point
from services.api.analytics.dataset import choose_metric
from services.api.models import Client
from services.api.models import Experiment
from services.api.models import Observation
from services.api.models import Suggestion
from services.api.models import TrainingRun
from services.api.store.results import ObservationStats
from services.api.store.results import candidate_rows
from services.api.store.results import observation_stats
from shared import best as best_rule
from shared.space import ExperimentSpec
from shared.states import RunState
from shared.states import SuggestionState


def owners(session: Session, client_ids: set[int]) -> dict[int, str]:
    if not client_ids:
        return {}
    rows = session.execute(select(Client.id, Client.name).where(Client.id.in_(client_ids)))
    return dict(rows.tuples().all())


def budget_fraction(experiment: Experiment, stats: ObservationStats) -> float | None:
    if not experiment.observation_budget:
        return None
    return min(1.0, stats.cost / experiment.observation_budget)


def best(dataset: Dataset) -> dict[str, Any] | None:
    """The observation `shared.best.best_by` names for the dataset's metric."""
    found = best_rule.best_by(dataset.spec, dataset.metric, dataset.points)
    if found is None:
        return None
    return {
        "observation": str(found.id),
        "value": found.values[dataset.metric.name],
        "task": found.task,
        "assignments": found.assignments,
    }


def _task_best_value(dataset: Dataset, points: list[Point]) -> float | None:
    """The best value of the dataset's metric among the feasible ``points`` of one task: the
    rule of `shared.best` applied to that task alone, as if it were a single-task experiment
    (so a cheap task has a best too)."""
    alone = replace(dataset.spec, tasks=())
    found = best_rule.best_by(alone, dataset.metric, points)
    return None if found is None else found.values[dataset.metric.name]


def by_task(dataset: Dataset) -> list[dict[str, Any]]:
    """Count, failures, cost spent and best feasible value per task (cheapest first)."""
    spec = dataset.spec
    tasks = sorted(spec.tasks, key=lambda t: t.cost) or []
    rows: dict[str | None, dict[str, Any]] = {
        t.name: {
            "task": t.name,
            "cost": t.cost,
            "observations": 0,
            "failed": 0,
            "cost_consumed": 0.0,
            "best_value": None,
        }
        for t in tasks
    }
    points: dict[str | None, list[Point]] = {}
    for p in dataset.points:
        row = rows.setdefault(
            p.task,
            {
                "task": p.task,
                "cost": p.cost,
                "observations": 0,
                "failed": 0,
                "cost_consumed": 0.0,
                "best_value": None,
            },
        )
        row["observations"] += 1
        row["failed"] += int(p.failed)
        row["cost_consumed"] = round(row["cost_consumed"] + p.cost, 12)
        points.setdefault(p.task, []).append(p)
    for task, of_task in points.items():
        rows[task]["best_value"] = _task_best_value(dataset, of_task)
    return list(rows.values())


def run_states(session: Session, experiment: Experiment) -> dict[str, int]:
    rows = (
        session.execute(
            select(TrainingRun.state, func.count())
            .where(TrainingRun.experiment_id == experiment.id)
            .group_by(TrainingRun.state)
        )
        .tuples()
        .all()
    )
    return dict(rows)


def experiment_summary(
    session: Session, experiment: Experiment, dataset: Dataset
) -> dict[str, Any]:
    stats = observation_stats(session, experiment.id)
    return {
        "object": "experiment_summary",
        "id": str(experiment.id),
        "name": experiment.name,
        "state": experiment.state,
        "owner": owners(session, {experiment.client_id}).get(experiment.client_id),
        "created": experiment.created,
        "updated": experiment.updated,
        "observation_count": stats.count,
        "observation_budget": experiment.observation_budget,
        "budget_consumed": round(stats.cost, 12),
        "budget_fraction": budget_fraction(experiment, stats),
        "metric": dataset.metric.name,
        "objective": dataset.metric.objective,
        "best": best(dataset),
        "tasks": by_task(dataset),
        "runs": run_states(session, experiment),
    }


class SuggestionDisplayState(StrEnum):
    """What the suggestion table shows of a suggestion that has no training run (one that has
    shows its run's `RunState`)."""

    DELETED = "deleted"
    #: Closed without a run: observed by the client.
    OBSERVED = "observed"
    OPEN = SuggestionState.OPEN.value


def suggestion_state(
    deleted: bool, state: str, run_state: str | None
) -> SuggestionDisplayState | RunState:
    """deleted, else the run's state (queued, running, completed, failed, lost, stopped), else
    observed (closed without a run) or open."""
    if deleted:
        return SuggestionDisplayState.DELETED
    if run_state is not None:
        return RunState(run_state)
    if state == SuggestionState.CLOSED:
        return SuggestionDisplayState.OBSERVED
    return SuggestionDisplayState.OPEN


def suggestions(
    session: Session, experiment: Experiment, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The newest ``limit`` suggestions joined with their run and live observation."""
    stmt = (
        select(
            Suggestion,
            TrainingRun.id,
            TrainingRun.state,
            TrainingRun.attempt,
            TrainingRun.worker,
            Observation.id,
            Observation.values,
            Observation.failed,
        )
        .outerjoin(TrainingRun, TrainingRun.suggestion_id == Suggestion.id)
        .outerjoin(Observation, Observation.exclusive_suggestion_id == Suggestion.id)
        .where(Suggestion.experiment_id == experiment.id)
        .order_by(Suggestion.id.desc())
        .limit(limit)
    )
    count = (
        session.scalar(
            select(func.count())
            .select_from(Suggestion)
            .where(Suggestion.experiment_id == experiment.id)
        )
        or 0
    )
    out = []
    for s, run_id, run_state, attempt, worker, obs_id, values, failed in session.execute(stmt):
        out.append(
            {
                "suggestion": str(s.id),
                "state": suggestion_state(s.deleted, s.state, run_state),
                "task": s.task,
                "source": s.source,
                "assignments": s.assignments,
                "created": s.created,
                "training_run": None if run_id is None else str(run_id),
                "attempts": attempt or 0,
                "worker": worker,
                "observation": None if obs_id is None else str(obs_id),
                "value": None if failed or not values else values[0]["value"],
                "failed": bool(failed),
            }
        )
    return out, count


def best_values(session: Session, experiments: list[Experiment]) -> dict[int, float | None]:
    """Each experiment's `shared.best.best_by` value of its first optimized metric (else its
    first), in one query over all of them (the list page)."""
    specs = {e.id: ExperimentSpec.from_json(e.definition) for e in experiments}
    out: dict[int, float | None] = dict.fromkeys(specs)
    for experiment_id, rows in candidate_rows(session, specs).items():
        metric = choose_metric(specs[experiment_id], None)
        found = best_rule.best_by(specs[experiment_id], metric, rows)
        if found is not None:
            out[experiment_id] = found.values[metric.name]
    return out
