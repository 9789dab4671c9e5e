"""``multitune experiments``: create from a YAML/JSON file, list, show (through the HTTP API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from shared.api_client import ApiClient
from shared.api_client import ApiRequestError
from shared.settings import Settings

token_option = click.option("--token", envvar="MULTITUNE_TOKEN", required=True,
                            help="Client API token (MULTITUNE_TOKEN).")


def load_definition(path: Path) -> dict[str, Any]:
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path} does not hold an experiment object")
    return data


def _client(settings: Settings, token: str) -> ApiClient:
    return ApiClient(settings.api_url, token, retry_for_s=5)


def _call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ApiRequestError as exc:
        raise click.ClickException(exc.message) from exc


@click.group()
def experiments() -> None:
    """Create and inspect experiments."""


@experiments.command("create")
@click.option("-f", "--file", "path", required=True, type=click.Path(exists=True, path_type=Path))
@token_option
@click.pass_obj
def create(settings: Settings, path: Path, token: str) -> None:
    """Create an experiment from a YAML or JSON definition; print its id."""
    experiment = _call(_client(settings, token).post, "/experiments", load_definition(path))
    click.echo(experiment["id"])


@experiments.command("list")
@token_option
@click.pass_obj
def list_(settings: Settings, token: str) -> None:
    """One line per experiment: id, state, budget consumed, name."""
    page = _call(_client(settings, token).get, "/experiments")
    for e in page["data"]:
        progress = e["progress"]
        budget = e["observation_budget"]
        spent = f"{progress['observation_budget_consumed']:g}/{budget:g}" if budget else (
            f"{progress['observation_budget_consumed']:g}")
        click.echo(f"{e['id']:>6}  {e['state']:<9} {spent:>12}  {e['name']}")


@experiments.command("show")
@click.argument("experiment_id")
@token_option
@click.pass_obj
def show(settings: Settings, experiment_id: str, token: str) -> None:
    """Progress and best assignments of one experiment."""
    client = _client(settings, token)
    e = _call(client.get, f"/experiments/{experiment_id}")
    progress = e["progress"]
    click.echo(f"experiment {e['id']}: {e['name']} ({e['state']})")
    click.echo(f"observations: {progress['observation_count']}")
    click.echo(f"budget consumed: {progress['observation_budget_consumed']:g}"
               + (f" of {e['observation_budget']:g}" if e["observation_budget"] else ""))
    best = _call(client.get, f"/experiments/{experiment_id}/best_assignments")["data"]
    if not best:
        click.echo("best: none yet" + (" at full cost" if e.get("tasks") else ""))
    for b in best:
        values = ", ".join(f"{v['name']}={v['value']:.6g}" for v in b["values"])
        click.echo(f"best: {values}  {json.dumps(b['assignments'])}")
