"""Dashboard sign-in: a token typed into ``/login`` becomes a signed Flask session holding the
token's SHA-256 digest (never the token). Every request re-checks the digest against the
tokens table, so a revoked token signs the session out; scoping is the API's own `Principal`.

Failed sign-ins are throttled per client address and per token digest (`sign_in_blocked`).

`token_or_session` lets the read-only (GET) JSON routes the pages poll accept that session as
well as an API token; writes always need a token.
"""

from __future__ import annotations

import hmac
import secrets

from flask import g
from flask import request
from flask import session

from services.api import ratelimit
from services.api.auth import Principal
from services.api.auth import digest
from services.api.auth import principal_of
from services.api.auth import require_token
from services.api.errors import ApiError

_KEY = "token_digest"
_CSRF = "csrf"


def _typed_digest(token: str) -> str | None:
    """The digest of a token typed into the form, or None for nothing (or something far too
    long to be a token)."""
    token = token.strip()
    return digest(token) if token and len(token) <= 500 else None


def sign_in_blocked(token: str) -> ratelimit.RateLimited | None:
    """The 429 to answer, without trying ``token``, when this address or this token has failed
    too many sign-ins lately (`services.api.ratelimit`)."""
    return ratelimit.signin_blocked(request.remote_addr, _typed_digest(token))


def sign_in(token: str) -> Principal | None:
    """Start a session for ``token``; None (and no session) when it is not a valid token, which
    counts as a failed sign-in of this address and token."""
    token_digest = _typed_digest(token)
    principal = principal_of(token_digest) if token_digest is not None else None
    if principal is None or principal.is_run_scoped:  # a run's token is for its run only
        ratelimit.record_failed_signin(request.remote_addr, token_digest)
        return None
    session.clear()
    session.permanent = True
    session[_KEY] = token_digest
    session[_CSRF] = secrets.token_urlsafe(24)
    return principal


def sign_out() -> None:
    session.clear()


def session_principal() -> Principal | None:
    """The signed-in principal (cached on ``g``), or None."""
    if "dashboard_principal" not in g:
        token_digest = session.get(_KEY)
        found = principal_of(token_digest) if isinstance(token_digest, str) else None
        if found is not None and found.is_run_scoped:
            found = None
        g.dashboard_principal = found
        if g.dashboard_principal is None and token_digest is not None:
            session.clear()
    principal: Principal | None = g.dashboard_principal
    return principal


def csrf_token() -> str:
    """The session's form token (created on first use, also before sign-in)."""
    if _CSRF not in session:
        session[_CSRF] = secrets.token_urlsafe(24)
    token: str = session[_CSRF]
    return token


def check_csrf() -> None:
    sent = request.form.get("csrf", "")
    expected = session.get(_CSRF, "")
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise ApiError(400, "Invalid value for csrf: the form expired; reload the page and retry")


def token_or_session() -> None:
    """``before_request`` of read routes the pages use: a token as everywhere in /v1, or, for
    GET without an ``Authorization`` header, the dashboard session."""
    if request.method in ("GET", "HEAD") and "Authorization" not in request.headers:
        principal = session_principal()
        if principal is not None:
            g.principal = principal
            return
    require_token()
