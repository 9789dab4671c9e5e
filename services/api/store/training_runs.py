"""Training runs attached to suggestions, and their per-epoch checkpoints.

A run's ``attempt`` is a fencing number: the suggester starts a new attempt when a run's
heartbeat lease expires, and any later write naming an older attempt is refused (409), so a late
result or checkpoint from a lost worker cannot land.
"""

from __future__ import annotations

import time

from sqlalchemy import Select
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.api import outbox
from services.api.auth import Principal
from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.errors import not_found
from services.api.models import Checkpoint
from services.api.models import Experiment
from services.api.models import Suggestion
from services.api.models import TrainingRun
from services.api.schemas.common import MetadataValue
from services.api.schemas.common import PageQuery
from services.api.schemas.observations import ObservationCreate
from services.api.schemas.training_runs import CheckpointCreate
from services.api.schemas.training_runs import NewSuggestion
from services.api.schemas.training_runs import TrainingRunCreate
from services.api.schemas.training_runs import TrainingRunListQuery
from services.api.schemas.training_runs import TrainingRunResult
from services.api.schemas.training_runs import TrainingRunUpdate
from services.api.store import observations
from services.api.store import suggestions
from services.api.store.paging import fetch_page
from shared.messages import EventType
from shared.space import ExperimentSpec
from shared.states import FINISHED_RUN_STATES
from shared.states import IN_FLIGHT_RUN_STATES
from shared.states import ExperimentState
from shared.states import RunState
from shared.states import StateFilter


def get(session: Session, principal: Principal, run_id: int) -> tuple[TrainingRun, Experiment]:
    stmt = select(TrainingRun, Experiment).join(
        Experiment, Experiment.id == TrainingRun.experiment_id
    )
    stmt = stmt.where(TrainingRun.id == run_id)
    if not principal.is_service:
        stmt = stmt.where(Experiment.client_id == principal.client_id)
    row = session.execute(stmt).first()
    if row is None:
        raise not_found("training run", run_id)
    return row[0], row[1]


def create(
    session: Session, experiment: Experiment, spec: ExperimentSpec, body: TrainingRunCreate
) -> TrainingRun:
    """One run per suggestion: creating it again returns the existing run (idempotent). With a
    new suggestion in the body, both are created in one transaction."""
    if isinstance(body.suggestion, NewSuggestion):
        new = body.suggestion
        created = suggestions.add_explicit(
            session, experiment, spec, new.assignments, new.task, new.metadata, "suggestion."
        )
        return _add_run(session, experiment, created, body)
    suggestion = session.get(Suggestion, body.suggestion)
    if suggestion is None or suggestion.experiment_id != experiment.id:
        raise invalid(
            "suggestion", f"No suggestion: {body.suggestion} for experiment: {experiment.id}"
        )
    if suggestion.deleted:
        raise invalid("suggestion", f"suggestion {suggestion.id} was deleted")
    existing = session.scalar(
        select(TrainingRun).where(TrainingRun.suggestion_id == suggestion.id)
    )
    if existing is not None:
        return existing
    return _add_run(session, experiment, suggestion, body)


def _add_run(
    session: Session, experiment: Experiment, suggestion: Suggestion, body: TrainingRunCreate
) -> TrainingRun:
    now = time.time()
    run = TrainingRun(
        experiment_id=experiment.id,
        suggestion_id=suggestion.id,
        name=body.name,
        state=RunState.QUEUED,
        attempt=1,
        meta=body.metadata,
        checkpoint_count=0,
        created=now,
        updated=now,
    )
    session.add(run)
    session.commit()
    return run


def _check_attempt(run: TrainingRun, attempt: int | None) -> None:
    if attempt is not None and attempt != run.attempt:
        raise ApiError(
            409,
            f"Conflict in attempt: run {run.id} is at attempt {run.attempt}, "
            f"not {attempt}; this worker's attempt was superseded",
        )


