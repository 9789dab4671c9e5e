"""Files uploaded by training runs: plots, images, model checkpoints.

The bytes are streamed to ``<data dir>/artifacts/tmp`` while counted and hashed, checked
against the allow list (the declared type must match the content: a PNG starts with the PNG
signature, text is UTF-8), then moved to ``artifacts/<experiment>/<run>/<file id>`` in the same
transaction that records the row. Paths are made of ids, never of the uploaded name.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.auth import Principal
from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.errors import not_found
from services.api.models import Artifact
from services.api.models import Experiment
from services.api.models import TrainingRun
from services.api.schemas.common import PageQuery
from services.api.store.paging import fetch_page
from shared.settings import Settings

CHUNK = 1024 * 1024
#: Bytes read before deciding what a file is.
HEAD = 64


def _starts(*magics: bytes) -> Callable[[bytes], bool]:
    return lambda head: any(head.startswith(m) for m in magics)


def _webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _json(head: bytes) -> bool:
    stripped = head.lstrip(b" \t\r\n\xef\xbb\xbf")
    return not stripped or stripped[:1] in b'{["-0123456789tfn'


def _anything(head: bytes) -> bool:
    return True


#: Allowed content types and the check of the file's first bytes.
SNIFFERS: dict[str, Callable[[bytes], bool]] = {
    "image/png": _starts(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": _starts(b"\xff\xd8\xff"),
    "image/gif": _starts(b"GIF87a", b"GIF89a"),
    "image/webp": _webp,
    "text/plain": _anything,
    "text/csv": _anything,
    "application/json": _json,
    "application/pdf": _starts(b"%PDF-"),
    "application/zip": _starts(b"PK\x03\x04", b"PK\x05\x06"),
    "application/gzip": _starts(b"\x1f\x8b"),
    "application/octet-stream": _anything,
}
#: Must be valid UTF-8 without NUL characters.
TEXT_TYPES = ("text/plain", "text/csv", "application/json")
#: Shown inline (``<img>``); everything else is served as an attachment.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def content_type_of(value: str | None) -> str:
    """The bare, lower-case media type, or 415 naming the field when it is not allowed."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media not in SNIFFERS:
        shown = media or "(none)"
        raise ApiError(
            415, f"Unsupported content_type {shown[:100]!r}; allowed: {', '.join(SNIFFERS)}"
        )
    return media


def check_name(name: str | None) -> str:
    if name is None or not name.strip():
        raise invalid("name", "is required (a query parameter, or the multipart filename)")
    if len(name) > 200:
        raise invalid("name", "is longer than 200 characters")
    if any(c in name for c in "/\\") or name in (".", ".."):
        raise invalid("name", "must be a file name, not a path")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise invalid("name", "must not contain control characters")
    return name


def root(settings: Settings) -> Path:
    return settings.data_dir / "artifacts"


def _receive(
    source: IO[bytes], target: IO[bytes], limit: int, text: bool
) -> tuple[int, str, bytes]:
    """Copy ``source`` to ``target``; returns (size, sha256, first bytes)."""
    sha = hashlib.sha256()
    size = 0
    head = b""
    decoder = codecs.getincrementaldecoder("utf-8")() if text else None
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"File is larger than the limit of {limit} bytes")
        if len(head) < HEAD:
            head += chunk[: HEAD - len(head)]
        if decoder is not None:
            if b"\x00" in chunk:
                raise invalid("content_type", "a text file must not contain NUL bytes")
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise invalid("content_type", "a text file must be UTF-8") from exc
        sha.update(chunk)
        target.write(chunk)
    if decoder is not None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise invalid("content_type", "a text file must be UTF-8") from exc
    return size, sha.hexdigest(), head


def save(
    session: Session,
    settings: Settings,
    run: TrainingRun,
    name: str | None,
    content_type: str | None,
    source: IO[bytes],
    attempt: int | None = None,
) -> Artifact:
    """Store an uploaded file of ``run``; 400/409/413/415 name what is wrong."""
    name = check_name(name)
    media = content_type_of(content_type)
    if attempt is not None and attempt != run.attempt:
        raise ApiError(
            409,
            f"Conflict in attempt: run {run.id} is at attempt {run.attempt}, "
            f"not {attempt}; this worker's attempt was superseded",
        )
    base = root(settings)
    (base / "tmp").mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=base / "tmp", prefix="upload-")
    try:
        with os.fdopen(fd, "wb") as target:
            size, sha256, head = _receive(
                source, target, settings.max_artifact_bytes, media in TEXT_TYPES
            )
        if not SNIFFERS[media](head):
            raise invalid("content_type", f"the file's content is not {media}")
        artifact = Artifact(
            experiment_id=run.experiment_id,
            training_run_id=run.id,
            attempt=run.attempt,
            name=name,
            content_type=media,
            size=size,
            sha256=sha256,
            storage_key="",
            created=time.time(),
        )
        session.add(artifact)
        session.flush()
        artifact.storage_key = f"{run.experiment_id}/{run.id}/{artifact.id}"
        final = base / artifact.storage_key
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temporary, final)
        try:
            session.commit()
        except Exception:
            final.unlink(missing_ok=True)
            raise
    except BaseException:
        session.rollback()
        Path(temporary).unlink(missing_ok=True)
        raise
    return artifact


def get(session: Session, principal: Principal, file_id: int) -> Artifact:
    stmt = select(Artifact).join(Experiment, Experiment.id == Artifact.experiment_id)
    stmt = stmt.where(Artifact.id == file_id)
    if not principal.is_service:
        stmt = stmt.where(Experiment.client_id == principal.client_id)
    artifact = session.scalar(stmt)
    if artifact is None:
        raise not_found("file", file_id)
    return artifact


def path_of(settings: Settings, artifact: Artifact) -> Path:
    return root(settings) / artifact.storage_key


def of_run(session: Session, run: TrainingRun) -> list[Artifact]:
    """Every file of ``run``, oldest first (the run page shows them all)."""
    return list(
        session.scalars(
            select(Artifact).where(Artifact.training_run_id == run.id).order_by(Artifact.id)
        )
    )


def list_page(
    session: Session, run: TrainingRun, query: PageQuery
) -> tuple[list[Artifact], int, dict[str, str | None]]:
    stmt = select(Artifact).where(Artifact.training_run_id == run.id)
    return fetch_page(session, stmt, Artifact.id, query)


def delete(session: Session, settings: Settings, artifact: Artifact) -> None:
    path = path_of(settings, artifact)
    session.delete(artifact)
    session.commit()
    path.unlink(missing_ok=True)
