"""LCBench problems for ``bench/optimizer.py``: real learning curves through a surrogate.

LCBench (Zimmer et al. 2021) holds learning curves of MLPs trained on 35 OpenML data sets;
YAHPO Gym (Pfisterer et al. 2022) packages an ONNX surrogate of them. The surrogate's files are
not part of the repository: they are read from ``../shared/data/lcbench`` relative to the
repository root (`DATA`), and the problems say so clearly when that folder is absent.

The surrogate is queried with ``onnxruntime`` directly: its inputs are the instance's code
from ``encoding.json`` (``x_cat``, int32) and the eight numeric inputs in the order of
`_INPUTS` (``x_cont``, float32, raw values); its first six outputs are `_OUTPUTS`. (PyPI's
``yahpo-gym`` wraps the same model, but pins ``numpy<2`` and ``ConfigSpace<=0.6.1``, which
conflict with the test environment and with SMAC3; this reader gave the same outputs as
``yahpo-gym`` 1.0.2 on the configurations checked.)

The problem: minimize the validation error ``100 - val_accuracy`` (percent) after 52 epochs,
with tasks of 6, 13, 26 and 52 epochs (costs 1/8, 1/4, 1/2, 1). The surrogate is
deterministic, so a curve continues for free: a 26-epoch run continued to 52 epochs reports
what a 52-epoch run would (``continuable``). Parameters follow LCBench's space; ``batch_size``
and ``max_units`` are log-scaled integers, which multitune's experiment expresses as log-scaled
doubles that the evaluation rounds (``Problem.rounded``). The optimum is not known in closed
form: `optimum` estimates it by a dense quasi-random search refined by local search, so a
regret is measured against the best value that search found.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.stats import qmc
from scipy.stats import spearmanr

#: The surrogate's folder: ``../shared/data/lcbench`` from the repository root.
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lcbench"
#: The three instances suggested with the data, and three whose 6-epoch ranking of the best
#: configurations agrees less with the 52-epoch one: 126025 (the weakest rank correlation over
#: the whole space, 0.57), 167190 (0.66) and 168910 (none among the best tenth, 0.03).
INSTANCES = ("3945", "7593", "34539", "126025", "167190", "168910")
#: Epochs of the four tasks (costs 1/8, 1/4, 1/2, 1).
EPOCHS = {0.125: 6, 0.25: 13, 0.5: 26, 1.0: 52}
PARAMETERS: tuple[dict[str, Any], ...] = (
    {
        "name": "batch_size",
        "type": "double",
        "bounds": {"min": 16.0, "max": 512.0},
        "transformation": "log",
    },
    {
        "name": "learning_rate",
        "type": "double",
        "bounds": {"min": 1e-4, "max": 1e-1},
        "transformation": "log",
    },
    {"name": "max_dropout", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
    {
        "name": "max_units",
        "type": "double",
        "bounds": {"min": 64.0, "max": 1024.0},
        "transformation": "log",
    },
    {"name": "momentum", "type": "double", "bounds": {"min": 0.1, "max": 0.99}},
    {"name": "num_layers", "type": "int", "bounds": {"min": 1, "max": 5}},
    {"name": "weight_decay", "type": "double", "bounds": {"min": 1e-5, "max": 0.1}},
)
#: Log-scaled doubles that are integers to the surrogate (log-scaled ints to the anchors).
ROUNDED = ("batch_size", "max_units")
_INPUTS = (
    "epoch",
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "num_layers",
    "max_units",
    "max_dropout",
)
_OUTPUTS = (
    "time",
    "val_accuracy",
    "val_cross_entropy",
    "val_balanced_accuracy",
    "test_cross_entropy",
    "test_balanced_accuracy",
)


def missing() -> str | None:
    """Why the LCBench problems cannot run here, or None when they can."""
    if not (DATA / "model.onnx").is_file():
        return f"LCBench surrogate not found: expected {DATA}/model.onnx (see its ABOUT.md)"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "LCBench needs onnxruntime: pip install -e '.[bench]'"
    return None


class Surrogate:
    """The ONNX model on one thread; `error` is ``100 - val_accuracy`` at given epochs."""

    def __init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(DATA / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.codes: dict[str, int] = json.loads((DATA / "encoding.json").read_text())[
            "OpenML_task_id"
        ]
        self.accuracy = _OUTPUTS.index("val_accuracy")

    def error(self, instance: str, configs: list[dict[str, Any]], epochs: list[int]) -> np.ndarray:
        """``n`` validation errors (percent) of ``n`` configurations at ``n`` epoch counts."""
        cont = np.array(
            [
                [float(e)] + [float(_rounded(c, name)) for name in _INPUTS[1:]]
                for c, e in zip(configs, epochs, strict=True)
            ],
            dtype=np.float32,
        )
        cat = np.full((len(configs), 1), self.codes[instance], dtype=np.int32)
        out = self.session.run(None, {"x_cat": cat, "x_cont": cont})[0]
        return np.asarray(100.0 - out[:, self.accuracy], dtype=float)


@cache
def surrogate() -> Surrogate:
    """The process's surrogate (loaded once)."""
    return Surrogate()


