"""What the experiment page shows besides the charts: budget, best value, progress by task, run
states, and the suggestions with their training runs' states and attempts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.analytics.dataset import Dataset
from services.api.models import Client
from services.api.models import Experiment
from services.api.models import Observation
from services.api.models import Suggestion
from services.api.models import TrainingRun
from services.api.store.results import ObservationStats
from services.api.store.results import observation_stats
from shared.space import ExperimentSpec


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
    """The best feasible full-cost observation of the dataset's metric."""
    found = None
    best_value: float | None = None
    for p in dataset.points:
        value = dataset.value(p)
        if (
            value is not None
            and dataset.is_full_cost(p)
            and dataset.is_feasible(p)
            and dataset.better(value, best_value)
        ):
            best_value = value
            found = {
                "observation": str(p.id),
                "value": value,
                "task": p.task,
                "assignments": p.assignments,
            }
    return found


def by_task(dataset: Dataset) -> list[dict[str, Any]]:
    """Count, failures, cost spent and best value per task (cheapest first)."""
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
        value = dataset.value(p)
        if (
            value is not None
            and dataset.is_feasible(p)
            and dataset.better(value, row["best_value"])
        ):
            row["best_value"] = value
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


def suggestion_state(deleted: bool, state: str, run_state: str | None) -> str:
    """deleted, else the run's state (queued, running, completed, failed, lost, stopped), else
    observed (closed without a run) or open."""
    if deleted:
        return "deleted"
    if run_state is not None:
        return run_state
    return "observed" if state == "closed" else "open"


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
    """The best feasible full-cost value of each experiment's first optimized metric, in one
    query over all of them (the list page)."""
    specs = {e.id: ExperimentSpec.from_json(e.definition) for e in experiments}
    out: dict[int, float | None] = dict.fromkeys(specs)
    if not specs:
        return out
    rows = session.execute(
        select(Observation.experiment_id, Observation.values).where(
            Observation.experiment_id.in_(specs),
            Observation.deleted.is_(False),
            Observation.failed.is_(False),
            Observation.cost == 1.0,
        )
    ).tuples()
    for experiment_id, values in rows:
        spec = specs[experiment_id]
        metric = (spec.optimized_metrics or spec.metrics)[0]
        named = {v.get("name") or spec.metrics[0].name: float(v["value"]) for v in values or ()}
        value = named.get(metric.name)
        if value is None or not all(
            m.satisfies_threshold(named[m.name])
            for m in spec.constraint_metrics
            if m.name in named
        ):
            continue
        current = out[experiment_id]
        if current is None or metric.better(value, current):
            out[experiment_id] = value
    return out
