"""The one place API errors become JSON: ``{"message": str, "status": int}``, as in SigOpt.

The database being unreachable (restarting, failing over, out of connections) is not a bug of
the request: it answers 503 with ``Retry-After``, which `shared.api_client` honours, instead of
a 500, and the request's transaction, never committed, is safe to send again."""

from __future__ import annotations

import logging
import re

from flask import Flask
from flask import Response
from flask import jsonify
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import InterfaceError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

#: How pydantic shows an allowed enum member (``<RunState.FAILED: 'failed'>``); a client sent
#: and should send its value (``'failed'``).
_ENUM_MEMBER = re.compile(r"<\w+\.\w+: ('[^']*')>")
#: Seconds a client is asked to wait before retrying while the database is unavailable.
DATABASE_RETRY_AFTER_S = 2


class ApiError(Exception):
    """An error with an HTTP status whose message is safe to show the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def invalid(field: str, message: str) -> ApiError:
    """A 400 naming the offending field."""
    return ApiError(400, f"Invalid value for {field}: {message}")


def not_found(kind: str, object_id: object) -> ApiError:
    return ApiError(404, f"No {kind} with id {object_id}")


def error_response(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"message": message, "status": status}), status


def database_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or cannot serve now (a lost or refused connection, a
    server shutting down or starting, an exhausted pool, a lock or serialization conflict): the
    same request may succeed later. PostgreSQL reports all of these as ``OperationalError``
    (SQLSTATE classes 08, 40, 53, 57, 58), SQLite its busy database too."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError | DisconnectionError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def unavailable_response(message: str) -> tuple[Response, int]:
    """503 with ``Retry-After``: try again shortly."""
    response, status = error_response(503, message)
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response, status


def _allowed_values(expected: str) -> list[str]:
    """How pydantic lists allowed values (``'a', 'b' or 'c'``, enum members shown by value) as
    a list."""
    head, _, last = _ENUM_MEMBER.sub(r"\1", expected).rpartition(" or ")
    return [*head.split(", "), last] if head else [last]


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One readable line per pydantic error, each naming its field as ``a.b[0].c``. A field that
    takes one of several sets of values (a state or a filter) gets one line listing them all."""
    lines: dict[str, str] = {}
    allowed: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False)[:10]:
        field = prefix
        for part in error["loc"]:
            if isinstance(part, int):
                field += f"[{part}]"
            elif not str(part).startswith(("function-", "json-or-python")) and not str(
                part
            ).endswith("]"):
                field += f".{part}" if field else str(part)
        field = field or "body"
        kind = error["type"]
        message = _ENUM_MEMBER.sub(r"\1", str(error["msg"]).removeprefix("Value error, "))
        if kind == "extra_forbidden":
            line = f"Unknown field {field}"
        elif kind == "missing":
            line = f"Missing required field {field}"
        elif kind in ("enum", "literal_error"):
            values = allowed.setdefault(field, [])
            values += _allowed_values(str(error.get("ctx", {}).get("expected", "")))
            listed = " or ".join([", ".join(values[:-1]), values[-1]] if values[1:] else values)
            lines[f"allowed {field}"] = f"Invalid value for {field}: Input should be {listed}"
            continue
        else:
            line = f"Invalid value for {field}: {message}"
        lines.setdefault(line, line)
    return "; ".join(lines.values())


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        return error_response(exc.status, exc.message)

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> tuple[Response, int]:
        return error_response(400, describe_validation_error(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            return error_response(413, f"Request body is larger than the limit of {limit} bytes")
        if status == 405:
            response, code = error_response(405, f"Method not allowed; {exc.description}")
            allowed = exc.get_response().headers.get("Allow")
            if allowed:
                response.headers["Allow"] = allowed
            return response, code
        if status == 404:
            return error_response(404, "Not found")
        return error_response(status, exc.description or exc.name)

    @app.errorhandler(SQLAlchemyError)
    def _database_error(exc: SQLAlchemyError) -> tuple[Response, int]:
        if not database_unavailable(exc):
            return _unexpected(exc)
        # One line, no traceback: an outage makes every request fail the same way.
        log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return unavailable_response("The database is unavailable; retry shortly")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "Internal server error")
