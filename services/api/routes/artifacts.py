"""Files of training runs: upload (raw body or multipart), list, download, delete.

Downloads are served only to the run's client (else 404) with ``nosniff``, a sandboxing CSP,
and ``Content-Disposition: attachment`` for everything but images. Uploads have their own size
limit (``MULTITUNE_MAX_ARTIFACT_BYTES``) instead of the API's request body limit.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from flask import send_file
from werkzeug.exceptions import RequestEntityTooLarge

from services.api import serialize
from services.api.auth import current_principal
from services.api.dashboard.session import token_or_session
from services.api.db import get_session
from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.models import Artifact
from services.api.openapi import ApiBlueprint
from services.api.schemas.artifacts import ArtifactListQuery
from services.api.schemas.artifacts import ArtifactUploadQuery
from services.api.store import artifacts as store
from services.api.store import training_runs
from shared.settings import Settings

bp = ApiBlueprint("artifacts", __name__, url_prefix="/v1")
bp.before_request(token_or_session)

#: Room for multipart boundaries and headers on top of the file itself.
MULTIPART_SLACK = 64 * 1024


def file_json(a: Artifact) -> dict[str, Any]:
    return {
        "object": "file",
        "id": str(a.id),
        "experiment": str(a.experiment_id),
        "training_run": str(a.training_run_id),
        "attempt": a.attempt,
        "name": a.name,
        "content_type": a.content_type,
        "size": a.size,
        "sha256": a.sha256,
        "created": int(a.created),
        "url": f"/v1/files/{a.id}",
    }


def _settings() -> Settings:
    settings: Settings = current_app.config["SETTINGS"]
    return settings


@bp.operation(
    "POST",
    "/training_runs/<id:run_id>/files",
    "Upload a file of a run: the raw body with ?name= and its Content-Type, or "
    "multipart/form-data with the part 'file'",
    query=ArtifactUploadQuery,
    returns="file",
)
def upload(run_id: int, query: ArtifactUploadQuery) -> Response:
    session = get_session()
    run, _ = training_runs.get(session, current_principal(), run_id)
    settings = _settings()
    request.max_content_length = settings.max_artifact_bytes + MULTIPART_SLACK
    try:
        if request.mimetype == "multipart/form-data":
            part = request.files.get("file")
            if part is None:
                raise invalid("file", "send the file as the multipart part named 'file'")
            name = query.name or request.form.get("name") or part.filename
            content_type = query.content_type or request.form.get("content_type") or part.mimetype
            artifact = store.save(
                session, settings, run, name, content_type, part.stream, query.attempt
            )
        else:
            artifact = store.save(
                session,
                settings,
                run,
                query.name,
                query.content_type or request.content_type,
                request.stream,
                query.attempt,
            )
    except RequestEntityTooLarge as exc:
        raise ApiError(
            413, f"File is larger than the limit of {settings.max_artifact_bytes} bytes"
        ) from exc
    return jsonify(file_json(artifact))


@bp.operation(
    "GET",
    "/training_runs/<id:run_id>/files",
    "List a run's files (newest first)",
    query=ArtifactListQuery,
    returns="pagination of files",
)
def list_(run_id: int, query: ArtifactListQuery) -> Response:
    session = get_session()
    run, _ = training_runs.get(session, current_principal(), run_id)
    rows, count, paging = store.list_page(session, run, query)
    return jsonify(serialize.page([file_json(a) for a in rows], count, paging))


@bp.operation(
    "GET",
    "/files/<id:file_id>",
    "Download a file (images inline, others as attachments)",
    returns="the file's bytes",
)
def download(file_id: int) -> Response:
    artifact = store.get(get_session(), current_principal(), file_id)
    path = store.path_of(_settings(), artifact)
    if not path.is_file():
        raise ApiError(404, f"The content of file {file_id} is missing from the store")
    response = send_file(
        path,
        mimetype=artifact.content_type,
        as_attachment=artifact.content_type not in store.IMAGE_TYPES,
        download_name=artifact.name,
        etag=artifact.sha256,
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, max-age=0"
    return response


@bp.operation("DELETE", "/files/<id:file_id>", "Delete a file")
def delete(file_id: int) -> tuple[str, int]:
    session = get_session()
    store.delete(session, _settings(), store.get(session, current_principal(), file_id))
    return "", 204
