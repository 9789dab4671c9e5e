"""Files uploaded by training runs: plots, images, model checkpoints.

The bytes are streamed into a pending object of the file store (`services.api.filestore`,
namespace ``artifacts``: ``<data dir>/artifacts`` or an S3 prefix) while counted and hashed,
checked against the allow list (the declared type must match the content: a PNG starts with the
PNG signature, text is UTF-8), then published as ``<experiment>/<run>/<file id>`` in the same
transaction that records the row. Keys are made of ids, never of the uploaded name.

Two ways in: a direct upload (`save`: the raw body or a multipart part, with a token), or the
sigopt client's two steps: `declare` records a ``pending`` file (length, MD5, type) and answers
a signed upload URL; `complete_upload` takes the bytes on that URL without a token, once, and
only when they match what was declared. Signed URLs (`signed_query`, `check_signature`) carry
``expires`` and an HMAC-SHA256 ``signature`` under a key derived from the app's secret key.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import IO

from sqlalchemy import delete as delete_rows
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from services.api.auth import Principal
from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.errors import not_found
from services.api.filestore import FileStore
from services.api.filestore import PendingObject
from services.api.filestore import StoredObject
from services.api.filestore import open_store
from services.api.models import Artifact
from services.api.models import TrainingRun
from services.api.schemas.artifacts import FileCreate
from services.api.schemas.common import PageQuery
from services.api.store.paging import fetch_page
from shared.settings import Settings

CHUNK = 1024 * 1024
#: Bytes read before deciding what a file is.
HEAD = 64
#: How long a signed upload or download URL is valid (SigOpt's presigned URLs: one hour).
URL_TTL_S = 3600


class FileStatus(StrEnum):
    """``pending``: declared by the sigopt client, bytes not received; ``ready``: stored."""

    PENDING = "pending"
    READY = "ready"


class UrlPurpose(StrEnum):
    """What a signed URL allows; part of the signed message, so one cannot serve as the other."""

    UPLOAD = "upload"
    DOWNLOAD = "download"


def _starts(*magics: bytes) -> Callable[[bytes], bool]:
    return lambda head: any(head.startswith(m) for m in magics)


def _webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _json(head: bytes) -> bool:
    stripped = head.lstrip(b" \t\r\n\xef\xbb\xbf")
    return not stripped or stripped[:1] in b'{["-0123456789tfn'


def _xml(head: bytes) -> bool:
    return head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"<"


def _anything(head: bytes) -> bool:
    return True


#: Allowed content types and the check of the file's first bytes.
SNIFFERS: dict[str, Callable[[bytes], bool]] = {
    "image/png": _starts(b"\x89PNG\r\n\x1a\n"),
    "image/apng": _starts(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": _starts(b"\xff\xd8\xff"),
    "image/gif": _starts(b"GIF87a", b"GIF89a"),
    "image/webp": _webp,
    "image/bmp": _starts(b"BM"),
    "image/x-icon": _starts(b"\x00\x00\x01\x00"),
    # matplotlib figures arrive as SVG: served as an attachment under a sandbox CSP.
    "image/svg+xml": _xml,
    "text/plain": _anything,
    "text/csv": _anything,
    "application/json": _json,
    "application/pdf": _starts(b"%PDF-"),
    "application/zip": _starts(b"PK\x03\x04", b"PK\x05\x06"),
    "application/gzip": _starts(b"\x1f\x8b"),
    "application/octet-stream": _anything,
}
#: Must be valid UTF-8 without NUL characters.
TEXT_TYPES = ("text/plain", "text/csv", "application/json", "image/svg+xml")
#: Served inline; everything else is served as an attachment.
IMAGE_TYPES = (
    "image/png",
    "image/apng",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/x-icon",
)
#: Shown as ``<img>`` on the dashboard (an SVG in an image element runs no script).
PREVIEW_TYPES = (*IMAGE_TYPES, "image/svg+xml")


def content_type_of(value: str | None) -> str:
    """The bare, lower-case media type, or 415 naming the field when it is not allowed."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media not in SNIFFERS:
        shown = media or "(none)"
        raise ApiError(
            415, f"Unsupported content_type {shown[:100]!r}; allowed: {', '.join(SNIFFERS)}"
        )
    return media


