"""Training runs and their per-epoch checkpoints.

A run of an experiment trains one suggestion: queued for a worker (a managed or a core client's
run) or ``running`` from creation (a run a client tracks, as the AI module does). A run of a
project alone has no suggestion. However a run of an experiment ends ``completed`` or ``failed``
(a worker's result, or a client's ``PUT``/``MERGE``), `_end` records its observation and final
state in one transaction.

A run's ``attempt`` is a fencing number: the suggester starts a new attempt when a run's
heartbeat lease expires, and any later write naming an older attempt is refused (409), so a late
result or checkpoint from a lost worker cannot land.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import Select
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.api import outbox
from services.api.auth import Principal
from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.errors import not_found
from services.api.models import Experiment
from services.api.models import Observation
from services.api.models import Project
from services.api.models import Suggestion
from services.api.models import TrainingRun
from services.api.schemas.common import MetadataValue
from services.api.schemas.common import MetricValue
from services.api.schemas.observations import ObservationCreate
from services.api.schemas.training_runs import ACTIVE
from services.api.schemas.training_runs import NewSuggestion
from services.api.schemas.training_runs import RunStateInput
from services.api.schemas.training_runs import TrainingRunCreate
from services.api.schemas.training_runs import TrainingRunListQuery
from services.api.schemas.training_runs import TrainingRunResult
from services.api.schemas.training_runs import TrainingRunUpdate
from services.api.serialize import RunRelations
from services.api.store import artifacts
from services.api.store import continuation
from services.api.store import experiments
from services.api.store import observations
from services.api.store import suggestions
from services.api.store import tracking
from services.api.store.paging import fetch_page
from shared.messages import EventType
from shared.space import ExperimentSpec
from shared.states import FINISHED_RUN_STATES
from shared.states import IN_FLIGHT_RUN_STATES
from shared.states import ExperimentState
from shared.states import RunState
from shared.states import StateFilter

#: Final states a client may give a run; ``failed`` outranks ``completed``.
_ENDINGS = (RunState.COMPLETED, RunState.FAILED)


def get_any(
    session: Session, principal: Principal, run_id: int
) -> tuple[TrainingRun, Experiment | None]:
    """A run the caller may see (of an experiment or of a project only), else 404."""
    stmt = (
        select(TrainingRun, Experiment)
        .outerjoin(Experiment, Experiment.id == TrainingRun.experiment_id)
        .where(TrainingRun.id == run_id)
    )
    if not principal.is_service:
        stmt = stmt.where(TrainingRun.client_id == principal.client_id)
    row = session.execute(stmt).first()
    if row is None:
        raise not_found("training run", run_id)
    return row[0], row[1]


def get(session: Session, principal: Principal, run_id: int) -> tuple[TrainingRun, Experiment]:
    """A run of an experiment the caller may see, else 404."""
    run, experiment = get_any(session, principal, run_id)
    if experiment is None:
        raise not_found("training run", run_id)
    return run, experiment


def create(
    session: Session, experiment: Experiment, spec: ExperimentSpec, body: TrainingRunCreate
) -> TrainingRun:
    """One run per suggestion: creating it again returns the existing run (idempotent). With a
    new suggestion in the body, both are created in one transaction. ``continues`` is checked
    against the suggestion (`continuation.check`)."""
    if isinstance(body.suggestion, NewSuggestion):
        new = body.suggestion
        created = suggestions.add_explicit(
            session, experiment, spec, new.assignments, new.task, new.metadata, "suggestion."
        )
        run = add(session, experiment, created, body.name, body.metadata, RunState.QUEUED)
        _continue(session, experiment, spec, run, created, body.continues)
        session.commit()
        return run
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
    run = add(session, experiment, suggestion, body.name, body.metadata, RunState.QUEUED)
    _continue(session, experiment, spec, run, suggestion, body.continues)
    session.commit()
    return run


def _continue(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    run: TrainingRun,
    suggestion: Suggestion,
    continues: int | None,
) -> None:
    if continues is not None:
        source = continuation.check(
            session, experiment, spec, suggestion.assignments, suggestion.task, continues
        )
        run.continues_id = source.id


def add(
    session: Session,
    experiment: Experiment,
    suggestion: Suggestion,
    name: str | None,
    metadata: dict[str, MetadataValue] | None,
    state: RunState,
) -> TrainingRun:
    """A run of ``suggestion``, added to the session (not committed): ``queued`` for a worker,
    or ``running`` when a client tracks it."""
    now = time.time()
    run = TrainingRun(
        client_id=experiment.client_id,
        project_id=experiment.project_id,
        experiment_id=experiment.id,
        suggestion_id=suggestion.id,
        name=name,
        state=state,
        attempt=1,
        meta=metadata,
        checkpoint_count=0,
        deleted=False,
        data={},
        created=now,
        updated=now,
        started=now if state == RunState.RUNNING else None,
    )
    session.add(run)
    return run


def check_attempt(run: TrainingRun, attempt: int | None) -> None:
    if attempt is not None and attempt != run.attempt:
        raise ApiError(
            409,
            f"Conflict in attempt: run {run.id} is at attempt {run.attempt}, "
            f"not {attempt}; this worker's attempt was superseded",
        )


def _next_state(run: TrainingRun, requested: RunStateInput | None) -> RunState | None:
    """The state a write moves the run to, or None for no change. A finished run stays finished,
    but a completed run may still fail (``failed`` outranks ``completed``, as in SigOpt)."""
    if requested is None or requested == run.state:
        return None
    finished = run.state in FINISHED_RUN_STATES
    if requested == ACTIVE:
        if finished:
            raise ApiError(409, f"Conflict in state: run {run.id} is {run.state}, not active")
        return None
    state = RunState(requested)
    if run.state == RunState.FAILED and state == RunState.COMPLETED:
        return None
    if finished and not (run.state == RunState.COMPLETED and state == RunState.FAILED):
        raise ApiError(409, f"Conflict in state: run {run.id} is {run.state}, not {state}")
    return state


def update(
    session: Session,
    experiment: Experiment | None,
    run: TrainingRun,
    body: TrainingRunUpdate,
    *,
    merge: bool,
) -> TrainingRun:
    """``PUT`` (``merge`` False) or ``PATCH``/``MERGE`` of a run, in one transaction: the
    platform's fields (state, attempts, heartbeat, worker), what a client tracks
    (`tracking.apply`), archiving, and the observation of a run of an experiment that ends."""
    check_attempt(run, body.attempt)
    if body.state == RunState.RUNNING and run.state != RunState.QUEUED and not body.new_attempt:
        raise ApiError(
            409,
            f"Conflict in state: run {run.id} attempt {run.attempt} is "
            f"{run.state}, not queued; another worker holds it",
        )
    target = _next_state(run, body.state)
    now = time.time()
    state_changed = False
    if body.new_attempt:
        run.attempt += 1
        run.state = RunState.QUEUED
        run.heartbeat = None
        run.worker = None
        state_changed = True
    fixed = {}
    if "assignments" in body.model_fields_set and run.suggestion_id is not None:
        suggestion = session.get(Suggestion, run.suggestion_id)
        fixed = suggestion.assignments if suggestion is not None else {}
    tracking.apply(run, fixed, body, merge=merge)
    for name in ("worker", "failure_reason", "traceback"):
        value = getattr(body, name)
        if value is not None:
            setattr(run, name, value)
    if body.heartbeat:
        run.heartbeat = now
    if body.deleted is not None and body.deleted != run.deleted:
        archive(session, experiment, run, body.deleted)
        state_changed = True
    if target is not None:
        state_changed = True
        if experiment is not None and target in _ENDINGS:
            _end_by_client(session, experiment, run, target, body.failure_reason)
        else:
            run.state = target
            if target == RunState.RUNNING and run.started is None:
                run.started = now
            if target in FINISHED_RUN_STATES:
                run.completed = now
    run.updated = now
    if state_changed and experiment is not None:
        outbox.record(session, EventType.TRAINING_RUN_UPDATED, experiment)
    _commit(session, run)
    return run


def _end_by_client(
    session: Session,
    experiment: Experiment,
    run: TrainingRun,
    state: RunState,
    failure_reason: str | None,
) -> None:
    """A client ended a run of an experiment: its tracked values become the observation's
    values; the observation fails when the run failed or misses a metric the experiment
    requires (an optimized or constraint metric)."""
    spec = experiments.spec(experiment)
    if run.state in FINISHED_RUN_STATES:  # completed, now failed: so is its observation
        observation = session.get(Observation, run.observation_id) if run.observation_id else None
        if observation is not None and not observation.failed:
            observations.mark_failed(session, experiment, observation)
        run.state = state
        return
    tracked = tracking.values_of(run)
    values = [
        MetricValue(
            name=m.name,
            value=tracked[m.name]["value"],
            value_stddev=tracked[m.name].get("value_stddev"),
        )
        for m in spec.metrics
        if m.name in tracked
    ]
    missing = observations.missing_metrics(spec, tracked)
    reason = failure_reason
    if state == RunState.COMPLETED and missing:
        reason = reason or f"no value for metric(s) {missing}"
    succeeded = state == RunState.COMPLETED and not missing
    _end(session, experiment, spec, run, state, values if succeeded else None, reason, None)


def finish(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    run: TrainingRun,
    body: TrainingRunResult,
) -> TrainingRun:
    """Record how the current attempt ended (``POST /training_runs/{id}/result``). A superseded
    attempt, or a run no longer queued or running, is a 409 and changes nothing."""
    check_attempt(run, body.attempt)
    if run.state not in IN_FLIGHT_RUN_STATES:
        raise ApiError(409, f"Conflict in state: run {run.id} is {run.state}, not in flight")
    completed = body.state == RunState.COMPLETED
    if completed and body.values is None:
        raise invalid("values", "a completed run reports its metric values")
    if not completed and body.values is not None:
        raise invalid("values", f"a {body.state} run reports no values")
    reason, trace = body.failure_reason, body.traceback
    _end(session, experiment, spec, run, body.state, body.values, reason, trace)
    _commit(session, run)
    return run


def _end(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    run: TrainingRun,
    state: RunState,
    values: list[MetricValue] | None,
    failure_reason: str | None,
    traceback: str | None,
) -> None:
    """The one way a run of an experiment ends with an observation: the observation (failed
    unless ``values``) and the run's final state, added to the session for one commit. A run
    whose suggestion (or experiment) was deleted while it trained ends ``stopped``, without an
    observation; an archived run's observation is recorded archived too."""
    now = time.time()
    suggestion = session.get(Suggestion, run.suggestion_id) if run.suggestion_id else None
    if suggestion is None or suggestion.deleted or experiment.state == ExperimentState.DELETED:
        run.state = RunState.STOPPED
    else:
        metadata: dict[str, MetadataValue] = {"training_run": run.id, "attempt": run.attempt}
        if values is None and failure_reason:
            metadata["failure_reason"] = failure_reason[:500]
        observation = observations.build(
            session,
            experiment,
            spec,
            ObservationCreate(
                suggestion=suggestion.id,
                values=values,
                failed=None if values is not None else True,
                metadata=metadata,
            ),
            "",
            f"training-run-{run.id}",
        )
        session.flush()
        run.observation_id = observation.id
        if run.deleted:
            observations.hide(observation)
        if observation.values:
            tracked = tracking.values_of(run)
            reported = {
                v["name"]: {"value": v["value"], "value_stddev": v.get("value_stddev")}
                for v in observation.values
            }
            run.data = {**(run.data or {}), "values": tracking.merged(tracked, reported)}
        outbox.record(session, EventType.OBSERVATION_CREATED, experiment)
        run.state = state
    run.completed = now
    run.updated = now
    if failure_reason:
        run.failure_reason = failure_reason
    if traceback:
        run.traceback = traceback
    outbox.record(session, EventType.TRAINING_RUN_UPDATED, experiment)


