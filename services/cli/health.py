"""``multitune health ROLE``: is this host's service of ROLE working? Exit status 0 if so, 1
(with the reason on stderr) if not; compose.yaml's health checks run it.

- ``api``: ``GET /readyz`` answers 200 (database and Redis reachable).
- ``suggester``: its loop touched its liveness file (`services.suggester.liveness`) within
  ``--max-age`` seconds, so it turns, even if it is waiting out an outage.
- ``worker``: the Celery worker ``--name``@this host answers a ping through the broker (its
  consumer is live; a training run does not block it).
- ``flower``: Flower's ``/healthcheck`` on ``--port`` answers.
"""

from __future__ import annotations

import socket
import time

import click
import requests

from shared.settings import Settings


def _api(settings: Settings, timeout_s: float) -> str | None:
    try:
        response = requests.get(f"{settings.api_url}/readyz", timeout=timeout_s)
    except requests.RequestException as exc:
        return f"the API at {settings.api_url} does not answer: {exc}"
    if response.status_code != 200:
        return f"the API is not ready: {response.status_code} {response.text.strip()}"
    return None


def _suggester(settings: Settings, max_age_s: float) -> str | None:
    from services.suggester.liveness import liveness_file

    path = liveness_file(settings.data_dir)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"no liveness file {path}: the suggester has not run on this host"
    if age > max_age_s:
        return f"the suggester's loop last turned {age:.0f}s ago (more than {max_age_s:g}s)"
    return None


def _worker(settings: Settings, name: str, timeout_s: float) -> str | None:
    from celery import Celery

    from shared.celery_config import celery_settings

    node = f"{name}@{socket.gethostname()}"
    app = Celery("multitune-health")
    app.conf.update(celery_settings(settings))
    app.conf.broker_connection_max_retries = 1
    try:
        replies = app.control.ping(destination=[node], timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - any broker failure means not healthy
        return f"cannot ping worker {node}: {type(exc).__name__}: {exc}"
    finally:
        app.close()
    if not any(node in reply for reply in replies or []):
        return f"worker {node} did not answer a ping within {timeout_s:g}s"
    return None


def _flower(port: int, timeout_s: float) -> str | None:
    url = f"http://127.0.0.1:{port}/healthcheck"
    try:
        response = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        return f"Flower at {url} does not answer: {exc}"
    if response.status_code != 200:
        return f"Flower answered {response.status_code}"
    return None


@click.command()
@click.argument("role", type=click.Choice(["api", "suggester", "worker", "flower"]))
@click.option("--name", default="cpu", show_default=True, help="worker: its --name.")
@click.option("--port", default=5555, show_default=True, type=int, help="flower: its port.")
@click.option(
    "--max-age",
    default=60.0,
    show_default=True,
    type=float,
    help="suggester: seconds its loop may go without a pass.",
)
@click.option("--timeout", "timeout_s", default=5.0, show_default=True, type=float)
@click.pass_obj
def health(
    settings: Settings, role: str, name: str, port: int, max_age: float, timeout_s: float
) -> None:
    """Exit 0 if this host's ROLE service works, 1 with the reason if not (health checks)."""
    if role == "api":
        problem = _api(settings, timeout_s)
    elif role == "suggester":
        problem = _suggester(settings, max_age)
    elif role == "worker":
        problem = _worker(settings, name, timeout_s)
    else:
        problem = _flower(port, timeout_s)
    if problem:
        click.echo(f"unhealthy: {problem}", err=True)
        raise SystemExit(1)
    click.echo("healthy")
