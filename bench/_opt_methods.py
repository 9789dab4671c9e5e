"""The compared methods, as ask/tell objects for `_opt_sim.simulate`.

* ``mtbo``: multitune's optimizer on the four-task experiment; on a problem whose curves
  continue, every successful run is marked continuable, so the optimizer may continue a run to
  a costlier task for the difference in cost (``mtbo_restart``: never).
* ``mtbo_ckpt``: ``mtbo`` that also records, for a run that went past a cheaper task's epochs,
  the values its checkpoints hold there (observations that cost nothing more).
* ``sfbo``: multitune's optimizer on the full-cost task only (a single-task experiment).
* ``random``: multitune's random strategy, full cost only.
* ``tpe_hb``: Optuna ``TPESampler(multivariate=True, constant_liar=True)`` with
  ``HyperbandPruner(min_resource=1, max_resource=8, reduction_factor=2)``; a trial reports at
  steps 1, 2, 4, 8 (fidelities 1/8 .. 1) and a rung costs the fidelity it adds (training resumes).
* ``gp``: Optuna's ``GPSampler``, full cost only.
* the anchors of `_opt_anchors`: ``dehb``, ``mobster``, ``hypertune``, ``smac``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from _opt_anchors import ANCHORS
from _opt_anchors import make_anchor
from _opt_problems import FIDELITIES
from _opt_problems import Problem
from _opt_sim import Job

from services.suggester.optimizer import BayesSettings
from services.suggester.optimizer import MultitaskOptimizer
from services.suggester.optimizer import Observation
from services.suggester.optimizer import Optimizer
from services.suggester.optimizer import Pending
from services.suggester.optimizer import RandomOptimizer
from shared.space import ExperimentSpec

MULTITUNE = ("mtbo", "mtbo_restart", "mtbo_ckpt", "sfbo", "random")
METHODS = (*MULTITUNE, "tpe_hb", "gp", *ANCHORS)


class MultitunePolicy:
    """Drives a multitune `Optimizer` with the history and the running jobs as pending.

    With ``continuation`` every successful run gets a run id (`Observation.run`) and a
    candidate that continues one is charged the difference in cost. With ``checkpoints`` a run
    that trained past cheaper tasks' epochs also yields their values: a chain of observations,
    each continuing the previous, whose charges add up to the run's cost.
    """

    def __init__(
        self,
        problem: Problem,
        optimizer: Optimizer,
        multitask: bool,
        seed: int,
        workers: int,
        continuation: bool = False,
        checkpoints: bool = False,
    ) -> None:
        self.problem = problem
        self.spec = ExperimentSpec.from_json(problem.definition(multitask, workers))
        self.optimizer = optimizer
        self.seed = seed
        self.continuation = continuation and multitask
        self.checkpoints = checkpoints and self.continuation
        self.observations: list[Observation] = []
        self.pending: dict[int, Pending] = {}
        self.state: dict[str, Any] | None = None
        self.sources: dict[str, int] = {}
        self.run_cost: dict[str, float] = {}
        self.rng: Any = None
        #: Per candidate chosen while others ran: unit-cube distance to the nearest running one.
        self.spread: list[float] = []

    def ask(self, k: int) -> list[Job]:
        result = self.optimizer.suggest(
            self.spec, self.observations, list(self.pending.values()), k, self.seed, self.state
        )
        self.state = result.state
        running = [self.spec.encode(p.assignments) for p in self.pending.values()]
        jobs = []
        for candidate in result.candidates:
            point = self.spec.encode(candidate.assignments)
            if running:
                self.spread.append(min(float(np.linalg.norm(point - r)) for r in running))
            running.append(point)
            self.sources[candidate.source] = self.sources.get(candidate.source, 0) + 1
            s = self.spec.task_cost(candidate.task)
            base = self.run_cost.get(candidate.continues or "", 0.0)
            job = Job(candidate.assignments, s, s - base, handle=candidate)
            self.pending[id(job)] = Pending(
                candidate.assignments, candidate.task, candidate.continues
            )
            jobs.append(job)
        return jobs

    def tell(self, job: Job, value: float | None) -> Job | None:
        self.pending.pop(id(job), None)
        candidate = job.handle
        continues = candidate.continues
        if self.checkpoints and value is not None:
            continues = self._checkpoints(job, continues)
        self._record(job.assignments, candidate.task, value, continues)
        return None

    def _record(
        self, assignments: dict[str, Any], task: str | None, value: float | None, continues: Any
    ) -> str | None:
        run = None
        if self.continuation and value is not None:
            run = f"r{len(self.observations)}"
            self.run_cost[run] = self.spec.task_cost(task)
        values = {} if value is None else {"value": value}
        self.observations.append(
            Observation(
                assignments, task, values, failed=value is None, run=run, continues=continues
            )
        )
        return run

    def _checkpoints(self, job: Job, continues: str | None) -> str | None:
        """Record the values at the cheaper tasks the run trained through; the last run id."""
        base = self.run_cost.get(continues or "", 0.0)
        used = {(repr(sorted(o.assignments.items())), o.task) for o in self.observations}
        used |= {(repr(sorted(p.assignments.items())), p.task) for p in self.pending.values()}
        for task in sorted(self.spec.tasks, key=lambda t: t.cost):
            if not base < task.cost < job.s:
                continue
            if (repr(sorted(job.assignments.items())), task.name) in used:
                continue
            value = self.problem.evaluate(job.assignments, task.cost, self.rng)
            if value is None:
                return continues
            continues = self._record(job.assignments, task.name, value, continues)
        return continues


class OptunaPolicy:
    """An Optuna study driven through ask/tell; with a pruner, trials climb the fidelities (a
    rung costs the fidelity it adds: training resumes)."""

    def __init__(self, problem: Problem, method: str, seed: int) -> None:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.problem = problem
        self.hyperband = method == "tpe_hb"
        if self.hyperband:
            sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
                multivariate=True, constant_liar=True, seed=seed
            )
            pruner: optuna.pruners.BasePruner = optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=8, reduction_factor=2
            )
        else:
            sampler = optuna.samplers.GPSampler(seed=seed)
            pruner = optuna.pruners.NopPruner()
        self.study = optuna.create_study(
            study_name=f"{method}-{seed}", sampler=sampler, pruner=pruner, direction="minimize"
        )

    def ask(self, k: int) -> list[Job]:
        jobs = []
        for _ in range(k):
            trial = self.study.ask()
            assignments = {
                p["name"]: _suggest(trial, p, self.problem.rounded)
                for p in self.problem.parameters
            }
            s = FIDELITIES[0] if self.hyperband else 1.0
            jobs.append(Job(assignments, s, s, handle=trial))
        return jobs

    def tell(self, job: Job, value: float | None) -> Job | None:
        trial = job.handle
        if value is None:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return None
        if job.s == 1.0:
            self.study.tell(trial, value)
            return None
        trial.report(value, step=int(job.s * 8))
        if trial.should_prune():
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return None
        s = FIDELITIES[FIDELITIES.index(job.s) + 1]
        return Job(job.assignments, s, s - job.s, handle=trial)


def make_method(
    name: str,
    problem: Problem,
    seed: int,
    settings: BayesSettings,
    workers: int,
    workdir: Path,
    rng: Any,
) -> Any:
    """The method called ``name`` (one of `METHODS`) for one seeded run.

    ``workdir`` is an empty folder for files a library writes; ``rng`` draws the noise of
    checkpoint values (``mtbo_ckpt``).
    """
    if name in ("mtbo", "mtbo_restart", "mtbo_ckpt"):
        continuation = problem.continuable and name != "mtbo_restart"
        policy = MultitunePolicy(
            problem,
            MultitaskOptimizer(settings),
            True,
            seed,
            workers,
            continuation=continuation,
            checkpoints=name == "mtbo_ckpt",
        )
        policy.rng = rng
        return policy
    if name == "sfbo":
        return MultitunePolicy(problem, MultitaskOptimizer(settings), False, seed, workers)
    if name == "random":
        return MultitunePolicy(problem, RandomOptimizer(), False, seed, workers)
    if name in ("tpe_hb", "gp"):
        return OptunaPolicy(problem, name, seed)
    if name in ANCHORS:
        return make_anchor(name, problem, seed, workdir)
    raise ValueError(f"unknown method {name!r}")


def _suggest(trial: optuna.Trial, parameter: dict[str, Any], rounded: tuple[str, ...]) -> Any:
    name = parameter["name"]
    if parameter["type"] == "categorical":
        return trial.suggest_categorical(name, parameter["categorical_values"])
    bounds = parameter["bounds"]
    log = parameter.get("transformation") == "log"
    if parameter["type"] == "int" or name in rounded:
        return trial.suggest_int(name, int(bounds["min"]), int(bounds["max"]), log=log)
    return trial.suggest_float(name, bounds["min"], bounds["max"], log=log)
