"""The compared methods, as ask/tell objects for `_opt_sim.simulate`.

* ``mtbo``: multitune's optimizer on the four-task experiment.
* ``sfbo``: multitune's optimizer on the full-cost task only (a single-task experiment).
* ``random``: multitune's random strategy, full cost only.
* ``tpe_hb``: Optuna ``TPESampler(multivariate=True, constant_liar=True)`` with
  ``HyperbandPruner(min_resource=1, max_resource=8, reduction_factor=2)``; a trial reports at
  steps 1, 2, 4, 8 (fidelities 1/8 .. 1) and a rung costs the fidelity it adds (training resumes).
* ``gp``: Optuna's ``GPSampler``, full cost only.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
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

METHODS = ("mtbo", "sfbo", "random", "tpe_hb", "gp")


class MultitunePolicy:
    """Drives a multitune `Optimizer` with the history and the running jobs as pending."""

    def __init__(self, problem: Problem, optimizer: Optimizer, multitask: bool, seed: int) -> None:
        self.spec = ExperimentSpec.from_json(problem.definition(multitask))
        self.optimizer = optimizer
        self.seed = seed
        self.observations: list[Observation] = []
        self.pending: dict[int, Pending] = {}
        self.state: dict[str, Any] | None = None
        self.sources: dict[str, int] = {}

    def ask(self, k: int) -> list[Job]:
        result = self.optimizer.suggest(
            self.spec, self.observations, list(self.pending.values()), k, self.seed, self.state
        )
        self.state = result.state
        jobs = []
        for candidate in result.candidates:
            self.sources[candidate.source] = self.sources.get(candidate.source, 0) + 1
            s = self.spec.task_cost(candidate.task)
            job = Job(candidate.assignments, s, s, handle=candidate.task)
            self.pending[id(job)] = Pending(candidate.assignments, candidate.task)
            jobs.append(job)
        return jobs

    def tell(self, job: Job, value: float | None) -> Job | None:
        self.pending.pop(id(job), None)
        values = {} if value is None else {"value": value}
        self.observations.append(
            Observation(job.assignments, job.handle, values, failed=value is None)
        )
        return None


class OptunaPolicy:
    """An Optuna study driven through ask/tell; with a pruner, trials climb the fidelities."""

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
            assignments = {p["name"]: _suggest(trial, p) for p in self.problem.parameters}
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


def make_method(name: str, problem: Problem, seed: int, settings: BayesSettings) -> Any:
    """The method called ``name`` (one of `METHODS`) for one seeded run."""
    if name == "mtbo":
        return MultitunePolicy(problem, MultitaskOptimizer(settings), True, seed)
    if name == "sfbo":
        return MultitunePolicy(problem, MultitaskOptimizer(settings), False, seed)
    if name == "random":
        return MultitunePolicy(problem, RandomOptimizer(), False, seed)
    if name in ("tpe_hb", "gp"):
        return OptunaPolicy(problem, name, seed)
    raise ValueError(f"unknown method {name!r}")


def _suggest(trial: optuna.Trial, parameter: dict[str, Any]) -> Any:
    name = parameter["name"]
    if parameter["type"] == "categorical":
        return trial.suggest_categorical(name, parameter["categorical_values"])
    bounds = parameter["bounds"]
    if parameter["type"] == "int":
        return trial.suggest_int(name, bounds["min"], bounds["max"])
    log = parameter.get("transformation") == "log"
    return trial.suggest_float(name, bounds["min"], bounds["max"], log=log)
