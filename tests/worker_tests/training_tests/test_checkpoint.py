from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from services.worker.training.checkpoint import CHECKPOINT_NAME
from services.worker.training.checkpoint import capture_rng
from services.worker.training.checkpoint import load_checkpoint
from services.worker.training.checkpoint import restore_rng
from services.worker.training.checkpoint import save_checkpoint


def test_round_trip_and_missing(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path / "run") is None
    path = save_checkpoint(tmp_path / "run", {"epoch": 3, "w": torch.arange(4)})
    assert path == tmp_path / "run" / CHECKPOINT_NAME
    state = load_checkpoint(tmp_path / "run")
    assert state is not None and state["epoch"] == 3 and torch.equal(state["w"], torch.arange(4))


def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, {"epoch": 1})
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        save_checkpoint(tmp_path, {"epoch": 2, "bad": lambda: None})
    state = load_checkpoint(tmp_path)
    assert state is not None and state["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


def test_rng_round_trip(tmp_path: Path) -> None:
    data = torch.Generator().manual_seed(7)
    saved = capture_rng(data)
    save_checkpoint(tmp_path, {"rng": saved})

    def draw() -> tuple[float, float, float, float]:
        return (
            torch.rand(()).item(),
            float(np.random.rand()),
            random.random(),
            torch.rand((), generator=data).item(),
        )

    first = draw()
    state = load_checkpoint(tmp_path)
    assert state is not None
    restore_rng(state["rng"], data)
    assert draw() == first
