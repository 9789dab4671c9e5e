"""No secret is ever written to a log. The platform runs as real processes at log level DEBUG
(gunicorn API, suggester, a worker running a script objective with run-scoped tokens), a
managed experiment completes, and clients do what clients do: the sigopt client drives an
experiment, the CLI creates and shows one, a wrong token is refused, the dashboard is signed
into (and a sign-in fails), a file goes up and down its signed URLs. Then every log the
processes wrote, and everything the commands and this test printed, is searched for every
token (client, service, run-scoped) and every URL signature used: none is found."""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from pathlib import Path

import pytest
import requests
import yaml
from sigopt import Connection

from shared.api_client import ApiClient
from tests.services import Platform
from tests.services import wait_for

pytestmark = pytest.mark.slow

#: A script objective that keeps the run-scoped token it was given (so the test knows it), logs
#: a checkpoint and its metric with it.
SCRIPT = """
import os
from pathlib import Path

import sigopt

dump = Path(os.environ["TOKEN_DUMP"])
dump.mkdir(exist_ok=True)
(dump / str(os.getpid())).write_text(os.environ["SIGOPT_API_TOKEN"])
x = float(sigopt.params.x)
sigopt.log_checkpoint({"value": x})
print("trained on x =", x, flush=True)
sigopt.log_metric("value", x)
"""


def _secrets_in(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, secret in secrets.items() if secret in text]


def test_no_token_or_signature_reaches_a_log(
    make_platform: object, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert callable(make_platform)
    platform: Platform = make_platform(
        log_level="DEBUG", run_lease_s="10", heartbeat_s="0.5", suggestion_wait_s="1"
    )
    script = tmp_path / "dump_token.py"
    script.write_text(SCRIPT)
    dump = tmp_path / "run-tokens"
    objectives = tmp_path / "objectives.yaml"
    objectives.write_text(
        yaml.safe_dump(
            {
                "dump_token": {
                    "command": [sys.executable, str(script)],
                    "env": {"TOKEN_DUMP": str(dump)},
                    "max_epochs": 1,
                }
            }
        )
    )
    platform.start_api(workers=2)
    platform.start("suggester", "suggester")
    platform.start("worker", "worker", "--name", "w1", "--objectives", str(objectives))
    token = platform.token("acme")
    secrets = {"client token": token, "service token": platform.env["MULTITUNE_SERVICE_TOKEN"]}
    printed: list[str] = []
    api = ApiClient(platform.api_url, token, retry_for_s=30)

    # A managed experiment on the script objective: the worker mints run-scoped tokens.
    managed = api.post(
        "/experiments",
        {
            "name": "managed",
            "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
            "metrics": [{"name": "value"}],
            "observation_budget": 3,
            "parallel_bandwidth": 2,
            "objective": {"name": "dump_token"},
        },
    )

    # The sigopt client drives an experiment of its own.
    connection = Connection(client_token=token)
    connection.set_api_url(platform.api_url)
    experiment = connection.experiments().create(
        name="client driven",
        parameters=[dict(name="x", type="double", bounds=dict(min=0, max=1))],
        observation_budget=3,
    )
    for _ in range(3):
        suggestion = connection.experiments(experiment.id).suggestions().create()
        connection.experiments(experiment.id).observations().create(
            suggestion=suggestion.id, value=suggestion.assignments["x"]
        )

    # The CLI, a wrong token, the dashboard.
    for args in (
        ("experiments", "create", "-f", str(_experiment_file(tmp_path))),
        ("experiments", "show", str(experiment.id)),
        ("token", "list"),
    ):
        result = platform.cli(*args, token=token)
        assert result.returncode == 0, result.stderr
        printed += [result.stdout, result.stderr]
    wrong = "mt_" + "w" * 43
    secrets["wrong token"] = wrong
    assert (
        requests.get(
            f"{platform.api_url}/v1/experiments", auth=(wrong, ""), timeout=10
        ).status_code
        == 401
    )
    browser = requests.Session()
    for attempt in (wrong, token):
        page = browser.get(f"{platform.api_url}/login", timeout=10).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf, page
        browser.post(
            f"{platform.api_url}/login",
            data={"token": attempt, "csrf": csrf.group(1)},
            timeout=10,
            allow_redirects=False,
        )
    assert browser.get(f"{platform.api_url}/experiments", timeout=10).status_code == 200

    # A file up and down its signed URLs.
    run = api.post(
        f"/experiments/{experiment.id}/training_runs", {"suggestion": {"assignments": {"x": 0.5}}}
    )
    content = b"a file"
    declared = api.post(
        f"/training_runs/{run['id']}/files",
        {
            "name": "notes.txt",
            "content_type": "text/plain",
            "content_length": len(content),
            "content_md5": base64.b64encode(hashlib.md5(content).digest()).decode(),
        },
    )
    upload = declared["upload"]
    put = requests.put(upload["url"], data=content, headers=upload["headers"], timeout=10)
    assert put.status_code == 200, put.text
    download = api.get(f"/files/{declared['id']}")["download"]["url"]
    assert requests.get(download, timeout=10).content == content
    for name, url in (("upload signature", upload["url"]), ("download signature", download)):
        found = re.search(r"signature=([^&]+)", url)
        assert found
        secrets[name] = found.group(1)

    wait_for(
        lambda: api.get(f"/experiments/{managed['id']}")["state"] == "completed",
        240,
        "the managed experiment to complete",
        platform,
    )
    api.close()
    run_tokens = [p.read_text() for p in sorted(dump.iterdir())]
    assert len(run_tokens) >= 3 and all(t.startswith("mtr_") for t in run_tokens)
    secrets.update({f"run token {i}": t for i, t in enumerate(run_tokens)})
    platform.stop_all()

    logs = sorted(platform.log_dir.iterdir())
    assert {p.name for p in logs} >= {"api.log", "suggester.log", "worker.log"}
    assert "DEBUG" in platform.log("worker")  # the most any service writes
    leaks = {
        path.name: found
        for path in logs
        if (found := _secrets_in(path.read_text(errors="replace"), secrets))
    }
    captured = capfd.readouterr()
    for i, text in enumerate([*printed, captured.out, captured.err]):
        if found := _secrets_in(text, secrets):
            leaks[f"output {i}"] = found
    assert leaks == {}
    # The search itself finds a secret where there is one.
    assert _secrets_in(f"x{run_tokens[0]}x", secrets) == ["run token 0"]


def _experiment_file(tmp_path: Path) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "from the CLI",
                "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
                "observation_budget": 2,
            }
        )
    )
    return path
