"""A training run's checkpoint archive (docs/checkpoints.md): ``PUT`` stores one for an attempt,
``GET`` describes the current one, ``GET .../content`` streams it. Only the workers (the service
token) and the run's own run-scoped token may use them; a client's token gets 403.

Uploads have their own size limit (``MULTITUNE_MAX_CHECKPOINT_BYTES``) instead of the API's
request body limit, and must carry a ``Content-Length``.
"""

from __future__ import annotations

from typing import Annotated

from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from flask import send_file
from flask.blueprints import BlueprintSetupState
from pydantic import Field
from werkzeug.exceptions import ClientDisconnected
from werkzeug.exceptions import RequestEntityTooLarge

from services.api.auth import current_principal
from services.api.auth import require_token
from services.api.db import get_session
from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.filestore import parse_location
from services.api.models import TrainingRun
from services.api.openapi import ApiBlueprint
from services.api.routes.paths import check_visible
from services.api.schemas.common import LaxModel
from services.api.store import checkpoint_archives as store
from services.api.store import training_runs
from shared.checkpoint_archive import ATTEMPT_HEADER
from shared.checkpoint_archive import MEDIA_TYPE
from shared.checkpoint_archive import SHA256_HEADER
from shared.checkpoint_archive import SHA256_PATTERN
from shared.settings import Settings

bp = ApiBlueprint("checkpoint_archives", __name__, url_prefix="/v1", path_check=check_visible)
bp.before_request(require_token)


@bp.record_once
def _check_settings(state: BlueprintSetupState) -> None:
    """A wrong ``MULTITUNE_FILE_STORE`` stops the API at start, not at the first upload."""
    parse_location(state.app.config["SETTINGS"].file_store)


class ArchiveUploadQuery(LaxModel):
    """The attempt storing the archive (the fence) and the archive's SHA-256, checked against
    the bytes before the archive replaces the current one."""

    attempt: Annotated[int, Field(ge=1, le=2**31 - 1)]
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)]


def _settings() -> Settings:
    value: Settings = current_app.config["SETTINGS"]
    return value


def _run(run_id: int) -> TrainingRun:
    """The run, for the service token or the run's own token only."""
    principal = current_principal()
    run, _ = training_runs.get_any(get_session(), principal, run_id)
    if not (principal.is_service or principal.is_run_scoped):
        raise ApiError(
            403,
            "Forbidden: a run's checkpoint archive is stored and fetched by the workers "
            "(the service token) and the run's own run-scoped token only",
        )
    return run


@bp.operation(
    "PUT",
    "/training_runs/<id:run_id>/checkpoint_archive",
    "Store the run's checkpoint archive (the body: a tar with its Content-Length) for an "
    "attempt; it replaces the current one only once all its bytes match the declared length "
    "and sha256, and only while the attempt is the run's (else 409)",
    query=ArchiveUploadQuery,
    returns="checkpoint_archive",
    errors=(411, 507),
)
def put(run_id: int, query: ArchiveUploadQuery) -> Response:
    run = _run(run_id)
    settings = _settings()
    request.max_content_length = settings.max_checkpoint_bytes
    try:
        archive = store.save(
            get_session(),
            settings,
            run,
            query.attempt,
            query.sha256,
            request.content_length,
            request.stream,
        )
    except ClientDisconnected as exc:
        raise invalid(
            "Content-Length header", "the body ended before the declared length"
        ) from exc
    except RequestEntityTooLarge as exc:
        raise ApiError(
            413,
            f"Checkpoint archive is larger than the limit of {settings.max_checkpoint_bytes} "
            "bytes",
        ) from exc
    return jsonify(archive.to_json())


@bp.operation(
    "GET",
    "/training_runs/<id:run_id>/checkpoint_archive",
    "Describe the run's current checkpoint archive (404 when none was stored)",
    returns="checkpoint_archive",
)
def describe(run_id: int) -> Response:
    archive = store.current(_settings(), _run(run_id))
    if archive is None:
        raise ApiError(404, f"No checkpoint archive for training run {run_id}")
    return jsonify(archive.to_json())


@bp.operation(
    "GET",
    "/training_runs/<id:run_id>/checkpoint_archive/content",
    "Download the run's current checkpoint archive (application/x-tar; its sha256 in the "
    f"{SHA256_HEADER} header and the ETag)",
    returns="the archive's bytes",
)
def content(run_id: int) -> Response:
    opened = store.open_current(_settings(), _run(run_id))
    if opened is None:
        raise ApiError(404, f"No checkpoint archive for training run {run_id}")
    archive, stored = opened
    response = send_file(
        stored.stream,
        mimetype=MEDIA_TYPE,
        as_attachment=True,
        download_name=f"run-{run_id}-checkpoint.tar",
        etag=archive.sha256,
        max_age=0,
    )
    if response.status_code == 200:
        response.content_length = stored.size
    response.headers[SHA256_HEADER] = archive.sha256
    response.headers[ATTEMPT_HEADER] = str(archive.attempt)
    return response
