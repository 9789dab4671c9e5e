"""Commands that run one service in the foreground: api, suggester, worker, migrate."""

from __future__ import annotations

import os
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
    export(settings)
    run_migrations(make_engine(settings.database_url))

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "timeout": 120,
                "graceful_timeout": 10,
                "keepalive": 30,
                "accesslog": None,
                "loglevel": settings.log_level.lower(),
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from services.api import create_app

            return create_app()

    Server().run()


@click.command()
@click.pass_obj
def suggester(settings: Settings) -> None:
    """Consume events and results from Redis; refill suggestion pools; schedule managed runs."""
    from services.suggester.service import run

    run(settings)


COMMANDS = [migrate, api, suggester]
