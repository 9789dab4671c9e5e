"""Tenants and run-scoped tokens with the unmodified ``sigopt`` client over real HTTP: another
client's token gets 404 on every object of the first (projects, AI experiments, runs,
checkpoints, files), and a run-scoped token can touch only its own run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sigopt import Connection
from sigopt.factory import SigOptFactory
from sigopt.objects import TrainingRun as SigoptTrainingRun
from sigopt.run_context import RunContext

from services.api.auth import create_token
from services.api.db import get_session
from tests.api_tests.test_artifacts import png
from tests.inprocess import SERVICE_TOKEN
from tests.inprocess import InProcessApi

PROJECT = "isolated"
#: Valid bodies: a refusal must come from the scoping, not from validation.
INTRUDER_EXPERIMENT = {
    "name": "intruder",
    "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [{"name": "score"}],
    "budget": 2,
}
FILE_DECLARATION = {
    "content_length": 4,
    "content_md5": "1B2M2Y8AsgTpgAmY7PhCfg==",
    "content_type": "image/png",
    "name": "x.png",
}


def _connection(api: InProcessApi, token: str) -> Connection:
    connection = Connection(client_token=token)
    connection.set_api_url(api.url)
    return connection


def _call(api: InProcessApi, token: str, method: str, path: str, body: Any = None) -> Any:
    return requests.request(method, f"{api.url}/v1{path}", json=body, auth=(token, ""), timeout=30)


@dataclass
class Tenant:
    """What client "acme" made through the sigopt client."""

    token: str
    client: str
    experiment: str
    runs: list[str]
    open_run: str
    files: list[str]
    image: bytes


@pytest.fixture()
def acme(inprocess_api: InProcessApi, tmp_path: Path) -> Iterator[Tenant]:
    with inprocess_api.app.app_context():
        token = create_token(get_session(), "acme", "isolation")
    factory = SigOptFactory(PROJECT, connection=_connection(inprocess_api, token))
    factory.create_project(name="Isolated")
    image = png(6, 5)
    path = tmp_path / "plot.png"
    path.write_bytes(image)
    experiment = factory.create_experiment(
        name="isolated experiment",
        parameters=[{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
        metrics=[{"name": "score", "objective": "maximize"}],
        budget=2,
    )
    runs = []
    for run in experiment.loop():
        with run:
            run.log_checkpoint({"score": 0.1})
            run.log_metric("score", run.params.x)
            run.log_image(str(path), name="plot")
        runs.append(str(run.id))
    open_run = factory.create_run(name="still running")
    open_run.log_metric("score", 0.5)
    client = str(_call(inprocess_api, token, "GET", "/tokens/self").json()["client"])
    files = [
        f
        for r in runs
        for f in _call(inprocess_api, token, "GET", f"/training_runs/{r}").json()["files"]
    ]
    assert len(files) == 2
    yield Tenant(
        token=token,
        client=client,
        experiment=str(experiment.id),
        runs=runs,
        open_run=str(open_run.id),
        files=files,
        image=image,
    )


def test_another_clients_token_gets_404_on_every_object(
    inprocess_api: InProcessApi, acme: Tenant
) -> None:
    with inprocess_api.app.app_context():
        other = create_token(get_session(), "globex", "isolation")
    project = f"/clients/{acme.client}/projects/{PROJECT}"
    run, file = acme.runs[0], acme.files[0]
    filters = json.dumps([{"field": "experiment", "operator": "==", "value": acme.experiment}])
    calls: list[tuple[str, str, Any]] = [
        ("GET", project, None),
        ("GET", f"{project}/training_runs", None),
        ("GET", f"{project}/training_runs?filters={filters}", None),
        ("POST", f"{project}/training_runs", {"name": "intruder"}),
        ("POST", f"{project}/aiexperiments", INTRUDER_EXPERIMENT),
        ("GET", f"/aiexperiments/{acme.experiment}", None),
        ("PUT", f"/aiexperiments/{acme.experiment}", {"name": "renamed"}),
        ("DELETE", f"/aiexperiments/{acme.experiment}", None),
        ("POST", f"/aiexperiments/{acme.experiment}/training_runs", {"name": "intruder"}),
        ("GET", f"/aiexperiments/{acme.experiment}/best_training_runs", None),
        ("GET", f"/training_runs/{run}", None),
        ("PUT", f"/training_runs/{run}", {"name": "renamed"}),
        ("MERGE", f"/training_runs/{run}", {"metadata": {"k": "v"}}),
        ("DELETE", f"/training_runs/{run}", None),
        ("GET", f"/training_runs/{run}/checkpoints", None),
        ("POST", f"/training_runs/{run}/checkpoints", {"values": [{"name": "s", "value": 1}]}),
        ("GET", f"/training_runs/{run}/files", None),
        ("POST", f"/training_runs/{run}/files", FILE_DECLARATION),
        ("GET", f"/files/{file}", None),
        ("GET", f"/files/{file}/content", None),
        ("DELETE", f"/files/{file}", None),
    ]
    for method, path, body in calls:
        response = _call(inprocess_api, other, method, path, body)
        assert response.status_code == 404, (method, path, response.status_code, response.text)

    # The same project id is free in another client, and nothing of acme's changed.
    factory = SigOptFactory(PROJECT, connection=_connection(inprocess_api, other))
    factory.create_project(name="Globex's own")
    experiment = _call(inprocess_api, acme.token, "GET", f"/aiexperiments/{acme.experiment}")
    assert experiment.status_code == 200 and experiment.json()["name"] == "isolated experiment"
    for r in acme.runs:
        fetched = _call(inprocess_api, acme.token, "GET", f"/training_runs/{r}").json()
        assert fetched["state"] == "completed" and len(fetched["files"]) == 1
    described = _call(inprocess_api, acme.token, "GET", f"/files/{file}").json()
    assert requests.get(described["download"]["url"], timeout=30).content == acme.image


def test_a_run_scoped_token_touches_only_its_own_run(
    inprocess_api: InProcessApi, acme: Tenant, tmp_path: Path
) -> None:
    minted = requests.post(
        f"{inprocess_api.url}/v1/training_runs/{acme.open_run}/tokens",
        json={"attempt": 1},
        headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
        timeout=30,
    )
    assert minted.status_code == 201, minted.text
    scoped = minted.json()["token"]

    # The client library works on its run with it, as a script on a worker would.
    connection = _connection(inprocess_api, scoped)
    run = connection.training_runs(acme.open_run).fetch()
    context = RunContext(connection, SigoptTrainingRun(run.to_json()))
    context.log_metric("score", 0.75)
    context.log_checkpoint({"score": 0.7})
    path = tmp_path / "scoped.png"
    path.write_bytes(png(3, 3))
    context.log_image(str(path), name="scoped")
    fetched = _call(inprocess_api, acme.token, "GET", f"/training_runs/{acme.open_run}").json()
    assert fetched["values"]["score"]["value"] == 0.75 and len(fetched["files"]) == 1
    assert _call(inprocess_api, scoped, "GET", "/tokens/self").status_code == 200

    # Nothing else: the owner's other runs and files are not found, other calls forbidden.
    project = f"/clients/{acme.client}/projects/{PROJECT}"
    for method, path in [
        ("GET", f"/training_runs/{acme.runs[0]}"),
        ("MERGE", f"/training_runs/{acme.runs[0]}"),
        ("GET", f"/training_runs/{acme.runs[0]}/checkpoints"),
        ("GET", f"/files/{acme.files[0]}"),
    ]:
        response = _call(inprocess_api, scoped, method, path, {})
        assert response.status_code == 404, (method, path, response.text)
    for method, path in [
        ("GET", project),
        ("GET", f"{project}/training_runs"),
        ("POST", f"{project}/training_runs"),
        ("GET", f"/aiexperiments/{acme.experiment}"),
        ("POST", f"/aiexperiments/{acme.experiment}/training_runs"),
        ("DELETE", f"/training_runs/{acme.open_run}"),
        ("POST", f"/training_runs/{acme.open_run}/tokens"),
    ]:
        response = _call(inprocess_api, scoped, method, path, {})
        assert response.status_code == 403, (method, path, response.text)

    # Once its run ends, the token is spent.
    ended = _call(
        inprocess_api,
        acme.token,
        "MERGE",
        f"/training_runs/{acme.open_run}",
        {"state": "completed"},
    )
    assert ended.status_code in (200, 204), ended.text
    assert (
        _call(inprocess_api, scoped, "GET", f"/training_runs/{acme.open_run}").status_code == 401
    )
