"""The real API app served in the test process over real HTTP, for fast tests of the suggester
and the workers: they reach it through `ApiClient` exactly as the deployed services reach
gunicorn, with no process to start.

The app runs on a temporary SQLite database and the test Redis database. Its outbox relay
thread is not started: `InProcessApi.relay_events` runs the relay's own `relay_once`, so a test
decides when the events of its writes reach the Redis events stream.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
from flask import Flask
from sqlalchemy import text
from sqlalchemy.orm import Session
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server

from services.api import create_app
from services.api.auth import create_token
from services.api.db import get_session
from services.api.models import Base
from shared.api_client import ApiClient
from shared.messages import TrainRequest
from shared.names import TRAIN_QUEUE_PREFIX
from shared.settings import Settings

SERVICE_TOKEN = "test-service-token"


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class InProcessApi:
    app: Flask
    url: str
    #: The settings the suggester and workers run with (``api_url`` is this server).
    settings: Settings
    #: With the internal service token, as the suggester and the workers call the API.
    service: ApiClient
    #: With a token of client "acme", as a user calls the API.
    user: ApiClient

    def relay_events(self) -> int:
        """Move the outbox to the Redis events stream now; returns how many events moved."""
        moved: int = self.app.extensions["outbox_relay"].relay_once()
        return moved

    def client(self, token: str = SERVICE_TOKEN) -> ApiClient:
        """Another client of this server (closed by the caller)."""
        return ApiClient(self.url, token, retry_for_s=5)


@contextmanager
def serve_api(data_dir: Path, redis_url: str, **settings: Any) -> Iterator[InProcessApi]:
    """Serve a fresh API on 127.0.0.1 (a free port) until the block ends. ``settings``
    override `Settings` fields of both the app and the services."""
    app_settings = Settings.from_env(
        env={},
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'api.db'}",
        redis_url=redis_url,
        service_token=SERVICE_TOKEN,
        suggestion_wait_s=0.2,
        log_level="WARNING",
        **settings,
    )
    app = create_app(app_settings, start_relay=False)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="api-server", daemon=True
    )
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    with app.app_context():
        user_token = create_token(get_session(), "acme", "test")
    service = ApiClient(url, SERVICE_TOKEN, retry_for_s=5)
    user = ApiClient(url, user_token, retry_for_s=5)
    try:
        yield InProcessApi(
            app=app,
            url=url,
            settings=replace(app_settings, api_url=url),
            service=service,
            user=user,
        )
    finally:
        service.close()
        user.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        app.extensions["redis"].close()
        app.extensions["db_engine"].dispose()


def empty_database(session: Session) -> None:
    """Empty every table of a shared PostgreSQL test database, ids restarting at 1 (a SQLite
    database is a fresh file per test)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        session.commit()


#: A managed multitask experiment on BoTorch's AugmentedBranin whose runs train in milliseconds
#: (``sleep_per_cost: 0``): a budget of 3 cost units, 2 runs in flight.
BRANIN: dict[str, Any] = {
    "name": "managed branin",
    "parameters": [
        {"name": "x1", "type": "double", "bounds": {"min": -5, "max": 10}},
        {"name": "x2", "type": "double", "bounds": {"min": 0, "max": 15}},
    ],
    "metrics": [{"name": "value", "objective": "minimize"}],
    "tasks": [{"name": "cheap", "cost": 0.25}, {"name": "full", "cost": 1.0}],
    "observation_budget": 3,
    "parallel_bandwidth": 2,
    "objective": {"name": "augmented_branin", "config": {"sleep_per_cost": 0, "max_epochs": 2}},
}

#: A client-driven single-task experiment (no objective): the suggester fills its pool.
CLIENT_DRIVEN: dict[str, Any] = {
    "name": "client driven",
    "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [{"name": "loss", "objective": "minimize"}],
    "observation_budget": 10,
    "parallel_bandwidth": 2,
}


@dataclass(frozen=True)
class SentTask:
    """A Celery task message as the suggester's `Publisher` left it in the Redis broker."""

    name: str
    task_id: str
    routing_key: str
    #: The positional arguments, as the worker's task function receives them.
    args: list[Any]

    @property
    def request(self) -> TrainRequest:
        return TrainRequest.from_json(self.args[0])


def take_sent_tasks(client: redis.Redis) -> list[SentTask]:
    """Remove and decode every message waiting in the training queues (one per objective),
    oldest first within each queue (as workers would take them). Reads kombu's Redis transport
    format: a JSON envelope per list item, its body base64-encoded JSON ``[args, kwargs,
    embed]``."""
    raws = []
    for queue in sorted(client.scan_iter(match=f"{TRAIN_QUEUE_PREFIX}*", _type="list")):
        while (raw := client.rpop(queue)) is not None:
            raws.append(raw)
    tasks = []
    for raw in raws:
        envelope = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        tasks.append(
            SentTask(
                name=envelope["headers"]["task"],
                task_id=envelope["headers"]["id"],
                routing_key=envelope["properties"]["delivery_info"]["routing_key"],
                args=args,
            )
        )
    return tasks
