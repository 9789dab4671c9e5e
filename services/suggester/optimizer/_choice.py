"""One candidate from pending-conditioned models: promotion, MF-2S, and the repairs it needs.

`CandidateChooser.next` returns, in order of precedence:

1. a promotion, unless the full-cost share of the spend is capped: the configuration seen only
   on cheap tasks whose posterior mean at the full-cost task is best, if it beats the mean of
   every full-cost candidate of `shared.best` (one optimized metric, no constraint metric).
   Only full-cost results can be best, so a cheap discovery counts only once it is confirmed
   at full cost; promoting only when its predicted value beats the incumbent keeps early,
   poorly modelled configurations from spending the budget;
2. the MF-2S choice (`_acquisition`): ``x*`` at the full-cost task, then the best allowed task
   for it (`_policy`);
3. when ``x*`` decodes to a point that breaks a linear constraint (integer rounding), the best
   of many feasible random points by acquisition value; when every task of ``x*`` is already
   observed or pending, the best unused perturbation of ``x*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from enum import Enum
from typing import Any
from typing import Literal

import numpy as np
import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.models.gpytorch import GPyTorchModel
from torch import Tensor

from services.suggester.optimizer._acquisition import AcquisitionSettings
from services.suggester.optimizer._acquisition import optimize_target
from services.suggester.optimizer._acquisition import target_acquisition
from services.suggester.optimizer._acquisition import task_scores
from services.suggester.optimizer._base import Candidate
from services.suggester.optimizer._base import Observation
from services.suggester.optimizer._continuation import Runs
from services.suggester.optimizer._data import TrainingData
from services.suggester.optimizer._policy import PolicySettings
from services.suggester.optimizer._policy import Spend
from services.suggester.optimizer._policy import allowed_tasks
from services.suggester.optimizer._policy import choose_task
from services.suggester.optimizer._policy import guard
from services.suggester.optimizer._transform import SpaceTransform
from shared.best import is_candidate
from shared.best import is_full_cost
from shared.design import random_unit
from shared.space import Assignments
from shared.space import ExperimentSpec
from shared.space import assignment_key


class _Used(Enum):
    """`CandidateChooser._task`'s answer when every allowed pair is already used."""

    ALL = "every allowed pair used"


#: Points scored when repairing an infeasible or duplicate acquisition optimum.
_DRAWS = 256
#: Standard deviation of a perturbation in unit-cube coordinates.
_PERTURBATION = 0.05
#: Probability that a perturbation moves a discrete coordinate to a random level.
_JUMP = 0.3


