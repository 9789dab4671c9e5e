"""The optimizer seam: frozen history in, candidates and JSON state out.

The suggester service reads an experiment's state (through the API), calls `Optimizer.suggest`
with immutable values, stores the returned `SuggestResult.state` and publishes the candidates.
An optimizer never opens a connection, reads a clock, the environment or a file, and never
configures logging; all it keeps between calls is the JSON ``state`` the caller hands back.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from shared.space import ExperimentSpec
from shared.space import assignment_key

#: Where a candidate came from.
SOURCES = ("design", "model", "random", "grid", "fallback")


@dataclass(frozen=True)
class Observation:
    """One recorded result of evaluating ``assignments`` on ``task``.

    ``values`` maps metric names to values and is empty when ``failed``; ``stddevs`` maps metric
    names to the reported ``value_stddev`` where one was given. ``task`` is None for a
    single-task experiment.

    Continuation (optional per objective; see `_continuation`): ``run`` is an opaque id of the
    run whose checkpoint holds this result, set by the caller only when that run can be
    continued to a costlier task; ``continues`` is the ``run`` of the observation this
    evaluation continued from, which makes its cost the difference of the two tasks' costs.
    """

    assignments: dict[str, Any]
    task: str | None
    values: dict[str, float]
    stddevs: dict[str, float] = field(default_factory=dict)
    failed: bool = False
    run: str | None = None
    continues: str | None = None


@dataclass(frozen=True)
class Pending:
    """An open suggestion whose evaluation is still running (``continues`` as in
    `Observation`)."""

    assignments: dict[str, Any]
    task: str | None
    continues: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A suggestion to evaluate next.

    ``source`` is one of `SOURCES`; ``info`` is JSON-serialisable audit data (acquisition
    value, the task-choice table, timings, or the error text of a fallback). ``continues`` is
    the ``run`` of an observation of the same assignments on a cheaper task: the evaluation
    should resume that run's checkpoint and train on to ``task``, and it costs only the
    difference; None means a run from scratch.
    """

    assignments: dict[str, Any]
    task: str | None
    source: str
    info: dict[str, Any] = field(default_factory=dict)
    continues: str | None = None


@dataclass(frozen=True)
class SuggestResult:
    """Candidates for idle workers and the optimizer state to pass back next time."""

    candidates: list[Candidate]
    state: dict[str, Any]


class Optimizer(abc.ABC):
    """A search strategy over an `ExperimentSpec`.

    Contract, for every implementation:

    * `suggest` is a pure function of its arguments: the same spec, history, ``k``, ``seed``
      and ``state`` give the same candidates. It never mutates its arguments and never
      persists anything; the returned ``state`` is JSON-serialisable and owned by the caller.
    * Each candidate's assignments pass ``spec.validate_assignments`` (exact types, bounds,
      grid and categorical values, active parameters only, linear constraints) and its task is
      one of ``spec.tasks`` (None for a single-task experiment).
    * No candidate repeats an observed or pending ``(assignments, task)`` pair, nor another
      candidate of the same call (compared with `shared.space.assignment_key`).
    * Exactly ``k`` candidates are returned unless the space has fewer unused points left.

    Implementations are not thread-safe; use one call at a time per instance.
    """

    @abc.abstractmethod
    def suggest(
        self,
        spec: ExperimentSpec,
        observations: Sequence[Observation],
        pending: Sequence[Pending],
        k: int,
        seed: int,
        state: dict[str, Any] | None = None,
    ) -> SuggestResult:
        """Return ``k`` jointly diverse candidates for ``k`` idle workers.

        Args:
            spec: The experiment's search space, metrics, tasks and budget.
            observations: Every recorded result, failed ones included.
            pending: Every open suggestion still being evaluated.
            k: Number of candidates wanted.
            seed: The experiment's seed; with the history it fixes every random choice.
            state: The ``state`` returned by the previous call, or None.

        Returns:
            The candidates and the state to store for the next call.
        """


def used_keys(observations: Sequence[Observation], pending: Sequence[Pending]) -> set[str]:
    """`assignment_key` of every observed and pending ``(assignments, task)`` pair."""
    keys = {assignment_key(o.assignments, o.task) for o in observations}
    keys.update(assignment_key(p.assignments, p.task) for p in pending)
    return keys


def history_seed(
    seed: int, observations: Sequence[Observation], pending: Sequence[Pending]
) -> int:
    """A seed that differs from call to call as the history grows, yet is reproducible."""
    return (seed * 1_000_003 + len(observations) * 7919 + len(pending)) % (2**31 - 1)
