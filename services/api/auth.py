"""Client API tokens: HTTP Basic username (the sigopt client's way) or ``Authorization: Bearer``.

A token belongs to one client; every query of a client's data is filtered by its id, so another
client's objects are simply not found (404). The service token from the settings (used by the
suggester and workers) sees every client.

A run-scoped token (``mtr_``, minted by the service for a script objective's child process) acts
for one attempt of one training run: `check_run_scope`, run by `require_token` before every v1
route, is the one place that confines it to `RUN_TOKEN_CALLS` on its own run, and `principal_of`
stops accepting it (401) once the run has a later attempt or has finished.

Each process caches the answer for a client token a few seconds. A revocation
(`revoke_tokens`, ``multitune token revoke``) bumps `TOKEN_GENERATION_KEY` in Redis, which every
request reads: a process that sees it change drops its cache, so a revoked token gets 401 at once
everywhere. While Redis cannot be read, tokens are checked in the database on every request.

`require_token` also applies the per-token request rate (`services.api.ratelimit`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from dataclasses import field

import redis
from flask import Flask
from flask import current_app
from flask import g
from flask import request
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api import ratelimit
from services.api.db import get_session
from services.api.errors import ApiError
from services.api.errors import not_found
from services.api.models import Artifact
from services.api.models import Client
from services.api.models import Token
from services.api.models import TrainingRun
from shared.states import FINISHED_RUN_STATES

TOKEN_PREFIX = "mt_"
RUN_TOKEN_PREFIX = "mtr_"
_CACHE_SECONDS = 30.0
#: Redis counter bumped by every revocation; API processes drop their token caches when it moves.
TOKEN_GENERATION_KEY = "multitune:tokens:generation"

_RUN = "/v1/training_runs/<id:run_id>"
#: Everything a run-scoped token may call, as (method, URL rule). A ``run_id`` in the path must
#: be the token's run and a ``file_id`` one of its run's files, else 404; any other call is 403.
RUN_TOKEN_CALLS = frozenset(
    {
        ("GET", "/v1/tokens/self"),
        ("GET", _RUN),
        ("PUT", _RUN),
        ("MERGE", _RUN),
        ("PATCH", _RUN),
        ("GET", f"{_RUN}/checkpoints"),
        ("POST", f"{_RUN}/checkpoints"),
        ("POST", f"{_RUN}/files"),
        ("PUT", f"{_RUN}/checkpoint_archive"),
        ("GET", f"{_RUN}/checkpoint_archive"),
        ("GET", f"{_RUN}/checkpoint_archive/content"),
        ("GET", "/v1/files/<id:file_id>"),
    }
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a client (tenant), or the internal service (``client_id`` None). A
    run-scoped token is its run's client, confined to that run (``run_id``) and attempt."""

    client_id: int | None
    name: str
    run_id: int | None = None
    attempt: int | None = None

    @property
    def is_service(self) -> bool:
        return self.client_id is None

    @property
    def is_run_scoped(self) -> bool:
        return self.run_id is not None


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


def create_run_token(session: Session, run: TrainingRun) -> str:
    """Mint a token scoped to ``run``'s current attempt; return the secret, which is not stored.
    Tokens of the run's earlier attempts (already invalid) are deleted."""
    secret = RUN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.execute(
        delete(Token).where(Token.training_run_id == run.id, Token.attempt != run.attempt)
    )
    session.add(
        Token(
            client_id=run.client_id,
            name=f"run {run.id} attempt {run.attempt}",
            digest=digest(secret),
            created=time.time(),
            training_run_id=run.id,
            attempt=run.attempt,
        )
    )
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
            select(
                Token.client_id,
                Client.name,
                Token.training_run_id,
                Token.attempt,
                TrainingRun.attempt,
                TrainingRun.state,
            )
            .join(Client, Client.id == Token.client_id)
            .outerjoin(TrainingRun, TrainingRun.id == Token.training_run_id)
            .where(Token.digest == token_digest, Token.revoked.is_(False))
        )
        .first()
    )
    if row is None:
        return None
    client_id, name, run_id, attempt, run_attempt, run_state = row
    if run_id is None:
        return Principal(client_id=client_id, name=name)
    if attempt != run_attempt or run_state in FINISHED_RUN_STATES:
        return None  # the run moved to a later attempt or finished: the token is spent
    return Principal(client_id=client_id, name=name, run_id=run_id, attempt=attempt)


