"""The unmodified ``sigopt`` 8.8.3 CLI as subprocesses against a live API server (gunicorn,
real HTTP): ``sigopt run`` and ``sigopt optimize`` run a script that reads ``sigopt.params`` and
logs metrics, checkpoints, metadata and an image; the API then holds the runs with their values
and source code, the AI experiment reached its budget, and the image downloads byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.api_tests.test_artifacts import png
from tests.services import Platform

PROJECT = "cli-tests"

TRAIN = '''"""An ordinary script written for `sigopt run` / `sigopt optimize`."""
import sigopt

x = sigopt.params.setdefault("x", 0.25)
layers = sigopt.params.setdefault("layers", 2)
for epoch in range(3):
    sigopt.log_checkpoint({"loss": 1.0 / (epoch + 1 + x)})
sigopt.log_metadata("note", "trained by train.py")
sigopt.log_metric("accuracy", 1.0 - (x - 0.3) ** 2 + 0.01 * layers)
sigopt.log_image("plot.png", name="plot")
print("trained with", x, layers)
'''

EXPERIMENT = """name: cli optimize
parameters:
  - name: x
    type: double
    bounds:
      min: 0.0
      max: 1.0
  - name: layers
    type: int
    bounds:
      min: 1
      max: 4
metrics:
  - name: accuracy
    objective: maximize
budget: 3
"""


class Api:
    """Plain HTTP calls with a token (the checks go around the client under test)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.auth = (token, "")

    def get(self, path: str, **params: Any) -> Any:
        response = self.session.get(f"{self.url}/v1{path}", params=params, timeout=30)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.session.post(f"{self.url}/v1{path}", json=body, timeout=30)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()


@pytest.fixture()
def live(make_platform: Callable[..., Platform], tmp_path: Path) -> tuple[Platform, str, Api]:
    platform = make_platform(suggestion_wait_s="1")
    platform.start_api()
    token = platform.token("acme")
    api = Api(platform.api_url, token)
    client = api.get("/tokens/self")["client"]
    api.post(f"/clients/{client}/projects", {"id": PROJECT, "name": "CLI tests"})
    return platform, token, api


def sigopt_cli(
    platform: Platform, token: str, workdir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """``sigopt ARGS`` as a user runs it in an activated virtual environment (``python`` is
    this one): the installed console script, configured only by the environment, in the
    directory of the script."""
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "SIGOPT_API_URL": platform.api_url,
        "SIGOPT_API_TOKEN": token,
        "SIGOPT_PROJECT": PROJECT,
        "SIGOPT_HOME": str(workdir / ".sigopt"),
    }
    command = [str(bin_dir / "sigopt"), *args]
    done = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return done


def _workdir(tmp_path: Path, image: bytes) -> Path:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "train.py").write_text(TRAIN)
    (workdir / "experiment.yml").write_text(EXPERIMENT)
    (workdir / "plot.png").write_bytes(image)
    return workdir


def _value(run: dict[str, Any], metric: str) -> float:
    values = run["values"]
    entry = (
        values[metric]
        if isinstance(values, dict)
        else next(v for v in values if v["name"] == metric)
    )
    return float(entry["value"])


def _check_run(api: Api, run: dict[str, Any], image: bytes) -> None:
    """A run the script trained: values, params, checkpoints, source code, its image."""
    assert run["state"] == "completed", run
    x, layers = run["assignments"]["x"], run["assignments"]["layers"]
    assert isinstance(layers, int)
    assert _value(run, "accuracy") == pytest.approx(1.0 - (x - 0.3) ** 2 + 0.01 * layers)
    assert run["metadata"]["note"] == "trained by train.py"
    assert run["source_code"]["content"] == TRAIN
    checkpoints = api.get(f"/training_runs/{run['id']}/checkpoints")
    assert checkpoints["count"] == 3
    assert len(run["files"]) == 1
    described = api.get(f"/files/{run['files'][0]}")
    assert described["name"] == "plot" and described["content_type"] == "image/png"
    downloaded = requests.get(described["download"]["url"], timeout=30)  # no token needed
    assert downloaded.status_code == 200 and downloaded.content == image


@pytest.mark.slow
def test_sigopt_run_and_optimize(live: tuple[Platform, str, Api], tmp_path: Path) -> None:
    platform, token, api = live
    client = api.get("/tokens/self")["client"]
    image = png(12, 10)
    workdir = _workdir(tmp_path, image)

    done = sigopt_cli(
        platform, token, workdir, "run", "--source-file", "train.py", "python", "train.py"
    )
    assert "trained with 0.25 2" in done.stdout
    runs = api.get(f"/clients/{client}/projects/{PROJECT}/training_runs")
    assert runs["count"] == 1
    (single,) = runs["data"]
    assert single["assignments"] == {"x": 0.25, "layers": 2}
    assert single["experiment"] is None
    _check_run(api, single, image)

    sigopt_cli(
        platform,
        token,
        workdir,
        "optimize",
        "-e",
        "experiment.yml",
        "--source-file",
        "train.py",
        "python",
        "train.py",
    )
    every = api.get(f"/clients/{client}/projects/{PROJECT}/training_runs")["data"]
    (experiment_id,) = {r["experiment"] for r in every if r["experiment"] is not None}
    experiment = api.get(f"/aiexperiments/{experiment_id}")
    assert experiment["project"] == PROJECT
    assert experiment["progress"]["remaining_budget"] <= 0
    assert experiment["progress"]["finished_run_count"] == 3
    assert experiment["progress"]["total_run_count"] == 3
    filters = f'[{{"field":"experiment","operator":"==","value":"{experiment_id}"}}]'
    optimized = api.get(f"/clients/{client}/projects/{PROJECT}/training_runs", filters=filters)
    assert optimized["count"] == 3
    for run in optimized["data"]:
        assert run["experiment"] == experiment_id
        assert 0 <= run["assignments"]["x"] <= 1 and 1 <= run["assignments"]["layers"] <= 4
        _check_run(api, run, image)
    assert len({r["files"][0] for r in optimized["data"]}) == 3  # one file per run
