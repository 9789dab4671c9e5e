"""A training run's checkpoint archive, as the API stores it and the workers exchange it.

A worker packs the run's checkpoint directory into a tar archive and uploads it with
``PUT /v1/training_runs/{id}/checkpoint_archive?attempt=N&sha256=HEX`` (the body is the archive,
with its ``Content-Length``); the worker that runs the next attempt reads `CheckpointArchive`
from ``GET .../checkpoint_archive`` and, when its local copy differs, downloads the bytes from
``GET .../checkpoint_archive/content``. The protocol: docs/checkpoints.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from typing import Self
from typing import TypeVar

#: The media type of an archive (an uncompressed POSIX tar: checkpoints compress poorly).
MEDIA_TYPE = "application/x-tar"
#: Response headers of the content: the archive's SHA-256 (hex) and the attempt that stored it.
SHA256_HEADER = "X-Checkpoint-Sha256"
ATTEMPT_HEADER = "X-Checkpoint-Attempt"
#: A SHA-256 digest as the protocol writes it: 64 lower-case hex digits.
SHA256_PATTERN = r"^[0-9a-f]{64}$"
_SHA256 = re.compile(SHA256_PATTERN)
T = TypeVar("T")


def archive_path(run_id: int) -> str:
    """The archive's path under ``/v1``: PUT stores one, GET describes the current one."""
    return f"/training_runs/{run_id}/checkpoint_archive"


def content_path(run_id: int) -> str:
    """Where the current archive's bytes are served."""
    return f"{archive_path(run_id)}/content"


class ArchiveObjectError(ValueError):
    """A description of an archive without a field, or with a value of the wrong type."""


@dataclass(frozen=True)
class CheckpointArchive:
    """The current checkpoint archive of a run: which attempt stored it, its length in bytes,
    its SHA-256 and when it was stored (Unix seconds)."""

    training_run: int
    attempt: int
    size: int
    sha256: str
    created: float

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "checkpoint_archive",
            "training_run": str(self.training_run),
            "attempt": self.attempt,
            "size": self.size,
            "sha256": self.sha256,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: object) -> Self:
        if not isinstance(data, Mapping):
            raise ArchiveObjectError("checkpoint_archive: expected an object")
        run = _field(data, "training_run", str)
        if not run.isdigit():
            raise ArchiveObjectError(f"checkpoint_archive.training_run: not an id: {run!r}")
        sha256 = _field(data, "sha256", str)
        if not _SHA256.match(sha256):
            raise ArchiveObjectError("checkpoint_archive.sha256: not 64 lower-case hex digits")
        created = data.get("created")
        if isinstance(created, bool) or not isinstance(created, int | float):
            raise ArchiveObjectError(f"checkpoint_archive.created: not a number: {created!r}")
        return cls(
            training_run=int(run),
            attempt=_field(data, "attempt", int),
            size=_field(data, "size", int),
            sha256=sha256,
            created=float(created),
        )


def _field(data: Mapping[str, Any], name: str, kind: type[T]) -> T:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ArchiveObjectError(
            f"checkpoint_archive.{name}: expected {kind.__name__}, got {value!r}"
        )
    return value
