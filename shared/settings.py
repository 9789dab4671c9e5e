"""Configuration from ``MULTITUNE_*`` environment variables; command-line flags override them.

`Settings.from_env` is called by each service's factory or command, never at import time.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields
from dataclasses import replace
from pathlib import Path
from typing import Any

PREFIX = "MULTITUNE_"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str
    api_url: str
    service_token: str | None
    max_body_bytes: int
    suggestion_wait_s: float
    run_lease_s: float
    heartbeat_s: float
    max_attempts: int
    log_level: str
    #: Signs the dashboard's session cookie; generated into the data dir when unset.
    secret_key: str | None = None
    #: Largest file a training run may upload (artifacts); larger uploads get 413.
    max_artifact_bytes: int = 50 * 1024 * 1024
    #: Where the API keeps run files and checkpoint archives: empty for the data dir, or
    #: ``s3://bucket/prefix`` for an S3-compatible object store (credentials from the usual
    #: AWS environment variables). See docs/checkpoints.md.
    file_store: str = ""
    #: The S3 endpoint of ``file_store`` (MinIO, Ceph, ...); None for AWS's own.
    s3_endpoint_url: str | None = None
    #: Largest checkpoint archive a run may upload; larger uploads get 413.
    max_checkpoint_bytes: int = 64 * 1024**3

    #: Requests a second one API token may send (a token bucket shared by every API process,
    #: in Redis); 0 turns the limit off. The service token is never limited.
    rate_limit: float = 0.0
    #: Requests a token may send at once before `rate_limit` applies.
    rate_limit_burst: int = 100
    #: Failed dashboard sign-ins a minute allowed per client address and per token; then 429.
    #: 0 turns the throttle off.
    signin_failures: int = 5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``MULTITUNE_<FIELD>`` variables; keyword ``overrides`` that are not None win."""
        env = os.environ if env is None else env

        def get(name: str, default: str) -> str:
            return env.get(PREFIX + name.upper(), default)

        data_dir = Path(get("data_dir", str(Path.home() / ".multitune"))).expanduser()
        if overrides.get("data_dir") is not None:
            data_dir = Path(overrides["data_dir"]).expanduser()
        settings = cls(
            data_dir=data_dir,
            database_url=get("database_url", f"sqlite:///{data_dir / 'multitune.db'}"),
            redis_url=get("redis_url", "redis://127.0.0.1:6379/0"),
            api_url=get("api_url", "http://127.0.0.1:8000"),
            service_token=get("service_token", "") or None,
            max_body_bytes=int(get("max_body_bytes", str(8 * 1024 * 1024))),
            suggestion_wait_s=float(get("suggestion_wait_s", "10")),
            run_lease_s=float(get("run_lease_s", "60")),
            heartbeat_s=float(get("heartbeat_s", "5")),
            max_attempts=int(get("max_attempts", "3")),
            log_level=get("log_level", "INFO"),
            secret_key=get("secret_key", "") or None,
            max_artifact_bytes=int(get("max_artifact_bytes", str(50 * 1024 * 1024))),
            file_store=get("file_store", "").strip(),
            s3_endpoint_url=get("s3_endpoint_url", "") or None,
            max_checkpoint_bytes=int(get("max_checkpoint_bytes", str(64 * 1024**3))),
            rate_limit=float(get("rate_limit", "0")),
            rate_limit_burst=int(get("rate_limit_burst", "100")),
            signin_failures=int(get("signin_failures", "5")),
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        given = {k: v for k, v in overrides.items() if v is not None and k != "data_dir"}
        return replace(settings, **given)

    def resolved_service_token(self) -> str:
        """The internal service token: from the environment, else a file in the data dir that
        the first process to need it creates (so ``multitune api`` and ``multitune suggester``
        sharing a data dir agree without configuration)."""
        if self.service_token:
            return self.service_token
        return _shared_secret(self.data_dir / "service_token", "mts_")

    def resolved_secret_key(self) -> str:
        """The key that signs dashboard sessions: ``MULTITUNE_SECRET_KEY``, else a file in the
        data dir created once (so every API worker and restart shares it)."""
        if self.secret_key:
            return self.secret_key
        return _shared_secret(self.data_dir / "secret_key", "")

    def as_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[PREFIX + f.name.upper()] = str(value)
        return out


def _shared_secret(path: Path, prefix: str) -> str:
    """Read the secret in ``path``, or create it atomically (the first process wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            secret = path.read_text().strip()
            if secret:
                return secret
            time.sleep(0.05)
        raise RuntimeError(f"empty secret file {path}") from None
    secret = prefix + secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret
