"""Training-run and checkpoint bodies."""

from __future__ import annotations

from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import Field

from services.api.schemas.common import Metadata
from services.api.schemas.common import MetricValue
from services.api.schemas.common import ObjectId
from services.api.schemas.common import PageQuery
from services.api.schemas.common import StrictModel
from services.api.schemas.common import TaskRef
from shared.states import RunState
from shared.states import StateFilter

MAX_LOG_CHARS = 64 * 1024


class NewSuggestion(StrictModel):
    """A suggestion created together with its training run (one request, one transaction)."""

    assignments: dict[str, Any]
    task: TaskRef | None = None
    metadata: Metadata = None


class TrainingRunCreate(StrictModel):
    """``suggestion``: an existing suggestion's id, or a new suggestion to create with the run."""

    suggestion: ObjectId | NewSuggestion
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    metadata: Metadata = None


class TrainingRunUpdate(StrictModel):
    """``attempt`` fences: an update naming an older attempt than the run's is refused (409).
    ``new_attempt`` starts the next attempt (the suggester does this when a lease expires)."""

    #: Sent as text; validated laxly so that a strict model accepts the wire string.
    state: Annotated[RunState, Field(strict=False)] | None = None
    attempt: Annotated[int, Field(ge=1)] | None = None
    new_attempt: bool | None = None
    heartbeat: bool | None = None
    worker: Annotated[str, Field(max_length=200)] | None = None
    failure_reason: Annotated[str, Field(max_length=2000)] | None = None
    traceback: Annotated[str, Field(max_length=MAX_LOG_CHARS)] | None = None
    logs: Annotated[str, Field(max_length=MAX_LOG_CHARS)] | None = None
    metadata: Metadata = None
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class TrainingRunResult(StrictModel):
    """How an attempt ended: recorded with its observation in one transaction. ``values`` for a
    completed run; ``failed`` and ``lost`` record a failed observation."""

    attempt: Annotated[int, Field(ge=1)]
    #: One of `shared.states.RESULT_RUN_STATES`.
    state: Literal[RunState.COMPLETED, RunState.FAILED, RunState.LOST]
    values: Annotated[list[MetricValue], Field(min_length=1, max_length=50)] | None = None
    failure_reason: Annotated[str, Field(max_length=2000)] | None = None
    traceback: Annotated[str, Field(max_length=MAX_LOG_CHARS)] | None = None


class TrainingRunListQuery(PageQuery):
    #: ``unfinished``: queued, running or paused (what a scheduler has to look after).
    state: RunState | Literal[StateFilter.ALL, StateFilter.UNFINISHED] = StateFilter.ALL


class CheckpointCreate(StrictModel):
    values: Annotated[list[MetricValue], Field(min_length=1, max_length=100)]
    epoch: Annotated[int, Field(ge=0)] | None = None
    attempt: Annotated[int, Field(ge=1)] | None = None
    metadata: Metadata = None
