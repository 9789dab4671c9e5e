"""Frozen messages that cross Redis, with a schema version and a JSON round trip.

* `Event`: written by the API's outbox relay to `names.EVENTS_STREAM`.
* `TrainRequest`: the one argument of the Celery training task (sent by the suggester).
* `TrainResult`: written by a worker to `names.RESULTS_STREAM`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any

SCHEMA_VERSION = 1


class MessageError(ValueError):
    """A message that cannot be decoded (wrong version, missing or unknown fields)."""


def _decode(cls: type, text: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise MessageError(f"{cls.__name__}: not JSON") from exc
    if not isinstance(data, dict) or data.pop("schema", None) != SCHEMA_VERSION:
        raise MessageError(f"{cls.__name__}: missing or unsupported schema version")
    return data


def _encode(message: Any) -> str:
    return json.dumps({"schema": SCHEMA_VERSION, **asdict(message)}, separators=(",", ":"))


@dataclass(frozen=True)
class Event:
    """Something changed in an experiment; consumers re-read state through the API.

    ``type`` is one of ``experiment.created``, ``experiment.updated``, ``experiment.deleted``,
    ``suggestion.created``, ``suggestion.deleted``, ``observation.created``,
    ``observation.updated``, ``observation.deleted``, ``training_run.updated``.
    ``id`` is the outbox row id: the same event may be delivered twice, with the same id.
    """

    type: str
    experiment_id: int
    id: int = 0

    def to_json(self) -> str:
        return _encode(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        try:
            return cls(**_decode(cls, text))
        except TypeError as exc:
            raise MessageError(str(exc)) from exc


@dataclass(frozen=True)
class TrainRequest:
    """Train one suggestion once: attempt ``attempt`` of training run ``run_id``."""

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

    def to_json(self) -> str:
        return _encode(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> TrainRequest:
        try:
            return cls(**_decode(cls, text))
        except TypeError as exc:
            raise MessageError(str(exc)) from exc


@dataclass(frozen=True)
class TrainResult:
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

    def to_json(self) -> str:
        return _encode(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> TrainResult:
        try:
            return cls(**_decode(cls, text))
        except TypeError as exc:
            raise MessageError(str(exc)) from exc
