#!/usr/bin/env bash
# README's test command: install, make sure Redis and PostgreSQL answer, run the whole suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/services.sh
exec .venv/bin/python -m pytest "$@"
