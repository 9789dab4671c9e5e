"""Checkpoint archives: the packed checkpoint directory of a training run, stored through the
API so that whichever worker runs the next attempt can resume it (docs/checkpoints.md).

In the file store's ``checkpoints`` namespace a run has archives ``<run>/<attempt>-<random>.tar``
and a pointer ``<run>/current.json`` naming the current one. An upload streams into a pending
object under a fresh key, is checked against its declared length and SHA-256, published, and
only then made current: under a write of the run's row that holds only while the attempt is
still the run's and the run is not finished (the fence), the pointer is replaced, and then the
previous archive is deleted; the row then records that the run has an archive
(``has_checkpoint_archive``: what a run that continues it needs). An upload that breaks off, is
refused or loses the fence leaves the current archive as it was. The pointer also records when
the run was created, so archives left by another database (ids reused after a reset) are
ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import IO

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.filestore import CHUNK
from services.api.filestore import FileStore
from services.api.filestore import StoredObject
from services.api.filestore import open_store
from services.api.models import TrainingRun
from shared.checkpoint_archive import ArchiveObjectError
from shared.checkpoint_archive import CheckpointArchive
from shared.settings import Settings
from shared.states import FINISHED_RUN_STATES

log = logging.getLogger(__name__)

NAMESPACE = "checkpoints"
POINTER = "current.json"


def files(settings: Settings) -> FileStore:
    return open_store(settings, NAMESPACE)


@dataclass(frozen=True)
class _Current:
    key: str
    archive: CheckpointArchive


def _pointer_key(run: TrainingRun) -> str:
    return f"{run.id}/{POINTER}"


def _read_current(store: FileStore, run: TrainingRun) -> _Current | None:
    try:
        raw = store.read_bytes(_pointer_key(run))
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        if data.get("run_created") != run.created:
            return None  # left by another database whose run had this id
        archive = CheckpointArchive.from_json(data["archive"])
        return _Current(key=str(data["key"]), archive=archive)
    except (ValueError, KeyError, TypeError, AttributeError, ArchiveObjectError) as exc:
        log.warning("ignoring the unreadable checkpoint pointer of run %s: %s", run.id, exc)
        return None


def current(settings: Settings, run: TrainingRun) -> CheckpointArchive | None:
    """The run's current archive, or None when none was stored."""
    found = _read_current(files(settings), run)
    return None if found is None else found.archive


def open_current(
    settings: Settings, run: TrainingRun
) -> tuple[CheckpointArchive, StoredObject] | None:
    """The run's current archive opened for streaming, or None when none was stored."""
    store = files(settings)
    for _ in range(3):  # an upload may replace (and delete) it between the two reads
        found = _read_current(store, run)
        if found is None:
            return None
        try:
            return found.archive, store.open(found.key)
        except FileNotFoundError:
            continue
    return None


def _conflict(run: TrainingRun, attempt: int) -> ApiError:
    if attempt != run.attempt:
        return ApiError(
            409,
            f"Conflict in attempt: run {run.id} is at attempt {run.attempt}, not {attempt}; "
            "this worker's attempt was superseded",
        )
    return ApiError(409, f"Conflict in state: run {run.id} is {run.state}, already finished")


def _check_fence(run: TrainingRun, attempt: int) -> None:
    if attempt != run.attempt or run.state in FINISHED_RUN_STATES:
        raise _conflict(run, attempt)


def save(
    session: Session,
    settings: Settings,
    run: TrainingRun,
    attempt: int,
    sha256: str,
    content_length: int | None,
    source: IO[bytes],
) -> CheckpointArchive:
    """Store ``source`` (``content_length`` bytes whose SHA-256 is ``sha256``) as the run's
    current archive for ``attempt``. 409 when the attempt is not the run's or the run is
    finished, 411/413 for a missing or too large length, 400 when the bytes differ from what
    was declared, 507 when the store cannot take them."""
    _check_fence(run, attempt)
    if content_length is None:
        raise ApiError(411, "Length required: send the archive with a Content-Length header")
    if content_length > settings.max_checkpoint_bytes:
        raise ApiError(
            413,
            f"Checkpoint archive is larger than the limit of {settings.max_checkpoint_bytes} "
            "bytes (MULTITUNE_MAX_CHECKPOINT_BYTES)",
        )
    session.commit()  # no transaction stays open while the bytes stream in
    store = files(settings)
    key = f"{run.id}/{attempt}-{secrets.token_hex(8)}.tar"
    with store.begin(key) as pending:
        digest = hashlib.sha256()
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            pending.write(chunk)
        if pending.size != content_length:
            raise invalid(
                "Content-Length header",
                f"{pending.size} bytes arrived, not the {content_length} declared",
            )
        if digest.hexdigest() != sha256:
            raise invalid("sha256", "the archive's SHA-256 differs from the declared one")
        pending.commit()
    archive = CheckpointArchive(
        training_run=run.id, attempt=attempt, size=content_length, sha256=sha256, created=0.0
    )
    try:
        return _make_current(session, store, run, key, archive)
    except BaseException:
        session.rollback()
        store.delete(key)
        raise


def _make_current(
    session: Session, store: FileStore, run: TrainingRun, key: str, archive: CheckpointArchive
) -> CheckpointArchive:
    """Point the run at the published archive ``key`` while the fence holds, then delete the
    archive it replaced."""
    held = session.execute(  # takes the run's row (SQLite: the database) until the commit
        update(TrainingRun)
        .where(
            TrainingRun.id == run.id,
            TrainingRun.attempt == archive.attempt,
            TrainingRun.state.not_in(FINISHED_RUN_STATES),
        )
        .values(updated=TrainingRun.updated, has_checkpoint_archive=True)
        .execution_options(synchronize_session=False)
    )
    if held.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        latest = session.scalar(select(TrainingRun).where(TrainingRun.id == run.id))
        raise _conflict(latest or run, archive.attempt)
    previous = _read_current(store, run)
    archive = CheckpointArchive(
        training_run=archive.training_run,
        attempt=archive.attempt,
        size=archive.size,
        sha256=archive.sha256,
        created=time.time(),
    )
    pointer = {"key": key, "run_created": run.created, "archive": archive.to_json()}
    store.write_bytes(_pointer_key(run), json.dumps(pointer).encode())
    try:
        session.commit()
    except Exception as exc:  # noqa: BLE001 - the pointer is replaced; the row was not changed
        log.warning("run %s: commit after replacing its checkpoint failed: %s", run.id, exc)
        session.rollback()
    if previous is not None and previous.key != key:
        try:
            store.delete(previous.key)
        except Exception as exc:  # noqa: BLE001 - a stray archive costs space, nothing else
            log.warning("run %s: could not delete archive %s: %s", run.id, previous.key, exc)
    return archive
