"""Dependency direction: each package is imported in a fresh interpreter, with warnings as
errors, and must not load the modules its layer forbids (the API and the CLI never load torch,
so that an API-only install works; the optimizer never does I/O)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.services import REPO

FORBIDDEN = {
    "shared.space": {"torch", "botorch", "flask", "sqlalchemy", "redis", "celery"},
    "shared.design": {"torch", "botorch", "flask", "sqlalchemy", "redis", "celery"},
    "shared.messages": {"torch", "flask", "sqlalchemy", "redis", "celery"},
    "shared.states": {"torch", "numpy", "flask", "sqlalchemy", "redis", "celery"},
    "shared.best": {"torch", "botorch", "flask", "sqlalchemy", "redis", "celery"},
    "shared.api_objects": {"torch", "botorch", "flask", "sqlalchemy", "redis", "celery"},
    "services.api": {
        "torch",
        "torchvision",
        "botorch",
        "gpytorch",
        "celery",
        "flower",
        "services.suggester",
        "services.worker",
    },
    # `multitune api`, `migrate` and `token create` run where only `multitune[api]` is installed.
    "services.cli": {
        "torch",
        "torchvision",
        "botorch",
        "gpytorch",
        "celery",
        "flower",
        "services.suggester",
        "services.worker",
    },
    "services.suggester.optimizer": {
        "redis",
        "celery",
        "kombu",
        "sqlalchemy",
        "flask",
        "requests",
        "optuna",
        "services.api",
        "services.worker",
    },
    "services.suggester.service": {"flask", "sqlalchemy", "services.api", "services.worker"},
    "services.worker.celery": {
        "torch",
        "flask",
        "sqlalchemy",
        "services.api",
        "services.suggester",
    },
    "services.worker.training.sparse_resnet": {
        "redis",
        "celery",
        "flask",
        "sqlalchemy",
        "requests",
    },
}


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_module_loads_nothing_forbidden(module: str) -> None:
    code = (
        f"import sys, json, importlib; importlib.import_module({module!r}); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    bad = {
        m
        for m in loaded
        if m.split(".")[0] in FORBIDDEN[module]
        or any(m == f or m.startswith(f + ".") for f in FORBIDDEN[module])
    }
    assert not bad, f"{module} loads {sorted(bad)[:10]}"
