"""Suggestion latency of multitune's optimizer at 50 to 1,000 observations and 3 or 16 pending.

The experiment has 8 parameters (two log-scaled doubles, two doubles, an int, a grid int and two
categoricals) and 4 tasks (costs 1/8, 1/4, 1/2, 1); the history is synthetic (random
configurations, tasks drawn 4:2:1:3 from cheap to full so the full-cost share of spend does
not force promotions, 3% failures, a smooth objective plus a
task-dependent offset) with 3 pending suggestions. For each size ``n`` the optimizer is called
once to warm its state, then ``--calls`` times, one new observation between calls, passing the
state on as the suggester service does; so refits (every few observations) are included in
the timings. Prints p50 / p95 / max of the compute per suggestion (one thread; ``--threads``
to change).

Run: ``python bench/suggest_latency.py`` (about 5 minutes here); ``--sizes 50,100`` to shorten.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.suggester.optimizer import MultitaskOptimizer  # noqa: E402
from services.suggester.optimizer import Observation  # noqa: E402
from services.suggester.optimizer import Pending  # noqa: E402
from shared.design import random_point  # noqa: E402
from shared.space import ExperimentSpec  # noqa: E402

SPEC = {
    "parameters": [
        {
            "name": "lr",
            "type": "double",
            "bounds": {"min": 1e-5, "max": 1e-1},
            "transformation": "log",
        },
        {
            "name": "wd",
            "type": "double",
            "bounds": {"min": 1e-6, "max": 1e-2},
            "transformation": "log",
        },
        {"name": "dropout", "type": "double", "bounds": {"min": 0.0, "max": 0.5}},
        {"name": "momentum", "type": "double", "bounds": {"min": 0.8, "max": 0.99}},
        {"name": "layers", "type": "int", "bounds": {"min": 1, "max": 8}},
        {"name": "batch", "type": "int", "grid": [32, 64, 128, 256, 512]},
        {
            "name": "optimizer",
            "type": "categorical",
            "categorical_values": ["adam", "sgd", "rmsprop"],
        },
        {"name": "schedule", "type": "categorical", "categorical_values": ["cosine", "step"]},
    ],
    "metrics": [{"name": "accuracy", "objective": "maximize"}],
    "tasks": [
        {"name": "e10", "cost": 0.125},
        {"name": "e20", "cost": 0.25},
        {"name": "e40", "cost": 0.5},
        {"name": "e80", "cost": 1.0},
    ],
    "observation_budget": 2000,
    "parallel_bandwidth": 4,
}
_TASK_WEIGHTS = np.array([4, 2, 1, 3]) / 10


def _value(a: dict[str, Any], task: str, rng: np.random.Generator) -> float:
    cost = {"e10": 0.125, "e20": 0.25, "e40": 0.5, "e80": 1.0}[task]
    score = (
        0.9
        - 0.02 * (math.log10(a["lr"]) + 3) ** 2
        - 0.01 * (math.log10(a["wd"]) + 4) ** 2
        - 0.3 * (a["dropout"] - 0.2) ** 2
        - 0.005 * (a["layers"] - 4) ** 2
        + 0.02 * (a["optimizer"] == "adam")
        + 0.01 * (a["schedule"] == "cosine")
    )
    return score - 0.1 * (1 - cost) + float(rng.normal(0, 0.005))


def _observation(spec: ExperimentSpec, rng: np.random.Generator) -> Observation:
    assignments, _ = random_point(spec, rng)
    task = spec.tasks[int(rng.choice(4, p=_TASK_WEIGHTS))].name
    if rng.random() < 0.03:
        return Observation(assignments, task, {}, failed=True)
    return Observation(assignments, task, {"accuracy": _value(assignments, task, rng)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="50:3,100:3,300:3,1000:3,1000:16")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    spec = ExperimentSpec.from_json(SPEC)
    optimizer = MultitaskOptimizer()
    print(
        f"# 8 parameters, 4 tasks, k=1, {args.threads} thread(s), {args.calls} timed calls per row"
    )
    print("| observations | pending | p50 s | p95 s | max s | refits | promotions | fallbacks |")
    print("|---|---|---|---|---|---|---|---|")
    for row in args.rows.split(","):
        n, busy = (int(part) for part in row.split(":"))
        rng = np.random.default_rng(n)
        history = [_observation(spec, rng) for _ in range(n - 1)]
        pending = [Pending(*random_point(spec, rng)) for _ in range(busy)]
        state = optimizer.suggest(spec, history, pending, 1, 0).state
        times, refits, promotions, fallbacks = [], 0, 0, 0
        for _ in range(args.calls):
            history.append(_observation(spec, rng))
            began = time.perf_counter()
            result = optimizer.suggest(spec, history, pending, 1, 0, state)
            times.append(time.perf_counter() - began)
            state = result.state
            candidate = result.candidates[0]
            refits += bool(candidate.info.get("refit"))
            promotions += bool(candidate.info.get("promoted"))
            fallbacks += candidate.source == "fallback"
        p50, p95 = np.quantile(times, [0.5, 0.95])
        print(
            f"| {n} | {busy} | {p50:.2f} | {p95:.2f} | {max(times):.2f} | {refits} | "
            f"{promotions} | "
            f"{fallbacks} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
