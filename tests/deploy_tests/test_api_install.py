"""``pip install "multitune[api]"`` into a fresh virtualenv: it must bring no torch, BoTorch,
GPyTorch, torchvision, Celery or Flower, and its ``multitune api`` and ``multitune token create``
must serve authenticated requests (SQLite in a temp data dir, the test Redis)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.services import REPO
from tests.services import free_port
from tests.services import wait_http

#: Import names the API role must not have (the suggester's, the workers' and Flower's).
NOT_FOR_THE_API = ("torch", "torchvision", "botorch", "gpytorch", "linear_operator", "celery")
NOT_FOR_THE_API_DISTRIBUTIONS = (*NOT_FOR_THE_API, "flower", "linear-operator")


@pytest.fixture(scope="module")
def api_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding a regular (non-editable) install of ``<repo>[api]``."""
    root = tmp_path_factory.mktemp("api-install")
    # Build from a copy of what the package is made of: an in-tree build would write build/ and
    # *.egg-info into the repository, and a stale build/lib can leak deleted modules into it.
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in ("shared", "services"):
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # This interpreter's pip installs into the new venv (--python): no pip copy to set up there.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            f"{source}[api]",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return venv


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without what could lead the venv to the repository's checkout or to the
    test settings of other processes."""
    env = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("MULTITUNE_")
    }
    return {**env, **extra}


def test_api_install_has_no_torch_botorch_celery_or_flower(api_venv: Path) -> None:
    code = (
        "import importlib.metadata as md, importlib.util as u, json, services.api, services.cli\n"
        f"names = {NOT_FOR_THE_API!r}\n"
        "print(json.dumps({\n"
        "    'importable': [n for n in names if u.find_spec(n) is not None],\n"
        "    'distributions': sorted(d.metadata['Name'].lower() for d in md.distributions()),\n"
        "    'services': services.api.__file__,\n"
        "}))\n"
    )
    done = subprocess.run(
        [str(api_venv / "bin" / "python"), "-c", code],
        cwd=api_venv,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(done.stdout)
    assert found["importable"] == []
    assert not set(NOT_FOR_THE_API_DISTRIBUTIONS) & set(found["distributions"])
    # What the API does need came with the extra, and the package is the installed copy.
    assert {"flask", "gunicorn", "sqlalchemy", "alembic", "scikit-learn"} <= set(
        found["distributions"]
    )
    assert Path(found["services"]).is_relative_to(api_venv)


@pytest.fixture()
def api_env(api_venv: Path, tmp_path: Path, redis_url: str) -> dict[str, str]:
    return _clean_env(
        MULTITUNE_DATA_DIR=str(tmp_path / "data"),
        MULTITUNE_REDIS_URL=redis_url,
        MULTITUNE_SERVICE_TOKEN="test-service-token",
    )


@pytest.fixture()
def api_server(api_venv: Path, api_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``multitune api`` of the API-only venv on a free port; yields its base URL."""
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(api_venv / "bin" / "multitune"), "api", "--port", str(port), "--workers", "1"],
            cwd=tmp_path,
            env=api_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{url}/healthz", timeout_s=60, process=process)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from exc
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def test_api_only_install_serves_authenticated_requests(
    api_venv: Path, api_env: dict[str, str], api_server: str, tmp_path: Path
) -> None:
    assert requests.get(f"{api_server}/healthz", timeout=10).status_code == 200
    migrated = subprocess.run(
        [str(api_venv / "bin" / "multitune"), "migrate"],
        cwd=tmp_path,
        env=api_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "latest revision" in migrated.stdout
    created = subprocess.run(
        [str(api_venv / "bin" / "multitune"), "token", "create", "--name", "x"],
        cwd=tmp_path,
        env=api_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert requests.get(f"{api_server}/v1/experiments", timeout=10).status_code == 401
    listed = requests.get(
        f"{api_server}/v1/experiments", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] == []
