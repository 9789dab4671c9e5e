"""The bytes of files: ``PUT /v1/files/{id}/upload`` (the signed, single-use URL the sigopt
client uploads to, without a token) and ``GET /v1/files/{id}/content`` (on a signed download
URL without a token, or with a token or dashboard session like every other read).

A signed URL carries ``expires`` (Unix seconds) and ``signature``; `store.check_signature` is
the one check of both.
"""

from __future__ import annotations

from flask import Response
from flask import jsonify
from flask import request
from flask import send_file
from werkzeug.exceptions import ClientDisconnected

from services.api.auth import current_principal
from services.api.dashboard.session import token_or_session
from services.api.db import get_session
from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.openapi import ApiBlueprint
from services.api.routes.artifacts import file_json
from services.api.routes.artifacts import secret_key
from services.api.routes.artifacts import settings
from services.api.schemas.common import LaxModel
from services.api.store import artifacts as store
from services.api.store.artifacts import FileStatus
from services.api.store.artifacts import UrlPurpose

bp = ApiBlueprint("uploads", __name__, url_prefix="/v1")


class SignedQuery(LaxModel):
    """The query string of a signed file URL (optional on ``content``)."""

    expires: str | None = None
    signature: str | None = None


@bp.operation(
    "PUT",
    "/files/<id:file_id>/upload",
    "Upload the bytes of a declared file on its signed URL (no token): Content-Length, "
    "Content-MD5 and Content-Type as declared; single use",
    query=SignedQuery,
    returns="file",
)
def put_upload(file_id: int, query: SignedQuery) -> Response:
    session = get_session()
    artifact = store.by_id(session, file_id)
    store.check_signature(
        secret_key(), UrlPurpose.UPLOAD, artifact, query.expires, query.signature
    )
    limits = settings()
    request.max_content_length = limits.max_artifact_bytes
    try:
        store.complete_upload(
            session,
            limits,
            artifact,
            request.stream,
            content_length=request.content_length,
            content_md5=request.headers.get("Content-MD5"),
            content_type=request.headers.get("Content-Type"),
        )
    except ClientDisconnected as exc:
        raise invalid(
            "Content-Length header", "the body ended before the declared length"
        ) from exc
    return jsonify(file_json(artifact))


@bp.operation(
    "GET",
    "/files/<id:file_id>/content",
    "Download a file's bytes (images inline, others as attachments): on a signed URL, or with "
    "a token",
    query=SignedQuery,
    returns="the file's bytes",
)
def content(file_id: int, query: SignedQuery) -> Response:
    session = get_session()
    if query.signature is not None or query.expires is not None:
        artifact = store.by_id(session, file_id)
        store.check_signature(
            secret_key(), UrlPurpose.DOWNLOAD, artifact, query.expires, query.signature
        )
    else:
        token_or_session()
        artifact = store.get(session, current_principal(), file_id)
    missing = ApiError(404, f"The content of file {file_id} is not in the store")
    if artifact.status != FileStatus.READY:
        raise missing
    try:
        stored = store.open_content(settings(), artifact)
    except FileNotFoundError:
        raise missing from None
    response = send_file(
        stored.stream,
        mimetype=artifact.content_type,
        as_attachment=artifact.content_type not in store.IMAGE_TYPES,
        download_name=artifact.filename or artifact.name,
        etag=artifact.sha256,
        max_age=0,
    )
    if response.status_code == 200:
        response.content_length = stored.size
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, max-age=0"
    return response
