"""``multitune token list`` and ``multitune token revoke`` against a live ``multitune api`` of
two gunicorn processes: the list never shows a secret, and a revoked token gets 401 from every
process at once, though each had it in its token cache, with Redis up or away."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import requests

from tests.services import Platform
from tests.services import RedisServer


def _status(platform: Platform, token: str) -> int:
    """``GET /v1/tokens/self`` on a connection of its own (requests spread over processes)."""
    return requests.get(
        f"{platform.api_url}/v1/tokens/self",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).status_code


def _token_named(platform: Platform, name: str) -> str:
    created = platform.cli("token", "create", "--name", name, "--client", "acme")
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def test_list_shows_tokens_but_never_their_secrets(platform: Platform) -> None:
    alice = _token_named(platform, "alice")
    bob = _token_named(platform, "bob")
    listed = platform.cli("token", "list")
    assert listed.returncode == 0, listed.stderr
    assert alice not in listed.stdout and bob not in listed.stdout
    lines = listed.stdout.strip().splitlines()
    assert lines[0].split() == ["ID", "NAME", "CLIENT", "CREATED", "REVOKED", "DIGEST"]
    rows = {line.split()[1]: line.split() for line in lines[1:]}
    assert rows["alice"][2] == "acme" and rows["alice"][-2] == "no"
    assert rows["alice"][-1] == "..." + hashlib.sha256(alice.encode()).hexdigest()[-4:]
    assert rows["bob"][-1] == "..." + hashlib.sha256(bob.encode()).hexdigest()[-4:]


def test_revoke_takes_effect_at_once_on_every_process(platform: Platform) -> None:
    platform.start_api(workers=2)
    alice = _token_named(platform, "alice")
    bob = _token_named(platform, "bob")
    # Both processes have alice cached as valid.
    assert [_status(platform, alice) for _ in range(12)] == [200] * 12
    revoked = platform.cli("token", "revoke", "alice")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked token" in revoked.stdout and revoked.stderr == ""
    assert [_status(platform, alice) for _ in range(12)] == [401] * 12
    assert _status(platform, bob) == 200
    listed = platform.cli("token", "list").stdout
    assert next(line for line in listed.splitlines() if " alice " in line).split()[-2] == "yes"
    # By id too; an unknown name or id is an error.
    bob_id = next(line for line in listed.splitlines() if " bob " in line).split()[0]
    assert platform.cli("token", "revoke", bob_id).returncode == 0
    assert _status(platform, bob) == 401
    missing = platform.cli("token", "revoke", "nobody")
    assert missing.returncode != 0 and "no token" in missing.stderr


def test_a_name_shared_by_two_tokens_is_revoked_by_id_only(platform: Platform) -> None:
    first = _token_named(platform, "ci")
    _token_named(platform, "ci")
    refused = platform.cli("token", "revoke", "ci")
    assert refused.returncode != 0 and "revoke one by id" in refused.stderr
    platform.start_api()
    assert _status(platform, first) == 200


def test_revoke_with_redis_away_still_takes_effect_at_once(tmp_path: Path) -> None:
    """While the API cannot read Redis it checks every token in the database, and the revoking
    command says it could not tell the API processes."""
    server = RedisServer()
    server.start()
    platform = Platform(tmp_path, server.url)
    try:
        platform.start_api(workers=2)
        alice = _token_named(platform, "alice")
        assert [_status(platform, alice) for _ in range(8)] == [200] * 8
        server.stop()
        time.sleep(0.5)
        assert [_status(platform, alice) for _ in range(8)] == [200] * 8
        revoked = platform.cli("token", "revoke", "alice")
        assert revoked.returncode == 0, revoked.stderr
        assert "30 seconds" in revoked.stderr
        assert [_status(platform, alice) for _ in range(8)] == [401] * 8
    finally:
        platform.stop_all()
        server.close()