def update_one(
    session: Session, experiment: Experiment, run: TrainingRun, body: TrainingRunUpdate
) -> TrainingRun:
    _check_attempt(run, body.attempt)
    if body.state == RunState.RUNNING and run.state != RunState.QUEUED and not body.new_attempt:
        raise ApiError(
            409,
            f"Conflict in state: run {run.id} attempt {run.attempt} is "
            f"{run.state}, not queued; another worker holds it",
        )
    now = time.time()
    state_changed = False
    if body.new_attempt:
        run.attempt += 1
        run.state = RunState.QUEUED
        run.heartbeat = None
        run.worker = None
        state_changed = True
    if body.state is not None and body.state != run.state:
        run.state = body.state
        state_changed = True
        if body.state == RunState.RUNNING and run.started is None:
            run.started = now
        if body.state in FINISHED_RUN_STATES:
            run.completed = now
    if body.heartbeat:
        run.heartbeat = now
    for name in ("worker", "failure_reason", "traceback", "logs", "name"):
        value = getattr(body, name)
        if value is not None:
            setattr(run, name, value)
    if body.metadata is not None:
        run.meta = body.metadata
    run.updated = now
    if state_changed:
        outbox.record(session, EventType.TRAINING_RUN_UPDATED, experiment)
    session.commit()
    return run


def finish(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    run: TrainingRun,
    body: TrainingRunResult,
) -> TrainingRun:
    """Record how the current attempt ended: its observation (failed unless ``completed``) and the
    run's final state, in one transaction, so no crash can leave one without the other. A
    superseded attempt, or a run no longer queued or running, is a 409 and changes nothing; a
    run whose suggestion (or experiment) was deleted while it trained ends ``stopped``, without
    an observation."""
    _check_attempt(run, body.attempt)
    if run.state not in IN_FLIGHT_RUN_STATES:
        raise ApiError(409, f"Conflict in state: run {run.id} is {run.state}, not in flight")
    completed = body.state == RunState.COMPLETED
    if completed and body.values is None:
        raise invalid("values", "a completed run reports its metric values")
    if not completed and body.values is not None:
        raise invalid("values", f"a {body.state} run reports no values")
    now = time.time()
    suggestion = session.get(Suggestion, run.suggestion_id)
    if suggestion is None or suggestion.deleted or experiment.state == ExperimentState.DELETED:
        run.state = RunState.STOPPED
    else:
        metadata: dict[str, MetadataValue] = {"training_run": run.id, "attempt": run.attempt}
        if not completed and body.failure_reason:
            metadata["failure_reason"] = body.failure_reason[:500]
        observation = ObservationCreate(
            suggestion=suggestion.id,
            values=body.values,
            failed=None if completed else True,
            metadata=metadata,
        )
        observations.build(session, experiment, spec, observation, "", f"training-run-{run.id}")
        outbox.record(session, EventType.OBSERVATION_CREATED, experiment)
        run.state = body.state
    run.completed = now
    run.updated = now
    if body.failure_reason:
        run.failure_reason = body.failure_reason
    if body.traceback:
        run.traceback = body.traceback
    outbox.record(session, EventType.TRAINING_RUN_UPDATED, experiment)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ApiError(
            409, f"Conflict: suggestion {run.suggestion_id} was observed concurrently"
        ) from exc
    return run


def list_page(
    session: Session, experiment: Experiment, query: TrainingRunListQuery
) -> tuple[list[TrainingRun], int, dict[str, str | None]]:
    stmt: Select[TrainingRun] = select(TrainingRun).where(
        TrainingRun.experiment_id == experiment.id
    )
    if query.state == StateFilter.UNFINISHED:
        stmt = stmt.where(TrainingRun.state.not_in(FINISHED_RUN_STATES))
    elif query.state != StateFilter.ALL:
        stmt = stmt.where(TrainingRun.state == query.state)
    return fetch_page(session, stmt, TrainingRun.id, query)


def suggestions_of(session: Session, runs: list[TrainingRun]) -> dict[int, Suggestion]:
    ids = {r.suggestion_id for r in runs}
    if not ids:
        return {}
    return {s.id: s for s in session.scalars(select(Suggestion).where(Suggestion.id.in_(ids)))}


def add_checkpoint(session: Session, run: TrainingRun, body: CheckpointCreate) -> Checkpoint:
    _check_attempt(run, body.attempt)
    checkpoint = Checkpoint(
        training_run_id=run.id,
        attempt=run.attempt,
        epoch=body.epoch,
        values=[v.model_dump() for v in body.values],
        meta=body.metadata,
        created=time.time(),
    )
    session.add(checkpoint)
    session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run.id)
        .values(checkpoint_count=TrainingRun.checkpoint_count + 1, updated=time.time())
    )
    session.commit()
    return checkpoint


def list_checkpoints(
    session: Session, run: TrainingRun, query: PageQuery
) -> tuple[list[Checkpoint], int, dict[str, str | None]]:
    stmt = select(Checkpoint).where(Checkpoint.training_run_id == run.id)
    return fetch_page(session, stmt, Checkpoint.id, query)
