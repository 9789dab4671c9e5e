"""Atomic training checkpoints and the random-number state needed for exact resume.

A checkpoint is one ``torch.save`` dict in ``<dir>/checkpoint.pt``, written to a temporary file
in the same directory, flushed and fsynced, then ``os.replace``d over the old one: a crash at
any moment leaves either the previous or the new checkpoint, never a torn file.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically as ``directory/checkpoint.pt`` (the directory is created)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CHECKPOINT_NAME
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The checkpoint in ``directory`` loaded onto the CPU, or None when there is none."""
    path = directory / CHECKPOINT_NAME
    if not path.is_file():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return state


def capture_rng(data_generator: torch.Generator) -> dict[str, Any]:
    """Every RNG a training epoch consumes: torch (CPU, the current CUDA device), NumPy, Python,
    data order. Only the current device's CUDA state: a data-parallel rank sees every GPU of the
    worker but must not create a context on the others."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "data": data_generator.get_state(),
    }


def restore_rng(state: dict[str, Any], data_generator: torch.Generator) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"][0])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    data_generator.set_state(state["data"])