@dataclass
class _TokenCache:
    """Per process: digest -> (expiry, revocation generation it was read under, principal)."""

    entries: dict[str, tuple[float, bytes | str | None, Principal | None]] = field(
        default_factory=dict
    )


def _lookup(token_digest: str, run_scoped: bool) -> Principal | None:
    """`principal_of`, cached for a few seconds per process while no revocation happened
    (`TOKEN_GENERATION_KEY`); run-scoped tokens are checked on every request, so they stop the
    moment their run ends, and so is every token while Redis cannot be read."""
    if run_scoped:
        return principal_of(token_digest)
    generation = ratelimit.guarded_redis().call(lambda client: client.get(TOKEN_GENERATION_KEY))
    if isinstance(generation, ratelimit.Unavailable):
        return principal_of(token_digest)
    cache: _TokenCache = current_app.extensions["token_cache"]
    hit = cache.entries.get(token_digest)
    now = time.monotonic()
    if hit is not None and hit[0] > now and hit[1] == generation:
        return hit[2]
    principal = principal_of(token_digest)
    if len(cache.entries) > 10_000:
        cache.entries.clear()
    cache.entries[token_digest] = (now + _CACHE_SECONDS, generation, principal)
    return principal


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal


def require_token() -> None:
    """``before_request`` of the v1 blueprints."""
    token = _presented_token()
    if not token:
        raise ApiError(
            401, "Missing API token: send it as the HTTP Basic username or a Bearer token"
        )
    token_digest = digest(token)
    principal = _lookup(token_digest, token.startswith(RUN_TOKEN_PREFIX))
    if principal is None:
        raise ApiError(401, "Invalid API token")
    if principal.is_run_scoped:
        check_run_scope(principal)
    if not principal.is_service:
        ratelimit.check_request(token_digest)
    g.principal = principal


def check_run_scope(principal: Principal) -> None:
    """The one check of what a run-scoped token may do: a call of `RUN_TOKEN_CALLS` (else 403)
    on its own run or a file of it (else 404, as for any object the caller cannot see)."""
    rule = request.url_rule
    method = "GET" if request.method == "HEAD" else request.method
    if rule is None or (method, rule.rule) not in RUN_TOKEN_CALLS:
        raise ApiError(
            403,
            f"Forbidden: a token scoped to training run {principal.run_id} may only read and "
            "update that run, its checkpoints and its files",
        )
    args = request.view_args or {}
    if "run_id" in args and args["run_id"] != principal.run_id:
        raise not_found("training run", args["run_id"])
    if "file_id" in args:
        owner = get_session().scalar(
            select(Artifact.training_run_id).where(Artifact.id == args["file_id"])
        )
        if owner != principal.run_id:
            raise not_found("file", args["file_id"])


@dataclass(frozen=True)
class TokenInfo:
    """A client token as ``multitune token list`` shows it: never the secret, only the last
    characters of its digest."""

    id: int
    name: str
    client: str
    created: float
    revoked: bool
    digest_tail: str


def list_tokens(session: Session) -> list[TokenInfo]:
    """Every client token (not the run-scoped ones), oldest first."""
    rows = session.execute(
        select(Token.id, Token.name, Client.name, Token.created, Token.revoked, Token.digest)
        .join(Client, Client.id == Token.client_id)
        .where(Token.training_run_id.is_(None))
        .order_by(Token.id)
    ).tuples()
    return [
        TokenInfo(token_id, name, client, created, revoked, token_digest[-4:])
        for token_id, name, client, created, revoked, token_digest in rows
    ]


def find_tokens(session: Session, name_or_id: str) -> list[TokenInfo]:
    """The client tokens named ``name_or_id``, or with that id."""
    return [
        t
        for t in list_tokens(session)
        if t.name == name_or_id or (name_or_id.isdigit() and t.id == int(name_or_id))
    ]


def revoke_tokens(session: Session, ids: list[int], redis_url: str) -> bool:
    """Revoke these tokens in the database, then tell every API process (Redis); False when
    Redis could not be told: processes may then accept the tokens for up to `_CACHE_SECONDS`
    from their caches."""
    tokens = session.scalars(select(Token).where(Token.id.in_(ids))).all()
    for token in tokens:
        token.revoked = True
    session.commit()
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.incr(TOKEN_GENERATION_KEY)
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
    return True


def init_app(app: Flask) -> None:
    app.config["SERVICE_TOKEN"] = app.config["SETTINGS"].resolved_service_token()
    app.extensions["token_cache"] = _TokenCache()
    ratelimit.init_app(app)
