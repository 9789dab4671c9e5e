"""Observations: create (single and batch, idempotent), update, delete, list.

Counts and the budget consumed (sum of the charged costs: a task's cost, less what the run it
continued already paid, `continuation.charged_cost`) are aggregates over the live observations
(`services.api.store.results.observation_stats`), so nothing else changes with them. A
suggestion holds at most one live observation unless the request says ``allow_multiple`` (a
unique column enforces it, races included); a retried POST with the same ``Idempotency-Key``,
or the same body for the same suggestion, returns the first observation.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.api import outbox
from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.errors import not_found
from services.api.models import Experiment
from services.api.models import Observation
from services.api.models import Suggestion
from services.api.schemas.common import PageQuery
from services.api.schemas.observations import ObservationCreate
from services.api.store import continuation
from services.api.store.paging import fetch_page
from services.api.store.suggestions import check_point
from shared.messages import EventType
from shared.space import ExperimentSpec
from shared.space import assignment_key
from shared.states import SuggestionState


def get(session: Session, experiment: Experiment, observation_id: int) -> Observation:
    observation = session.get(Observation, observation_id)
    if observation is None or observation.experiment_id != experiment.id or observation.deleted:
        raise not_found("observation", observation_id)
    return observation


def _values(spec: ExperimentSpec, body: ObservationCreate, prefix: str) -> list[dict[str, Any]]:
    """The metric values of a body, named and complete, or [] when failed."""
    has_value = body.value is not None
    has_values = body.values is not None
    if body.failed:
        if has_value or has_values:
            raise invalid(f"{prefix}failed", "a failed observation takes no value or values")
        return []
    if has_value == has_values:
        raise invalid(f"{prefix}value", "send exactly one of value or values (or failed: true)")
    if has_value:
        if len(spec.metrics) != 1:
            raise invalid(
                f"{prefix}value", f"this experiment has {len(spec.metrics)} metrics; use values"
            )
        return [
            {"name": spec.metrics[0].name, "value": body.value, "value_stddev": body.value_stddev}
        ]
    if body.value_stddev is not None:
        raise invalid(f"{prefix}value_stddev", "goes inside each entry of values")
    names = {m.name for m in spec.metrics}
    out: list[dict[str, Any]] = []
    for i, v in enumerate(body.values or ()):
        name = (
            v.name
            if v.name is not None
            else (spec.metrics[0].name if len(spec.metrics) == 1 else None)
        )
        if name not in names:
            raise invalid(f"{prefix}values[{i}].name", f"unknown metric {v.name!r}")
        out.append({"name": name, "value": v.value, "value_stddev": v.value_stddev})
    given: list[str] = [v["name"] for v in out]
    if len(set(given)) != len(given):
        raise invalid(f"{prefix}values", "each metric may appear once")
    missing = missing_metrics(spec, given)
    if missing:
        raise invalid(f"{prefix}values", f"missing metric(s) {missing}")
    return out


def missing_metrics(spec: ExperimentSpec, reported: Iterable[str]) -> list[str]:
    """The metrics a successful observation must report (optimized and constraint ones) that
    are not among ``reported``."""
    names = set(reported)
    return [m.name for m in spec.metrics if m.strategy != "store" and m.name not in names]


def _point(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    body: ObservationCreate,
    prefix: str,
) -> tuple[Suggestion | None, dict[str, Any], str | None]:
    if (body.suggestion is None) == (body.assignments is None):
        raise invalid(f"{prefix}suggestion", "send exactly one of suggestion or assignments")
    if body.suggestion is not None:
        suggestion = session.get(Suggestion, body.suggestion)
        if suggestion is None or suggestion.experiment_id != experiment.id:
            raise invalid(
                f"{prefix}suggestion",
                f"No suggestion: {body.suggestion} for experiment: {experiment.id}",
            )
        if suggestion.deleted:
            raise invalid(
                f"{prefix}suggestion",
                f"suggestion {suggestion.id} was deleted and is "
                "no longer valid; request a new suggestion",
            )
        if body.task is not None and body.task != suggestion.task:
            raise invalid(
                f"{prefix}task", f"does not match the suggestion's task {suggestion.task!r}"
            )
        return suggestion, suggestion.assignments, suggestion.task
    assert body.assignments is not None
    check_point(spec, body.assignments, body.task, prefix)
    return None, body.assignments, body.task


def _same(observation: Observation, values: list[dict[str, Any]], failed: bool) -> bool:
    return observation.failed == failed and observation.values == values


def build(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    body: ObservationCreate,
    prefix: str,
    idempotency_key: str | None,
) -> Observation:
    """The observation of ``body``, added to the session (not committed); a live observation of
    the same suggestion with the same outcome is returned instead (a retry)."""
    values = _values(spec, body, prefix)
    suggestion, assignments, task = _point(session, experiment, spec, body, prefix)
    failed = bool(body.failed)
    exclusive = None
    if suggestion is not None and not body.allow_multiple:
        live = session.scalar(
            select(Observation).where(Observation.exclusive_suggestion_id == suggestion.id)
        )
        if live is not None:
            if _same(live, values, failed):
                return live
            raise ApiError(
                409,
                f"Conflict in {prefix}suggestion: suggestion {suggestion.id} already "
                f"has observation {live.id}; send allow_multiple: true to add another",
            )
        exclusive = suggestion.id
    now = time.time()
    observation = Observation(
        experiment_id=experiment.id,
        suggestion_id=suggestion.id if suggestion else None,
        exclusive_suggestion_id=exclusive,
        assignments=assignments,
        task=task,
        key=assignment_key(assignments, task),
        cost=continuation.charged_cost(session, spec, suggestion, task),
        values=values,
        failed=failed,
        meta=body.metadata,
        deleted=False,
        idempotency_key=idempotency_key,
        created=now,
        updated=now,
    )
    session.add(observation)
    if suggestion is not None:
        suggestion.state = SuggestionState.CLOSED
        suggestion.updated = now
    return observation


def create(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    body: ObservationCreate,
    idempotency_key: str | None,
) -> Observation:
    if idempotency_key is not None:
        replay = _by_idempotency_key(session, experiment, idempotency_key)
        if replay is not None:
            return replay
    observations = create_many(session, experiment, spec, [body], idempotency_key, prefix="")
    return observations[0]


def create_many(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    bodies: list[ObservationCreate],
    idempotency_key: str | None,
    prefix: str = "observations",
) -> list[Observation]:
    """All or nothing; field names in errors carry the item index."""
    built: list[Observation] = []
    try:
        for i, body in enumerate(bodies):
            key = None
            if idempotency_key is not None:
                key = idempotency_key if not prefix else f"{idempotency_key}#{i}"
            item_prefix = f"{prefix}[{i}]." if prefix else ""
            built.append(build(session, experiment, spec, body, item_prefix, key))
        if any(o.id is None for o in built):
            outbox.record(session, EventType.OBSERVATION_CREATED, experiment)
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        if idempotency_key is not None and not prefix:
            replay = _by_idempotency_key(session, experiment, idempotency_key)
            if replay is not None:
                return [replay]
        raise ApiError(
            409,
            "Conflict: a concurrent request recorded an observation for the same "
            "suggestion or idempotency key; fetch the observations and retry",
        ) from exc
    return built


def _by_idempotency_key(session: Session, experiment: Experiment, key: str) -> Observation | None:
    return session.scalar(
        select(Observation).where(
            Observation.experiment_id == experiment.id, Observation.idempotency_key == key
        )
    )


def update_one(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    observation: Observation,
    body: ObservationCreate,
) -> Observation:
    """PUT: fields sent replace the stored ones (values, failure, metadata, point)."""
    if body.value is not None or body.values is not None or body.failed is not None:
        observation.values = _values(spec, body, "")
        observation.failed = bool(body.failed)
    if body.suggestion is not None or body.assignments is not None:
        suggestion, assignments, task = _point(session, experiment, spec, body, "")
        _release(session, observation)
        observation.suggestion_id = suggestion.id if suggestion else None
        observation.exclusive_suggestion_id = suggestion.id if suggestion else None
        observation.assignments, observation.task = assignments, task
        observation.key = assignment_key(assignments, task)
        observation.cost = spec.task_cost(task)
        if suggestion is not None:
            suggestion.state = SuggestionState.CLOSED
    elif body.task is not None:
        raise invalid("task", "send task together with assignments")
    if body.metadata is not None:
        observation.meta = body.metadata
    observation.updated = time.time()
    outbox.record(session, EventType.OBSERVATION_UPDATED, experiment)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ApiError(409, "Conflict in suggestion: it already has a live observation") from exc
    return observation


def _release(session: Session, observation: Observation) -> None:
    """Re-open the observation's suggestion when no other live observation references it."""
    observation.exclusive_suggestion_id = None
    if observation.suggestion_id is None:
        return
    others = session.scalar(
        select(Observation.id)
        .where(
            Observation.suggestion_id == observation.suggestion_id,
            Observation.id != observation.id,
            Observation.deleted.is_(False),
        )
        .limit(1)
    )
    if others is None:
        session.execute(
            update(Suggestion)
            .where(Suggestion.id == observation.suggestion_id)
            .values(state=SuggestionState.OPEN, updated=time.time())
        )


