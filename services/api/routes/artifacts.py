"""Files of training runs: upload (raw body, multipart, or the sigopt client's JSON declaration
followed by a signed PUT), list, describe, delete. The bytes themselves are served by
`services.api.routes.uploads`.

Downloads are served only to the run's client (else 404), or on a signed URL, with ``nosniff``,
a sandboxing CSP, and ``Content-Disposition: attachment`` for everything but images. Uploads
have their own size limit (``MULTITUNE_MAX_ARTIFACT_BYTES``) instead of the API's request body
limit.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from services.api import serialize
from services.api.auth import current_principal
from services.api.dashboard.session import token_or_session
from services.api.db import get_session
from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.models import Artifact
from services.api.openapi import ApiBlueprint
from services.api.request_json import parse_body
from services.api.schemas.artifacts import ArtifactListQuery
from services.api.schemas.artifacts import ArtifactUploadQuery
from services.api.schemas.artifacts import FileCreate
from services.api.store import artifacts as store
from services.api.store import training_runs
from services.api.store.artifacts import FileStatus
from services.api.store.artifacts import UrlPurpose
from shared.settings import Settings

bp = ApiBlueprint("artifacts", __name__, url_prefix="/v1")
bp.before_request(token_or_session)

#: Room for multipart boundaries and headers on top of the file itself.
MULTIPART_SLACK = 64 * 1024


def settings() -> Settings:
    value: Settings = current_app.config["SETTINGS"]
    return value


def secret_key() -> str:
    key = current_app.secret_key
    assert isinstance(key, str)
    return key


def content_path(a: Artifact) -> str:
    """Where a signed-in caller (token or dashboard session) downloads the bytes."""
    return f"/v1/files/{a.id}/content"


def _signed_url(a: Artifact, path: str, purpose: UrlPurpose) -> str:
    """An absolute URL on the host the caller reached, signed for ``purpose``."""
    query = store.signed_query(secret_key(), purpose, a)
    return f"{request.host_url.rstrip('/')}{path}?{query}"


def file_json(a: Artifact, *, with_upload: bool = False) -> dict[str, Any]:
    """SigOpt's file object plus multitune's fields. ``download.url`` (stored files only) is an
    absolute signed URL valid for `store.URL_TTL_S`; ``upload`` is in a declaration's answer."""
    ready = a.status == FileStatus.READY
    body: dict[str, Any] = {
        "object": "file",
        "id": str(a.id),
        "experiment": None if a.experiment_id is None else str(a.experiment_id),
        "training_run": str(a.training_run_id),
        "attempt": a.attempt,
        "name": a.name,
        "filename": a.filename,
        "status": a.status,
        "content_type": a.content_type,
        "content_length": a.size,
        "content_md5": a.content_md5,
        "size": a.size,
        "sha256": a.sha256 or None,
        "created": int(a.created),
        "url": content_path(a),
        "download": (
            {"object": "download", "url": _signed_url(a, content_path(a), UrlPurpose.DOWNLOAD)}
            if ready
            else None
        ),
    }
    if with_upload and not ready:
        body["upload"] = {
            "object": "upload",
            "url": _signed_url(a, f"/v1/files/{a.id}/upload", UrlPurpose.UPLOAD),
            "method": "PUT",
            "headers": {
                "Content-Length": str(a.size),
                "Content-MD5": a.content_md5,
                "Content-Type": a.content_type,
            },
        }
    return body


@bp.operation(
    "POST",
    "/training_runs/<id:run_id>/files",
    "Add a file to a run: the raw body with ?name= and its Content-Type, multipart/form-data "
    "with the part 'file', or (Content-Type application/json without ?name=, the sigopt "
    "client's way) a FileCreate declaration, answered with a signed single-use upload URL",
    query=ArtifactUploadQuery,
    returns="file",
    errors=(415,),
)
def upload(run_id: int, query: ArtifactUploadQuery) -> Response:
    session = get_session()
    run, _ = training_runs.get_any(session, current_principal(), run_id)
    limits = settings()
    if request.mimetype == "application/json" and query.name is None:
        body = parse_body(FileCreate)
        return jsonify(file_json(store.declare(session, limits, run, body), with_upload=True))
    request.max_content_length = limits.max_artifact_bytes + MULTIPART_SLACK
    try:
        if request.mimetype == "multipart/form-data":
            part = request.files.get("file")
            if part is None:
                raise invalid("file", "send the file as the multipart part named 'file'")
            name = query.name or request.form.get("name") or part.filename
            content_type = query.content_type or request.form.get("content_type") or part.mimetype
            artifact = store.save(
                session, limits, run, name, content_type, part.stream, query.attempt
            )
        else:
            artifact = store.save(
                session,
                limits,
                run,
                query.name,
                query.content_type or request.content_type,
                request.stream,
                query.attempt,
            )
    except RequestEntityTooLarge as exc:
        raise ApiError(
            413, f"File is larger than the limit of {limits.max_artifact_bytes} bytes"
        ) from exc
    return jsonify(file_json(artifact))


# The JSON form is parsed by the view (the same route takes raw bytes), so the document names
# its schema here rather than through `operation(body=...)`, which would parse every body.
bp.operations[-1] = replace(bp.operations[-1], body=FileCreate)


@bp.operation(
    "GET",
    "/training_runs/<id:run_id>/files",
    "List a run's stored files (newest first)",
    query=ArtifactListQuery,
    returns="pagination of files",
)
def list_(run_id: int, query: ArtifactListQuery) -> Response:
    session = get_session()
    run, _ = training_runs.get_any(session, current_principal(), run_id)
    rows, count, paging = store.list_page(session, run, query)
    return jsonify(serialize.page([file_json(a) for a in rows], count, paging))


@bp.operation(
    "GET",
    "/files/<id:file_id>",
    "Describe a file; download.url is a signed URL of its bytes (an hour), url the path that "
    "serves them to a signed-in caller",
    returns="file",
)
def fetch(file_id: int) -> Response:
    return jsonify(file_json(store.get(get_session(), current_principal(), file_id)))


@bp.operation("DELETE", "/files/<id:file_id>", "Delete a file")
def delete(file_id: int) -> tuple[str, int]:
    session = get_session()
    store.delete(session, settings(), store.get(session, current_principal(), file_id))
    return "", 204
