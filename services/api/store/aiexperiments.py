"""AI experiments: experiments created in a project (``Experiment.ai``), whose runs are the
training runs a client tracks. No store or optimizer path of their own: a run takes the next
suggestion exactly as ``POST /experiments/{id}/suggestions`` serves it, and ends through
`training_runs`' one atomic path.

**Budget.** ``remaining_budget = budget - cost of the experiment's runs that are not archived``
(active and finished; a run costs its task's cost, 1 without tasks, less the cost of the
run it continues: `continuation.continued_cost`). A run may be created while
the remaining budget is above 0; the check and the insert hold the experiment's row lock, so
parallel clients cannot both take the last of it. Past that, a create is a 409 naming
``budget`` (raise it with ``PUT`` or archive runs). The last run may take the remaining budget
below 0 by less than its own cost; nothing overshoots silently.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session
from sqlalchemy.orm import aliased

from services.api.auth import Principal
from services.api.errors import ApiError
from services.api.errors import not_found
from services.api.models import Experiment
from services.api.models import Project
from services.api.models import Suggestion
from services.api.models import TrainingRun
from services.api.schemas.aiexperiments import BUDGET_FIELD
from services.api.schemas.aiexperiments import AiExperimentCreate
from services.api.schemas.aiexperiments import AiExperimentUpdate
from services.api.schemas.aiexperiments import AiRunCreate
from services.api.schemas.common import PageQuery
from services.api.store import continuation
from services.api.store import experiments
from services.api.store import results
from services.api.store import suggestions
from services.api.store import training_runs
from services.api.store.paging import fetch_page
from shared.space import ExperimentSpec
from shared.states import FINISHED_RUN_STATES
from shared.states import ExperimentState
from shared.states import RunState


def get(session: Session, principal: Principal, experiment_id: int) -> Experiment:
    """An AI experiment the caller may see, else 404 (an experiment created through
    ``/experiments`` is not one)."""
    experiment = experiments.get(session, principal, experiment_id)
    if not experiment.ai:
        raise not_found("aiexperiment", experiment_id)
    return experiment


def create(
    session: Session, principal: Principal, project: Project, body: AiExperimentCreate
) -> Experiment:
    return experiments.create(
        session,
        principal,
        body.as_experiment(project.reference_id),
        project=project,
        budget_field=BUDGET_FIELD,
    )


def update(session: Session, experiment: Experiment, body: AiExperimentUpdate) -> Experiment:
    """``{"state": "active"}`` unarchives; runs archived with it stay archived."""
    return experiments.update(session, experiment, body.as_experiment())


def archive(session: Session, experiment: Experiment, include_runs: bool) -> None:
    """``DELETE``: the experiment is archived (``deleted``), with its runs if asked."""
    if include_runs:
        runs = session.scalars(
            select(TrainingRun).where(
                TrainingRun.experiment_id == experiment.id, TrainingRun.deleted.is_(False)
            )
        )
        for run in runs:
            training_runs.archive(session, experiment, run, True)
            run.updated = time.time()
    experiments.delete(session, experiment)


def list_page(
    session: Session, project: Project, query: PageQuery
) -> tuple[list[Experiment], int, dict[str, str | None]]:
    stmt = select(Experiment).where(Experiment.project_id == project.id, Experiment.ai.is_(True))
    return fetch_page(session, stmt, Experiment.id, query)


def progress(session: Session, experiment: Experiment, spec: ExperimentSpec) -> dict[str, Any]:
    """Run counts and the remaining budget; archived runs count for neither."""
    source_run = aliased(TrainingRun)
    source_suggestion = aliased(Suggestion)
    rows = session.execute(
        select(TrainingRun.state, Suggestion.task, source_suggestion.task, func.count())
        .outerjoin(Suggestion, Suggestion.id == TrainingRun.suggestion_id)
        .outerjoin(source_run, source_run.id == TrainingRun.continues_id)
        .outerjoin(source_suggestion, source_suggestion.id == source_run.suggestion_id)
        .where(TrainingRun.experiment_id == experiment.id, TrainingRun.deleted.is_(False))
        .group_by(TrainingRun.state, Suggestion.task, source_suggestion.task)
    ).tuples()
    finished = active = 0
    cost = 0.0
    for state, task, source_task, count in rows:
        if state in FINISHED_RUN_STATES:
            finished += count
        else:
            active += count
        cost += count * continuation.continued_cost(spec, task, source_task)
    budget = experiment.observation_budget
    return {
        "active_run_count": active,
        "finished_run_count": finished,
        "total_run_count": active + finished,
        "remaining_budget": None if budget is None else round(budget - cost, 12),
    }


def _spent(session: Session, experiment: Experiment, spec: ExperimentSpec) -> ApiError | None:
    """The 409 to answer when the budget is spent, else None."""
    remaining = progress(session, experiment, spec)["remaining_budget"]
    if remaining is None or remaining > 0:
        return None
    return ApiError(
        409,
        f"Conflict in {BUDGET_FIELD}: AI experiment {experiment.id} has spent its budget of "
        f"{experiment.observation_budget:g} (remaining {remaining:g}); raise it with PUT or "
        "archive runs",
    )


def _lock(session: Session, experiment: Experiment) -> None:
    """Take the experiment's row for the rest of the transaction (a write, so that SQLite's
    database lock is taken too): concurrent run creations queue here."""
    session.execute(
        sql_update(Experiment)
        .where(Experiment.id == experiment.id)
        .values(updated=time.time())
        .execution_options(synchronize_session=False)
    )


def create_run(
    session: Session,
    pool: redis.Redis,
    wait_s: float,
    experiment: Experiment,
    body: AiRunCreate,
) -> TrainingRun:
    """A run of the next suggestion (served as ``POST .../suggestions`` serves one: queued,
    pool, initial design, random), or of ``assignments`` given in the body; ``running``."""
    if experiment.state == ExperimentState.DELETED:
        raise ApiError(
            400,
            f"AI experiment {experiment.id} is archived; unarchive it (state: active) before "
            "creating runs",
        )
    if experiment.definition.get("objective") is not None:
        raise ApiError(
            409,
            f"Conflict in objective: AI experiment {experiment.id} is managed; the platform "
            "creates its runs",
        )
    spec = experiments.spec(experiment)
    refused = _spent(session, experiment, spec)  # unlocked: spares a suggestion most times
    if refused is not None:
        raise refused
    if body.assignments is not None or body.task is not None:
        _lock(session, experiment)
        refused = _spent(session, experiment, spec)
        if refused is not None:
            session.rollback()
            raise refused
        suggestion = suggestions.add_explicit(
            session, experiment, spec, body.assignments or {}, body.task, None
        )
    else:
        suggestion = suggestions.serve(session, pool, experiment, spec, wait_s, None)
        _lock(session, experiment)
        refused = _spent(session, experiment, spec)
        if refused is not None:
            suggestions.withdraw(session, experiment, suggestion.id)
            session.commit()
            raise refused
    run = training_runs.add(
        session, experiment, suggestion, body.name, body.metadata, RunState.RUNNING
    )
    session.commit()
    return run


def best_runs(session: Session, experiment: Experiment, spec: ExperimentSpec) -> list[TrainingRun]:
    """The runs whose observations `shared.best` finds best (full cost only), best first."""
    best = results.best_observations(session, experiment, spec)
    ids = [o.id for o in best]
    if not ids:
        return []
    runs = {
        r.observation_id: r
        for r in session.scalars(
            select(TrainingRun).where(
                TrainingRun.experiment_id == experiment.id,
                TrainingRun.observation_id.in_(ids),
                TrainingRun.deleted.is_(False),
            )
        )
    }
    return [runs[i] for i in ids if i in runs]