class CandidateChooser:
    """Chooses candidates one at a time for one optimizer call.

    Args:
        spec: The experiment.
        transform: Its model space.
        data: The training data the models were fitted on.
        observations: The whole history.
        acquisition: Stage-A effort.
        policy: Budget guards.
        used: Keys of observed, pending and already chosen pairs (the caller adds new ones).
        runs: The history's continuable runs; a candidate continues one where it can.
    """

    def __init__(
        self,
        spec: ExperimentSpec,
        transform: SpaceTransform,
        data: TrainingData,
        observations: Sequence[Observation],
        acquisition: AcquisitionSettings,
        policy: PolicySettings,
        used: set[str],
        runs: Runs,
    ) -> None:
        self.spec = spec
        self.runs = runs
        self.transform = transform
        self.data = data
        self.acquisition = acquisition
        self.policy = policy
        self.used = used
        self.successes = [o for o in observations if not o.failed and o.values]
        self.target = spec.full_cost_task.name if spec.full_cost_task else None
        baseline = data.X[~data.failed] if bool((~data.failed).any()) else data.X
        if self.target is not None:
            baseline = transform.with_task(baseline, self.target)
        self.baseline = torch.unique(baseline, dim=0)

    def next(
        self, models: list[GPyTorchModel], spend: Spend, rng: np.random.Generator, seed: int
    ) -> Candidate:
        """The next candidate given ``models`` (one per outcome) and the spend so far; it
        continues an earlier run of its assignments where `Runs.base` finds one."""
        candidate = self._choose(models, spend, rng, seed)
        continues = self.runs.base(candidate.assignments, candidate.task)
        return replace(candidate, continues=continues) if continues else candidate

    def _choose(
        self, models: list[GPyTorchModel], spend: Spend, rng: np.random.Generator, seed: int
    ) -> Candidate:
        reason = guard(self.spec, spend, self.policy) if self.target else None
        if reason != "cap" and self._can_promote():
            promoted = self._promotion(models[0])
            if promoted is not None:
                return promoted
        acq = target_acquisition(
            models, self.baseline, self.data, self.transform, self.acquisition, seed
        )
        x, value = optimize_target(acq, self.transform, self.acquisition, rng)
        assignments, _ = self.transform.decode(x)
        info: dict[str, Any] = {"acquisition": value}
        if not self.spec.is_feasible(assignments):
            units = random_unit(self.spec, rng, _DRAWS)
            x, value = self._best_of(acq, [self.spec.decode(u) for u in units])
            assignments, _ = self.transform.decode(x)
            info.update(acquisition=value, repaired="infeasible")
        task = self._task(models, x, assignments, reason, info)
        if task is _Used.ALL:
            x, value = self._best_of(acq, self._perturbations(assignments, rng))
            assignments, _ = self.transform.decode(x)
            info = {"acquisition": value, "repaired": "duplicate"}
            task = self._task(models, x, assignments, reason, info)
        if task is _Used.ALL:
            raise RuntimeError("no unused point found near the acquisition optimum")
        return Candidate(assignments, task, "model", info)

    def _task(
        self,
        models: list[GPyTorchModel],
        x: Tensor,
        assignments: Assignments,
        reason: str | None,
        info: dict[str, Any],
    ) -> str | None | Literal[_Used.ALL]:
        """The task for ``assignments`` at the ``D``-dim row ``x`` (None for single-task), or
        `_Used.ALL` when every allowed ``(assignments, task)`` pair is already used."""
        if self.target is None:
            return _Used.ALL if assignment_key(assignments, None) in self.used else None
        table = task_scores(models, self.data.outcomes, self.transform, self.spec, x)
        unused = {t for t in table if assignment_key(assignments, t) not in self.used}
        allowed = allowed_tasks(self.spec, reason) & unused
        if reason == "cap" and not allowed:
            allowed = unused
        info.update(tasks=table, guard=reason)
        task = choose_task(self.spec, table, allowed)
        return _Used.ALL if task is None else task

    def _can_promote(self) -> bool:
        outcomes = self.data.outcomes
        return (
            self.target is not None
            and self.policy.promote
            and len(outcomes) == 1
            and outcomes[0].objective
        )

    def _promotion(self, model: GPyTorchModel) -> Candidate | None:
        """The best cheap-only configuration at full cost, if its mean beats the incumbent's.

        The incumbents are the observations that may be best (`shared.best.is_candidate`), so
        the configuration to beat is judged as the API's best is."""
        assert self.target is not None
        full = [o for o in self.successes if is_candidate(self.spec, o)]
        cheap = [
            o
            for o in self.successes
            if not is_full_cost(self.spec, o.task)
            and assignment_key(o.assignments, self.target) not in self.used
        ]
        if not full or not cheap:
            return None
        rows = self.transform.encode_rows([(o.assignments, self.target) for o in full + cheap])
        with torch.no_grad():
            mean = model.posterior(rows).mean.reshape(-1)
        incumbent = float(mean[: len(full)].max())
        best = int(mean[len(full) :].argmax())
        value = float(mean[len(full) + best])
        if value <= incumbent:
            return None
        info = {"promoted": True, "mean": value, "incumbent_mean": incumbent}
        return Candidate(dict(cheap[best].assignments), self.target, "model", info)

    def _perturbations(
        self, assignments: Assignments, rng: np.random.Generator
    ) -> list[Assignments]:
        """Feasible points near ``assignments`` with at least one unused task.

        Numeric unit-cube coordinates move by N(0, `_PERTURBATION`^2); discrete ones jump to
        a random level with probability `_JUMP`; feasible random points fill in when no
        perturbation is usable (a nearly exhausted discrete space).
        """
        spec = self.spec
        unit = spec.encode(assignments)
        unit = np.where(np.isnan(unit), 0.5, unit)
        discrete = np.array([bool(column.levels) for column in spec.columns])
        options = []
        for _ in range(_DRAWS):
            moved = np.clip(unit + rng.normal(0.0, _PERTURBATION, unit.shape), 0.0, 1.0)
            jump = discrete & (rng.random(unit.shape) < _JUMP)
            moved = np.where(jump, rng.random(unit.shape), moved)
            options.append(spec.decode(moved))
        options += [spec.decode(u) for u in random_unit(spec, rng, _DRAWS)]
        usable = [a for a in options if spec.is_feasible(a) and not self._fully_used(a)]
        if not usable:
            raise RuntimeError("no unused feasible point left in the search space")
        return usable

    def _fully_used(self, assignments: Assignments) -> bool:
        tasks: list[str | None] = list(self.transform.task_values) or [None]
        return all(assignment_key(assignments, t) in self.used for t in tasks)

    def _best_of(
        self, acq: AcquisitionFunction, options: list[Assignments]
    ) -> tuple[Tensor, float]:
        """The full-cost row of the option with the best acquisition value, and that value."""
        rows = self.transform.encode_rows([(a, self.target) for a in options])
        with torch.no_grad():
            values = acq(rows.unsqueeze(1))
        best = int(values.argmax())
        return rows[best], float(values[best])