def hide(observation: Observation) -> None:
    """Take the observation of an archived training run out of the history (not committed);
    its suggestion stays closed, so the point is not served again."""
    observation.deleted = True
    observation.exclusive_suggestion_id = None
    observation.updated = time.time()


def unhide(observation: Observation) -> None:
    """Undo `hide` when the run is unarchived (not committed); a concurrent live observation of
    the same suggestion makes the commit fail on the unique column."""
    observation.deleted = False
    observation.exclusive_suggestion_id = observation.suggestion_id
    observation.updated = time.time()


def mark_failed(session: Session, experiment: Experiment, observation: Observation) -> None:
    """A completed training run failed after all (failed outranks completed): so does its
    observation (not committed)."""
    observation.values = []
    observation.failed = True
    observation.updated = time.time()
    outbox.record(session, EventType.OBSERVATION_UPDATED, experiment)


def delete(session: Session, experiment: Experiment, observation: Observation) -> None:
    observation.deleted = True
    _release(session, observation)
    observation.updated = time.time()
    outbox.record(session, EventType.OBSERVATION_DELETED, experiment)
    session.commit()


def delete_all(session: Session, experiment: Experiment) -> None:
    live = list(
        session.scalars(
            select(Observation).where(
                Observation.experiment_id == experiment.id, Observation.deleted.is_(False)
            )
        )
    )
    now = time.time()
    for observation in live:
        observation.deleted = True
        observation.exclusive_suggestion_id = None
        observation.updated = now
    session.execute(
        update(Suggestion)
        .where(Suggestion.experiment_id == experiment.id)
        .values(state=SuggestionState.OPEN, updated=now)
    )
    outbox.record(session, EventType.OBSERVATION_DELETED, experiment)
    session.commit()


def list_page(
    session: Session, experiment: Experiment, query: PageQuery
) -> tuple[list[Observation], int, dict[str, str | None]]:
    stmt = select(Observation).where(
        Observation.experiment_id == experiment.id, Observation.deleted.is_(False)
    )
    return fetch_page(session, stmt, Observation.id, query)
