"""Client API tokens: HTTP Basic username (the sigopt client's way) or ``Authorization: Bearer``.

A token belongs to one client; every query of a client's data is filtered by its id, so another
client's objects are simply not found (404). The service token from the settings (used by the
suggester and workers) sees every client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from flask import Flask
from flask import current_app
from flask import g
from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.db import get_session
from services.api.errors import ApiError
from services.api.models import Client
from services.api.models import Token

TOKEN_PREFIX = "mt_"
_CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class Principal:
    """Who is calling: a client (tenant), or the internal service (``client_id`` None)."""

    client_id: int | None
    name: str

    @property
    def is_service(self) -> bool:
        return self.client_id is None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, client_name: str, token_name: str) -> str:
    """Create a token (and its client, if new); return the secret, which is not stored."""
    client = session.scalar(select(Client).where(Client.name == client_name))
    now = time.time()
    if client is None:
        client = Client(name=client_name, created=now)
        session.add(client)
        session.flush()
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(Token(client_id=client.id, name=token_name, digest=digest(secret), created=now))
    session.commit()
    return secret


def _presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    if request.authorization and request.authorization.username:
        return request.authorization.username
    return None


def principal_of(token_digest: str) -> Principal | None:
    """Who a token (given by its digest) belongs to, or None for an unknown or revoked one."""
    if hmac.compare_digest(token_digest, digest(current_app.config["SERVICE_TOKEN"])):
        return Principal(client_id=None, name="service")
    row = (
        get_session()
        .execute(
            select(Token.client_id, Client.name)
            .join(Client, Client.id == Token.client_id)
            .where(Token.digest == token_digest, Token.revoked.is_(False))
        )
        .first()
    )
    return Principal(client_id=row[0], name=row[1]) if row else None


def _lookup(token: str) -> Principal | None:
    """`principal_of`, cached for a few seconds per process (tokens are checked per request)."""
    cache: dict[str, tuple[float, Principal | None]] = current_app.extensions["token_cache"]
    key = digest(token)
    hit = cache.get(key)
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    principal = principal_of(key)
    if len(cache) > 10_000:
        cache.clear()
    cache[key] = (now + _CACHE_SECONDS, principal)
    return principal


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal


def require_token() -> None:
    """``before_request`` of the v1 blueprint."""
    token = _presented_token()
    if not token:
        raise ApiError(
            401, "Missing API token: send it as the HTTP Basic username or a Bearer token"
        )
    principal = _lookup(token)
    if principal is None:
        raise ApiError(401, "Invalid API token")
    g.principal = principal


def init_app(app: Flask) -> None:
    app.config["SERVICE_TOKEN"] = app.config["SETTINGS"].resolved_service_token()
    app.extensions["token_cache"] = {}
