"""The surrogate: one exact GP per outcome over parameters plus the task, warm-started.

`build_model` puts the task into the model in one of four ways (`MODEL_KINDS`). Experiments
use `DEFAULT_MODEL`, ``"task"``; the others are kept so that ``bench/optimizer.py --model``
can compare them with it (docs/optimizer.md has the measurements behind the choice).

* ``"task"`` (the default): `MultiTaskGP`, an ICM kernel ``k_x(x, x') * B[t, t']`` with a
  learned positive task covariance ``B``, a constant mean per task and, without reported noise,
  a noise level per task. It assumes nothing about how tasks relate and learns how well each
  cheap task predicts the full-cost one. ``B`` starts from an all-ones factor and a small
  diagonal (`_INITIAL_TASK_VAR`): the tasks start highly correlated and a capped fit lowers
  that where the data disagree. The all-ones start keeps the factor's columns equal, so ``B``
  stays rank one plus a diagonal.
* ``"fidelity"``: `SingleTaskMultiFidelityGP` with the task's cost as a data fidelity ``s``
  and the downsampling kernel ``k_x(x, x') * (c + ((1 - s)(1 - s'))^(1 + delta))``: a cheap
  task is the full-cost function plus a discrepancy that vanishes at ``s = 1``.
* ``"lcm"``: the ICM kernel plus a discrepancy term ``k_x'(x, x') * D[t, t']`` with its own
  lengthscales and a rank-1-plus-diagonal ``D`` (a two-term linear model of coregionalization,
  `_discrepancy_kernel`): tasks may differ along directions the shared term does not vary in.
  Until every task has an observation it is the ICM model (BoTorch fills in unobserved tasks
  for one task kernel only).
* ``"shift"``: the ICM kernel with a learned input offset per cheap task (`_shift`),
  ``k_x(x - d[t], x' - d[t']) * B[t, t']``: a cheap task's optimum may sit elsewhere than the
  full-cost one's, as a short run's best learning rate does.

ICM (``"task"``) found the full-cost optimum more often than the downsampling kernel under the
same policy, ``"lcm"`` costs about twice the compute per suggestion without a consistent gain,
and ``"shift"`` wins on a 2-D problem whose cheap optimum moves but loses on the 6-D one and
on LCBench.

``k_x`` is an RBF kernel with BoTorch's dimension-scaled lengthscale prior on the numeric
columns times a Hamming `CategoricalKernel` on the categorical columns. Outcomes are
standardized (`Standardize`; the fidelity model first centers each task, see `_data`);
numeric inputs are already in the unit cube (`_transform`), so no input transform is needed.
Fitting is L-BFGS-B on the marginal likelihood, capped at ``maxiter`` iterations and
warm-started from the previous call's hyperparameters, which travel in the optimizer's JSON
state. Between refits (every ``refit_every`` new observations) the previous hyperparameters
are reused without fitting; when the number of observations has doubled since the last fit
from the defaults, the fit starts from the defaults again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.gp_regression_fidelity import SingleTaskMultiFidelityGP
from botorch.models.gpytorch import GPyTorchModel
from botorch.models.kernels.categorical import CategoricalKernel
from botorch.models.kernels.positive_index import PositiveIndexKernel
from botorch.models.multitask import MultiTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.kernels import IndexKernel
from gpytorch.kernels import Kernel
from gpytorch.kernels import ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from services.suggester.optimizer._data import TrainingData
from services.suggester.optimizer._shift import TaskShift
from services.suggester.optimizer._transform import SpaceTransform
from shared.space import ExperimentSpec

MODEL_KINDS = ("task", "fidelity", "lcm", "shift")
DEFAULT_MODEL = "task"
#: Initial task-specific variance of the ICM kernel: with an all-ones factor the tasks start
#: 0.99 correlated, which a capped fit then lowers where the data disagree (a random start
#: left them near 0.8 after 100 iterations on AugmentedHartmann, where they are 0.9999).
_INITIAL_TASK_VAR = 0.05
#: Initial factor and task variances of the ``"lcm"`` model's discrepancy term.
_INITIAL_DISCREPANCY_FACTOR = 0.1
_INITIAL_DISCREPANCY_VAR = 0.001


@dataclass(frozen=True)
class FitSettings:
    """How hard to fit: L-BFGS-B iterations, and observations between hyperparameter fits."""

    maxiter: int = 100
    refit_every: int = 5


def task_values(spec: ExperimentSpec, kind: str) -> dict[str, float]:
    """Model-space value of each task: its rank by cost (``"task"``) or its cost."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
    ordered = sorted(spec.tasks, key=lambda t: t.cost)
    if kind in ("task", "lcm", "shift"):
        return {t.name: float(i) for i, t in enumerate(ordered)}
    return {t.name: t.cost for t in ordered}


