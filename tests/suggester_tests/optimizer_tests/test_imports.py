"""The optimizer is a pure library: importing it loads no service infrastructure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("redis", "celery", "sqlalchemy", "flask", "kombu", "requests", "optuna")


def test_import_loads_no_infrastructure() -> None:
    code = (
        "import sys, services.suggester.optimizer as o\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert done.stdout.strip() == ""
