"""Training-run and checkpoint bodies.

A run is written by the platform (the suggester and workers: state, attempts, heartbeats,
results) and by clients tracking it (SigOpt's run fields: assignments, values, metadata, model,
datasets, logs, source code, ...). Both write through `TrainingRunUpdate`: ``PUT`` replaces the
maps it sends, ``PATCH``/``MERGE`` merges them (a ``null`` inside a map deletes that key).
"""

from __future__ import annotations

from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import Field
from pydantic import Json
from pydantic import StringConstraints

from services.api.schemas.common import Attempt
from services.api.schemas.common import Epoch
from services.api.schemas.common import Metadata
from services.api.schemas.common import MetricValue
from services.api.schemas.common import Name
from services.api.schemas.common import Number
from services.api.schemas.common import ObjectId
from services.api.schemas.common import PageQuery
from services.api.schemas.common import StrictModel
from services.api.schemas.common import TaskRef
from services.api.schemas.common import examples
from shared.states import RunState
from shared.states import StateFilter

MAX_LOG_CHARS = 64 * 1024
MAX_SOURCE_CHARS = 1024 * 1024
#: Keys of one tracked map (assignments, values, datasets, logs, ...).
MAX_TRACKED_KEYS = 200
#: Runs of one batch create, as SigOpt allowed.
MAX_RUN_BATCH = 10_000
#: SigOpt's name for a run in progress; multitune calls it ``running``.
ACTIVE = "active"

RunName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=500)]
#: A run state as a client may send it: a `RunState`, or SigOpt's ``active`` (in progress).
RunStateInput = Annotated[RunState, Field(strict=False)] | Literal["active"]


class NewSuggestion(StrictModel):
    """A suggestion created together with its training run (one request, one transaction)."""

    assignments: dict[str, Any]
    task: TaskRef | None = None
    metadata: Metadata = None


class TrainingRunCreate(StrictModel):
    """``suggestion``: an existing suggestion's id, or a new suggestion to create with the run.
    ``continues``: a completed run of the same assignments on a cheaper task whose checkpoint
    this run resumes (`services.api.store.continuation`); its observation is charged only the
    difference of the two tasks' costs."""

    model_config = examples(
        {"suggestion": {"assignments": {"x": 0.75}}, "name": "run"},
        {"suggestion": {"assignments": {"x": 0.75}, "task": "full"}, "continues": "12"},
    )

    suggestion: ObjectId | NewSuggestion
    name: RunName | None = None
    metadata: Metadata = None
    continues: ObjectId | None = None


# ------------------------------------------------------------------ tracked fields (SigOpt's)
#: A parameter's value as a client tracks it; ``null`` (MERGE) deletes it.
AssignmentValue = bool | int | Number | Text


class RunValue(StrictModel):
    """One metric's value in ``values: {name: {value, value_stddev}}``."""

    value: Number
    value_stddev: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class RunLog(StrictModel):
    content: Annotated[str, StringConstraints(max_length=MAX_LOG_CHARS)] | None = None


class RunModel(StrictModel):
    type: Text | None = None


class SourceCode(StrictModel):
    content: Annotated[str, StringConstraints(max_length=MAX_SOURCE_CHARS)] | None = None
    hash: Text | None = None


class Dataset(StrictModel):
    """A dataset is tracked by name only: always ``{}``."""


class AssignmentMeta(StrictModel):
    source: Text


class AssignmentSource(StrictModel):
    default_show: bool
    sort: Number


def _limit() -> Any:
    return Field(max_length=MAX_TRACKED_KEYS)


TrackedAssignments = Annotated[dict[Name, AssignmentValue | None], _limit()]
TrackedValues = Annotated[dict[Name, RunValue | None], _limit()]
TrackedDatasets = Annotated[dict[Name, Dataset | None], _limit()]
TrackedLogs = Annotated[dict[Name, RunLog | None], _limit()]
TrackedAssignmentsMeta = Annotated[dict[Name, AssignmentMeta | None], _limit()]
TrackedAssignmentsSources = Annotated[dict[Name, AssignmentSource | None], _limit()]
LogText = Annotated[str, StringConstraints(max_length=MAX_LOG_CHARS)]


