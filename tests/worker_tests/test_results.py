"""`results.from_values`, the one rule for every kind of objective: a result holds the values of
the experiment's metrics in their order; a required metric without a value, or a value that is
not a finite number, makes it a failure (never a result the API would refuse)."""

from __future__ import annotations

from typing import Any

import pytest

from services.worker import results
from shared.messages import TrainRequest
from shared.space import Metric

REQUEST = TrainRequest(
    experiment_id=1,
    suggestion_id=2,
    run_id=3,
    attempt=1,
    objective="mine",
    config={},
    assignments={"x": 1},
    metric="accuracy",
)
METRICS = [
    Metric("accuracy"),
    Metric("latency_ms", objective="minimize", strategy="constraint", threshold=50),
    Metric("params", strategy="store"),
]


def test_the_experiments_metrics_in_their_order_and_nothing_else() -> None:
    logged: dict[str, Any] = {
        "val_loss": 0.3,
        "params": 1e6,
        "latency_ms": {"value": 20, "value_stddev": 1.5},
        "accuracy": {"value": 0.9, "value_stddev": None},
    }
    result = results.from_values(REQUEST, logged, METRICS)
    assert not result.failed
    assert result.values == [
        {"name": "accuracy", "value": 0.9},
        {"name": "latency_ms", "value": 20.0, "value_stddev": 1.5},
        {"name": "params", "value": 1e6},
    ]
    without_store = results.from_values(REQUEST, {"accuracy": 1, "latency_ms": 2}, METRICS)
    assert [v["name"] for v in without_store.values] == ["accuracy", "latency_ms"]


@pytest.mark.parametrize(
    ("logged", "reason"),
    [
        ({}, "no value for the optimized metric 'accuracy' (logged: none)"),
        (
            {"loss": 1, "latency_ms": 3},
            "no value for the optimized metric 'accuracy' (logged: latency_ms, loss)",
        ),
        ({"accuracy": 1}, "no value for metric(s) ['latency_ms'] of the experiment"),
        ({"accuracy": float("nan"), "latency_ms": 1}, "metric 'accuracy' is not finite: nan"),
        ({"accuracy": "0.9", "latency_ms": 1}, "metric 'accuracy': expected a number, got '0.9'"),
        ({"accuracy": True, "latency_ms": 1}, "metric 'accuracy': expected a number, got True"),
    ],
)
def test_what_the_api_would_refuse_is_a_failed_result(logged: dict[str, Any], reason: str) -> None:
    result = results.from_values(REQUEST, logged, METRICS)
    assert result.failed and result.values == []
    assert result.reason is not None and result.reason.startswith(reason)


def test_a_failure_fits_what_the_api_stores() -> None:
    result = results.failed(REQUEST, "r" * 5000, "t" * 100_000 + "the end")
    assert result.reason == "r" * results.MAX_REASON_CHARS
    assert result.traceback is not None and result.traceback.endswith("the end")
    assert len(result.traceback) == results.MAX_TRACEBACK_CHARS
