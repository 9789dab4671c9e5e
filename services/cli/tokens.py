"""``multitune token create``, ``list`` and ``revoke``: client API tokens, managed in the
database directly (no token exists yet to call the API with when the first is created)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from shared.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


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
    from services.api.auth import create_token

    with _session(settings) as session:
        click.echo(create_token(session, client_name or name, name))


def _session(settings: Settings) -> Session:
    """A session of the database, migrated first."""
    from sqlalchemy.orm import Session

    from services.api.db import make_engine
    from services.api.db import migrate

    engine = make_engine(settings.database_url)
    migrate(engine)
    return Session(engine)


@token.command("list")
@click.pass_obj
def list_(settings: Settings) -> None:
    """List client tokens: id, name, client, created, revoked and the last 4 characters of the
    token's SHA-256 digest (the token itself is never stored)."""
    from services.api.auth import list_tokens

    with _session(settings) as session:
        tokens = list_tokens(session)
    rows = [("ID", "NAME", "CLIENT", "CREATED", "REVOKED", "DIGEST")]
    rows += [
        (
            str(t.id),
            t.name,
            t.client,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.created)),
            "yes" if t.revoked else "no",
            f"...{t.digest_tail}",
        )
        for t in tokens
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


@token.command("revoke")
@click.argument("name_or_id")
@click.pass_obj
def revoke(settings: Settings, name_or_id: str) -> None:
    """Revoke the token with this id, or the one with this name: it gets 401 at once on every
    API process (they hear of it through Redis)."""
    from services.api.auth import find_tokens
    from services.api.auth import revoke_tokens

    with _session(settings) as session:
        found = find_tokens(session, name_or_id)
        if not found:
            raise click.ClickException(f"no token has the name or id {name_or_id!r}")
        if len(found) > 1:
            ids = ", ".join(str(t.id) for t in found)
            raise click.ClickException(
                f"{len(found)} tokens are named {name_or_id!r} (ids {ids}); revoke one by id"
            )
        told = revoke_tokens(session, [found[0].id], settings.redis_url)
    click.echo(f"revoked token {found[0].id} ({found[0].name}, client {found[0].client})")
    if not told:
        click.echo(
            "warning: Redis did not answer, so running API processes may accept the token for "
            "up to 30 seconds more",
            err=True,
        )
