"""Cheap-vs-full-cost rank correlation: for configurations observed at a cheap task and at the
full-cost task, Spearman's rho between their values. A rho near 1 means the cheap task ranks
configurations as the full one does, which is what makes multitask optimization pay."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from scipy.stats import rankdata

from services.api.analytics.dataset import Dataset
from shared.space import assignment_key

#: Fewer shared configurations than this give no correlation.
MIN_PAIRS = 3


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None when undefined."""
    if len(a) != len(b) or len(a) < MIN_PAIRS:
        return None
    ra, rb = rankdata(a), rankdata(b)
    if float(np.std(ra)) == 0.0 or float(np.std(rb)) == 0.0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def task_correlation(dataset: Dataset) -> dict[str, Any]:
    """Per cheap task: how many configurations it shares with the full-cost task and the rank
    correlation of their values; plus each shared configuration's values by task."""
    spec = dataset.spec
    full = spec.full_cost_task
    out: dict[str, Any] = {
        "object": "task_correlation",
        "metric": dataset.metric.name,
        "full_cost_task": full.name if full else None,
        "data": [],
        "configurations": [],
        "message": None,
    }
    if full is None:
        out["message"] = "a single-task experiment has no cheap tasks"
        return out
    by_config: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    assignments: dict[str, dict[str, Any]] = {}
    for p in dataset.points:
        value = dataset.value(p)
        if value is None or p.task is None:
            continue
        key = assignment_key(p.assignments, None)
        by_config[key][p.task].append(value)
        assignments.setdefault(key, p.assignments)
    shared = {
        key: {task: float(np.mean(v)) for task, v in tasks.items()}
        for key, tasks in by_config.items()
        if len(tasks) >= 2
    }
    for task in sorted(spec.tasks, key=lambda t: t.cost):
        if task.name == full.name:
            continue
        pairs = [
            (v[task.name], v[full.name])
            for v in shared.values()
            if task.name in v and full.name in v
        ]
        out["data"].append(
            {
                "task": task.name,
                "cost": task.cost,
                "configurations": len(pairs),
                "spearman": _rounded(spearman([a for a, _ in pairs], [b for _, b in pairs])),
            }
        )
    out["configurations"] = [
        {"assignments": assignments[key], "values": values} for key, values in shared.items()
    ]
    if not shared:
        out["message"] = "no configuration was observed at more than one task yet"
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
