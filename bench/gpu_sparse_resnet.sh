#!/usr/bin/env bash
# Dense vs sparse ResNet-50 training images/s at 224 px (bf16, channels_last) and k-WTA time per
# step on one GPU, then the sparse model data-parallel over every GPU present and its scaling
# efficiency; capped at 290 s. Extra arguments go to the script, e.g.
# `bench/gpu_sparse_resnet.sh --batch-size 256`, or `--device cpu --tiny` for a smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin="${PYTHON:-python}"
if [[ -x .venv/bin/python && -z "${PYTHON:-}" ]]; then
    python_bin=.venv/bin/python
fi
exec timeout 290 "$python_bin" bench/gpu_sparse_resnet.py "$@"
