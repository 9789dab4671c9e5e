"""Continuation: a candidate resumes an earlier run of its assignments and costs the difference."""

from __future__ import annotations

from typing import Any

from services.suggester.optimizer import Candidate
from services.suggester.optimizer import MultitaskOptimizer
from services.suggester.optimizer import Observation
from services.suggester.optimizer import Pending
from services.suggester.optimizer._continuation import Runs
from services.suggester.optimizer._policy import PolicySettings
from services.suggester.optimizer._policy import Spend
from services.suggester.optimizer._policy import guard
from shared.space import ExperimentSpec
from tests.suggester_tests.optimizer_tests._helpers import FAST
from tests.suggester_tests.optimizer_tests._helpers import TASKS

SPEC = ExperimentSpec.from_json(
    {
        "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0.0, "max": 1.0}}],
        "metrics": [{"name": "value", "objective": "maximize"}],
        "tasks": TASKS,
        "observation_budget": 10,
    }
)
A = {"x": 0.25}
B = {"x": 0.75}


def obs(a: dict[str, Any], task: str, run: str | None, value: float = 1.0) -> Observation:
    return Observation(dict(a), task, {"value": value}, run=run)


def test_base_is_the_costliest_cheaper_continuable_run_of_the_same_assignments() -> None:
    runs = Runs(
        SPEC,
        [
            obs(A, "cheap", "r1"),
            obs(A, "mid", "r2"),
            obs(A, "cheap", None),
            obs(B, "cheap", "r3"),
            Observation(dict(B), "mid", {}, failed=True, run="r4"),
        ],
    )
    assert runs.base(A, "full") == "r2"
    assert runs.base(A, "mid") == "r1"
    assert runs.base(A, "cheap") is None
    assert runs.base(B, "full") == "r3"  # a failed run leaves nothing to continue
    assert runs.base({"x": 0.5}, "full") is None


def test_a_continued_evaluation_is_charged_the_difference() -> None:
    runs = Runs(SPEC, [obs(A, "cheap", "r1"), obs(A, "mid", "r2")])
    assert runs.charged("full", "r2") == 0.5
    assert runs.charged("full", "r1") == 0.875
    assert runs.charged("full", None) == 1.0
    assert runs.charged("full", "unknown") == 1.0


def test_charged_spend_moves_the_final_phase_later() -> None:
    history = [obs({"x": i / 10}, "cheap", f"c{i}") for i in range(8)]
    history += [
        Observation({"x": i / 10}, "full", {"value": 1.0}, continues=f"c{i}") for i in range(8)
    ]
    runs = Runs(SPEC, history)
    restarted, continued = Spend(), Spend()
    for o in history:
        restarted.add(SPEC, o.task)
        continued.add(SPEC, o.task, runs.charged(o.task, o.continues))
    assert restarted.total == 9.0 and continued.total == 8.0
    settings = PolicySettings()
    assert guard(SPEC, restarted, settings) == "final"
    assert guard(SPEC, continued, settings) != "final"


def test_a_promotion_continues_the_cheap_run_it_promotes() -> None:
    history = [obs({"x": 0.1}, "full", "f1", 0.1), obs({"x": 0.2}, "full", "f2", 0.2)]
    history += [obs({"x": 0.3 + i / 40}, "cheap", f"c{i}", 0.3 + i / 40) for i in range(20)]
    history += [obs({"x": 0.8}, "cheap", "c8", 0.95), obs({"x": 0.8}, "mid", "m8", 0.97)]
    result = MultitaskOptimizer(FAST).suggest(SPEC, history, [], 1, seed=3)
    promoted = [c for c in result.candidates if c.info.get("promoted")]
    assert promoted, [c.info for c in result.candidates]
    candidate: Candidate = promoted[0]
    # Whichever configuration is promoted continues its run on the costliest cheaper task.
    costliest = {o.assignments["x"]: o.run for o in history if o.task != "full"}
    assert candidate.task == "full" and candidate.assignments["x"] in costliest
    assert candidate.continues == costliest[candidate.assignments["x"]]


def test_without_run_ids_nothing_is_continued() -> None:
    history = [Observation({"x": x}, "cheap", {"value": x}) for x in (0.1, 0.4, 0.6, 0.9)]
    history += [Observation({"x": 0.5}, "full", {"value": 0.5})]
    pending = [Pending({"x": 0.3}, "mid")]
    result = MultitaskOptimizer(FAST).suggest(SPEC, history, pending, 3, seed=1)
    assert all(c.continues is None for c in result.candidates)