def fit_models(
    kind: str,
    transform: SpaceTransform,
    data: TrainingData,
    n_observations: int,
    state: dict[str, Any] | None,
    settings: FitSettings,
) -> tuple[list[GPyTorchModel], dict[str, Any], bool]:
    """One fitted GP per outcome of ``data``, the state to keep, and whether any was fitted.

    Args:
        kind: One of `MODEL_KINDS` (ignored for a single-task experiment).
        transform: The experiment's model space.
        data: Training tensors (``X`` is ``n x D``, ``Y`` is ``n x m``).
        n_observations: Size of the whole history (``data`` may be subsampled).
        state: The ``"model"`` entry of the previous optimizer state, or None.
        settings: Fit effort.
    """
    signature = [kind, transform.dim, [o.name for o in data.outcomes], data.Yvar is not None]
    previous = state if state and state.get("signature") == signature else None
    refit = previous is None or n_observations - previous["n"] >= settings.refit_every
    cold = previous is None or n_observations >= 2 * previous["cold_n"]
    models, fitted = [], False
    for j in range(len(data.outcomes)):
        Yvar = None if data.Yvar is None else data.Yvar[:, j : j + 1]
        model = build_model(kind, transform, data.X, data.Y[:, j : j + 1], Yvar)
        warm = (
            previous is not None
            and not cold
            and load_hyperparameters(model, previous["params"][j])
        )
        if refit or not warm:
            mll = ExactMarginalLogLikelihood(model.likelihood, model)
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": settings.maxiter}})
            fitted = True
        model.eval()
        models.append(model)
    last = previous or {}
    new_state = {
        "signature": signature,
        "n": n_observations if fitted else last["n"],
        "cold_n": n_observations if cold else last["cold_n"],
        "params": [hyperparameters(m) for m in models],
    }
    return models, new_state, fitted


def build_model(
    kind: str, transform: SpaceTransform, X: Tensor, Y: Tensor, Yvar: Tensor | None
) -> GPyTorchModel:
    """An unfitted GP on ``X`` (``n x D``), ``Y`` and ``Yvar`` (``n x 1``)."""
    covar = data_kernel(transform)
    if transform.task_column is None:
        return SingleTaskGP(X, Y, Yvar, covar_module=covar, outcome_transform=Standardize(m=1))
    if kind == "shift" and transform.ordinal_dims:
        covar = TaskShift(
            covar,
            transform.dim,
            transform.task_column,
            len(transform.task_values),
            int(transform.target_value),
            transform.ordinal_dims,
        )
    if kind in ("task", "lcm", "shift"):
        model = MultiTaskGP(
            X,
            Y,
            task_feature=transform.task_column,
            train_Yvar=Yvar,
            covar_module=covar,
            all_tasks=sorted(int(v) for v in transform.task_values.values()),
            output_tasks=[int(transform.target_value)],
            outcome_transform=Standardize(m=1),
        )
        task_kernel = next(
            k for k in model.covar_module.kernels if isinstance(k, PositiveIndexKernel)
        )
        with torch.no_grad():
            task_kernel.covar_factor = torch.ones_like(task_kernel.covar_factor)
            task_kernel.var = torch.full_like(task_kernel.var, _INITIAL_TASK_VAR)
        if kind == "lcm" and _every_task_observed(transform, X):
            model.covar_module = model.covar_module + _discrepancy_kernel(transform)
        return model
    return SingleTaskMultiFidelityGP(
        X,
        Y,
        Yvar,
        data_fidelities=[transform.task_column],
        linear_truncated=False,
        covar_module=covar,
        outcome_transform=Standardize(m=1),
    )


def _every_task_observed(transform: SpaceTransform, X: Tensor) -> bool:
    return len(set(X[:, transform.task_column].tolist())) == len(transform.task_values)


def _discrepancy_kernel(transform: SpaceTransform) -> Kernel:
    """The second term of the ``"lcm"`` kernel: ``k_x'(x, x') * (v v^T + diag(w))[t, t']``.

    ``k_x'`` is a fresh `data_kernel` (its own lengthscales); ``v`` and ``w`` start small
    (``0.1`` and ``0.001``, against the first term's unit scale at the target task), so the
    term only grows where the data need a task difference the shared term cannot explain.
    """
    task_kernel = IndexKernel(
        num_tasks=len(transform.task_values), rank=1, active_dims=[transform.task_column]
    )
    with torch.no_grad():
        task_kernel.covar_factor.fill_(_INITIAL_DISCREPANCY_FACTOR)
        task_kernel.var = torch.full_like(task_kernel.var, _INITIAL_DISCREPANCY_VAR)
    return data_kernel(transform) * task_kernel


def data_kernel(transform: SpaceTransform) -> Kernel:
    """RBF (dimension-scaled prior) on numeric columns times Hamming on categorical ones.

    A product of both is wrapped in a `ScaleKernel`, which also keeps it one factor when
    `MultiTaskGP` multiplies it with its task kernel (BoTorch looks the task kernel up as the
    second factor).
    """
    parts: list[Kernel] = []
    if transform.ordinal_dims:
        parts.append(
            get_covar_module_with_dim_scaled_prior(
                ard_num_dims=len(transform.ordinal_dims), active_dims=transform.ordinal_dims
            )
        )
    if transform.cat_dims:
        cat = sorted(transform.cat_dims)
        parts.append(CategoricalKernel(ard_num_dims=len(cat), active_dims=cat))
    if len(parts) == 1:
        return parts[0]
    return ScaleKernel(parts[0] * parts[1])


def hyperparameters(model: GPyTorchModel) -> dict[str, list[Any]]:
    """The model's raw hyperparameters as JSON lists."""
    return {name: p.detach().cpu().tolist() for name, p in model.named_parameters()}


def load_hyperparameters(model: GPyTorchModel, params: dict[str, Any]) -> bool:
    """Copy saved hyperparameters into ``model``; False (and nothing copied) on any mismatch."""
    own = dict(model.named_parameters())
    if set(own) != set(params):
        return False
    values = {name: torch.as_tensor(v, dtype=own[name].dtype) for name, v in params.items()}
    if any(values[name].shape != own[name].shape for name in own):
        return False
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(values[name])
    return True
