"""The unmodified ``sigopt`` client against a live server (gunicorn + suggester, real HTTP)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from sigopt import Connection
from sigopt.exception import ApiException

from tests.services import Platform

TASKS = [
    {"name": "10 epochs", "cost": 0.125},
    {"name": "20 epochs", "cost": 0.25},
    {"name": "40 epochs", "cost": 0.5},
    {"name": "80 epochs", "cost": 1.0},
]


def _objective(assignments: dict, cost: float) -> float:
    x, lr = assignments["x"], math.log10(assignments["lr"])
    bonus = 0.1 if assignments["optimizer"] == "adam" else 0.0
    return -((x - 0.3) ** 2) - 0.1 * (lr + 2) ** 2 + bonus - 0.2 * (1 - cost)


@pytest.mark.slow
def test_sigopt_client_multitask_loop(make_platform: Callable[..., Platform]) -> None:
    # A short wait bound keeps this API test fast when the model is slow to refit; the
    # optimizer's own tests and benches judge the points it serves.
    platform = make_platform(suggestion_wait_s="3")
    platform.start_api()
    platform.start("suggester", "suggester")
    conn = Connection(client_token=platform.token())
    conn.set_api_url(platform.api_url)
    experiment = conn.experiments().create(
        name="sigopt client multitask",
        parameters=[
            dict(name="x", type="double", bounds=dict(min=0, max=1)),
            dict(name="lr", type="double", bounds=dict(min=1e-4, max=1), transformation="log"),
            dict(name="layers", type="int", bounds=dict(min=1, max=4)),
            dict(name="optimizer", type="categorical", categorical_values=["sgd", "adam"]),
        ],
        metrics=[dict(name="score", objective="maximize")],
        tasks=TASKS,
        observation_budget=30,
        parallel_bandwidth=1,
    )
    assert experiment.tasks[3].cost == 1.0
    costs = {t["name"]: t["cost"] for t in TASKS}
    expected_cost = 0.0
    full_cost_values = []
    for i in range(30):
        suggestion = conn.experiments(experiment.id).suggestions().create()
        assert suggestion.task.name in costs
        assert 1 <= suggestion.assignments["layers"] <= 4
        if i % 7 == 3:
            conn.experiments(experiment.id).observations().create(
                suggestion=suggestion.id, failed=True
            )
        else:
            value = _objective(suggestion.assignments, suggestion.task.cost)
            conn.experiments(experiment.id).observations().create(
                suggestion=suggestion.id, value=value
            )
            if suggestion.task.cost == 1.0:
                full_cost_values.append(value)
        expected_cost += costs[suggestion.task.name]

    # A deleted suggestion can no longer be observed.
    doomed = conn.experiments(experiment.id).suggestions().create()
    conn.experiments(experiment.id).suggestions(doomed.id).delete()
    with pytest.raises(ApiException) as excinfo:
        conn.experiments(experiment.id).observations().create(suggestion=doomed.id, value=1.0)
    assert excinfo.value.status_code == 400 and "deleted" in str(excinfo.value)

    # Batch observations with explicit assignments and tasks.
    batch = [
        dict(
            assignments=dict(x=0.1 * k, lr=0.01, layers=2, optimizer="sgd"),
            task=dict(name="10 epochs"),
            value=-1.0 - k,
        )
        for k in range(4)
    ]
    created = conn.experiments(experiment.id).observations().create_batch(observations=batch)
    assert len(list(created.iterate_pages())) == 4
    expected_cost += 4 * 0.125

    experiment = conn.experiments(experiment.id).fetch()
    assert experiment.progress.observation_count == 34
    assert experiment.progress.observation_budget_consumed == pytest.approx(expected_cost)

    best = list(conn.experiments(experiment.id).best_assignments().fetch().iterate_pages())
    assert len(best) == (1 if full_cost_values else 0)
    if full_cost_values:
        assert best[0].to_json()["task"]["cost"] == 1.0
        assert best[0].value == pytest.approx(max(full_cost_values))
    observations = list(conn.experiments(experiment.id).observations().fetch().iterate_pages())
    assert len(observations) == 34 and sum(o.failed for o in observations) == 4
    suggestions = list(
        conn.experiments(experiment.id).suggestions().fetch(state="open").iterate_pages()
    )
    assert suggestions == []
    sources = [
        s.to_json().get("source")
        for s in conn.experiments(experiment.id).suggestions().fetch(limit=100).iterate_pages()
    ]
    assert "pool" in sources  # the suggester's model points were served
