"""Random search: uniform feasible points, a uniform task, no repeats (``type: random``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from services.suggester.optimizer._base import Candidate
from services.suggester.optimizer._base import Observation
from services.suggester.optimizer._base import Optimizer
from services.suggester.optimizer._base import Pending
from services.suggester.optimizer._base import SuggestResult
from services.suggester.optimizer._base import history_seed
from services.suggester.optimizer._base import used_keys
from shared.design import random_point
from shared.space import ExperimentSpec
from shared.space import assignment_key

#: Draws per wanted candidate before giving up on finding an unused point.
_MAX_DRAWS = 256


class RandomOptimizer(Optimizer):
    """Uniformly random feasible assignments and tasks, skipping used points."""

    def suggest(
        self,
        spec: ExperimentSpec,
        observations: Sequence[Observation],
        pending: Sequence[Pending],
        k: int,
        seed: int,
        state: dict[str, Any] | None = None,
    ) -> SuggestResult:
        rng = np.random.default_rng(history_seed(seed, observations, pending))
        used = used_keys(observations, pending)
        candidates = random_candidates(spec, used, k, rng, source="random")
        return SuggestResult(candidates=candidates, state=dict(state or {}))


def random_candidates(
    spec: ExperimentSpec,
    used: set[str],
    k: int,
    rng: np.random.Generator,
    source: str,
    info: dict[str, Any] | None = None,
) -> list[Candidate]:
    """Up to ``k`` random feasible candidates whose keys are not in ``used`` (which grows)."""
    out: list[Candidate] = []
    for _ in range(_MAX_DRAWS * k):
        if len(out) == k:
            break
        assignments, task = random_point(spec, rng)
        key = assignment_key(assignments, task)
        if key in used:
            continue
        used.add(key)
        out.append(Candidate(assignments, task, source, dict(info or {})))
    return out
