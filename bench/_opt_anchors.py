"""The leading multi-fidelity methods as ask/tell objects for `_opt_sim.simulate`.

Each is called as a library, with its own defaults except where stated, on the same four
fidelities as multitune (levels 1, 2, 4, 8 = cost x 8; successive halving with ``eta = 2``):

* ``dehb``: DEHB (Awad et al. 2021; PyPI ``dehb``): differential evolution inside Hyperband
  brackets, asked once per free worker. A job at fidelity ``s`` starts from scratch and costs
  ``s``.
* ``mobster``, ``hypertune``: Syne Tune's MOBSTER (Klein et al. 2020; a GP over configurations
  and levels driving asynchronous successive halving) and Hyper-Tune (Li et al. 2022; several
  brackets, a model-based bracket choice and an ensemble over levels). Both use the
  ``stopping`` rule: a trial trains on level by level while the rule lets it, so a level costs
  only the fidelity it adds (the run resumes). ``points_to_evaluate=[]``, so that every method
  starts from random points rather than the space's centre. Syne Tune 0.16 no longer ships
  them; they come from its 0.14 releases (see docs/benchmarks.md for the install).
* ``smac``: SMAC3's multi-fidelity facade (a random forest and Hyperband; Lindauer et al.
  2022), ``n_trials`` set to the budget's count of cheapest runs (which sizes its initial
  design). Each trial starts from scratch.

Failed evaluations (the ``mixed`` problem only) are reported as failures where the library
has a notion of one (Syne Tune, SMAC) and as the worst value seen so far otherwise (DEHB).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from _opt_problems import FIDELITIES
from _opt_problems import Problem
from _opt_sim import Job

ANCHORS = ("dehb", "mobster", "hypertune", "smac")
#: Hyperband levels per fidelity, and the largest level.
LEVELS = {s: int(s * 8) for s in FIDELITIES}
MAX_LEVEL = 8


def make_anchor(name: str, problem: Problem, seed: int, workdir: Path) -> Any:
    """The anchor called ``name`` (one of `ANCHORS`) for one seeded run; ``workdir`` is an
    empty folder for files a library insists on writing."""
    if name == "dehb":
        return DehbPolicy(problem, seed, workdir)
    if name in ("mobster", "hypertune"):
        return SyneTunePolicy(problem, name, seed)
    if name == "smac":
        return SmacPolicy(problem, seed, workdir)
    raise ValueError(f"unknown anchor {name!r}")


def config_space(problem: Problem, seed: int) -> Any:
    """The problem's parameters as a ConfigSpace space (rounded doubles as log-scaled ints)."""
    import ConfigSpace as CS

    space = CS.ConfigurationSpace(seed=seed)
    for p in problem.parameters:
        name = p["name"]
        if p["type"] == "categorical":
            space.add(CS.CategoricalHyperparameter(name, list(p["categorical_values"])))
            continue
        lo, hi = p["bounds"]["min"], p["bounds"]["max"]
        log = p.get("transformation") == "log"
        if p["type"] == "int" or name in problem.rounded:
            space.add(CS.UniformIntegerHyperparameter(name, int(lo), int(hi), log=log))
        else:
            space.add(CS.UniformFloatHyperparameter(name, lo, hi, log=log))
    return space


def _assignments(problem: Problem, config: Any) -> dict[str, Any]:
    out = {}
    for p in problem.parameters:
        value = config[p["name"]]
        out[p["name"]] = str(value) if p["type"] == "categorical" else value
    return out


class _Worst:
    """The worst value reported so far, standing in for a failure."""

    def __init__(self) -> None:
        self.value = -math.inf

    def __call__(self, value: float | None) -> float:
        if value is not None:
            self.value = max(self.value, value)
            return value
        return self.value if math.isfinite(self.value) else 1e6


class DehbPolicy:
    """DEHB through its ask/tell interface (one process, no Dask workers)."""

    def __init__(self, problem: Problem, seed: int, workdir: Path) -> None:
        from dehb import DEHB

        self.problem = problem
        space = config_space(problem, seed)
        self.dehb = DEHB(
            cs=space,
            dimensions=len(list(space.values())),
            min_fidelity=1,
            max_fidelity=MAX_LEVEL,
            eta=2,
            n_workers=1,
            seed=seed,
            output_path=str(workdir),
            save_freq=None,
            log_level="ERROR",
        )
        self.worst = _Worst()

    def ask(self, k: int) -> list[Job]:
        jobs = []
        for _ in range(k):
            info = self.dehb.ask()
            s = float(info["fidelity"]) / MAX_LEVEL
            jobs.append(Job(_assignments(self.problem, info["config"]), s, s, handle=info))
        return jobs

    def tell(self, job: Job, value: float | None) -> Job | None:
        self.dehb.tell(job.handle, {"fitness": self.worst(value), "cost": job.s})
        return None


