"""Suggestions and queued suggestions.

`serve` never fits a model: it hands out, in order, a queued suggestion, a fresh entry of the
pool the suggester precomputed, the next point of the initial space-filling design, and only
then (after waiting up to the configured bound for the suggester) a random point. Every source
skips points that duplicate a live suggestion or observation.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from typing import Any

import numpy as np
import redis
from sqlalchemy import ColumnElement
from sqlalchemy import CursorResult
from sqlalchemy import Insert
from sqlalchemy import Select
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import delete as sql_delete
from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from services.api import outbox
from services.api import pool
from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.errors import not_found
from services.api.models import Experiment
from services.api.models import Observation
from services.api.models import QueuedSuggestion
from services.api.models import Suggestion
from services.api.schemas.common import PageQuery
from services.api.schemas.suggestions import SuggestionListQuery
from services.api.store.paging import fetch_page
from shared.design import design_point
from shared.design import initial_design_size
from shared.design import random_point
from shared.messages import EventType
from shared.messages import PoolEntry
from shared.space import Assignments
from shared.space import ExperimentSpec
from shared.space import InvalidAssignments
from shared.space import assignment_key
from shared.states import StateFilter
from shared.states import SuggestionState

log = logging.getLogger(__name__)

#: Random draws tried before accepting a duplicate of an existing point.
_RANDOM_TRIES = 32


class SuggestionSource(StrEnum):
    """Where a suggestion came from (`Suggestion.source`)."""

    #: A queued suggestion, served once.
    QUEUED = "queued"
    #: An entry of the suggester's pool.
    POOL = "pool"
    #: The next point of the initial space-filling design.
    DESIGN = "design"
    #: A random point: a random experiment, or no fresh pool entry in time.
    RANDOM = "random"
    #: A random point served while the pool (Redis) is unreachable.
    FALLBACK = "fallback"
    #: Assignments the client gave.
    USER = "user"


def check_point(
    spec: ExperimentSpec, assignments: Assignments, task: str | None, prefix: str = ""
) -> None:
    """400 naming the field when assignments or task do not fit the experiment."""
    try:
        spec.validate_assignments(assignments, prefix=f"{prefix}assignments")
    except InvalidAssignments as exc:
        raise invalid(exc.field, exc.message) from exc
    check_task(spec, task, f"{prefix}task")


def check_task(spec: ExperimentSpec, task: str | None, field: str = "task") -> None:
    if not spec.is_multitask:
        if task is not None:
            raise invalid(field, "this experiment has no tasks")
        return
    names = [t.name for t in spec.tasks]
    if task is None:
        raise invalid(field, f"is required in a multitask experiment (one of {names})")
    if task not in names:
        raise invalid(field, f"unknown task {task!r}; expected one of {names}")


def _duplicate_clause(
    experiment_id: int | ColumnElement[int], key: str | ColumnElement[str]
) -> ColumnElement[bool]:
    suggestion = exists().where(
        Suggestion.experiment_id == experiment_id,
        Suggestion.key == key,
        Suggestion.deleted.is_(False),
    )
    observation = exists().where(
        Observation.experiment_id == experiment_id,
        Observation.key == key,
        Observation.deleted.is_(False),
    )
    return suggestion | observation


def is_duplicate(session: Session, experiment_id: int, key: str) -> bool:
    """True when a live suggestion or observation already has this (assignments, task)."""
    return bool(session.scalar(select(_duplicate_clause(experiment_id, key))))


def get(session: Session, experiment: Experiment, suggestion_id: int) -> Suggestion:
    suggestion = session.get(Suggestion, suggestion_id)
    if suggestion is None or suggestion.experiment_id != experiment.id:
        raise not_found("suggestion", suggestion_id)
    return suggestion


def _store(
    session: Session,
    experiment: Experiment,
    assignments: Assignments,
    task: str | None,
    source: SuggestionSource,
    metadata: dict[str, Any] | None,
) -> Suggestion:
    suggestion = _add(session, experiment, assignments, task, source, metadata)
    session.commit()
    return suggestion


def _add(
    session: Session,
    experiment: Experiment,
    assignments: Assignments,
    task: str | None,
    source: SuggestionSource,
    metadata: dict[str, Any] | None,
) -> Suggestion:
    now = time.time()
    suggestion = Suggestion(
        experiment_id=experiment.id,
        assignments=assignments,
        task=task,
        key=assignment_key(assignments, task),
        state=SuggestionState.OPEN,
        deleted=False,
        source=source,
        meta=metadata,
        created=now,
        updated=now,
    )
    session.add(suggestion)
    outbox.record(session, EventType.SUGGESTION_CREATED, experiment)
    return suggestion


def add_explicit(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    assignments: Assignments,
    task: str | None,
    metadata: dict[str, Any] | None,
    prefix: str = "",
) -> Suggestion:
    """A suggestion with the given point, added to the session but not committed (the caller
    commits it together with what depends on it)."""
    check_point(spec, assignments, task, prefix)
    suggestion = _add(session, experiment, assignments, task, SuggestionSource.USER, metadata)
    session.flush()
    return suggestion


def create_explicit(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    assignments: Assignments,
    task: str | None,
    metadata: dict[str, Any] | None,
) -> Suggestion:
    suggestion = add_explicit(session, experiment, spec, assignments, task, metadata)
    session.commit()
    return suggestion


def serve(
    session: Session,
    client: redis.Redis,
    experiment: Experiment,
    spec: ExperimentSpec,
    wait_s: float,
    metadata: dict[str, Any] | None,
) -> Suggestion:
    """The next suggestion: queued, else a fresh pool entry, else the next design point, else
    (after waiting up to ``wait_s`` for the suggester to refill the pool) a random point.

    The pool is an accelerator, not the record: while Redis is unreachable the pool counts as
    empty, nothing waits for it, and past the design a random point is served with source
    ``"fallback"`` (logged), so a client's loop keeps going through a Redis outage.
    """
    deadline: float | None = None
    source = SuggestionSource.RANDOM
    while True:
        remaining = 0.0 if deadline is None else deadline - time.monotonic()
        if deadline is not None:
            session.rollback()  # hold no transaction open while blocked on Redis
            if remaining <= 0:
                log.warning(
                    "experiment %s: no fresh suggestion within %.1fs; serving a random point",
                    experiment.id,
                    wait_s,
                )
                break
        try:
            taken = pool.pop(client, experiment.id, wait_s=remaining)
        except redis.RedisError as exc:
            log.warning(
                "experiment %s: the suggestion pool is unreachable (%s); serving without it",
                experiment.id,
                exc,
            )
            taken, source = None, SuggestionSource.FALLBACK
        entry = None if taken is None else taken.entry
        if entry is not None and not _fits(spec, entry):
            continue  # computed before the bounds or parameters changed: drop it
        if taken is not None:
            served = _store_if_servable(session, experiment, taken, metadata)
            if served is not None:
                return served
        queued_id = session.scalar(_oldest_queued(experiment.id))
        if queued_id is not None:
            if entry is not None:
                pool.push_back(client, experiment.id, entry)
            claimed = _claim_queued(session, experiment, queued_id, metadata)
            if claimed is not None:
                return claimed
            continue
        if entry is not None:
            continue  # stale or a duplicate of a live point: drop it
        if deadline is None and spec.type != "random":
            point = _next_design_point(session, experiment, spec)
            if point is not None:
                return _store(
                    session, experiment, point[0], point[1], SuggestionSource.DESIGN, metadata
                )
        if spec.type == "random" or source == SuggestionSource.FALLBACK:
            break
        if deadline is None:
            deadline = time.monotonic() + wait_s
    assignments, task = _random_point(session, experiment, spec)
    return _store(session, experiment, assignments, task, source, metadata)


def _oldest_queued(experiment_id: int | ColumnElement[int]) -> Select[int]:
    return select(func.min(QueuedSuggestion.id)).where(
        QueuedSuggestion.experiment_id == experiment_id
    )


def _servable_insert() -> Insert:
    """``INSERT INTO suggestions ... SELECT`` of one pool entry, guarded by what makes an entry
    servable: no queued suggestion waits (those go first), the entry was computed from at least
    the live observation count (fresh), and it duplicates no live point. One round trip, and
    no row comes back when a guard fails."""
    table = Suggestion.__table__
    assert isinstance(table, Table)
    experiment_id = bindparam("experiment_id", type_=table.c.experiment_id.type)
    key = bindparam("key", type_=table.c.key.type)
    created = bindparam("created", type_=table.c.created.type)
    live_observations = (
        select(func.count())
        .where(Observation.experiment_id == experiment_id, Observation.deleted.is_(False))
        .scalar_subquery()
    )
    row = select(
        experiment_id,
        bindparam("assignments", type_=table.c.assignments.type),
        bindparam("task", type_=table.c.task.type),
        key,
        literal(SuggestionState.OPEN, table.c.state.type),
        literal(False, table.c.deleted.type),
        literal(SuggestionSource.POOL, table.c.source.type),
        bindparam("metadata", type_=table.c.metadata.type),
        created,
        created,
    ).where(
        _oldest_queued(experiment_id).scalar_subquery().is_(None),
        live_observations <= bindparam("observation_count", type_=table.c.id.type),
        ~_duplicate_clause(experiment_id, key),
    )
    columns = [
        "experiment_id", "assignments", "task", "key", "state", "deleted", "source", "metadata",
        "created", "updated",
    ]  # fmt: skip
    return insert(table).from_select(columns, row).returning(table.c.id)


_SERVABLE_INSERT = _servable_insert()


def _store_if_servable(
    session: Session,
    experiment: Experiment,
    taken: pool.Taken,
    metadata: dict[str, Any] | None,
) -> Suggestion | None:
    """Store the taken entry as a ``pool`` suggestion and commit, or None (nothing written) when
    it is stale, duplicates a live point or a queued suggestion must go first."""
    entry = taken.entry
    now = time.time()
    key = assignment_key(entry.assignments, entry.task)
    suggestion_id = session.scalar(
        _SERVABLE_INSERT,
        {
            "experiment_id": experiment.id,
            "assignments": entry.assignments,
            "task": entry.task,
            "key": key,
            "metadata": metadata,
            "created": now,
            "observation_count": entry.observation_count,
        },
    )
    if suggestion_id is None:
        return None
    # Entries of one refill were chosen jointly, so taking one changes nothing for the others;
    # only an emptied pool needs the suggester (it re-reads the pending points).
    if taken.left == 0:
        outbox.record(session, EventType.SUGGESTION_CREATED, experiment)
    session.commit()
    return Suggestion(
        id=suggestion_id,
        experiment_id=experiment.id,
        assignments=entry.assignments,
        task=entry.task,
        key=key,
        state=SuggestionState.OPEN,
        deleted=False,
        source=SuggestionSource.POOL,
        meta=metadata,
        created=now,
        updated=now,
    )


def _fits(spec: ExperimentSpec, entry: PoolEntry) -> bool:
    try:
        check_point(spec, entry.assignments, entry.task)
    except ApiError:
        return False
    return True


def _claim_queued(
    session: Session, experiment: Experiment, queued_id: int, metadata: dict[str, Any] | None
) -> Suggestion | None:
    """Serve a queued suggestion once; None when a concurrent request claimed it first."""
    claimed = session.execute(
        sql_delete(QueuedSuggestion)
        .where(QueuedSuggestion.id == queued_id)
        .returning(QueuedSuggestion.assignments, QueuedSuggestion.task)
    ).first()
    if claimed is None:
        return None
    return _store(session, experiment, claimed[0], claimed[1], SuggestionSource.QUEUED, metadata)


def _next_design_point(
    session: Session, experiment: Experiment, spec: ExperimentSpec
) -> tuple[Assignments, str | None] | None:
    size = initial_design_size(spec)
    while True:
        cursor = session.scalar(
            update(Experiment)
            .where(Experiment.id == experiment.id, Experiment.design_cursor < size)
            .values(design_cursor=Experiment.design_cursor + 1)
            .returning(Experiment.design_cursor)
        )
        if cursor is None:
            return None
        assignments, task = design_point(spec, cursor - 1, seed=experiment.id)
        if not is_duplicate(session, experiment.id, assignment_key(assignments, task)):
            return assignments, task


def _random_point(
    session: Session, experiment: Experiment, spec: ExperimentSpec
) -> tuple[Assignments, str | None]:
    rng = np.random.default_rng()
    point = random_point(spec, rng)
    for _ in range(_RANDOM_TRIES):
        if not is_duplicate(session, experiment.id, assignment_key(*point)):
            break
        point = random_point(spec, rng)
    return point


def list_page(
    session: Session, experiment: Experiment, query: SuggestionListQuery
) -> tuple[list[Suggestion], int, dict[str, str | None]]:
    stmt = select(Suggestion).where(
        Suggestion.experiment_id == experiment.id, Suggestion.deleted.is_(False)
    )
    if query.state != StateFilter.ALL:
        stmt = stmt.where(Suggestion.state == query.state)
    return fetch_page(session, stmt, Suggestion.id, query)


def update_metadata(
    session: Session, suggestion: Suggestion, metadata: dict[str, Any] | None
) -> None:
    suggestion.meta = metadata
    suggestion.updated = time.time()
    session.commit()


def delete(session: Session, experiment: Experiment, suggestion: Suggestion) -> None:
    """Soft delete: the suggestion leaves the pending set and can no longer be observed."""
    suggestion.deleted = True
    suggestion.updated = time.time()
    outbox.record(session, EventType.SUGGESTION_DELETED, experiment)
    session.commit()


def withdraw(session: Session, experiment: Experiment, suggestion_id: int) -> None:
    """Soft-delete a suggestion that was served for nothing (not committed)."""
    session.execute(
        update(Suggestion)
        .where(Suggestion.id == suggestion_id)
        .values(deleted=True, updated=time.time())
        .execution_options(synchronize_session=False)
    )
    outbox.record(session, EventType.SUGGESTION_DELETED, experiment)


def delete_all(session: Session, experiment: Experiment, only_open: bool) -> int:
    stmt = (
        update(Suggestion)
        .where(Suggestion.experiment_id == experiment.id, Suggestion.deleted.is_(False))
        .values(deleted=True, updated=time.time())
    )
    if only_open:
        stmt = stmt.where(Suggestion.state == SuggestionState.OPEN)
    result = session.execute(stmt)
    assert isinstance(result, CursorResult)  # what an UPDATE returns
    count = result.rowcount
    outbox.record(session, EventType.SUGGESTION_DELETED, experiment)
    session.commit()
    return int(count or 0)


# ----------------------------------------------------------------------- queued suggestions
def create_queued(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    assignments: Assignments,
    task: str | None,
) -> QueuedSuggestion:
    check_point(spec, assignments, task)
    queued = QueuedSuggestion(
        experiment_id=experiment.id, assignments=assignments, task=task, created=time.time()
    )
    session.add(queued)
    session.commit()
    return queued


def get_queued(session: Session, experiment: Experiment, queued_id: int) -> QueuedSuggestion:
    queued = session.get(QueuedSuggestion, queued_id)
    if queued is None or queued.experiment_id != experiment.id:
        raise not_found("queued suggestion", queued_id)
    return queued


def list_queued(
    session: Session, experiment: Experiment, query: PageQuery
) -> tuple[list[QueuedSuggestion], int, dict[str, str | None]]:
    stmt = select(QueuedSuggestion).where(QueuedSuggestion.experiment_id == experiment.id)
    return fetch_page(session, stmt, QueuedSuggestion.id, query)


def delete_queued(session: Session, queued: QueuedSuggestion) -> None:
    session.delete(queued)
    session.commit()
