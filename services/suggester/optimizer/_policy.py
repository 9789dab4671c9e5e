"""Budget guards of MF-2S: which tasks the next evaluation may use, and which one to pick.

Spend is counted in cost units, pending evaluations included; an evaluation that continues an
earlier run counts the difference of the two tasks' costs (`_continuation`).

* Final phase: once ``1 - final_share`` of the observation budget is spent, only the full-cost
  task is run: information bought on a cheap task then has no time left to pay off.
* Full-cost share band: once ``share_check_after`` cost units (at most a fifth of the budget)
  are spent, the full-cost task is forced while it has less than ``min_target_share`` of the
  spend (without it the "best observed at full cost" rule could not credit cheap discoveries)
  and excluded while it has more than ``max_target_share`` (stage B picks the full-cost task
  whenever cheap information at ``x*`` is exhausted, which on closely related tasks spent
  two thirds of the budget there and starved the cheap search).
* Otherwise the task with the best stage-B score is run. A task whose ``(assignments, task)``
  pair is already observed or pending is never picked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.best import is_full_cost
from shared.space import ExperimentSpec


@dataclass(frozen=True)
class PolicySettings:
    """Guard thresholds (see the module docstring) and whether to promote cheap configs."""

    final_share: float = 0.15
    min_target_share: float = 0.3
    max_target_share: float = 0.5
    share_check_after: float = 4.0
    promote: bool = True


@dataclass
class Spend:
    """Cost units spent (observed plus pending), in total and on the full-cost task."""

    total: float = 0.0
    target: float = 0.0

    def add(self, spec: ExperimentSpec, task: str | None, cost: float | None = None) -> None:
        """Count an evaluation on ``task`` charged ``cost`` (the task's cost by default)."""
        cost = spec.task_cost(task) if cost is None else cost
        self.total += cost
        if is_full_cost(spec, task):
            self.target += cost


def guard(spec: ExperimentSpec, spend: Spend, settings: PolicySettings) -> str | None:
    """The active guard: ``"final"`` or ``"share"`` (full-cost task forced), ``"cap"``
    (full-cost task excluded), or None."""
    budget = spec.observation_budget
    if budget and spend.total >= (1.0 - settings.final_share) * budget:
        return "final"
    check_after = settings.share_check_after
    if budget:
        check_after = min(check_after, 0.2 * budget)
    if spend.total < check_after:
        return None
    if spend.target < settings.min_target_share * spend.total:
        return "share"
    if spend.target > settings.max_target_share * spend.total:
        return "cap"
    return None


def allowed_tasks(spec: ExperimentSpec, reason: str | None) -> set[str]:
    """Tasks the active guard allows (every task of a multitask spec when none is active)."""
    full = spec.full_cost_task
    names = {t.name for t in spec.tasks}
    if full is None:
        return names
    if reason in ("final", "share"):
        return {full.name}
    if reason == "cap":
        return names - {full.name}
    return names


def choose_task(
    spec: ExperimentSpec,
    scores: Mapping[str, Mapping[str, float]],
    allowed: set[str],
) -> str | None:
    """The allowed task with the best score (ties to the cheaper), or None if none is allowed."""
    options = [name for name in scores if name in allowed]
    if not options:
        return None
    return max(options, key=lambda name: (scores[name]["score"], -spec.task_cost(name)))
