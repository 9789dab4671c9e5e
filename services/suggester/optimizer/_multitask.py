"""Bayesian optimization over parameters and tasks: the ``type: offline`` optimizer.

One call runs, in order:

1. the initial design (`_design`) while it lasts (random points while nothing has succeeded);
2. a GP per outcome (`_model`) fitted on the history (`_data`), warm-started from ``state``;
3. the models conditioned on every pending evaluation with their own posterior mean (kriging
   believer), so parallel workers get different points;
4. per candidate, `_choice.CandidateChooser` (promotion, else MF-2S under the budget guards of
   `_policy`), then conditioning on that candidate before choosing the next one.

A single-task experiment runs the same path without the task column. Any error in steps 2-4
turns the remaining candidates into random ones with ``source="fallback"`` and the error text
in ``info["error"]``; the caller logs it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np
import torch
from botorch.exceptions.warnings import BadInitialCandidatesWarning
from botorch.exceptions.warnings import InputDataWarning
from botorch.exceptions.warnings import NumericsWarning
from botorch.exceptions.warnings import OptimizationWarning
from botorch.models.gpytorch import GPyTorchModel
from botorch.utils.sampling import manual_seed
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from gpytorch.utils.warnings import NumericalWarning
from scipy.optimize import OptimizeWarning
from torch import Tensor

from services.suggester.optimizer._acquisition import AcquisitionSettings
from services.suggester.optimizer._base import Candidate
from services.suggester.optimizer._base import Observation
from services.suggester.optimizer._base import Optimizer
from services.suggester.optimizer._base import Pending
from services.suggester.optimizer._base import SuggestResult
from services.suggester.optimizer._base import history_seed
from services.suggester.optimizer._base import used_keys
from services.suggester.optimizer._choice import CandidateChooser
from services.suggester.optimizer._continuation import Runs
from services.suggester.optimizer._data import build_training_data
from services.suggester.optimizer._design import design_candidates
from services.suggester.optimizer._design import design_remaining
from services.suggester.optimizer._model import DEFAULT_MODEL
from services.suggester.optimizer._model import FitSettings
from services.suggester.optimizer._model import fit_models
from services.suggester.optimizer._model import task_values
from services.suggester.optimizer._policy import PolicySettings
from services.suggester.optimizer._policy import Spend
from services.suggester.optimizer._random import random_candidates
from services.suggester.optimizer._transform import SpaceTransform
from shared.space import ExperimentSpec
from shared.space import assignment_key

#: Warnings BoTorch and GPyTorch emit on a healthy run (categorical codes outside the unit
#: cube, capped optimizer iterations, jitter added to a Cholesky factor, ...).
_EXPECTED_WARNINGS = (
    InputDataWarning,
    OptimizationWarning,
    BadInitialCandidatesWarning,
    NumericsWarning,
    NumericalWarning,
)
#: Messages of generic warning classes that are expected, too: a restart of the acquisition
#: optimizer after an abnormal L-BFGS-B stop, SciPy's SLSQP (used under linear constraints)
#: ignoring BoTorch's ``tol`` option, and torch's sparse-tensor notice.
_EXPECTED_MESSAGES = (
    ("Optimization failed in `gen_candidates_scipy`", RuntimeWarning),
    ("Unknown solver options", OptimizeWarning),
    ("Sparse invariant checks", UserWarning),
)


@dataclass(frozen=True)
class BayesSettings:
    """Every knob of the optimizer; the defaults meet the latency targets on 2 CPU cores."""

    model: str = DEFAULT_MODEL
    fit: FitSettings = field(default_factory=FitSettings)
    acquisition: AcquisitionSettings = field(default_factory=AcquisitionSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    max_points: int = 300


class MultitaskOptimizer(Optimizer):
    """Multitask (multi-fidelity) Bayesian optimization; see the module docstring."""

    def __init__(self, settings: BayesSettings | None = None) -> None:
        self.settings = settings or BayesSettings()

    def suggest(
        self,
        spec: ExperimentSpec,
        observations: Sequence[Observation],
        pending: Sequence[Pending],
        k: int,
        seed: int,
        state: dict[str, Any] | None = None,
    ) -> SuggestResult:
        state = dict(state or {})
        used = used_keys(observations, pending)
        remaining = design_remaining(spec, observations, pending)
        candidates = design_candidates(spec, used, min(k, remaining), seed)
        rest = k - len(candidates)
        if rest <= 0:
            return SuggestResult(candidates, state)
        call_seed = history_seed(seed, observations, pending)
        rng = np.random.default_rng(call_seed)
        if not any(not o.failed and o.values for o in observations):
            candidates += random_candidates(spec, used, rest, rng, "random")
            return SuggestResult(candidates, state)
        running = [*pending, *(Pending(c.assignments, c.task, c.continues) for c in candidates)]
        trial_used = set(used)
        try:
            more, state["model"] = self._model_candidates(
                spec, observations, running, rest, call_seed, state.get("model"), trial_used
            )
        except Exception as exc:  # any failure of the numerics must still yield candidates
            info = {"error": f"{type(exc).__name__}: {exc}"}
            more = random_candidates(spec, used, rest, rng, "fallback", info)
        return SuggestResult(candidates + more, state)

    def _model_candidates(
        self,
        spec: ExperimentSpec,
        observations: Sequence[Observation],
        pending: Sequence[Pending],
        k: int,
        seed: int,
        model_state: dict[str, Any] | None,
        used: set[str],
    ) -> tuple[list[Candidate], dict[str, Any]]:
        settings = self.settings
        started = time.perf_counter()
        with warnings.catch_warnings(), manual_seed(seed):
            for category in _EXPECTED_WARNINGS:
                warnings.simplefilter("ignore", category)
            for message, category in _EXPECTED_MESSAGES:
                warnings.filterwarnings("ignore", message=message, category=category)
            values = task_values(spec, settings.model) if spec.is_multitask else {}
            transform = SpaceTransform(spec, values)
            center = settings.model == "fidelity"
            data = build_training_data(
                spec, transform, observations, settings.max_points, seed, center
            )
            models, new_state, refit = fit_models(
                settings.model, transform, data, len(observations), model_state, settings.fit
            )
            fit_seconds = time.perf_counter() - started
            if pending:
                rows = transform.encode_rows([(p.assignments, p.task) for p in pending])
                models = _believe(models, rows)
            runs = Runs(spec, observations)
            spend = Spend()
            items: list[Observation | Pending] = [*observations, *pending]
            for item in items:
                spend.add(spec, item.task, runs.charged(item.task, item.continues))
            chooser = CandidateChooser(
                spec,
                transform,
                data,
                observations,
                settings.acquisition,
                settings.policy,
                used,
                runs,
            )
            out = []
            for i in range(k):
                begun = time.perf_counter()
                candidate = chooser.next(models, spend, np.random.default_rng(seed + i), seed + i)
                candidate.info.update(
                    refit=refit,
                    n_train=data.n,
                    fit_seconds=round(fit_seconds, 4),
                    seconds=round(time.perf_counter() - begun, 4),
                )
                out.append(candidate)
                used.add(assignment_key(candidate.assignments, candidate.task))
                spend.add(spec, candidate.task, runs.charged(candidate.task, candidate.continues))
                row = transform.encode(candidate.assignments, candidate.task)
                models = _believe(models, torch.as_tensor(row).unsqueeze(0))
        return out, new_state


def _believe(models: list[GPyTorchModel], X: Tensor) -> list[GPyTorchModel]:
    """Each model conditioned on its own posterior mean at the ``n x D`` rows ``X``.

    A fixed-noise model gets its mean training noise (already on the standardized scale) for
    the believed rows.
    """
    out = []
    with torch.no_grad():
        for model in models:
            mean = model.posterior(X).mean
            kwargs = {}
            if isinstance(model.likelihood, FixedNoiseGaussianLikelihood):
                kwargs["noise"] = model.likelihood.noise.mean().expand_as(mean)
            conditioned = model.condition_on_observations(X, mean, **kwargs)
            assert isinstance(conditioned, GPyTorchModel)  # conditioning keeps the model class
            out.append(conditioned)
    return out
