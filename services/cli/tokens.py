"""``multitune token create``: bootstrap a client API token (writes the database directly,
since no token exists yet to call the API with)."""

from __future__ import annotations

import click

from shared.settings import Settings


@click.group()
def token() -> None:
    """Manage API tokens."""


@token.command("create")
@click.option("--name", required=True, help="Token name.")
@click.option(
    "--client",
    "client_name",
    default=None,
    help="Client (tenant) the token belongs to; created if new. Defaults to --name.",
)
@click.pass_obj
def create(settings: Settings, name: str, client_name: str | None) -> None:
    """Print a new API token."""
    from sqlalchemy.orm import Session

    from services.api.auth import create_token
    from services.api.db import make_engine
    from services.api.db import migrate

    engine = make_engine(settings.database_url)
    migrate(engine)
    with Session(engine) as session:
        click.echo(create_token(session, client_name or name, name))
