"""The initial design: the experiment's scrambled-Sobol points, in `shared.design` order.

Candidate ``i`` of the design is ``design_point(spec, i, seed)``, the same point the API serves
when the suggestion pool is empty, so both may hand out design points without coordinating:
points whose ``(assignments, task)`` is already observed or pending are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.suggester.optimizer._base import Candidate
from services.suggester.optimizer._base import Observation
from services.suggester.optimizer._base import Pending
from shared.design import design_point
from shared.design import initial_design_size
from shared.space import ExperimentSpec
from shared.space import assignment_key


def design_remaining(
    spec: ExperimentSpec, observations: Sequence[Observation], pending: Sequence[Pending]
) -> int:
    """How many more design points to hand out before the model takes over."""
    return max(initial_design_size(spec) - len(observations) - len(pending), 0)


def design_candidates(spec: ExperimentSpec, used: set[str], k: int, seed: int) -> list[Candidate]:
    """The first ``k`` unused points of the design (``used`` grows with them)."""
    out: list[Candidate] = []
    for index in range(initial_design_size(spec)):
        if len(out) == k:
            break
        assignments, task = design_point(spec, index, seed)
        key = assignment_key(assignments, task)
        if key in used:
            continue
        used.add(key)
        out.append(Candidate(assignments, task, "design", {"design_index": index}))
    return out
