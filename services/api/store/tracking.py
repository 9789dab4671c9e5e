"""What clients track on a run (SigOpt's run fields), and runs of projects outside experiments.

``PUT`` replaces each map it sends; ``PATCH``/``MERGE`` merges maps recursively, and a ``null``
inside a map deletes that key (the sigopt client deletes a parameter that way). A map sent as
``null`` is cleared either way. Parameters fixed by the run's suggestion cannot change.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement
from sqlalchemy import Select
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.errors import invalid
from services.api.models import Project
from services.api.models import TrainingRun
from services.api.schemas.common import MAX_METADATA_KEYS
from services.api.schemas.training_runs import ACTIVE
from services.api.schemas.training_runs import MAX_TRACKED_KEYS
from services.api.schemas.training_runs import RunFilter
from services.api.schemas.training_runs import TrackedFields
from services.api.schemas.training_runs import TrackedRunBatch
from services.api.schemas.training_runs import TrackedRunCreate
from services.api.schemas.training_runs import TrackedRunListQuery
from services.api.store.paging import fetch_page
from shared.states import FINISHED_RUN_STATES
from shared.states import RunState

#: Tracked maps kept in `TrainingRun.data`, by field name.
DATA_FIELDS = (
    "values",
    "datasets",
    "model",
    "source_code",
    "sys_metadata",
    "dev_metadata",
    "assignments_meta",
    "assignments_sources",
)
#: States a run tracked by a client may be created in.
_CREATE_STATES = (RunState.RUNNING, RunState.COMPLETED, RunState.FAILED)


def merged(old: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``patch`` merged into ``old`` recursively; a ``None`` in ``patch`` deletes the key."""
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def _json(value: Any) -> Any:
    """A parsed body value as plain JSON (models dumped; ``None`` fields kept, so that a merge
    deletes what they replace: a metric's old ``value_stddev`` does not survive a new value)."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    return value


def _apply(
    old: Mapping[str, Any] | None, new: Any, merge: bool, field: str, limit: int
) -> dict[str, Any] | None:
    """``new`` merged into ``old`` (``merge``) or replacing it; None clears the field."""
    if new is None:
        return None
    result = merged((old or {}) if merge else {}, _json(new))
    if len(result) > limit:
        raise invalid(field, f"at most {limit} keys are allowed")
    return result or None


def apply(
    run: TrainingRun,
    fixed: Mapping[str, Any],
    body: TrackedFields,
    *,
    merge: bool,
    prefix: str = "",
) -> None:
    """Write the tracked fields ``body`` sent onto ``run`` (not its state). ``fixed``: the
    assignments of the run's suggestion, which stay as they are."""
    sent = body.model_fields_set
    data = dict(run.data or {})
    for name in DATA_FIELDS:
        if name in sent:
            data[name] = _apply(
                data.get(name), getattr(body, name), merge, prefix + name, MAX_TRACKED_KEYS
            )
    if "favorite" in sent and body.favorite is not None:
        data["favorite"] = body.favorite
    if "assignments" in sent:
        for key, value in (body.assignments or {}).items():
            if key in fixed and value != fixed[key]:
                raise invalid(
                    f"{prefix}assignments.{key}",
                    f"is {fixed[key]!r}, fixed by the run's suggestion",
                )
        free = {k: v for k, v in (body.assignments or {}).items() if k not in fixed}
        data["assignments"] = _apply(
            data.get("assignments"),
            free if body.assignments is not None else None,
            merge,
            prefix + "assignments",
            MAX_TRACKED_KEYS,
        )
    if "logs" in sent:
        if isinstance(body.logs, str):
            run.logs = body.logs
        else:
            data["logs"] = _apply(
                data.get("logs"), body.logs, merge, prefix + "logs", MAX_TRACKED_KEYS
            )
            if body.logs is None:
                run.logs = None
    if "metadata" in sent:
        run.meta = _apply(run.meta, body.metadata, merge, prefix + "metadata", MAX_METADATA_KEYS)
    if body.name is not None:
        run.name = body.name
    data = {k: v for k, v in data.items() if v is not None}
    if data != (run.data or {}):
        run.data = data


