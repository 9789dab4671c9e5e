"""Continuation: which earlier run a candidate resumes, and what an evaluation is charged.

An objective may declare that a run of a cheap task can continue into a costlier one from its
checkpoint (its schedule does not depend on the total number of epochs). The caller then marks
each observation whose run left such a checkpoint with an opaque ``run`` id; nothing else
tells the optimizer that continuation is allowed. For a candidate ``(assignments, task)``,
`Runs.base` picks the run of the same assignments, among successful observations with a
``run``, on the costliest task cheaper than ``task``; the candidate then ``continues`` it and
is charged ``cost(task) - cost(base task)`` (`Runs.charged`), which is also how observations
and pending evaluations that continued a run count in the spend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.suggester.optimizer._base import Observation
from shared.space import ExperimentSpec
from shared.space import assignment_key


class Runs:
    """The continuable runs of a history.

    Args:
        spec: The experiment.
        observations: The whole history.
    """

    def __init__(self, spec: ExperimentSpec, observations: Sequence[Observation]) -> None:
        self.spec = spec
        self.task_of: dict[str, str | None] = {}
        self.by_config: dict[str, list[tuple[float, str]]] = {}
        for o in observations:
            if o.run is None or o.failed or not o.values:
                continue
            self.task_of[o.run] = o.task
            key = assignment_key(o.assignments, None)
            self.by_config.setdefault(key, []).append((spec.task_cost(o.task), o.run))

    def __bool__(self) -> bool:
        return bool(self.task_of)

    def base(self, assignments: dict[str, Any], task: str | None) -> str | None:
        """The run to continue for ``(assignments, task)``: the one on the costliest cheaper
        task (the latest such run on ties), or None to start from scratch."""
        cost = self.spec.task_cost(task)
        options = [
            (c, i, run)
            for i, (c, run) in enumerate(self.by_config.get(assignment_key(assignments, None), []))
            if c < cost
        ]
        return max(options)[2] if options else None

    def charged(self, task: str | None, continues: str | None) -> float:
        """Cost of an evaluation on ``task`` that continues the run ``continues`` (if known)."""
        cost = self.spec.task_cost(task)
        if continues is None or continues not in self.task_of:
            return cost
        return max(cost - self.spec.task_cost(self.task_of[continues]), 0.0)