def _commit(session: Session, run: TrainingRun) -> None:
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ApiError(
            409, f"Conflict: suggestion {run.suggestion_id} was observed concurrently"
        ) from exc


def archive(
    session: Session, experiment: Experiment | None, run: TrainingRun, archived: bool
) -> None:
    """Archive (``deleted``) or unarchive a run, not committed. An archived run leaves its AI
    experiment's budget, and its observation leaves the experiment's history (and best runs)
    until it is unarchived."""
    run.deleted = archived
    if experiment is None or run.observation_id is None:
        return
    observation = session.get(Observation, run.observation_id)
    if observation is None:
        return
    if archived and not observation.deleted:
        observations.hide(observation)
        outbox.record(session, EventType.OBSERVATION_DELETED, experiment)
    elif not archived and observation.deleted:
        observations.unhide(observation)
        outbox.record(session, EventType.OBSERVATION_UPDATED, experiment)


def delete(session: Session, experiment: Experiment | None, run: TrainingRun) -> None:
    """``DELETE``: archive (SigOpt's soft delete); ``PUT {"deleted": false}`` unarchives."""
    if not run.deleted:
        archive(session, experiment, run, True)
        run.updated = time.time()
        if experiment is not None:
            outbox.record(session, EventType.TRAINING_RUN_UPDATED, experiment)
    _commit(session, run)


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


def suggestions_of(session: Session, runs: Iterable[TrainingRun]) -> dict[int, Suggestion]:
    ids = {r.suggestion_id for r in runs if r.suggestion_id is not None}
    if not ids:
        return {}
    return {s.id: s for s in session.scalars(select(Suggestion).where(Suggestion.id.in_(ids)))}


def relations(session: Session, runs: list[TrainingRun]) -> RunRelations:
    """What the JSON of ``runs`` shows besides the runs themselves, in a few queries."""
    experiment_ids = {r.experiment_id for r in runs if r.experiment_id is not None}
    project_ids = {r.project_id for r in runs if r.project_id is not None}
    found = (
        session.scalars(select(Experiment).where(Experiment.id.in_(experiment_ids)))
        if experiment_ids
        else ()
    )
    projects = (
        session.execute(
            select(Project.id, Project.reference_id).where(Project.id.in_(project_ids))
        )
        .tuples()
        .all()
        if project_ids
        else ()
    )
    return RunRelations(
        suggestions=suggestions_of(session, runs),
        experiments={e.id: e for e in found},
        projects=dict(projects),
        files=artifacts.file_ids(session, [r.id for r in runs]),
    )