def _rounded(config: dict[str, Any], name: str) -> float:
    value = float(config[name])
    return float(round(value)) if name in ROUNDED else value


def from_unit(u: np.ndarray) -> dict[str, Any]:
    """A configuration from a point of the unit cube (one coordinate per `PARAMETERS` entry)."""
    out: dict[str, Any] = {}
    for p, x in zip(PARAMETERS, u, strict=True):
        lo, hi = p["bounds"]["min"], p["bounds"]["max"]
        x = float(np.clip(x, 0.0, 1.0))
        if p["type"] == "int":
            out[p["name"]] = int(round(lo + x * (hi - lo)))
        elif p.get("transformation") == "log":
            out[p["name"]] = math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo)))
        else:
            out[p["name"]] = lo + x * (hi - lo)
    return out


@cache
def landscape(instance: str, samples: int = 8192) -> tuple[float, float]:
    """Estimated best full-cost error of ``instance`` and the range over the space.

    The best is the lowest error of ``samples`` scrambled-Sobol configurations, then of a
    Powell search from each of the 8 best (with each ``num_layers`` level tried around the
    best one). Deterministic; a few seconds on one core.
    """
    model = surrogate()
    units = qmc.Sobol(len(PARAMETERS), scramble=True, seed=0).random(samples)
    configs = [from_unit(u) for u in units]
    errors = model.error(instance, configs, [52] * len(configs))
    span = float(errors.max() - errors.min())

    def objective(u: np.ndarray) -> float:
        return float(model.error(instance, [from_unit(u)], [52])[0])

    best = float(errors.min())
    layers = [j for j, p in enumerate(PARAMETERS) if p["name"] == "num_layers"][0]
    for index in np.argsort(errors)[:8]:
        for level in range(5):
            start = units[index].copy()
            start[layers] = level / 4
            result = minimize(
                objective,
                start,
                method="Powell",
                bounds=[(0.0, 1.0)] * len(PARAMETERS),
                options={"maxfev": 400, "xtol": 1e-3, "ftol": 1e-5},
            )
            best = min(best, float(result.fun))
    return best, span


@cache
def rank_agreement(instance: str, samples: int = 2048) -> dict[float, float]:
    """Spearman rank correlation of each cheaper task's errors with the 52-epoch ones, over
    ``samples`` scrambled-Sobol configurations: how faithfully a cheap task ranks them.
    Deterministic; about a second."""
    model = surrogate()
    units = qmc.Sobol(len(PARAMETERS), scramble=True, seed=1).random(samples)
    configs = [from_unit(u) for u in units]
    full = model.error(instance, configs, [EPOCHS[1.0]] * samples)
    return {
        s: float(spearmanr(model.error(instance, configs, [epochs] * samples), full).statistic)
        for s, epochs in EPOCHS.items()
        if s < 1.0
    }
