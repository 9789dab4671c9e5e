#!/usr/bin/env bash
# README's test command: install, make sure Redis and PostgreSQL answer, lint, type-check, run
# the whole suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/services.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy shared services
exec .venv/bin/python -m pytest "$@"