def values_of(run: TrainingRun) -> dict[str, dict[str, Any]]:
    """The run's tracked metric values: ``{name: {"value", "value_stddev"?}}``."""
    values: dict[str, dict[str, Any]] = (run.data or {}).get("values") or {}
    return values


# ------------------------------------------------------------------ runs of projects
def _new(project: Project, body: TrackedRunCreate, prefix: str, now: float) -> TrainingRun:
    state = RunState.RUNNING if body.state in (None, ACTIVE) else body.state
    if state not in _CREATE_STATES:
        raise invalid(f"{prefix}state", "a tracked run starts running, completed or failed")
    run = TrainingRun(
        client_id=project.client_id,
        project_id=project.id,
        experiment_id=None,
        suggestion_id=None,
        name=body.name,
        state=state,
        attempt=1,
        checkpoint_count=0,
        deleted=False,
        data={},
        created=now,
        updated=now,
        started=now,
        completed=now if state in FINISHED_RUN_STATES else None,
    )
    apply(run, {}, body, merge=False, prefix=prefix)
    return run


def create(session: Session, project: Project, body: TrackedRunCreate) -> TrainingRun:
    """A run of ``project`` outside any experiment (no suggestion, no observation)."""
    run = _new(project, body, "", time.time())
    session.add(run)
    session.commit()
    return run


def create_batch(session: Session, project: Project, body: TrackedRunBatch) -> list[TrainingRun]:
    """All or nothing; errors name ``runs[i].field``."""
    now = time.time()
    runs = [_new(project, item, f"runs[{i}].", now) for i, item in enumerate(body.runs)]
    session.add_all(runs)
    session.commit()
    return runs


def _id_value(value: Any, field: str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 12:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31:
        return value
    raise invalid(field, f"expected an id, got {value!r:.40}")


def _condition(f: RunFilter, field: str) -> ColumnElement[bool]:
    """One filter as SQL; 400 naming ``filters[i].value``/``.operator`` when it cannot be. ``!=``
    keeps rows where the field is null (a run outside experiments is not in experiment 3)."""
    columns: dict[str, Any] = {
        "id": TrainingRun.id,
        "experiment": TrainingRun.experiment_id,
        "suggestion": TrainingRun.suggestion_id,
        "state": TrainingRun.state,
        "deleted": TrainingRun.deleted,
        "name": TrainingRun.name,
    }
    column = columns[f.field]
    if f.operator == "isnull":
        if f.field not in ("experiment", "suggestion", "name"):
            raise invalid(f"{field}.operator", f"{f.field} is never null")
        condition: ColumnElement[bool] = column.is_(None)
        return condition
    value: Any
    if f.field in ("id", "experiment", "suggestion"):
        value = _id_value(f.value, f"{field}.value")
    elif f.field == "state":
        if f.value == ACTIVE:
            active = TrainingRun.state.not_in(FINISHED_RUN_STATES)
            return active if f.operator == "==" else ~active
        if not isinstance(f.value, str) or f.value not in tuple(RunState):
            allowed = [*RunState, ACTIVE]
            raise invalid(f"{field}.value", f"expected one of {allowed}, got {f.value!r:.40}")
        value = f.value
    elif f.field == "deleted":
        if isinstance(f.value, str) and f.value in ("true", "false"):
            value = f.value == "true"
        elif isinstance(f.value, bool):
            value = f.value
        else:
            raise invalid(f"{field}.value", f"expected true or false, got {f.value!r:.40}")
    else:
        if not isinstance(f.value, str):
            raise invalid(f"{field}.value", f"expected a string, got {f.value!r:.40}")
        value = f.value
    condition = column == value if f.operator == "==" else column.is_distinct_from(value)
    return condition


def list_page(
    session: Session, project: Project, query: TrackedRunListQuery
) -> tuple[list[TrainingRun], int, dict[str, str | None]]:
    """Runs of ``project`` (archived ones too, as SigOpt listed them), newest first."""
    stmt: Select[Any] = select(TrainingRun).where(TrainingRun.project_id == project.id)
    for i, f in enumerate(query.filters or ()):
        stmt = stmt.where(_condition(f, f"filters[{i}]"))
    return fetch_page(session, stmt, TrainingRun.id, query)
