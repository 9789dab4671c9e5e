"""Frozen messages that cross Redis, with a schema version and a JSON round trip.

* `Event`: written by the API's outbox relay to `names.EVENTS_STREAM`.
* `TrainRequest`: the one argument of the Celery training task (sent by the suggester).
* `TrainResult`: written by a worker to `names.RESULTS_STREAM`.
* `PoolEntry`: a precomputed suggestion in `names.pool_key`, written by the suggester and
  popped by the API.
* `WorkerAdvert`: a live worker's objectives at `names.worker_key`, written by the worker and
  read by the API and the suggester (`shared.workers`).

Each is written with ``to_json`` and read with ``from_json``; nothing else encodes them. A field
added later has a default, so a message written without it still decodes at the same
`SCHEMA_VERSION`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from enum import StrEnum
from typing import Any
from typing import ClassVar
from typing import Self

SCHEMA_VERSION = 1


class MessageError(ValueError):
    """A message that cannot be decoded (wrong version, missing or unknown fields)."""


class _Message:
    """The JSON round trip shared by every message: ``{"schema": SCHEMA_VERSION, **fields}``."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_json(self) -> str:
        return json.dumps({"schema": SCHEMA_VERSION, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """Raises `MessageError` for text that is not this message at this schema version."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise MessageError(f"{cls.__name__}: not JSON") from exc
        if not isinstance(data, dict) or data.pop("schema", None) != SCHEMA_VERSION:
            raise MessageError(f"{cls.__name__}: missing or unsupported schema version")
        try:
            return cls(**data)
        except TypeError as exc:
            raise MessageError(f"{cls.__name__}: {exc}") from exc


class EventType(StrEnum):
    """What an `Event` says changed."""

    EXPERIMENT_CREATED = "experiment.created"
    EXPERIMENT_UPDATED = "experiment.updated"
    EXPERIMENT_DELETED = "experiment.deleted"
    SUGGESTION_CREATED = "suggestion.created"
    SUGGESTION_DELETED = "suggestion.deleted"
    OBSERVATION_CREATED = "observation.created"
    OBSERVATION_UPDATED = "observation.updated"
    OBSERVATION_DELETED = "observation.deleted"
    TRAINING_RUN_UPDATED = "training_run.updated"


@dataclass(frozen=True)
class Event(_Message):
    """Something changed in an experiment; consumers re-read state through the API.

    ``id`` is the outbox row id: the same event may be delivered twice, with the same id. An
    unknown ``type`` is a `MessageError` (a newer producer must bump `SCHEMA_VERSION`).
    """

    type: EventType
    experiment_id: int
    id: int = 0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "type", EventType(self.type))
        except ValueError as exc:
            raise MessageError(f"Event: unknown type {self.type!r}") from exc


@dataclass(frozen=True)
class TrainRequest(_Message):
    """Train one suggestion once: attempt ``attempt`` of training run ``run_id``. ``continues``
    is the run whose stored checkpoint this run resumes (it continues that cheaper run to
    ``task``), None to train from scratch."""

    experiment_id: int
    suggestion_id: int
    run_id: int
    attempt: int
    objective: str
    config: dict[str, Any]
    assignments: dict[str, Any]
    task: str | None = None
    cost: float = 1.0
    metric: str = "value"
    continues: int | None = None


@dataclass(frozen=True)
class TrainResult(_Message):
    """The outcome of one attempt: metric values, a failure with its reason, or ``stopped`` when
    the attempt ended early because the experiment was paused or stopped (not a failure)."""

    experiment_id: int
    suggestion_id: int
    run_id: int
    attempt: int
    values: list[dict[str, Any]] = field(default_factory=list)
    failed: bool = False
    stopped: bool = False
    reason: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class PoolEntry(_Message):
    """A precomputed suggestion. ``observation_count`` is the count of observations it was
    computed from, so the API can tell a fresh entry from a stale one; ``source`` is the
    optimizer's (`services.suggester.optimizer.SOURCES`)."""

    assignments: dict[str, Any]
    task: str | None
    observation_count: int
    source: str


@dataclass(frozen=True)
class WorkerAdvert(_Message):
    """A live worker and the objectives it can train, kept at `names.worker_key` with a TTL of
    `names.WORKER_ADVERT_TTL_S` and renewed while the worker runs; the API reads the live ones
    to refuse an experiment that names an objective no worker provides, and the suggester to
    tell whether an experiment's runs can be continued (`shared.workers.continuable`)."""

    name: str
    objectives: list[str]
    #: Unix seconds when the worker started.
    started: float
    #: GPUs the worker trains on (``CUDA_VISIBLE_DEVICES``), empty for a CPU worker.
    gpus: list[str] = field(default_factory=list)
    #: The objectives among ``objectives`` whose runs can continue into a costlier task from
    #: their checkpoint (`services.worker.objectives.Objective.continuable`).
    continuable: list[str] = field(default_factory=list)
