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

token_option = click.option(
    "--token", envvar="MULTITUNE_TOKEN", required=True, help="Client API token (MULTITUNE_TOKEN)."
)


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
        spent = (
            f"{progress['observation_budget_consumed']:g}/{budget:g}"
            if budget
            else (f"{progress['observation_budget_consumed']:g}")
        )
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
    click.echo(
        f"budget consumed: {progress['observation_budget_consumed']:g}"
        + (f" of {e['observation_budget']:g}" if e["observation_budget"] else "")
    )
    best = _call(client.get, f"/experiments/{experiment_id}/best_assignments")["data"]
    if not best:
        click.echo("best: none yet" + (" at full cost" if e.get("tasks") else ""))
    for b in best:
        values = ", ".join(f"{v['name']}={v['value']:.6g}" for v in b["values"])
        click.echo(f"best: {values}  {json.dumps(b['assignments'])}")
    _show_importance(client, experiment_id, multitask=bool(e.get("tasks")))
    _show_best_vs_cost(client, experiment_id)


def _bar(share: float, width: int = 30) -> str:
    return "#" * max(0, round(share * width))


def _show_importance(client: ApiClient, experiment_id: str, multitask: bool) -> None:
    """Parameter importance from full-cost observations (and across tasks when multitask)."""
    modes = [("full", "full-cost observations")] + ([("all", "all tasks")] if multitask else [])
    path = f"/experiments/{experiment_id}/analytics/importance"
    for mode, label in modes:
        result = _call(lambda mode=mode: client.get(path, task=mode))
        click.echo(f"\nimportance ({label}, {result['observation_count']} observations):")
        if not result["data"]:
            click.echo(f"  {result.get('message') or 'not available yet'}")
            continue
        width = max(len(d["parameter"]) for d in result["data"])
        for d in result["data"]:
            click.echo(
                f"  {d['parameter']:<{width}}  {d['importance'] * 100:5.1f}%  "
                f"{_bar(d['importance'])}"
            )
        if result.get("task_importance") is not None:
            click.echo(
                f"  (the task explains {result['task_importance'] * 100:.1f}%; "
                "parameter shares rescaled to 100%)"
            )
        click.echo("  method: " + result["method"])


def _show_best_vs_cost(client: ApiClient, experiment_id: str) -> None:
    """The cost spent each time the best full-cost value improved."""
    history = _call(client.get, f"/experiments/{experiment_id}/analytics/history")
    steps = history["best_vs_cost"]
    click.echo(
        f"\nbest full-cost {history['metric']} ({history['objective']}) vs cumulative cost:"
    )
    if not steps:
        click.echo("  no full-cost observation yet")
        return
    click.echo(f"  {'cost':>10}  {'observations':>12}  {'best':>12}")
    for step in steps:
        click.echo(
            f"  {step['cumulative_cost']:>10.4g}  {step['observations']:>12}  "
            f"{step['best_full_cost']:>12.6g}"
        )
    if history["data"]:
        last = history["data"][-1]
        click.echo(
            f"  {last['cumulative_cost']:>10.4g}  {history['count']:>12}  "
            f"{last['best_full_cost']:>12.6g}  (now)"
        )