def check_name(name: str | None, field: str = "name") -> str:
    if name is None or not name.strip():
        raise invalid(field, "is required (a query parameter, or the multipart filename)")
    if len(name) > 200:
        raise invalid(field, "is longer than 200 characters")
    if any(c in name for c in "/\\") or name in (".", ".."):
        raise invalid(field, "must be a file name, not a path")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise invalid(field, "must not contain control characters")
    return name


def files(settings: Settings) -> FileStore:
    """Where the files' bytes live."""
    return open_store(settings, "artifacts")


@dataclass(frozen=True)
class _Received:
    size: int
    sha256: str
    #: Base64 of the MD5 digest, as ``Content-MD5`` carries it.
    md5: str
    head: bytes


def _receive(source: IO[bytes], target: PendingObject, limit: int, text: bool) -> _Received:
    """Copy ``source`` to ``target`` chunk by chunk, counting and hashing."""
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
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
        md5.update(chunk)
        target.write(chunk)
    if decoder is not None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise invalid("content_type", "a text file must be UTF-8") from exc
    return _Received(size, sha.hexdigest(), base64.b64encode(md5.digest()).decode(), head)


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
    session.commit()  # no transaction stays open while the bytes stream in
    pending = files(settings).begin()
    try:
        received = _receive(source, pending, settings.max_artifact_bytes, media in TEXT_TYPES)
        if not SNIFFERS[media](received.head):
            raise invalid("content_type", f"the file's content is not {media}")
        artifact = Artifact(
            experiment_id=run.experiment_id,
            training_run_id=run.id,
            attempt=run.attempt,
            name=name,
            content_type=media,
            size=received.size,
            sha256=received.sha256,
            content_md5=received.md5,
            status=FileStatus.READY,
            storage_key="",
            created=time.time(),
        )
        session.add(artifact)
        session.flush()
        artifact.storage_key = _storage_key(artifact)
        _commit_with_file(session, settings, artifact, pending)
    except BaseException:
        session.rollback()
        pending.abort()
        raise
    return artifact


def _storage_key(artifact: Artifact) -> str:
    """``<experiment>/<run>/<file>``, or ``runs/<run>/<file>`` for a run of a project only."""
    parent = artifact.experiment_id if artifact.experiment_id is not None else "runs"
    return f"{parent}/{artifact.training_run_id}/{artifact.id}"


def _commit_with_file(
    session: Session, settings: Settings, artifact: Artifact, pending: PendingObject
) -> None:
    """Publish the received bytes under the file's key and commit the row that points at
    them."""
    pending.commit(artifact.storage_key)
    try:
        session.commit()
    except Exception:
        files(settings).delete(artifact.storage_key)
        raise


