"""Liveness (no dependencies) and readiness (database and Redis answer); no token needed. Not
ready is a 503 with ``Retry-After``, as every request gets while the database is away."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from sqlalchemy import text

from services.api.db import get_session
from services.api.errors import DATABASE_RETRY_AFTER_S

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks = {}
    try:
        get_session().execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - report any failure as not ready
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        current_app.extensions["redis"].ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    response = jsonify({"status": "ok" if ready else "unavailable", **checks})
    if not ready:
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response, 200 if ready else 503
