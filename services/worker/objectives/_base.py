"""The contract between the worker and an objective (a thing that trains and returns a value).

An objective is a plain library: no Celery, Redis or HTTP inside. The worker gives it the
suggestion's assignments, the task (fidelity) and the experiment's objective config, plus a
`RunContext` through which it reports per-epoch metrics and finds its checkpoint directory.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import ClassVar
from typing import Protocol

from shared.space import Task


class RunContext(Protocol):
    """What a running objective may use from its surroundings."""

    #: Directory private to this training run; it survives retries of the run (the worker
    #: stores it through the API and fetches it for the next attempt, on whichever worker), so an
    #: objective that finds a checkpoint there resumes from it.
    checkpoint_dir: Path

    @property
    def device(self) -> str:
        """ "cuda" when a GPU is visible to this worker process, else "cpu"."""

    @property
    def devices(self) -> Sequence[str]:
        """The devices one run may train on, one process each: ``cuda:0``, ``cuda:1``, ... for
        each GPU the worker owns (``multitune worker --gpus``), else ``["cpu"]``."""

    def report(self, epoch: int, values: Mapping[str, float]) -> None:
        """Log one training-run checkpoint (per-epoch metric values). Write the epoch's files
        to ``checkpoint_dir`` first: a report is where the worker stores the directory."""

    def should_stop(self) -> bool:
        """True when the experiment was stopped or paused: checkpoint and return early."""


@dataclass(frozen=True)
class ObjectiveResult:
    """``value`` goes under the experiment's first metric; ``extra`` under their own names.
    ``value`` None: ``extra`` names every metric, the experiment's first included (what a
    function objective that returns a dict gives)."""

    value: float | None
    extra: dict[str, float] = field(default_factory=dict)

    def values(self, metric: str) -> dict[str, float]:
        """Every metric by name, with ``value`` under ``metric`` (the experiment's first)."""
        if self.value is None:
            return dict(self.extra)
        return {metric: self.value, **self.extra}


def task_epochs(task: Task | None, max_epochs: int) -> int:
    """Training length for a task: ``round(cost x max_epochs)``, at least 1 (no task: cost 1).
    The one rule for built-in, entry-point and script objectives (``MULTITUNE_EPOCHS``)."""
    cost = task.cost if task is not None else 1.0
    return max(1, round(cost * max_epochs))


class Objective(abc.ABC):
    """A registered objective. Subclasses are constructed with no arguments."""

    #: The name an experiment's ``objective.name`` refers to.
    name: str
    #: A run of a cheap task can continue into a costlier one from its checkpoint, because the
    #: objective's schedule does not depend on the total number of epochs: given the checkpoint
    #: of a shorter run in ``context.checkpoint_dir``, it trains on from there to the task's
    #: epochs and the result equals a run of the costlier task from scratch. The suggester then
    #: may continue a cheap run instead of restarting it, and charge only the difference.
    continuable: ClassVar[bool] = False

    def epochs_for(self, task: Task | None, config: Mapping[str, Any]) -> int:
        """Training length for a task: `task_epochs` with ``config.max_epochs`` (default 1)."""
        return task_epochs(task, int(config.get("max_epochs", 1)))

    @abc.abstractmethod
    def run(
        self,
        assignments: Mapping[str, Any],
        task: Task | None,
        config: Mapping[str, Any],
        context: RunContext,
    ) -> ObjectiveResult:
        """Train and evaluate once; raise to report a failure (its message becomes the reason)."""
