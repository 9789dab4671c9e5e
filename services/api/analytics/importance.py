"""Parameter importance: the mean decrease in impurity of an extremely randomized trees
regressor (scikit-learn's ``ExtraTreesRegressor``) fit to the standardized metric.

Inputs are the parameters on the unit cube (`ExperimentSpec.encode`: log parameters on their
log scale, categorical levels as ordinal positions, inactive conditional parameters as -1).
``task="full"`` fits the feasible full-cost observations only; ``task="all"`` fits every
feasible observation with the task cost as one more input, so cheap tasks help, and reports
the task's share apart from the parameters'. Importances of the parameters sum to 1.
"""

from __future__ import annotations

from typing import Any
from typing import Literal

import numpy as np

from services.api.analytics.dataset import Dataset

#: Fewer observations than this give no importance (the trees would only memorise).
MIN_OBSERVATIONS = 5
N_TREES = 100
MIN_SAMPLES_LEAF = 2
METHOD = (
    f"mean decrease in impurity of an ExtraTreesRegressor ({N_TREES} trees, "
    f"min_samples_leaf={MIN_SAMPLES_LEAF}, fixed seed) fit to the standardized metric on "
    "unit-cube encoded parameters"
)

TaskMode = Literal["full", "all"]


def extra_trees_importance(x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Impurity importance of each column of ``x``.

    Args:
        x: an ``n x d`` array of inputs (no NaN).
        y: an ``n`` array of targets.
        seed: the forest's random state.

    Returns:
        a ``d`` array summing to 1, or all zeros when ``y`` is constant.
    """
    from sklearn.ensemble import ExtraTreesRegressor

    scale = float(np.std(y))
    if x.shape[0] < 2 or scale == 0.0:
        return np.zeros(x.shape[1])
    forest = ExtraTreesRegressor(
        n_estimators=N_TREES, min_samples_leaf=MIN_SAMPLES_LEAF, random_state=seed, n_jobs=1
    )
    forest.fit(x, (y - np.mean(y)) / scale)
    scores = np.asarray(forest.feature_importances_, dtype=float)
    total = float(scores.sum())
    return scores / total if total > 0 else np.zeros(x.shape[1])


def parameter_importance(dataset: Dataset, task: TaskMode = "full") -> dict[str, Any]:
    """``{"data": [{"parameter", "importance"}] (descending, summing to 1), "task_importance",
    "observation_count", "method", "message"}``; ``data`` is empty when it cannot be known."""
    spec = dataset.spec
    usable = dataset.is_feasible if task == "all" else dataset.is_candidate
    points = [p for p in dataset.points if dataset.value(p) is not None and usable(p)]
    names = [c.name for c in spec.columns]
    out: dict[str, Any] = {
        "object": "importance",
        "task": task,
        "metric": dataset.metric.name,
        "method": METHOD,
        "observation_count": len(points),
        "task_importance": None,
        "message": None,
        "data": [],
    }
    if len(points) < MIN_OBSERVATIONS:
        out["message"] = (
            f"needs at least {MIN_OBSERVATIONS} feasible "
            f"{'full-cost ' if task == 'full' else ''}observations"
        )
        return out
    x = np.nan_to_num(np.array([spec.encode(p.assignments) for p in points]), nan=-1.0)
    with_task = task == "all" and spec.is_multitask
    if with_task:
        x = np.column_stack([x, [p.cost for p in points]])
    y = np.array([dataset.value(p) for p in points], dtype=float)
    scores = extra_trees_importance(x, y)
    if not scores.any():
        out["message"] = "the metric has the same value in every observation"
        return out
    if with_task:
        out["task_importance"] = round(float(scores[-1]), 6)
        scores = scores[:-1]
        total = float(scores.sum())
        scores = scores / total if total > 0 else scores
    ranked = sorted(zip(names, scores.tolist(), strict=True), key=lambda item: -item[1])
    out["data"] = [{"parameter": name, "importance": score} for name, score in ranked]
    return out
