"""Training curves: a run's checkpoints as per-epoch metric values, for one run or many."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.auth import Principal
from services.api.errors import not_found
from services.api.models import Checkpoint
from services.api.models import Experiment
from services.api.models import Suggestion
from services.api.models import TrainingRun
from services.api.store.results import values_by_name
from shared.states import FINISHED_RUN_STATES

#: The name of a checkpoint value logged without one (SigOpt's default metric name).
UNNAMED_METRIC = "value"


def run_json(run: TrainingRun, suggestion: Suggestion | None) -> dict[str, Any]:
    """What the run page refreshes while the run trains."""
    return {
        "id": str(run.id),
        "experiment": str(run.experiment_id),
        "name": run.name,
        "state": run.state,
        "finished": run.state in FINISHED_RUN_STATES,
        "attempt": run.attempt,
        "heartbeat": run.heartbeat,
        "worker": run.worker,
        "checkpoint_count": run.checkpoint_count,
        "task": suggestion.task if suggestion else None,
        "assignments": suggestion.assignments if suggestion else None,
    }


def curves(session: Session, runs: list[TrainingRun]) -> list[dict[str, Any]]:
    """Per run (in the given order): its metric names and its checkpoints, oldest first, each
    ``{"epoch", "attempt", "created", "values": {metric: value}}``. One query for all runs."""
    ids = [r.id for r in runs]
    points: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if ids:
        rows = session.execute(
            select(
                Checkpoint.training_run_id,
                Checkpoint.epoch,
                Checkpoint.attempt,
                Checkpoint.created,
                Checkpoint.values,
            )
            .where(Checkpoint.training_run_id.in_(ids))
            .order_by(Checkpoint.training_run_id, Checkpoint.id)
        ).tuples()
        for run_id, epoch, attempt, created, values in rows:
            points[run_id].append(
                {
                    "epoch": epoch if epoch is not None else len(points[run_id]),
                    "attempt": attempt,
                    "created": created,
                    "values": values_by_name(values, UNNAMED_METRIC),
                }
            )
    wanted = {r.suggestion_id for r in runs}
    suggestions: dict[int | None, Suggestion] = (
        {s.id: s for s in session.scalars(select(Suggestion).where(Suggestion.id.in_(wanted)))}
        if wanted
        else {}
    )
    out = []
    for run in runs:
        metrics: dict[str, None] = {}
        for point in points[run.id]:
            metrics.update(dict.fromkeys(point["values"]))
        out.append(
            {
                "object": "training_curves",
                "training_run": str(run.id),
                "run": run_json(run, suggestions.get(run.suggestion_id)),
                "metrics": list(metrics),
                "data": points[run.id],
            }
        )
    return out


def scoped_runs(
    session: Session, principal: Principal, ids: list[int]
) -> list[tuple[TrainingRun, Experiment]]:
    """The runs with these ids (in that order) in one query; 404 for the first one missing."""
    stmt = select(TrainingRun, Experiment).join(
        Experiment, Experiment.id == TrainingRun.experiment_id
    )
    stmt = stmt.where(TrainingRun.id.in_(ids))
    if not principal.is_service:
        stmt = stmt.where(Experiment.client_id == principal.client_id)
    found = {r.id: (r, e) for r, e in session.execute(stmt).tuples()}
    missing = [i for i in ids if i not in found]
    if missing:
        raise not_found("training run", missing[0])
    return [found[i] for i in ids]
