#!/usr/bin/env bash
# Create .venv (if missing) and install multitune with every role's extras plus the test, lint
# and type-check tools. Sourced by the other scripts; safe to run again (pip skips what is
# installed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[all,test]"
