"""MF-2S acquisition: choose the configuration at the full-cost task, then the task to run.

Stage A maximizes, over configurations at the full-cost task, ``qLogNoisyExpectedImprovement``
(one optimized metric) or ``qLogNoisyExpectedHypervolumeImprovement`` (two), with constraint
metrics as probabilistic constraints (their GPs' probability of feasibility weights the
improvement). The baseline is every observed configuration moved to the full-cost task, so the
incumbent is the model's belief about full-cost performance, not a cheap task's score. It is
maximized once per conditional branch: with `optimize_acqf_mixed_alternating` (random starts)
when integer, grid or categorical columns are free, with `optimize_acqf` (L-BFGS-B, or SLSQP
under linear constraints) otherwise.

Stage B scores each task ``m`` at the chosen ``x*`` by how much one observation of
``y(x*, m)`` would shrink the variance of ``f(x*, full)``, per unit cost:
``VR_m = Cov(f(x*, full), y(x*, m))^2 / (Var(y(x*, m)) Var(f(x*, full)))`` and
``score_m = VR_m / cost_m`` (summed over optimized metrics); the caller picks the best allowed
task. This is a one-point, closed-form stand-in for "information about the full-cost optimum
per unit cost", which cost-aware entropy search, MF-MES and multi-fidelity KG estimate at a much
higher price (Swersky et al. 2013; Wu et al. 2019).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective
from botorch.models.gpytorch import GPyTorchModel
from botorch.models.model import Model
from botorch.models.model_list_gp_regression import ModelListGP
from botorch.optim.optimize import optimize_acqf
from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating
from botorch.posteriors.gpytorch import GPyTorchPosterior
from botorch.sampling.normal import SobolQMCNormalSampler
from torch import Tensor

from services.suggester.optimizer._data import Outcome
from services.suggester.optimizer._data import TrainingData
from services.suggester.optimizer._transform import SpaceTransform
from shared.space import ExperimentSpec

#: Relative margin below the worst observed value for the hypervolume reference point.
_REF_MARGIN = 0.1


@dataclass(frozen=True)
class AcquisitionSettings:
    """Effort of stage A: restarts, raw samples, MC samples, L-BFGS-B iterations of a
    purely continuous problem, alternating steps of a mixed one, conditional branches."""

    num_restarts: int = 4
    raw_samples: int = 256
    mc_samples: int = 128
    maxiter: int = 100
    maxiter_alternating: int = 16
    max_branches: int = 8


def joint_model(models: Sequence[GPyTorchModel]) -> Model:
    """The one model, or a `ModelListGP` of several (one output per outcome)."""
    return models[0] if len(models) == 1 else ModelListGP(*models)


def target_acquisition(
    models: Sequence[GPyTorchModel],
    X_baseline: Tensor,
    data: TrainingData,
    transform: SpaceTransform,
    settings: AcquisitionSettings,
    seed: int,
) -> AcquisitionFunction:
    """Stage A's acquisition function on full-cost rows.

    Args:
        models: One (pending-conditioned) GP per outcome of ``data``.
        X_baseline: ``r x D`` observed configurations, task column at the full-cost task.
        data: The training data (its outcomes and, for two metrics, the reference point).
        transform: The experiment's model space.
        settings: Acquisition effort.
        seed: Seed of the QMC sampler.
    """
    model = joint_model(models)
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([settings.mc_samples]), seed=seed)
    outcomes = data.outcomes
    objectives = [j for j, o in enumerate(outcomes) if o.objective]
    constraints: list[Callable[[Tensor], Tensor]] = [
        partial(_constraint, j, float(o.threshold))
        for j, o in enumerate(outcomes)
        if not o.objective and o.threshold is not None
    ]
    if len(objectives) > 1:
        return qLogNoisyExpectedHypervolumeImprovement(
            model=model,
            ref_point=_reference_point(data, transform, objectives),
            X_baseline=X_baseline,
            sampler=sampler,
            objective=IdentityMCMultiOutputObjective(outcomes=objectives),
            constraints=constraints or None,
            prune_baseline=True,
        )
    objective = None
    if len(outcomes) > 1:
        objective = GenericMCObjective(partial(_select, objectives[0]))
    return qLogNoisyExpectedImprovement(
        model=model,
        X_baseline=X_baseline,
        sampler=sampler,
        objective=objective,
        constraints=constraints or None,
        prune_baseline=True,
    )


def optimize_target(
    acq: AcquisitionFunction,
    transform: SpaceTransform,
    settings: AcquisitionSettings,
    rng: np.random.Generator,
) -> tuple[Tensor, float]:
    """Best ``D``-dim full-cost row over the conditional branches, and its acquisition value."""
    best_x, best_value = None, -float("inf")
    constraints = transform.inequality_constraints()
    for fixed in transform.branches(settings.max_branches, rng):
        if transform.task_column is not None:
            fixed[transform.task_column] = transform.target_value
        free_discrete = (set(transform.discrete_dims) | set(transform.cat_dims)) - set(fixed)
        if free_discrete:
            X, value = optimize_acqf_mixed_alternating(
                acq_function=acq,
                bounds=transform.bounds,
                discrete_dims=transform.discrete_dims,
                cat_dims=transform.cat_dims,
                options={
                    "maxiter_alternating": settings.maxiter_alternating,
                    "initialization_strategy": "random",
                },
                q=1,
                raw_samples=settings.raw_samples,
                num_restarts=settings.num_restarts,
                fixed_features=fixed,
                inequality_constraints=constraints,
            )
        else:
            X, value = optimize_acqf(
                acq_function=acq,
                bounds=transform.bounds,
                q=1,
                num_restarts=settings.num_restarts,
                raw_samples=settings.raw_samples,
                options={"maxiter": settings.maxiter},
                fixed_features=fixed or None,
                inequality_constraints=constraints,
            )
        assert value is not None
        if float(value) > best_value:
            best_x, best_value = X[0], float(value)
    assert best_x is not None
    return best_x, best_value


def task_scores(
    models: Sequence[GPyTorchModel],
    outcomes: Sequence[Outcome],
    transform: SpaceTransform,
    spec: ExperimentSpec,
    x: Tensor,
) -> dict[str, dict[str, float]]:
    """Stage B's table ``{task: {"vr", "cost", "score"}}`` at the ``D``-dim row ``x``."""
    names = list(transform.task_values)
    pairs = x.repeat(len(names), 2, 1)
    for i, name in enumerate(names):
        pairs[i, 0, -1] = transform.task_values[name]
        pairs[i, 1, -1] = transform.target_value
    vr = torch.zeros(len(names), dtype=x.dtype)
    with torch.no_grad():
        for model, outcome in zip(models, outcomes, strict=True):
            if not outcome.objective:
                continue
            posterior = model.posterior(pairs, observation_noise=True)
            assert isinstance(posterior, GPyTorchPosterior)  # no posterior transform
            cov = posterior.mvn.covariance_matrix
            latent = model.posterior(pairs[:, 1:]).variance.reshape(-1)
            vr += cov[:, 0, 1].pow(2) / (cov[:, 0, 0] * latent).clamp_min(1e-300)
    table = {}
    for i, name in enumerate(names):
        cost = spec.task_cost(name)
        table[name] = {"vr": float(vr[i]), "cost": cost, "score": float(vr[i]) / cost}
    return table


def _select(index: int, samples: Tensor, X: Tensor | None = None) -> Tensor:
    return samples[..., index]


def _constraint(index: int, threshold: float, samples: Tensor) -> Tensor:
    """Feasible (non-positive) when outcome ``index`` is at least ``threshold``."""
    return threshold - samples[..., index]


def _reference_point(
    data: TrainingData, transform: SpaceTransform, objectives: Sequence[int]
) -> Tensor:
    """Slightly below the worst full-cost value of each objective (all tasks if none)."""
    rows = data.X[:, -1] == transform.target_value if transform.task_column is not None else None
    Y = data.Y[:, objectives]
    if rows is not None and bool(rows.any()):
        Y = Y[rows]
    low, high = Y.min(dim=0).values, Y.max(dim=0).values
    return low - _REF_MARGIN * (high - low).clamp_min(1e-9)
