"""schemathesis, the real tool (its command line), against the live API: the app serves its own
``/v1/openapi.json`` over HTTP on SQLite and PostgreSQL, and schemathesis loads it from there
with a valid client token and runs every phase (examples, coverage, fuzzing and the stateful
phase that follows the document's links) over every operation, checking that nothing answers
5xx, that every status, media type and body is the one the document describes.

The default configuration (`DEFAULT`) runs here; ``python bench/fuzz.py`` runs the `SLOW` one,
with many more examples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask import Response
from flask import request
from flask.testing import FlaskClient
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server

from services.api import create_app
from services.api.auth import create_token
from services.api.db import get_session
from shared.settings import Settings
from tests.inprocess import empty_database

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
#: Where schemathesis takes the token from (its configuration file names the variable, so the
#: token is on no command line).
TOKEN_VARIABLE = "MULTITUNE_FUZZ_TOKEN"

#: The operation that serves the document itself.
DOCUMENT = ("GET", "/v1/openapi.json")
#: The path of every object kind's own operations, which the stateful phase must reach with a
#: success: the objects a create made, found again through the document's links.
OBJECT_PATHS = {
    "experiment": "/v1/experiments/{experiment_id}",
    "suggestion": "/v1/experiments/{experiment_id}/suggestions/{suggestion_id}",
    "observation": "/v1/experiments/{experiment_id}/observations/{observation_id}",
    "training run": "/v1/training_runs/{run_id}",
    "project": "/v1/clients/{client}/projects/{project}",
    "AI experiment": "/v1/aiexperiments/{experiment_id}",
    "file": "/v1/files/{file_id}",
}


@dataclass(frozen=True)
class FuzzConfig:
    #: Test cases per operation and phase (schemathesis' ``--max-examples``).
    max_examples: int
    #: The longest sequence of calls of the stateful phase.
    max_steps: int
    #: Fixed in the default configuration, so that a run is repeatable.
    seed: int | None


DEFAULT = FuzzConfig(max_examples=10, max_steps=15, seed=19)
SLOW = FuzzConfig(max_examples=200, max_steps=50, seed=None)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class LiveApi:
    app: Flask
    url: str
    token: str
    #: (method, OpenAPI path, status) of every /v1 request served.
    answered: Counter[tuple[str, str, int]]


def _record_answers(app: Flask, answered: Counter[tuple[str, str, int]]) -> None:
    lock = threading.Lock()

    @app.after_request
    def _record(response: Response) -> Response:
        rule = request.url_rule
        if rule is not None and rule.rule.startswith("/v1/"):
            path = rule.rule
            for name in rule.arguments:
                path = path.replace(f"<id:{name}>", "{" + name + "}")
                path = path.replace(f"<{name}>", "{" + name + "}")
            with lock:
                answered[(request.method, path, response.status_code)] += 1
        return response


@contextmanager
def live_api(data_dir: Path, database_url: str, redis_url: str) -> Iterator[LiveApi]:
    """The API app on a fresh database, served over HTTP on a free port of 127.0.0.1, and a
    token of client "fuzz"."""
    settings = Settings.from_env(
        env={},
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        service_token="fuzz-service-token",
        suggestion_wait_s=0.2,
        log_level="WARNING",
    )
    app = create_app(settings, start_relay=False)
    answered: Counter[tuple[str, str, int]] = Counter()
    _record_answers(app, answered)
    with app.app_context():
        empty_database(get_session())
        token = create_token(get_session(), "fuzz", "fuzz")
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield LiveApi(app, f"http://127.0.0.1:{server.server_port}", token, answered)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        app.extensions["redis"].close()
        app.extensions["db_engine"].dispose()


def seed_objects(api: LiveApi) -> dict[str, list[str]]:
    """One object of every kind, made through the API with the fuzzer's token: the ids each
    path parameter may take (schemathesis' dictionaries), so that the fuzzing phase reaches
    real objects, not only 404s. ``ai_experiment_id`` is for the ``/v1/aiexperiments`` paths.

    Everything is made twice and the second set's ids returned: the coverage phase tries the
    smallest id its pattern allows (1) on every operation, deletes included, so the first set
    is theirs."""
    _seed_once(api, "decoy")
    return _seed_once(api, "seed")


def _seed_once(api: LiveApi, name: str) -> dict[str, list[str]]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api.token}"

    def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = session.request(method, f"{api.url}{path}", timeout=30, **kwargs)
        assert response.status_code == 200, (method, path, response.text)
        body: dict[str, Any] = response.json()
        return body

    definition = {
        "name": name,
        "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
        "metrics": [{"name": "value"}],
        "observation_budget": 1000,
    }
    experiment = call("POST", "/v1/experiments", json=definition)["id"]
    suggestion = call("POST", f"/v1/experiments/{experiment}/suggestions")["id"]
    observation = call(
        "POST",
        f"/v1/experiments/{experiment}/observations",
        json={"suggestion": suggestion, "value": 1.0},
    )["id"]
    queued = call(
        "POST", f"/v1/experiments/{experiment}/queued_suggestions", json={"assignments": {"x": 0}}
    )["id"]
    run = call(
        "POST",
        f"/v1/experiments/{experiment}/training_runs",
        json={"suggestion": {"assignments": {"x": 0.25}}},
    )["id"]
    client = call("GET", "/v1/tokens/self")["client"]
    project = call("POST", f"/v1/clients/{client}/projects", json={"id": name})["id"]
    budget = {k: v for k, v in definition.items() if k != "observation_budget"}
    ai = call(
        "POST",
        f"/v1/clients/{client}/projects/{project}/aiexperiments",
        json={**budget, "budget": 1000},
    )["id"]
    ai_run = call("POST", f"/v1/aiexperiments/{ai}/training_runs", json={})["id"]
    file = call(
        "POST",
        f"/v1/training_runs/{run}/files",
        params={"name": f"{name}.txt"},
        data=name.encode(),
        headers={"Content-Type": "text/plain"},
    )["id"]
    return {
        "experiment_id": [experiment, ai],
        "ai_experiment_id": [ai],
        "suggestion_id": [suggestion],
        "observation_id": [observation],
        "queued_id": [queued],
        "run_id": [run, ai_run],
        "file_id": [file],
        "client": [client],
        "project": [project],
    }


def config_text(config: FuzzConfig, ids: dict[str, list[str]]) -> str:
    """schemathesis.toml: the token from `TOKEN_VARIABLE`, the stateful phase's length, and
    path parameters that take a seeded id 9 times in 10 (else whatever schemathesis makes).
    DELETEs get no seeded ids (the stateful phase deletes what it made), so that the seeded
    objects last the whole run."""

    def bindings(overrides: dict[str, str]) -> list[str]:
        names = {n: n for n in ids if n != "ai_experiment_id"} | overrides
        return [
            f'"path.{name}" = {{ dictionary = "{dictionary}", probability = 0.9 }}'
            for name, dictionary in names.items()
        ]

    ai = "^/v1/aiexperiments/"
    return (
        "\n".join(
            [
                f'headers = {{ Authorization = "Bearer ${{{TOKEN_VARIABLE}}}" }}',
                # The largest batches (10,000 runs) take seconds, more on a busy machine.
                "request-timeout = 120",
                "[phases.stateful]",
                f"max-steps = {config.max_steps}",
                "[dictionaries]",
                *(f"{name} = {{ values = {json.dumps(values)} }}" for name, values in ids.items()),
                "[[operations]]",
                f'include-path-regex = "{ai}"',
                'exclude-method = "DELETE"',
                "[operations.parameters]",
                *bindings({"experiment_id": "ai_experiment_id"}),
                "[[operations]]",
                f'exclude-path-regex = "{ai}"',
                'exclude-method = "DELETE"',
                "[operations.parameters]",
                *bindings({}),
            ]
        )
        + "\n"
    )


def run_schemathesis(
    api: LiveApi, config: FuzzConfig, workdir: Path, timeout_s: float = 1800
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``schemathesis run`` on the live app's own document, with `seed_objects` made first;
    returns the process (its output) and its JSON report."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "schemathesis.toml"
    config_file.write_text(config_text(config, seed_objects(api)))
    report = workdir / "report.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config_file),
        "run",
        f"{api.url}/v1/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(config.max_examples),
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--workers",
        "1",
        "--no-color",
    ]
    if config.seed is not None:
        command += ["--seed", str(config.seed)]
    env = {**os.environ, TOKEN_VARIABLE: api.token}
    result = subprocess.run(
        command, env=env, cwd=workdir, capture_output=True, text=True, timeout=timeout_s
    )
    (workdir / "output.txt").write_text(result.stdout + result.stderr)
    return result, json.loads(report.read_text()) if report.exists() else {}


def summary(result: subprocess.CompletedProcess[str], report: dict[str, Any]) -> str:
    """What to show when a run found something: its errors, failures and output's end."""
    found = json.dumps({k: report.get(k) for k in ("errors", "failures", "phases")}, indent=1)
    return f"{found[:20000]}\n{result.stdout[-20000:]}\n{result.stderr[-5000:]}"


def documented_operations(api: LiveApi) -> set[tuple[str, str]]:
    doc = requests.get(
        f"{api.url}/v1/openapi.json", headers={"Authorization": f"Bearer {api.token}"}, timeout=10
    ).json()
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def successes(api: LiveApi) -> set[tuple[str, str]]:
    return {(m, p) for (m, p, status) in api.answered if 200 <= status < 300}


@pytest.fixture(params=["sqlite", "postgresql"])
def fuzz_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fuzz.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_schemathesis_finds_nothing(
    tmp_path: Path, fuzz_database_url: str, redis_url: str, redis_client: Any
) -> None:
    with live_api(tmp_path / "data", fuzz_database_url, redis_url) as api:
        # Another client's experiment, which nothing the fuzzer sends may change or reveal.
        with api.app.app_context():
            other = create_token(get_session(), "bystander", "bystander")
        headers = {"Authorization": f"Bearer {other}"}
        body = {
            "name": "kept",
            "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
            "observation_budget": 5,
        }
        kept = requests.post(f"{api.url}/v1/experiments", json=body, headers=headers, timeout=10)
        assert kept.status_code == 200, kept.text
        eid = kept.json()["id"]
        observed = requests.post(
            f"{api.url}/v1/experiments/{eid}/observations",
            json={"assignments": {"x": 0.5}, "value": 1.0},
            headers=headers,
            timeout=10,
        )
        assert observed.status_code == 200, observed.text

        result, report = run_schemathesis(api, DEFAULT, tmp_path / "schemathesis")
        output = summary(result, report)
        assert report, output
        assert result.returncode == 0 and report["failures"] == [], output
        assert report["errors"] == [], output
        # Every operation was called (schemathesis leaves out the one it loaded the document
        # from); the stateful phase made and found again every kind of object.
        called = {(m, p) for (m, p, _) in api.answered}
        documented = documented_operations(api) - {DOCUMENT}
        assert report["operations"]["tested"] == len(documented), output
        assert all(p["status"] == "success" for p in report["phases"].values()), report["phases"]
        assert documented - called == set(), output
        reached = {p for (m, p) in successes(api) if m == "GET"}
        missed = {kind for kind, path in OBJECT_PATHS.items() if path not in reached}
        assert not missed, (missed, sorted(api.answered.items()))

        # Nothing of the other client's was lost.
        after = requests.get(f"{api.url}/v1/experiments/{eid}", headers=headers, timeout=10)
        assert after.status_code == 200
        assert after.json()["progress"]["observation_count"] == 1
        assert after.json()["name"] == "kept"


def test_the_document_describes_every_answer_and_links_creates_to_their_objects(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    """What the fuzz test relies on: every operation's success has a schema (but the bytes of a
    file), and every create links to the operations on what it created."""
    doc = client.get("/v1/openapi.json", headers=auth).json
    links: dict[tuple[str, str], set[str]] = {}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            answers = operation["responses"]
            success = [s for s in answers if s.startswith("2") and "content" in answers[s]]
            if method == "delete":
                assert list(s for s in answers if s.startswith("2")) == ["204"], path
                continue
            assert success, (method, path)
            for status in success:
                for media_type, body in answers[status]["content"].items():
                    assert "schema" in body, (method, path)
                    if media_type == "application/json":
                        assert body["schema"], (method, path)
                links[(method, path)] = set(answers[status].get("links", {}))
            assert {"400", "401", "404", "429", "503"} <= set(answers), (method, path)
    assert doc["paths"]["/v1/training_runs/{run_id}/tokens"]["post"]["responses"].keys() >= {"201"}
    expected = {
        ("post", "/v1/experiments"): "get_v1_experiments__experiment_id__observations",
        ("post", "/v1/experiments/{experiment_id}/suggestions"): (
            "get_v1_experiments__experiment_id__suggestions__suggestion_id_"
        ),
        ("post", "/v1/experiments/{experiment_id}/training_runs"): "get_v1_training_runs__run_id_",
        ("get", "/v1/tokens/self"): "post_v1_clients__client__projects",
        ("post", "/v1/clients/{client}/projects"): (
            "post_v1_clients__client__projects__project__aiexperiments"
        ),
        ("post", "/v1/clients/{client}/projects/{project}/aiexperiments"): (
            "get_v1_aiexperiments__experiment_id_"
        ),
        ("post", "/v1/training_runs/{run_id}/files"): "get_v1_files__file_id_",
    }
    for source, target in expected.items():
        assert target in links[source], (source, sorted(links[source]))
    # A read of an object it did not create links nowhere.
    assert links[("get", "/v1/experiments/{experiment_id}")] == set()
