"""Benchmark problems for ``bench/optimizer.py``: four fidelities, cost = fidelity.

Three families (`GROUPS`), each problem addressed by name (`problem`):

* ``lcbench``: LCBench's surrogate on six OpenML instances (`_opt_lcbench`), named
  ``lcbench-<instance>``; absent (with a message saying why) without the surrogate's files;
* ``shifted``: Hartmann-6 whose cheap-task optimum shifts by 0, a small or a large amount
  (`_opt_shifted`);
* ``classic`` (the earlier benchmark):

* ``hartmann``: BoTorch's `AugmentedHartmann` (6 parameters in [0, 1]), minimized.
* ``branin``: BoTorch's `AugmentedBranin` (2 parameters), minimized.
* ``mixed``: a learning-curve problem (reference P1): validation error after ``e`` of 80
  epochs of a model with a log-scaled learning rate and weight decay, a dropout rate, an integer
  depth and a categorical optimizer; ``error = err_inf(x) + gap(x) * (80 / e - 1) / 7 + noise``.
  The gap is larger for small learning rates, for SGD and for deeper models, so rankings at 10
  epochs differ from those at 80; a too-large learning rate diverges (a failed evaluation) with
  Adam or RMSProp (about 7% of the space). The noise-free optimum is known in closed form.

Every problem's fidelities are ``s in {1/8, 1/4, 1/2, 1}`` (tasks ``s1``..``s8``, Hyperband
steps 1, 2, 4, 8). Regret is the noise-free full-fidelity value of a configuration minus the
optimum; a target is a regret of at most a fraction (1%, 0.1%) of the function's range over the
domain (``span``). A problem whose curves continue (``continuable``: LCBench and the shifted
family) lets a run at ``s`` be continued to ``s' > s`` for the difference in cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import _opt_lcbench as lcbench
import _opt_shifted as shifted
import numpy as np
import torch
from botorch.test_functions.multi_fidelity import AugmentedBranin
from botorch.test_functions.multi_fidelity import AugmentedHartmann

FIDELITIES = (0.125, 0.25, 0.5, 1.0)
TASKS = tuple({"name": f"s{int(s * 8)}", "cost": s} for s in FIDELITIES)


@dataclass(frozen=True)
class Problem:
    """A minimization problem: ``evaluate(assignments, s, rng)`` returns None when it fails."""

    name: str
    parameters: tuple[dict[str, Any], ...]
    evaluate: Callable[[dict[str, Any], float, np.random.Generator], float | None]
    true_value: Callable[[dict[str, Any]], float]
    optimum: float
    span: float
    budget: float
    #: A run at one fidelity can be continued to a higher one for the difference in cost.
    continuable: bool = False
    #: Log-scaled doubles the evaluation rounds to integers (log-scaled ints to the anchors).
    rounded: tuple[str, ...] = ()

    def definition(self, multitask: bool, workers: int = 4) -> dict[str, Any]:
        """SigOpt experiment JSON, with the four tasks or single-task at full cost."""
        out: dict[str, Any] = {
            "parameters": list(self.parameters),
            "metrics": [{"name": "value", "objective": "minimize"}],
            "observation_budget": self.budget,
            "parallel_bandwidth": workers,
        }
        if multitask:
            out["tasks"] = list(TASKS)
        return out

    def regret(self, assignments: dict[str, Any]) -> float:
        return self.true_value(assignments) - self.optimum


def _botorch_problem(
    name: str, function: Any, names: list[str], budget: float, span: float
) -> Problem:
    bounds = function.bounds.T.tolist()[: len(names)]
    parameters = tuple(
        {"name": n, "type": "double", "bounds": {"min": lo, "max": hi}}
        for n, (lo, hi) in zip(names, bounds, strict=True)
    )

    def value(assignments: dict[str, Any], s: float) -> float:
        x = [float(assignments[n]) for n in names] + [s]
        return float(function.evaluate_true(torch.tensor([x], dtype=torch.float64))[0])

    return Problem(
        name=name,
        parameters=parameters,
        evaluate=lambda a, s, rng: value(a, s),
        true_value=lambda a: value(a, 1.0),
        optimum=float(function.optimal_value),
        span=span,
        budget=budget,
    )


# --------------------------------------------------------------------------- mixed (P1)
_OPTIMIZERS = {"adam": (0.0, -3.0), "sgd": (0.012, -1.8), "rmsprop": (0.02, -3.3)}
_MIXED_NOISE = 0.002
_MIXED_BASE = 0.05


def _err_inf(a: dict[str, Any]) -> float:
    offset, best_lr = _OPTIMIZERS[a["optimizer"]]
    layers = int(a["layers"])
    return (
        _MIXED_BASE
        + offset
        + 0.04 * (math.log10(a["lr"]) - best_lr) ** 2
        + 0.01 * (math.log10(a["wd"]) + 4.0) ** 2
        + 0.4 * (a["dropout"] - (0.1 * layers - 0.05)) ** 2
        + 0.008 * (layers - 3) ** 2
    )


def _gap(a: dict[str, Any]) -> float:
    slow = max(0.0, -2.5 - math.log10(a["lr"]))
    return (
        0.05 * (1.0 + slow) + 0.05 * (a["optimizer"] == "sgd") + 0.02 * (int(a["layers"]) - 1) / 3
    )


def _mixed_evaluate(a: dict[str, Any], s: float, rng: np.random.Generator) -> float | None:
    limit = -1.15 if a["optimizer"] == "sgd" else -1.4
    if math.log10(a["lr"]) > limit:
        return None
    epochs = 80 * s
    return _err_inf(a) + _gap(a) * (80 / epochs - 1) / 7 + float(rng.normal(0, _MIXED_NOISE))


def _mixed_span() -> float:
    rng = np.random.default_rng(0)
    values = [
        _err_inf(
            {
                "lr": 10 ** rng.uniform(-4, -1),
                "wd": 10 ** rng.uniform(-6, -2),
                "dropout": rng.uniform(0, 0.5),
                "layers": int(rng.integers(1, 5)),
                "optimizer": str(rng.choice(list(_OPTIMIZERS))),
            }
        )
        for _ in range(20000)
    ]
    return max(values) - _MIXED_BASE


#: Problem names by family; ``lcbench`` needs the surrogate (`_opt_lcbench.missing`).
GROUPS = {
    "lcbench": tuple(f"lcbench-{i}" for i in lcbench.INSTANCES),
    "shifted": tuple(shifted.SHIFTS),
    "classic": ("hartmann", "branin", "mixed"),
}


def expand(names: str) -> list[str]:
    """Problem names from a comma-separated list of names and family names."""
    out: list[str] = []
    for name in names.split(","):
        out += GROUPS.get(name, (name,))
    return out


@cache
def problem(name: str) -> Problem:
    """The problem called ``name`` (built once per process).

    Raises:
        ValueError: for an unknown name.
        RuntimeError: for an LCBench problem without the surrogate, saying what is missing.
    """
    if name.startswith("lcbench-"):
        reason = lcbench.missing()
        if reason is not None:
            raise RuntimeError(reason)
        return _lcbench_problem(name.removeprefix("lcbench-"))
    if name in shifted.SHIFTS:
        return _shifted_problem(name)
    classic = _classic()
    if name not in classic:
        raise ValueError(f"unknown problem {name!r}")
    return classic[name]


def _lcbench_problem(instance: str) -> Problem:
    best, span = lcbench.landscape(instance)

    def error(a: dict[str, Any], s: float) -> float:
        return float(lcbench.surrogate().error(instance, [a], [lcbench.EPOCHS[s]])[0])

    return Problem(
        name=f"lcbench-{instance}",
        parameters=lcbench.PARAMETERS,
        evaluate=lambda a, s, rng: error(a, s),
        true_value=lambda a: error(a, 1.0),
        optimum=best,
        span=span,
        budget=16.0,
        continuable=True,
        rounded=lcbench.ROUNDED,
    )


def _shifted_problem(name: str) -> Problem:
    shift = shifted.SHIFTS[name]
    return Problem(
        name=name,
        parameters=shifted.PARAMETERS,
        evaluate=lambda a, s, rng: (
            shifted.value(shift, a, s) + float(rng.normal(0, shifted.NOISE))
        ),
        true_value=lambda a: shifted.value(shift, a, 1.0),
        optimum=shifted.OPTIMUM,
        span=shifted.SPAN,
        budget=16.0,
        continuable=True,
    )


@cache
def _classic() -> dict[str, Problem]:
    """The earlier three problems by name (the spans are measured on dense random samples)."""
    mixed = Problem(
        name="mixed",
        parameters=(
            {
                "name": "lr",
                "type": "double",
                "bounds": {"min": 1e-4, "max": 1e-1},
                "transformation": "log",
            },
            {
                "name": "wd",
                "type": "double",
                "bounds": {"min": 1e-6, "max": 1e-2},
                "transformation": "log",
            },
            {"name": "dropout", "type": "double", "bounds": {"min": 0.0, "max": 0.5}},
            {"name": "layers", "type": "int", "bounds": {"min": 1, "max": 4}},
            {"name": "optimizer", "type": "categorical", "categorical_values": list(_OPTIMIZERS)},
        ),
        evaluate=_mixed_evaluate,
        true_value=_err_inf,
        optimum=_MIXED_BASE,
        span=_mixed_span(),
        budget=25.0,
    )
    return {
        "hartmann": _botorch_problem(
            "hartmann", AugmentedHartmann(), [f"x{i}" for i in range(1, 7)], 25.0, 3.32237
        ),
        "branin": _botorch_problem("branin", AugmentedBranin(), ["x1", "x2"], 15.0, 307.0),
        "mixed": mixed,
    }
