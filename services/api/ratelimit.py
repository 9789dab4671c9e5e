"""Abuse limits, kept in Redis so that every API process (and host) shares them:

- a per-token request rate (`check_request`): a token bucket of ``MULTITUNE_RATE_LIMIT``
  requests per second and ``MULTITUNE_RATE_LIMIT_BURST`` at once, keyed by the token's digest;
  the service token is never limited. Over it, 429 with ``Retry-After``.
- failed dashboard sign-ins (`signin_blocked`, `record_failed_signin`): at most
  ``MULTITUNE_SIGNIN_FAILURES`` a minute per client address and per token digest, then 429
  with ``Retry-After`` until the minute is over.

Neither ever fails a request because Redis is away: `GuardedRedis` answers `UNAVAILABLE` at
once (short timeouts, then no new try for a second) and the limits let requests through.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Final
from typing import TypeVar

import redis
from flask import Flask
from flask import Response
from flask import current_app

from services.api.errors import ApiError
from services.api.errors import error_response
from shared.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

RATE_KEY_PREFIX = "multitune:ratelimit:"
SIGNIN_KEY_PREFIX = "multitune:signin:"
#: The window of the sign-in limit.
SIGNIN_WINDOW_S = 60
#: How long Redis calls of the limits may take before they count as Redis being away.
REDIS_TIMEOUT_S = 0.5
#: After Redis failed, the limits do not try it again for this long.
REDIS_RETRY_S = 1.0


class Unavailable:
    def __repr__(self) -> str:
        return "UNAVAILABLE"


#: What `GuardedRedis.call` answers when Redis cannot be reached.
UNAVAILABLE: Final = Unavailable()


class GuardedRedis:
    """A Redis client for per-request checks: short timeouts, and after a failure no new try
    for `REDIS_RETRY_S`, so a Redis outage costs a request nothing."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self._down_until = 0.0

    def call(self, fn: Callable[[redis.Redis], T]) -> T | Unavailable:
        if time.monotonic() < self._down_until:
            return UNAVAILABLE
        try:
            return fn(self.client)
        except (redis.RedisError, OSError) as exc:
            self._down_until = time.monotonic() + REDIS_RETRY_S
            log.warning("Redis unavailable to the request limits (requests allowed): %s", exc)
            return UNAVAILABLE


class RateLimited(ApiError):
    """429 with ``Retry-After``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(429, message)
        #: Whole seconds, at least 1 (the header's delay-seconds form).
        self.retry_after = max(1, math.ceil(retry_after_s))


# A token bucket in one atomic step, on Redis' clock (shared by every API host): refill at
# ARGV[1] per second up to ARGV[2], take one if there is one. Answers {allowed, seconds until
# one is there}; numbers go back as text (Redis would truncate a Lua number to an integer).
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


def guarded_redis() -> GuardedRedis:
    guarded: GuardedRedis = current_app.extensions["limits_redis"]
    return guarded


def _settings() -> Settings:
    settings: Settings = current_app.config["SETTINGS"]
    return settings


def check_request(token_digest: str) -> None:
    """Take one request from the token's bucket; `RateLimited` when it is empty. Does nothing
    when the limit is off or Redis is away."""
    settings = _settings()
    if settings.rate_limit <= 0:
        return
    burst = max(1, settings.rate_limit_burst)
    script = current_app.extensions["rate_limit_script"]
    answer = guarded_redis().call(
        lambda client: script(
            keys=[RATE_KEY_PREFIX + token_digest],
            args=[settings.rate_limit, burst],
            client=client,
        )
    )
    if isinstance(answer, Unavailable):
        return
    allowed, wait = answer
    if not int(allowed):
        raise RateLimited(
            f"Too many requests: this token may send {settings.rate_limit:g} a second "
            f"({burst} at once); retry after the Retry-After header's seconds",
            float(wait),
        )


# ------------------------------------------------------------------ dashboard sign-in
def _signin_keys(address: str | None, token_digest: str | None) -> list[str]:
    keys = [f"{SIGNIN_KEY_PREFIX}address:{address or 'unknown'}"]
    if token_digest is not None:
        keys.append(f"{SIGNIN_KEY_PREFIX}token:{token_digest}")
    return keys


def signin_blocked(address: str | None, token_digest: str | None) -> RateLimited | None:
    """The 429 to answer when this address or token has failed too many sign-ins this minute
    (checked before the token is), else None."""
    limit = _settings().signin_failures
    if limit <= 0:
        return None
    keys = _signin_keys(address, token_digest)

    def read(client: redis.Redis) -> list[tuple[int, int]]:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        values = pipe.execute()
        return [(int(values[i] or 0), int(values[i + 1])) for i in range(0, len(values), 2)]

    counts = guarded_redis().call(read)
    if isinstance(counts, Unavailable):
        return None
    waits = [ttl / 1000 if ttl > 0 else SIGNIN_WINDOW_S for count, ttl in counts if count >= limit]
    if not waits:
        return None
    return RateLimited(
        f"Too many failed sign-ins: at most {limit} a minute from one address or for one "
        "token; retry after the Retry-After header's seconds",
        max(waits),
    )


def record_failed_signin(address: str | None, token_digest: str | None) -> None:
    """Count a failed sign-in against the address and the token (fixed one-minute windows
    that start at the first failure)."""
    if _settings().signin_failures <= 0:
        return
    keys = _signin_keys(address, token_digest)

    def count(client: redis.Redis) -> None:
        pipe = client.pipeline(transaction=True)
        for key in keys:
            pipe.incr(key)
            pipe.expire(key, SIGNIN_WINDOW_S, nx=True)
        pipe.execute()

    guarded_redis().call(count)


def retry_after_response(exc: RateLimited) -> tuple[Response, int]:
    response, status = error_response(exc.status, exc.message)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response, status


def init_app(app: Flask) -> None:
    settings: Settings = app.config["SETTINGS"]
    guarded = GuardedRedis(settings.redis_url)
    app.extensions["limits_redis"] = guarded
    app.extensions["rate_limit_script"] = guarded.client.register_script(_TOKEN_BUCKET)
    app.register_error_handler(RateLimited, retry_after_response)
