"""`MultitaskOptimizer` specifics: design order, failures, guards, fallback, several metrics."""

from __future__ import annotations

import numpy as np
import pytest

from services.suggester.optimizer import MultitaskOptimizer
from services.suggester.optimizer import Observation
from services.suggester.optimizer import Pending
from services.suggester.optimizer import suggest
from shared.design import design_point
from shared.space import ExperimentSpec
from tests.suggester_tests.optimizer_tests._helpers import FAST
from tests.suggester_tests.optimizer_tests._helpers import TASKS
from tests.suggester_tests.optimizer_tests._helpers import all_kinds
from tests.suggester_tests.optimizer_tests._helpers import drive

SQUARE = [
    {"name": "x", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
    {"name": "y", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
]


def test_design_is_the_shared_sequence_and_skips_used_points() -> None:
    spec = all_kinds()
    first = suggest(spec, [], [], 3, seed=5).candidates
    expected = [design_point(spec, i, 5) for i in range(4)]
    assert [(c.assignments, c.task) for c in first] == expected[:3]
    assert all(c.source == "design" for c in first)
    pending = [Pending(*expected[0])]
    again = MultitaskOptimizer(FAST).suggest(spec, [], pending, 1, 5).candidates
    assert (again[0].assignments, again[0].task) == expected[1]


def test_design_covers_every_task_with_a_bias_to_cheap_ones() -> None:
    spec = all_kinds(budget=100)
    tasks = [c.task for c in suggest(spec, [], [], 8, seed=1).candidates]
    assert set(tasks) == {t["name"] for t in TASKS}
    assert tasks.count("cheap") >= tasks.count("full") >= 2


def test_a_region_that_always_fails_gets_fewer_suggestions() -> None:
    spec = ExperimentSpec.from_json({"parameters": SQUARE})

    def good(a: dict, task: str | None) -> float:
        return a["x"] + 0.1 * a["y"]

    def failing(a: dict, task: str | None) -> float | None:
        return None if a["x"] > 0.5 else good(a, task)

    counts = []
    for value in (good, failing):
        candidates, _ = drive(MultitaskOptimizer(FAST), spec, 14, seed=2, value=value)
        model = [c for c in candidates if c.source == "model"]
        assert len(model) >= 8
        counts.append(sum(c.assignments["x"] > 0.5 for c in model))
    assert counts[1] < counts[0]


def test_model_errors_fall_back_to_random_with_the_error_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("services.suggester.optimizer._multitask.fit_models", broken)
    spec = all_kinds()
    _, observations = drive(MultitaskOptimizer(FAST), spec, 8)
    result = MultitaskOptimizer(FAST).suggest(spec, observations, [], 2, 0)
    assert [c.source for c in result.candidates] == ["fallback", "fallback"]
    for candidate in result.candidates:
        assert "RuntimeError: boom" in candidate.info["error"]
        spec.validate_assignments(candidate.assignments)


def test_final_share_of_the_budget_goes_to_the_full_cost_task() -> None:
    spec = ExperimentSpec.from_json(
        {"parameters": SQUARE, "tasks": TASKS, "observation_budget": 4}
    )
    rng = np.random.default_rng(0)
    observations = [
        Observation({"x": float(x), "y": float(y)}, task, {"value": float(x - y)})
        for task, n in (("cheap", 20), ("full", 1))
        for x, y in rng.random((n, 2))
    ]
    assert sum(spec.task_cost(o.task) for o in observations) >= 0.85 * 4
    result = MultitaskOptimizer(FAST).suggest(spec, observations, [], 3, 0)
    assert [c.task for c in result.candidates] == ["full"] * 3
    for candidate in result.candidates:
        assert candidate.info.get("guard") == "final" or candidate.info.get("promoted")


def test_a_cheap_configuration_that_beats_the_incumbent_is_promoted() -> None:
    spec = ExperimentSpec.from_json(
        {"parameters": SQUARE[:1], "tasks": TASKS, "observation_budget": 6}
    )
    observations = []
    for i in range(6):
        x = i / 5
        for task in ("cheap", "full"):
            observations.append(Observation({"x": x}, task, {"value": -((x - 0.7) ** 2)}))
    star = Observation({"x": 0.7}, "cheap", {"value": 0.0})
    result = MultitaskOptimizer(FAST).suggest(spec, [*observations, star], [], 1, 0)
    candidate = result.candidates[0]
    assert (candidate.assignments, candidate.task) == ({"x": 0.7}, "full")
    assert candidate.info["promoted"] is True


def test_state_warm_starts_the_next_call() -> None:
    spec = all_kinds()
    _, observations = drive(MultitaskOptimizer(FAST), spec, 10)
    first = MultitaskOptimizer(FAST).suggest(spec, observations[:-1], [], 1, 0)
    assert first.candidates[0].info["refit"] is True
    second = MultitaskOptimizer(FAST).suggest(spec, observations, [], 1, 0, first.state)
    assert second.candidates[0].info["refit"] is False
    assert second.candidates[0].source == "model"


def test_constraint_metric_two_objectives_and_noise_with_tasks() -> None:
    spec = ExperimentSpec.from_json(
        {
            "parameters": SQUARE,
            "metrics": [
                {"name": "acc", "objective": "maximize"},
                {"name": "ms", "objective": "minimize"},
                {
                    "name": "mem",
                    "objective": "minimize",
                    "strategy": "constraint",
                    "threshold": 0.6,
                },
            ],
            "tasks": TASKS,
            "observation_budget": 20,
        }
    )
    observations: list[Observation] = []
    sources = []
    state = None
    for step in range(7):  # the 4-point design, then the model
        result = MultitaskOptimizer(FAST).suggest(spec, observations, [], 1, 0, state)
        state = result.state
        candidate = result.candidates[0]
        assert candidate.source != "fallback", candidate.info
        sources.append(candidate.source)
        a = candidate.assignments
        values = {"acc": a["x"], "ms": a["y"] + a["x"] ** 2, "mem": a["x"] + a["y"]}
        stddevs = {"acc": 0.01} if step % 2 else {}
        observations.append(Observation(a, candidate.task, values, stddevs))
    assert "model" in sources