class SyneTunePolicy:
    """Syne Tune's MOBSTER or Hyper-Tune scheduler, driven without its Tuner."""

    def __init__(self, problem: Problem, method: str, seed: int) -> None:
        from syne_tune.config_space import choice
        from syne_tune.config_space import lograndint
        from syne_tune.config_space import loguniform
        from syne_tune.config_space import randint
        from syne_tune.config_space import uniform
        from syne_tune.optimizer.legacy_baselines import MOBSTER
        from syne_tune.optimizer.legacy_baselines import HyperTune

        logging.getLogger("syne_tune").setLevel(logging.ERROR)
        self.problem = problem
        space: dict[str, Any] = {"levels": MAX_LEVEL}
        for p in problem.parameters:
            name = p["name"]
            if p["type"] == "categorical":
                space[name] = choice(list(p["categorical_values"]))
                continue
            lo, hi = p["bounds"]["min"], p["bounds"]["max"]
            log = p.get("transformation") == "log"
            if p["type"] == "int" or name in problem.rounded:
                space[name] = (lograndint if log else randint)(int(lo), int(hi))
            else:
                space[name] = (loguniform if log else uniform)(lo, hi)
        scheduler = MOBSTER if method == "mobster" else HyperTune
        self.scheduler = scheduler(
            space,
            metric="value",
            mode="min",
            resource_attr="level",
            max_resource_attr="levels",
            grace_period=1,
            reduction_factor=2,
            type="stopping",
            random_seed=seed,
            points_to_evaluate=[],
        )
        self.trials = 0

    def ask(self, k: int) -> list[Job]:
        from syne_tune.backend.trial_status import Trial

        jobs = []
        for _ in range(k):
            suggestion = self.scheduler.suggest(self.trials)
            if suggestion is None:
                break
            trial = Trial(
                trial_id=self.trials, config=suggestion.config, creation_time=datetime.now()
            )
            self.trials += 1
            self.scheduler.on_trial_add(trial)
            s = FIDELITIES[0]
            jobs.append(Job(_assignments(self.problem, suggestion.config), s, s, handle=trial))
        return jobs

    def tell(self, job: Job, value: float | None) -> Job | None:
        trial = job.handle
        if value is None:
            self.scheduler.on_trial_error(trial)
            return None
        result = {"value": value, "level": LEVELS[job.s]}
        decision = self.scheduler.on_trial_result(trial, result)
        if job.s == 1.0:
            self.scheduler.on_trial_complete(trial, result)
            return None
        if decision != "CONTINUE":
            return None
        s = FIDELITIES[FIDELITIES.index(job.s) + 1]
        return Job(job.assignments, s, s - job.s, handle=trial)


class SmacPolicy:
    """SMAC3's multi-fidelity facade through its ask/tell interface."""

    def __init__(self, problem: Problem, seed: int, workdir: Path) -> None:
        from smac import MultiFidelityFacade
        from smac import Scenario

        self.problem = problem
        scenario = Scenario(
            config_space(problem, seed),
            deterministic=True,
            n_trials=int(problem.budget * MAX_LEVEL),
            min_budget=1,
            max_budget=MAX_LEVEL,
            seed=seed,
            output_directory=workdir / "smac",
        )
        self.smac = MultiFidelityFacade(
            scenario,
            _never_called,
            intensifier=MultiFidelityFacade.get_intensifier(scenario, eta=2),
            overwrite=True,
            logging_level=logging.ERROR,
        )

    def ask(self, k: int) -> list[Job]:
        jobs = []
        for _ in range(k):
            info = self.smac.ask()
            s = float(info.budget) / MAX_LEVEL
            jobs.append(Job(_assignments(self.problem, info.config), s, s, handle=info))
        return jobs

    def tell(self, job: Job, value: float | None) -> Job | None:
        from smac.runhistory.dataclasses import TrialValue
        from smac.runhistory.enumerations import StatusType

        if value is None:
            self.smac.tell(job.handle, TrialValue(cost=math.inf, status=StatusType.CRASHED))
        else:
            self.smac.tell(job.handle, TrialValue(cost=value))
        return None


def _never_called(config: Any, seed: int = 0, budget: float = 1.0) -> float:
    raise AssertionError("SMAC runs through ask/tell here")
