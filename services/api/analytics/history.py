"""Best full-cost value against cumulative cost: the curve that shows the multitask saving."""

from __future__ import annotations

from typing import Any

from services.api.analytics.dataset import Dataset


def history(dataset: Dataset) -> list[dict[str, Any]]:
    """One entry per observation, oldest first: its task, cost and value, the cost spent so far
    (budget consumed, failures included) and the best feasible full-cost value so far."""
    out = []
    spent = 0.0
    best: float | None = None
    for p in dataset.points:
        spent += p.cost
        value = dataset.value(p)
        counts = dataset.is_full_cost(p) and dataset.is_feasible(p)
        if counts and value is not None and dataset.better(value, best):
            best = value
        out.append(
            {
                "observation": str(p.id),
                "suggestion": None if p.suggestion_id is None else str(p.suggestion_id),
                "created": p.created,
                "task": p.task,
                "cost": p.cost,
                "cumulative_cost": round(spent, 12),
                "value": value,
                "values": p.values,
                "failed": p.failed,
                "full_cost": dataset.is_full_cost(p),
                "best_full_cost": best,
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
