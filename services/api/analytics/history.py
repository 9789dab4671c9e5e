"""Best full-cost value against cumulative cost: the curve that shows the multitask saving."""

from __future__ import annotations

from typing import Any

from services.api.analytics.dataset import Dataset
from shared import best as best_rule


def history(dataset: Dataset) -> list[dict[str, Any]]:
    """One entry per observation, oldest first: its task, cost and value, the cost spent so far
    (budget consumed, failures included) and the best full-cost value so far
    (`shared.best.running_best_by`)."""
    out = []
    spent = 0.0
    metric = dataset.metric.name
    running = best_rule.running_best_by(dataset.spec, dataset.metric, dataset.points)
    for p, best in zip(dataset.points, running, strict=True):
        spent += p.cost
        out.append(
            {
                "observation": str(p.id),
                "suggestion": None if p.suggestion_id is None else str(p.suggestion_id),
                "created": p.created,
                "task": p.task,
                "cost": p.cost,
                "cumulative_cost": round(spent, 12),
                "value": dataset.value(p),
                "values": p.values,
                "failed": p.failed,
                "full_cost": dataset.is_full_cost(p),
                "best_full_cost": None if best is None else best.values[metric],
                "assignments": p.assignments,
            }
        )
    return out


def best_vs_cost(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries at which the best full-cost value improved (a step curve's corners)."""
    out = []
    last = None
    for i, entry in enumerate(entries):
        if entry["best_full_cost"] is not None and entry["best_full_cost"] != last:
            last = entry["best_full_cost"]
            out.append(
                {
                    "observations": i + 1,
                    "cumulative_cost": entry["cumulative_cost"],
                    "best_full_cost": last,
                    "observation": entry["observation"],
                }
            )
    return out