def _md5_of(value: str) -> str:
    """A base64 MD5 digest (24 characters), or 400 naming content_md5."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid("content_md5", "must be the base64 MD5 digest of the content") from exc
    if len(raw) != 16:
        raise invalid("content_md5", "must be the base64 MD5 digest of the content (16 bytes)")
    return base64.b64encode(raw).decode()


def declare(session: Session, settings: Settings, run: TrainingRun, body: FileCreate) -> Artifact:
    """Record a file the sigopt client is about to upload (``pending``), after checking what it
    declares; expired pending files of the run (never uploaded) are dropped."""
    filename = None
    if body.filename is not None:
        # The client sends the path it was given; keep only the base name.
        filename = check_name(PurePosixPath(body.filename.replace("\\", "/")).name, "filename")
    name = check_name(body.name, "name") if body.name is not None else filename
    if name is None:
        raise invalid("name", "give name or filename (at least one is required)")
    media = content_type_of(body.content_type)
    md5 = _md5_of(body.content_md5)
    if body.content_length > settings.max_artifact_bytes:
        raise ApiError(
            413,
            f"Invalid value for content_length: the file is larger than the limit of "
            f"{settings.max_artifact_bytes} bytes",
        )
    now = time.time()
    session.execute(
        delete_rows(Artifact).where(
            Artifact.training_run_id == run.id,
            Artifact.status == FileStatus.PENDING,
            Artifact.created < now - URL_TTL_S,
        )
    )
    artifact = Artifact(
        experiment_id=run.experiment_id,
        training_run_id=run.id,
        attempt=run.attempt,
        name=name,
        filename=filename,
        content_type=media,
        size=body.content_length,
        sha256="",
        content_md5=md5,
        status=FileStatus.PENDING,
        upload_nonce=secrets.token_urlsafe(24),
        storage_key="",
        created=now,
    )
    session.add(artifact)
    session.flush()
    artifact.storage_key = _storage_key(artifact)
    session.commit()
    return artifact


def complete_upload(
    session: Session,
    settings: Settings,
    artifact: Artifact,
    source: IO[bytes],
    *,
    content_length: int | None,
    content_md5: str | None,
    content_type: str | None,
) -> Artifact:
    """Store the bytes of a pending file, sent on its signed upload URL. The headers and then
    the bytes must match what was declared (else 400 naming the header, and the file stays
    pending); the first complete upload wins and the URL is spent (a later one is 409)."""
    if artifact.status != FileStatus.PENDING:
        raise _already_uploaded(artifact)
    if content_length != artifact.size:
        raise invalid(
            "Content-Length header",
            f"must be {artifact.size}, the content_length declared for file {artifact.id}",
        )
    if content_md5 is None or content_md5.strip() != artifact.content_md5:
        raise invalid(
            "Content-MD5 header",
            f"must be {artifact.content_md5}, the content_md5 declared for file {artifact.id}",
        )
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != artifact.content_type:
        raise invalid(
            "Content-Type header",
            f"must be {artifact.content_type}, the content_type declared for file {artifact.id}",
        )
    session.commit()  # no transaction stays open while the bytes stream in
    pending = files(settings).begin(artifact.storage_key)
    try:
        received = _receive(source, pending, artifact.size, media in TEXT_TYPES)
        if received.size != artifact.size:
            raise invalid(
                "Content-Length header",
                f"{received.size} bytes arrived, not the {artifact.size} declared",
            )
        if received.md5 != artifact.content_md5:
            raise invalid("Content-MD5 header", "the content's MD5 differs from the declared one")
        if not SNIFFERS[media](received.head):
            raise invalid("content_type", f"the file's content is not {media}")
        won = session.execute(
            update(Artifact)
            .where(Artifact.id == artifact.id, Artifact.status == FileStatus.PENDING)
            .values(status=FileStatus.READY, sha256=received.sha256, created=time.time())
            .execution_options(synchronize_session=False)
        )
        if won.rowcount != 1:  # type: ignore[attr-defined]
            raise _already_uploaded(artifact)
        _commit_with_file(session, settings, artifact, pending)
    except BaseException:
        session.rollback()
        pending.abort()
        raise
    session.refresh(artifact)
    return artifact


def _already_uploaded(artifact: Artifact) -> ApiError:
    return ApiError(
        409, f"Conflict: file {artifact.id} was already uploaded; an upload URL is single use"
    )


def _url_key(secret_key: str) -> bytes:
    """A key for file URLs only, derived from the app's secret key (which signs sessions)."""
    return hmac.new(secret_key.encode(), b"multitune file URLs v1", hashlib.sha256).digest()


