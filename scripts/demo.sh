#!/usr/bin/env bash
# README's first command: install, then run the local demo (API, suggester, workers, Flower and
# an example managed multitask experiment) on embedded defaults.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/multitune demo "$@"
