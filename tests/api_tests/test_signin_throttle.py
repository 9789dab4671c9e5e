"""Dashboard sign-in throttling: after ``MULTITUNE_SIGNIN_FAILURES`` (5) failed sign-ins in a
minute from one address, or with one token, the form answers 429 with ``Retry-After`` without
trying the token; other addresses and tokens are not held up, and a Redis outage holds up
nobody."""

from __future__ import annotations

import re
from collections.abc import Callable

import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from services.api.ratelimit import SIGNIN_WINDOW_S

LIMIT = 5


def _client(app: Flask, address: str) -> FlaskClient:
    """A browser at ``address`` (the WSGI ``REMOTE_ADDR``, what the API sees of a client)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _sign_in(client: FlaskClient, token: str) -> TestResponse:
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf, page
    return client.post("/login", data={"token": token, "csrf": csrf.group(1)})


def _assert_throttled(response: TestResponse) -> None:
    assert response.status_code == 429, response.status_code
    assert 1 <= int(response.headers["Retry-After"]) <= SIGNIN_WINDOW_S
    page = response.get_data(as_text=True)
    assert "Too many failed sign-ins" in page and 'name="token"' in page  # the form, again


def _token(make_token: Callable[[str], dict[str, str]], client_name: str) -> str:
    return make_token(client_name)["Authorization"].removeprefix("Bearer ")


def test_failed_sign_ins_from_one_address_are_throttled(
    app: Flask, make_token: Callable[[str], dict[str, str]]
) -> None:
    good = _token(make_token, "acme")
    attacker = _client(app, "192.0.2.10")
    for i in range(LIMIT):
        assert _sign_in(attacker, f"mt_guess{i}").status_code == 401
    _assert_throttled(_sign_in(attacker, "mt_guess-next"))
    # Throttled before the token is tried: even the right one is refused from there.
    _assert_throttled(_sign_in(attacker, good))
    assert attacker.get("/experiments").status_code == 302  # still signed out
    # Another address signs in at once.
    signed_in = _sign_in(_client(app, "192.0.2.20"), good)
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/experiments"


def test_failed_sign_ins_with_one_token_are_throttled_from_every_address(
    app: Flask, make_token: Callable[[str], dict[str, str]]
) -> None:
    for i in range(LIMIT):
        assert _sign_in(_client(app, f"198.51.100.{i}"), "mt_stolen-guess").status_code == 401
    _assert_throttled(_sign_in(_client(app, "198.51.100.99"), "mt_stolen-guess"))
    # That address may still try another token.
    good = _token(make_token, "acme")
    assert _sign_in(_client(app, "198.51.100.99"), good).status_code == 302


def test_successful_sign_ins_do_not_count(
    app: Flask, make_token: Callable[[str], dict[str, str]]
) -> None:
    good = _token(make_token, "acme")
    for _ in range(LIMIT + 3):
        assert _sign_in(_client(app, "203.0.113.5"), good).status_code == 302


def test_without_redis_nobody_is_throttled(
    app: Flask, make_token: Callable[[str], dict[str, str]]
) -> None:
    """The limits' Redis pointed at a port nothing listens on: sign-ins are judged as ever."""
    from services.api.ratelimit import GuardedRedis

    app.extensions["limits_redis"] = GuardedRedis("redis://127.0.0.1:1/0")
    attacker = _client(app, "192.0.2.30")
    for i in range(LIMIT + 2):
        assert _sign_in(attacker, f"mt_guess{i}").status_code == 401
    assert _sign_in(attacker, _token(make_token, "acme")).status_code == 302


def test_the_window_is_one_minute_in_redis(
    app: Flask, redis_client: redis.Redis, make_token: Callable[[str], dict[str, str]]
) -> None:
    """The counts live in Redis (shared by every API process) and expire with their minute."""
    attacker = _client(app, "192.0.2.40")
    for i in range(LIMIT):
        _sign_in(attacker, f"mt_guess{i}")
    key = b"multitune:signin:address:192.0.2.40"
    assert int(redis_client.get(key) or 0) == LIMIT
    assert 0 < redis_client.ttl(key) <= SIGNIN_WINDOW_S
    redis_client.delete(key)  # the minute is over
    assert _sign_in(attacker, _token(make_token, "acme")).status_code == 302
