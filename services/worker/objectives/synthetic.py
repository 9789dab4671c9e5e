"""BoTorch's multi-fidelity test functions as objectives, so the whole loop runs in seconds.

The task cost is the fidelity ``s``. ``sleep_per_cost`` (seconds per unit of cost, default 0)
simulates training time, spread over ``epochs`` steps (default 4 x cost, at least 1); after each
step the run saves its progress and then reports a checkpoint, so a retried run resumes where
the lost attempt stopped, and a run that continues a cheaper one (`Objective.continuable`)
starts after that run's last epoch. Values are the test function's (both are minimised; use a
metric with ``objective: minimize``). Parameters: ``x1``..``x6`` in [0, 1] (Hartmann), ``x1``
in [-5, 10] and ``x2`` in [0, 15] (Branin).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import torch
from botorch.test_functions.multi_fidelity import AugmentedBranin
from botorch.test_functions.multi_fidelity import AugmentedHartmann
from botorch.test_functions.synthetic import SyntheticTestFunction

from services.worker.objectives._base import Objective
from services.worker.objectives._base import ObjectiveResult
from services.worker.objectives._base import RunContext
from services.worker.objectives._base import task_epochs
from shared.space import Task

PROGRESS_FILE = "progress.json"


class _Synthetic(Objective):
    # A run resumes from progress.json and runs to the task's epochs, whatever ran before.
    continuable = True
    function: type[SyntheticTestFunction]
    inputs: tuple[str, ...]

    def epochs_for(self, task: Task | None, config: Mapping[str, Any]) -> int:
        return task_epochs(task, int(config.get("max_epochs", 4)))

    def run(
        self,
        assignments: Mapping[str, Any],
        task: Task | None,
        config: Mapping[str, Any],
        context: RunContext,
    ) -> ObjectiveResult:
        fidelity = task.cost if task is not None else 1.0
        x = torch.tensor(
            [[float(assignments[name]) for name in self.inputs] + [fidelity]], dtype=torch.float64
        )
        value = float(self.function()(x).item())
        epochs = self.epochs_for(task, config)
        seconds = float(config.get("sleep_per_cost", 0.0)) * fidelity / epochs
        progress = context.checkpoint_dir / PROGRESS_FILE
        start = json.loads(progress.read_text())["epoch"] if progress.exists() else 0
        for epoch in range(start + 1, epochs + 1):
            if context.should_stop():
                break
            time.sleep(seconds)
            # Checkpoint, then report (the worker stores the checkpoint directory at a report).
            _save(progress, epoch)
            # An (imaginary) training curve that reaches the value at the last epoch.
            context.report(epoch, {"value": value + (epochs - epoch) / epochs})
        return ObjectiveResult(value=value)


def _save(path: Any, epoch: int) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"epoch": epoch}))
    os.replace(temporary, path)


class AugmentedHartmannObjective(_Synthetic):
    name = "augmented_hartmann"
    function = AugmentedHartmann
    inputs = ("x1", "x2", "x3", "x4", "x5", "x6")


class AugmentedBraninObjective(_Synthetic):
    name = "augmented_branin"
    function = AugmentedBranin
    inputs = ("x1", "x2")
