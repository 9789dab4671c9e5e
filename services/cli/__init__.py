"""The ``multitune`` command line. Global options override ``MULTITUNE_*`` variables."""

from __future__ import annotations

import click

from services.cli import experiments
from services.cli import health
from services.cli import launcher
from services.cli import serve
from services.cli import tokens
from shared.settings import Settings


@click.group()
@click.option("--data-dir", default=None, help="Data directory (MULTITUNE_DATA_DIR).")
@click.option("--database-url", default=None, help="SQLAlchemy URL (MULTITUNE_DATABASE_URL).")
@click.option("--redis-url", default=None, help="Redis URL (MULTITUNE_REDIS_URL).")
@click.option("--api-url", default=None, help="API base URL for clients (MULTITUNE_API_URL).")
@click.pass_context
def main(
    ctx: click.Context,
    data_dir: str | None,
    database_url: str | None,
    redis_url: str | None,
    api_url: str | None,
) -> None:
    """multitune: self-hosted multitask Bayesian optimization."""
    ctx.obj = Settings.from_env(
        data_dir=data_dir, database_url=database_url, redis_url=redis_url, api_url=api_url
    )


for command in (
    *serve.COMMANDS,
    tokens.token,
    experiments.experiments,
    health.health,
    *launcher.COMMANDS,
):
    main.add_command(command)