def sign(secret_key: str, purpose: UrlPurpose, artifact: Artifact, expires: int) -> str:
    """The ``signature`` of a URL for ``purpose`` on ``artifact`` valid until ``expires``: an
    upload URL is bound to the pending row's random nonce, a download URL to the content."""
    salt = artifact.upload_nonce if purpose == UrlPurpose.UPLOAD else artifact.sha256
    message = f"{purpose}\n{artifact.id}\n{expires}\n{salt}".encode()
    digest = hmac.new(_url_key(secret_key), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signed_query(secret_key: str, purpose: UrlPurpose, artifact: Artifact) -> str:
    """``expires=...&signature=...`` for a URL valid `URL_TTL_S` from now."""
    expires = int(time.time()) + URL_TTL_S
    return f"expires={expires}&signature={sign(secret_key, purpose, artifact, expires)}"


def check_signature(
    secret_key: str,
    purpose: UrlPurpose,
    artifact: Artifact,
    expires: str | None,
    signature: str | None,
) -> None:
    """403 naming ``signature`` or ``expires`` unless the URL was signed for this file and
    purpose and has not expired."""
    if not expires or not expires.isdigit() or len(expires) > 12:
        raise ApiError(403, "Invalid value for expires: not a signed file URL")
    expected = sign(secret_key, purpose, artifact, int(expires))
    if not signature or not hmac.compare_digest(signature.encode(), expected.encode()):
        raise ApiError(403, "Invalid value for signature: this URL was not signed for this file")
    if int(expires) < time.time():
        raise ApiError(403, "Invalid value for expires: the signed URL has expired")


def by_id(session: Session, file_id: int) -> Artifact:
    """Any file by id (for signed URLs, which carry their own authority), else 404."""
    artifact = session.get(Artifact, file_id)
    if artifact is None:
        raise not_found("file", file_id)
    return artifact


def get(session: Session, principal: Principal, file_id: int) -> Artifact:
    stmt = select(Artifact).join(TrainingRun, TrainingRun.id == Artifact.training_run_id)
    stmt = stmt.where(Artifact.id == file_id)
    if not principal.is_service:
        stmt = stmt.where(TrainingRun.client_id == principal.client_id)
    artifact = session.scalar(stmt)
    if artifact is None:
        raise not_found("file", file_id)
    return artifact


def open_content(settings: Settings, artifact: Artifact) -> StoredObject:
    """The stored bytes of a file, to stream; FileNotFoundError when the store has none."""
    return files(settings).open(artifact.storage_key)


def of_run(session: Session, run: TrainingRun) -> list[Artifact]:
    """Every stored file of ``run``, oldest first (the run page shows them all)."""
    return list(
        session.scalars(
            select(Artifact)
            .where(Artifact.training_run_id == run.id, Artifact.status == FileStatus.READY)
            .order_by(Artifact.id)
        )
    )


def file_ids(session: Session, run_ids: list[int]) -> dict[int, list[str]]:
    """The ids of the stored files of each run (a run's JSON ``files``), oldest first."""
    out: dict[int, list[str]] = {run_id: [] for run_id in run_ids}
    if run_ids:
        rows = session.execute(
            select(Artifact.training_run_id, Artifact.id)
            .where(Artifact.training_run_id.in_(run_ids), Artifact.status == FileStatus.READY)
            .order_by(Artifact.id)
        )
        for run_id, file_id in rows.tuples():
            out[run_id].append(str(file_id))
    return out


def list_page(
    session: Session, run: TrainingRun, query: PageQuery
) -> tuple[list[Artifact], int, dict[str, str | None]]:
    stmt = select(Artifact).where(
        Artifact.training_run_id == run.id, Artifact.status == FileStatus.READY
    )
    return fetch_page(session, stmt, Artifact.id, query)


def delete(session: Session, settings: Settings, artifact: Artifact) -> None:
    key = artifact.storage_key
    session.delete(artifact)
    session.commit()
    files(settings).delete(key)
