"""The `Optimizer` contract, run over every optimizer (as Optuna's ``BasicSamplerTestCase``).

Each test drives an optimizer for a few steps past its initial design, so the Bayesian
optimizer's model path is exercised, and checks every candidate it returned.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from services.suggester.optimizer import SOURCES
from services.suggester.optimizer import Candidate
from services.suggester.optimizer import GridOptimizer
from services.suggester.optimizer import MultitaskOptimizer
from services.suggester.optimizer import Observation
from services.suggester.optimizer import Optimizer
from services.suggester.optimizer import Pending
from services.suggester.optimizer import RandomOptimizer
from shared.space import ExperimentSpec
from shared.space import assignment_key
from tests.suggester_tests.optimizer_tests._helpers import FAST
from tests.suggester_tests.optimizer_tests._helpers import all_kinds
from tests.suggester_tests.optimizer_tests._helpers import drive
from tests.suggester_tests.optimizer_tests._helpers import with_conditionals
from tests.suggester_tests.optimizer_tests._helpers import with_constraints

OPTIMIZERS: dict[str, Callable[[], Optimizer]] = {
    "random": RandomOptimizer,
    "grid": GridOptimizer,
    "bayes": lambda: MultitaskOptimizer(FAST),
}
#: Steps per run: past the Bayesian optimizer's initial design (dimension + 2 points).
STEPS = 12


def _check_types(spec: ExperimentSpec, candidate: Candidate) -> None:
    spec.validate_assignments(candidate.assignments)
    for parameter in spec.active_parameters(candidate.assignments):
        value = candidate.assignments[parameter.name]
        if parameter.is_categorical:
            assert value in parameter.categorical_values
        elif parameter.type == "int":
            assert type(value) is int
        else:
            assert type(value) is float and math.isfinite(value)
        if parameter.is_grid:
            assert value in parameter.grid
        elif not parameter.is_categorical:
            assert parameter.min <= value <= parameter.max
    if spec.is_multitask:
        assert candidate.task in {t.name for t in spec.tasks}
    else:
        assert candidate.task is None
    assert candidate.source in SOURCES
    assert candidate.source != "fallback", candidate.info
    json.dumps(candidate.info)


class OptimizerTestCase:
    """Contract checks; ``name`` selects the optimizer and its kind of spec."""

    @pytest.fixture(params=sorted(OPTIMIZERS))
    def name(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    def _optimizer(self, name: str) -> Optimizer:
        return OPTIMIZERS[name]()

    def test_types_bounds_and_tasks_are_exact(self, name: str) -> None:
        spec = all_kinds(grid=name == "grid")
        candidates, _ = drive(self._optimizer(name), spec, STEPS)
        assert len(candidates) == STEPS
        for candidate in candidates:
            _check_types(spec, candidate)
        if name == "bayes":
            assert {c.source for c in candidates} >= {"design", "model"}

    def test_conditionals_are_respected(self, name: str) -> None:
        spec = with_conditionals(grid=name == "grid")
        candidates, _ = drive(self._optimizer(name), spec, STEPS)
        for candidate in candidates:
            _check_types(spec, candidate)
            arch = candidate.assignments["arch"]
            assert ("depth" in candidate.assignments) == (arch == "a")
            assert ("heads" in candidate.assignments) == (arch == "b")

    def test_linear_constraints_hold(self, name: str) -> None:
        spec = with_constraints(grid=name == "grid")
        candidates, _ = drive(self._optimizer(name), spec, STEPS)
        for candidate in candidates:
            _check_types(spec, candidate)
            assert spec.is_feasible(candidate.assignments)

    def test_batch_is_distinct_and_avoids_pending_and_observed(self, name: str) -> None:
        spec = all_kinds(grid=name == "grid")

        def check(
            found: list[Candidate], observed: list[Observation], running: list[Pending]
        ) -> None:
            used = {assignment_key(o.assignments, o.task) for o in observed}
            used |= {assignment_key(p.assignments, p.task) for p in running}
            keys = [assignment_key(c.assignments, c.task) for c in found]
            assert len(found) == 3
            assert len(set(keys)) == len(keys)
            assert not used & set(keys)

        drive(self._optimizer(name), spec, 6, k=3, on_step=check)

    def test_deterministic_under_seed(self, name: str) -> None:
        spec = all_kinds(grid=name == "grid")
        first, _ = drive(self._optimizer(name), spec, STEPS, seed=3, k=2)
        second, _ = drive(self._optimizer(name), spec, STEPS, seed=3, k=2)
        assert [(c.assignments, c.task, c.source) for c in first] == [
            (c.assignments, c.task, c.source) for c in second
        ]

    def test_state_is_json_and_inputs_are_not_mutated(self, name: str) -> None:
        spec = all_kinds(grid=name == "grid")
        _, observations = drive(self._optimizer(name), spec, STEPS)
        snapshot = json.dumps([o.__dict__ for o in observations], sort_keys=True)
        state: dict[str, Any] = {"kept": [1, 2]}
        result = self._optimizer(name).suggest(spec, observations, [], 1, 0, state)
        json.dumps(result.state)
        assert state == {"kept": [1, 2]}
        assert json.dumps([o.__dict__ for o in observations], sort_keys=True) == snapshot


class TestOptimizers(OptimizerTestCase):
    """Runs the contract over `OPTIMIZERS`."""
