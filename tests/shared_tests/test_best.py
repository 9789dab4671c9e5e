"""The one "best" rule (`shared.best`), pinned by a table.

Each row is an experiment, its observations (oldest first) and the observations the rule must
return, best first. Rows marked "was:" are cases on which the API, the dashboard and the
optimizer once disagreed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import pytest

from shared.best import best_by
from shared.best import best_observation
from shared.best import best_observations
from shared.best import is_full_cost
from shared.best import running_best_by
from shared.space import ExperimentSpec


@dataclass(frozen=True)
class Obs:
    label: str
    values: Mapping[str, float] = field(default_factory=dict)
    task: str | None = None
    failed: bool = False


PARAMETERS = [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}]
TASKS = [{"name": "cheap", "cost": 0.25}, {"name": "full", "cost": 1.0}]
ACC = {"name": "acc", "objective": "maximize"}
LOSS = {"name": "loss", "objective": "minimize"}
MS_UNDER_10 = {"name": "ms", "objective": "minimize", "strategy": "constraint", "threshold": 10}
NOTE = {"name": "note", "strategy": "store"}


def spec(*metrics: dict[str, Any], tasks: bool = False) -> ExperimentSpec:
    definition: dict[str, Any] = {"parameters": PARAMETERS, "observation_budget": 10}
    if metrics:
        definition["metrics"] = list(metrics)
    if tasks:
        definition["tasks"] = TASKS
    return ExperimentSpec.from_json(definition)


CASES = [
    (
        "one metric: the largest value",
        spec(ACC),
        [Obs("a", {"acc": 0.5}), Obs("b", {"acc": 0.9}), Obs("c", {"acc": 0.7})],
        ["b"],
    ),
    (
        "minimize: the smallest value",
        spec(LOSS),
        [Obs("a", {"loss": 3.0}), Obs("b", {"loss": 1.0}), Obs("c", {"loss": 2.0})],
        ["b"],
    ),
    (
        "equal values: the oldest wins",
        spec(ACC),
        [Obs("a", {"acc": 0.5}), Obs("b", {"acc": 0.9}), Obs("c", {"acc": 0.9})],
        ["b"],
    ),
    (
        "an unnamed single metric is called value",
        spec(),
        [Obs("a", {"value": 1.0}), Obs("b", {"value": 2.0})],
        ["b"],
    ),
    (
        "failures never win",
        spec(ACC),
        [Obs("a", {"acc": 0.5}), Obs("b", failed=True)],
        ["a"],
    ),
    (
        "no observation: no best",
        spec(ACC),
        [],
        [],
    ),
    (
        "multitask: a better cheap-task value never wins",
        spec(ACC, tasks=True),
        [Obs("a", {"acc": 0.99}, "cheap"), Obs("b", {"acc": 0.5}, "full")],
        ["b"],
    ),
    (
        "multitask: nothing until a full-cost observation exists",
        spec(ACC, tasks=True),
        [Obs("a", {"acc": 0.99}, "cheap"), Obs("b", {"acc": 0.9}, "cheap")],
        [],
    ),
    (
        "was: full cost by cost == 1 vs by task; an untasked one is not full cost",
        spec(ACC, tasks=True),
        [Obs("a", {"acc": 0.99}, None), Obs("b", {"acc": 0.5}, "full")],
        ["b"],
    ),
    (
        "a constraint over its threshold is infeasible",
        spec(ACC, MS_UNDER_10),
        [Obs("a", {"acc": 0.99, "ms": 20.0}), Obs("b", {"acc": 0.5, "ms": 5.0})],
        ["b"],
    ),
    (
        "a constraint exactly at its threshold is feasible",
        spec(ACC, MS_UNDER_10),
        [Obs("a", {"acc": 0.99, "ms": 10.0}), Obs("b", {"acc": 0.5, "ms": 5.0})],
        ["a"],
    ),
    (
        "was: a missing constraint value is infeasible (the API accepted it)",
        spec(ACC, MS_UNDER_10),
        [Obs("a", {"acc": 0.99}), Obs("b", {"acc": 0.5, "ms": 5.0})],
        ["b"],
    ),
    (
        "a missing optimized value is never best",
        spec(ACC, MS_UNDER_10),
        [Obs("a", {"ms": 1.0}), Obs("b", {"acc": 0.5, "ms": 5.0})],
        ["b"],
    ),
    (
        "a missing stored metric does not matter",
        spec(ACC, NOTE),
        [Obs("a", {"acc": 0.9}), Obs("b", {"acc": 0.5, "note": 1.0})],
        ["a"],
    ),
    (
        "was: constraint, missing value and two tasks together",
        spec(ACC, MS_UNDER_10, tasks=True),
        [
            Obs("cheap-best", {"acc": 1.0, "ms": 1.0}, "cheap"),
            Obs("no-ms", {"acc": 0.99}, "full"),
            Obs("too-slow", {"acc": 0.95, "ms": 50.0}, "full"),
            Obs("failed", task="full", failed=True),
            Obs("winner", {"acc": 0.6, "ms": 9.0}, "full"),
            Obs("runner-up", {"acc": 0.5, "ms": 2.0}, "full"),
        ],
        ["winner"],
    ),
    (
        "was: two metrics give the Pareto front, not the first metric's best",
        spec(ACC, LOSS),
        [
            Obs("low", {"acc": 0.5, "loss": 1.0}),
            Obs("dominated", {"acc": 0.4, "loss": 2.0}),
            Obs("high", {"acc": 0.9, "loss": 3.0}),
            Obs("duplicate-of-low", {"acc": 0.5, "loss": 1.0}),
        ],
        ["high", "low", "duplicate-of-low"],
    ),
    (
        "two metrics: thresholds on optimized metrics apply",
        spec(ACC, {**LOSS, "threshold": 2.0}),
        [Obs("low", {"acc": 0.5, "loss": 1.0}), Obs("high", {"acc": 0.9, "loss": 3.0})],
        ["low"],
    ),
    (
        "two metrics with tasks: the front of full-cost observations",
        spec(ACC, LOSS, tasks=True),
        [
            Obs("cheap", {"acc": 1.0, "loss": 0.0}, "cheap"),
            Obs("a", {"acc": 0.5, "loss": 1.0}, "full"),
            Obs("b", {"acc": 0.4, "loss": 2.0}, "full"),
        ],
        ["a"],
    ),
    (
        "constraints only: every feasible observation, oldest first",
        spec(MS_UNDER_10),
        [Obs("a", {"ms": 5.0}), Obs("b", {"ms": 50.0}), Obs("c", {"ms": 1.0})],
        ["a", "c"],
    ),
]


@pytest.mark.parametrize(("experiment", "observations", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_best_observations(
    experiment: ExperimentSpec, observations: list[Obs], expected: list[str]
) -> None:
    assert [o.label for o in best_observations(experiment, observations)] == expected
    single = best_observation(experiment, observations)
    if len(experiment.optimized_metrics) == 1:
        assert (single.label if single else None) == (expected[0] if expected else None)
    else:
        assert single is None


def test_full_cost_is_the_cost_one_task_or_everything_without_tasks() -> None:
    multitask = spec(ACC, tasks=True)
    assert is_full_cost(multitask, "full")
    assert not is_full_cost(multitask, "cheap")
    assert not is_full_cost(multitask, None)
    assert is_full_cost(spec(ACC), None)


def test_best_by_a_metric_picks_the_front_member_best_on_it() -> None:
    experiment = spec(ACC, LOSS, tasks=True)
    observations = [
        Obs("cheap", {"acc": 1.0, "loss": 0.0}, "cheap"),
        Obs("slow-accurate", {"acc": 0.9, "loss": 3.0}, "full"),
        Obs("lean", {"acc": 0.5, "loss": 1.0}, "full"),
        Obs("accurate", {"acc": 0.9, "loss": 2.0}, "full"),
    ]
    acc, loss = experiment.optimized_metrics
    # Equal accuracy: the one that is better on loss (on the front) beats the older one.
    assert best_by(experiment, acc, observations) == observations[3]
    assert best_by(experiment, loss, observations) == observations[2]
    running = running_best_by(experiment, acc, observations)
    assert [o.label if o else None for o in running] == [
        None,
        "slow-accurate",
        "slow-accurate",
        "accurate",
    ]


def test_best_by_a_stored_metric_ranks_the_feasible_full_cost_observations() -> None:
    experiment = spec(ACC, MS_UNDER_10, NOTE, tasks=True)
    note = experiment.metrics[2]
    observations = [
        Obs("cheap", {"acc": 0.1, "ms": 1.0, "note": 99.0}, "cheap"),
        Obs("infeasible", {"acc": 0.1, "ms": 11.0, "note": 50.0}, "full"),
        Obs("feasible", {"acc": 0.1, "ms": 1.0, "note": 5.0}, "full"),
        Obs("no-note", {"acc": 0.9, "ms": 1.0}, "full"),
    ]
    assert best_by(experiment, note, observations) == observations[2]
    assert best_by(experiment, note, observations[:2]) is None
