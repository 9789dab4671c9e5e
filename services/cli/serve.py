"""Commands that run one service in the foreground: api, suggester, worker, migrate."""

from __future__ import annotations

import gc
import os
import socket
from pathlib import Path
from typing import Any

import click

from shared.settings import Settings


def export(settings: Settings) -> None:
    """Make the settings visible to code that reads the environment (gunicorn workers, Celery)."""
    os.environ.update(settings.as_env())


@click.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Upgrade the database schema to the latest revision (the API also does this on start)."""
    from services.api.db import make_engine
    from services.api.db import migrate as run_migrations

    run_migrations(make_engine(settings.database_url))
    click.echo("database is at the latest revision")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn processes")
@click.option("--threads", default=16, show_default=True, type=int, help="threads per process")
@click.pass_obj
def api(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    """Serve the v1 API with gunicorn."""
    from gunicorn.app.base import BaseApplication

    from services.api.db import make_engine
    from services.api.db import migrate as run_migrations

    settings.resolved_service_token()
    check_port_free(host, port)
    export(settings)
    run_migrations(make_engine(settings.database_url))

    class Server(BaseApplication):
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                # A socket per process (SO_REUSEPORT): the kernel spreads new connections over
                # the processes. On one shared socket the first process to wake accepts them
                # all, and keep-alive clients then stay on it (15 of 16 on one process, seen).
                "reuse_port": True,
                "timeout": 120,
                "graceful_timeout": 10,
                "keepalive": 30,
                "accesslog": None,
                "loglevel": settings.log_level.lower(),
                "control_socket_disable": True,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from services.api import create_app

            app = create_app()
            # The ~150k objects of the loaded app live as long as the process: move them out of
            # the collector's sight, or every full collection walks them all (a 100 ms stall).
            gc.freeze()
            return app

    Server().run()


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on: with SO_REUSEPORT (see `api`) a second
    server would otherwise share the port with the first instead of failing to start."""
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def limit_threads(threads: int) -> None:
    """Cap the math libraries' threads (read when torch is first imported), so that processes
    sharing a machine do not oversubscribe its cores."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)


@click.command()
@click.option(
    "--threads", default=1, show_default=True, type=int, help="Math threads for model fitting."
)
@click.pass_obj
def suggester(settings: Settings, threads: int) -> None:
    """Consume events and results from Redis; refill suggestion pools; schedule managed runs."""
    limit_threads(threads)
    from services.suggester.service import run

    run(settings)


@click.command()
@click.option("--name", default="cpu", show_default=True, help="Worker node name (before @host).")
@click.option(
    "--gpus",
    default=None,
    callback=lambda _ctx, _param, value: gpu_list(value),
    help="Comma-separated GPU indices this worker owns (CUDA_VISIBLE_DEVICES), e.g. 0,1,2,3; "
    "each run trains on all of them (data-parallel where the objective supports it).",
)
@click.option(
    "--threads",
    default=None,
    type=int,
    help="Math threads for training (default: torch's, all cores).",
)
@click.option(
    "--objectives",
    "objectives_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML file of script objectives this worker also provides "
    "(examples/tune-your-script/objectives.yaml).",
)
@click.pass_obj
def worker(
    settings: Settings,
    name: str,
    gpus: str | None,
    threads: int | None,
    objectives_file: Path | None,
) -> None:
    """A Celery worker that trains one run at a time (on all of its --gpus): the built-in
    objectives, those of installed packages (entry points `multitune.objectives`) and the
    script objectives of --objectives. It consumes their queues only and advertises them."""
    import redis

    from services.worker.advert import Advertiser
    from services.worker.advert import make_advert
    from services.worker.advert import node_name
    from services.worker.celery import create_celery
    from services.worker.objectives import Catalog
    from services.worker.objectives import CatalogError
    from services.worker.objectives.scripts import ObjectivesFileError
    from shared.names import train_queue

    if threads is not None:
        limit_threads(threads)

    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    else:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    try:
        catalog = Catalog.discover(objectives_file)
    except (CatalogError, ObjectivesFileError) as exc:
        raise click.ClickException(str(exc)) from exc
    settings.resolved_service_token()
    export(settings)
    app = create_celery(settings, catalog)
    # A fresh child per task frees GPU memory; CPU workers keep their child (and its imports).
    app.conf.worker_max_tasks_per_child = 1 if gpus is not None else None
    node = node_name(name)
    objectives = catalog.names()
    click.echo(f"worker {node} provides: {', '.join(objectives)}")
    advertiser = Advertiser(
        redis.Redis.from_url(settings.redis_url),
        make_advert(node, objectives, catalog.continuable()),
    ).start()
    try:
        app.worker_main(
            [
                "worker",
                "--queues",
                ",".join(train_queue(objective) for objective in objectives),
                "--concurrency",
                "1",
                "--hostname",
                node,
                "--task-events",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                settings.log_level,
            ]
        )
    finally:
        advertiser.stop()


def gpu_list(value: str | None) -> str | None:
    """``--gpus`` normalised (``"0, 1"`` -> ``"0,1"``); distinct non-negative indices only."""
    if value is None:
        return None
    indices = [part.strip() for part in value.split(",")]
    if not all(index.isdigit() for index in indices) or len(set(indices)) != len(indices):
        raise click.BadParameter(
            f"expected distinct GPU indices separated by commas, e.g. 0,1,2,3; got {value!r}"
        )
    return ",".join(indices)


@click.command()
@click.option("--port", default=5555, show_default=True, type=int)
@click.option("--address", default="127.0.0.1", show_default=True)
@click.pass_obj
def flower(settings: Settings, port: int, address: str) -> None:
    """Flower, the Celery monitor (basic auth from FLOWER_BASIC_AUTH=user:password)."""
    from services.worker.celery import create_celery

    export(settings)
    create_celery(settings).start(["flower", f"--port={port}", f"--address={address}"])


COMMANDS = [migrate, api, suggester, worker, flower]
