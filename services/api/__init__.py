"""The API service: a Flask app factory (flaskr's shape). Importing this package does nothing;
`create_app` builds an app from `shared.settings.Settings`."""

from __future__ import annotations

import logging

import redis
from flask import Flask
from flask import Response
from flask import request
from werkzeug.routing import BaseConverter

from shared.settings import Settings


def decimal_at_most(limit: int) -> str:
    """A regular expression of the decimal numbers 1 to ``limit`` (no leading zeros)."""
    digits = str(limit)
    parts = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0
        high = int(digit) if i == len(digits) - 1 else int(digit) - 1
        if high >= low:
            rest = len(digits) - i - 1
            parts.append(f"{digits[:i]}[{low}-{high}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    return "(?:" + "|".join(parts) + ")"


class IdConverter(BaseConverter):
    """A positive 32-bit id in a path; anything else is simply not found. The range is in the
    regular expression itself: a converter that refused a matched path would make Werkzeug
    answer 405 when another method's rule has the same path."""

    regex = decimal_at_most(2**31 - 1)

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


#: SigOpt's request header asking a successful write to answer without a body.
SKIP_HEADER = "X-Response-Content"


def _skip_response_content(response: Response) -> Response:
    """``X-Response-Content: skip`` on a successful ``/v1`` write: 204, no body (the sigopt
    client sends it with every run update and checkpoint)."""
    if (
        request.headers.get(SKIP_HEADER, "").strip().lower() == "skip"
        and request.method not in ("GET", "HEAD", "OPTIONS")
        and request.path.startswith("/v1/")
        and 200 <= response.status_code < 300
    ):
        return Response(status=204)
    return response


def create_app(settings: Settings | None = None, *, start_relay: bool = True) -> Flask:
    """Build the app: migrate the database, connect Redis, register blueprints, start the relay."""
    from services.api import auth
    from services.api import db
    from services.api import errors
    from services.api import outbox
    from services.api import routes

    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level)
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.secret_key = settings.resolved_secret_key()
    app.config.update(
        SESSION_COOKIE_NAME="multitune_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        # Only a request that changes the session sets its cookie: a page's poll still in flight
        # when the user logs out must not answer with the old cookie and sign them back in.
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.converters["id"] = IdConverter
    app.url_map.strict_slashes = False

    db.init_app(app)
    auth.init_app(app)
    errors.init_app(app)
    app.extensions["redis"] = redis.Redis.from_url(
        settings.redis_url, socket_timeout=settings.suggestion_wait_s + 5, health_check_interval=30
    )
    relay = outbox.Relay(app.extensions["db_sessionmaker"], app.extensions["redis"])
    app.extensions["outbox_relay"] = relay
    if start_relay:
        relay.start()

    @app.after_request
    def _wake_relay(response: Response) -> Response:
        if request.method != "GET":
            relay.notify()
        return response

    app.after_request(_skip_response_content)

    routes.register(app)
    return app