class TrackedFields(StrictModel):
    """What a client tracks on a run. A map sent as ``null`` is cleared."""

    name: RunName | None = None
    state: RunStateInput | None = None
    assignments: TrackedAssignments | None = None
    values: TrackedValues | None = None
    metadata: Metadata = None
    dev_metadata: Metadata = None
    sys_metadata: Annotated[dict[Name, Any], _limit()] | None = None
    model: RunModel | None = None
    datasets: TrackedDatasets | None = None
    #: Named streams (``{"stdout": {"content"}}``); a worker sends its log tail as one string.
    logs: TrackedLogs | LogText | None = None
    source_code: SourceCode | None = None
    assignments_meta: TrackedAssignmentsMeta | None = None
    assignments_sources: TrackedAssignmentsSources | None = None
    favorite: bool | None = None


class TrainingRunUpdate(TrackedFields):
    """``PUT`` / ``PATCH`` (= ``MERGE``) of a run. ``attempt`` fences: an update naming an older
    attempt than the run's is refused (409). ``new_attempt`` starts the next attempt (the
    suggester does this when a lease expires). ``deleted`` archives (or unarchives) the run."""

    model_config = examples(
        {"state": "completed", "values": {"value": {"value": 1.0}}}, {"heartbeat": True}
    )

    attempt: Attempt | None = None
    new_attempt: bool | None = None
    heartbeat: bool | None = None
    worker: Annotated[str, StringConstraints(max_length=200)] | None = None
    failure_reason: Annotated[str, StringConstraints(max_length=2000)] | None = None
    traceback: LogText | None = None
    deleted: bool | None = None


class TrackedRunCreate(TrackedFields):
    """A run of a project outside any experiment: ``running`` unless ``state`` says it ended."""

    model_config = examples(
        {"name": "run", "assignments": {"x": 0.5}, "values": {"value": {"value": 1.0}}}
    )


class TrackedRunBatch(StrictModel):
    model_config = examples({"runs": [{"name": "run"}], "fields": "id"}, {"runs": [{}]})

    runs: Annotated[list[TrackedRunCreate], Field(min_length=1, max_length=MAX_RUN_BATCH)]
    #: Comma-separated fields to answer with (``"id"``); all by default.
    fields: Annotated[str, StringConstraints(max_length=500)] | None = None


class RunFilter(StrictModel):
    """One filter of ``GET .../training_runs?filters=[...]`` (all must hold)."""

    field: Literal["id", "experiment", "suggestion", "state", "deleted", "name"]
    operator: Literal["==", "!=", "isnull"]
    value: Any = None


class TrackedRunListQuery(PageQuery):
    """``filters``: a JSON array of `RunFilter`, as the sigopt client sends it."""

    filters: Json[Annotated[list[RunFilter], Field(max_length=20)]] | None = None


class TrainingRunResult(StrictModel):
    """How an attempt ended: recorded with its observation in one transaction. ``values`` for a
    completed run; ``failed`` and ``lost`` record a failed observation."""

    model_config = examples(
        {"attempt": 1, "state": "completed", "values": [{"name": "value", "value": 1.0}]}
    )

    attempt: Attempt
    #: One of `shared.states.RESULT_RUN_STATES`.
    state: Literal[RunState.COMPLETED, RunState.FAILED, RunState.LOST]
    values: Annotated[list[MetricValue], Field(min_length=1, max_length=50)] | None = None
    failure_reason: Annotated[str, StringConstraints(max_length=2000)] | None = None
    traceback: LogText | None = None


class TrainingRunListQuery(PageQuery):
    #: ``unfinished``: queued, running or paused (what a scheduler has to look after).
    state: RunState | Literal[StateFilter.ALL, StateFilter.UNFINISHED] = StateFilter.ALL


class CheckpointCreate(StrictModel):
    model_config = examples({"values": [{"name": "value", "value": 0.5}], "epoch": 1})

    values: Annotated[list[MetricValue], Field(min_length=1, max_length=100)]
    epoch: Epoch | None = None
    attempt: Attempt | None = None
    metadata: Metadata = None
