"""flaskr-style fixtures around the app factory, run against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from services.api import create_app
from services.api.auth import create_token
from services.api.db import get_session
from shared.settings import Settings
from tests.inprocess import empty_database
from tests.services import free_port


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'api.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture()
def app(database_url: str, redis_url: str, redis_client: Any, tmp_path: Path) -> Iterator[Flask]:
    settings = Settings.from_env(
        env={},
        data_dir=tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        suggestion_wait_s=0.2,
        service_token="service-secret",
        max_body_bytes=256 * 1024,
    )
    app = create_app(settings, start_relay=False)
    with app.app_context():
        empty_database(get_session())
    yield app
    app.extensions["db_engine"].dispose()


@pytest.fixture()
def app_without_redis(tmp_path: Path) -> Iterator[Flask]:
    """The API with its Redis URL pointing at a port nothing listens on."""
    settings = Settings.from_env(
        env={},
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        service_token="service-secret",
    )
    app = create_app(settings, start_relay=False)
    yield app
    app.extensions["db_engine"].dispose()


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def make_token(app: Flask) -> Callable[[str], dict[str, str]]:
    """``make_token("acme")`` -> headers with a fresh token of client "acme"."""

    def make(client_name: str = "acme") -> dict[str, str]:
        with app.app_context():
            token = create_token(get_session(), client_name, "test")
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture()
def auth(make_token: Callable[[str], dict[str, str]]) -> dict[str, str]:
    return make_token("acme")


MULTITASK = {
    "name": "multitask",
    "parameters": [
        {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
        {
            "name": "lr",
            "type": "double",
            "bounds": {"min": 1e-4, "max": 1},
            "transformation": "log",
        },
        {"name": "n", "type": "int", "bounds": {"min": 1, "max": 8}},
        {"name": "opt", "type": "categorical", "categorical_values": ["sgd", "adam"]},
    ],
    "metrics": [{"name": "accuracy", "objective": "maximize"}],
    "tasks": [
        {"name": "short", "cost": 0.25},
        {"name": "medium", "cost": 0.5},
        {"name": "full", "cost": 1.0},
    ],
    "observation_budget": 20,
    "parallel_bandwidth": 2,
}


@pytest.fixture()
def experiment(client: FlaskClient, auth: dict[str, str]) -> dict[str, Any]:
    response = client.post("/v1/experiments", json=MULTITASK, headers=auth)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body
