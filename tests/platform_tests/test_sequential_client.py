"""A sequential SigOpt client through the live API (gunicorn + suggester): every point after the
initial design is a fresh model point that accounts for the observation just told (never a stale
or random one), and the loop beats random search at equal cost on a multitask problem."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from botorch.test_functions.multi_fidelity import AugmentedBranin
from sigopt import Connection

from tests.services import Platform

pytestmark = pytest.mark.slow

BUDGET = 12.0
BRANIN_MIN = 0.397887


def branin(assignments: dict, fidelity: float) -> float:
    x = torch.tensor([[assignments["x1"], assignments["x2"], fidelity]], dtype=torch.float64)
    return float(AugmentedBranin()(x).item())


def random_search_best(seed: int) -> float:
    """Best full-cost value of random search that spends the same budget at full cost."""
    rng = np.random.default_rng(seed)
    values = [
        branin({"x1": rng.uniform(-5, 10), "x2": rng.uniform(0, 15)}, 1.0)
        for _ in range(int(BUDGET))
    ]
    return min(values)


def test_sequential_loop_is_fresh_and_beats_random_search(
    make_platform: Callable[..., Platform],
) -> None:
    # A generous wait bound: on a loaded machine a refit can take several seconds, and this
    # test is about never serving a stale or random point, not about refit speed.
    platform = make_platform(suggestion_wait_s="30")
    platform.start_api()
    platform.start("suggester", "suggester")
    conn = Connection(client_token=platform.token())
    conn.set_api_url(platform.api_url)
    experiment = conn.experiments().create(
        name="branin multitask",
        parameters=[
            dict(name="x1", type="double", bounds=dict(min=-5, max=10)),
            dict(name="x2", type="double", bounds=dict(min=0, max=15)),
        ],
        metrics=[dict(name="value", objective="minimize")],
        tasks=[
            dict(name="quarter", cost=0.25),
            dict(name="half", cost=0.5),
            dict(name="full", cost=1.0),
        ],
        observation_budget=BUDGET,
    )
    spent = 0.0
    sources = []
    while spent < BUDGET:
        suggestion = conn.experiments(experiment.id).suggestions().create()
        sources.append(suggestion.to_json()["source"])
        value = branin(suggestion.assignments, suggestion.task.cost)
        conn.experiments(experiment.id).observations().create(
            suggestion=suggestion.id, value=value
        )
        spent += suggestion.task.cost
    assert "random" not in sources, sources  # the API waited for fresh model points
    design = sources.index("pool") if "pool" in sources else len(sources)
    assert set(sources[design:]) == {"pool"} and design < len(sources)
    best = list(conn.experiments(experiment.id).best_assignments().fetch().iterate_pages())
    assert best and best[0].to_json()["task"]["name"] == "full"
    random_median = float(np.median([random_search_best(seed) for seed in range(50)]))
    assert best[0].value < random_median, (best[0].value, random_median)
    assert best[0].value - BRANIN_MIN < 2.0
