"""The `TrainResult` of an attempt, built one way for every kind of objective, and its
publication on the results stream the suggester consumes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import redis

from shared.messages import TrainRequest
from shared.messages import TrainResult
from shared.names import RESULTS_STREAM
from shared.space import Metric

RESULTS_MAXLEN = 100_000
#: The API's limit on a run's ``failure_reason``.
MAX_REASON_CHARS = 2000
#: The API's limit on a run's ``traceback``.
MAX_TRACEBACK_CHARS = 64 * 1024


def result(request: TrainRequest, **fields: Any) -> TrainResult:
    return TrainResult(
        experiment_id=request.experiment_id,
        suggestion_id=request.suggestion_id,
        run_id=request.run_id,
        attempt=request.attempt,
        **fields,
    )


def stopped(request: TrainRequest) -> TrainResult:
    """The attempt ended early because the experiment was paused or stopped (not a failure)."""
    return result(request, stopped=True)


def failed(request: TrainRequest, reason: str, traceback: str | None = None) -> TrainResult:
    """A failed attempt; ``reason`` and ``traceback`` are cut to what the API stores (keeping
    the end of the traceback, where the error is)."""
    return result(
        request,
        failed=True,
        reason=reason[:MAX_REASON_CHARS],
        traceback=None if traceback is None else traceback[-MAX_TRACEBACK_CHARS:],
    )


def from_values(
    request: TrainRequest,
    values: Mapping[str, float | Mapping[str, Any]],
    metrics: Sequence[Metric],
) -> TrainResult:
    """The result of an attempt that logged ``values`` (metric name -> number, or the API's
    ``{"value", "value_stddev"}``), for an experiment with ``metrics``: their values, in their
    order (values of other names stay on the run, not in the observation). It is failed when a
    metric the experiment requires (not ``strategy: store``) has no value, or a value is not a
    finite number."""
    missing = [m.name for m in metrics if m.strategy != "store" and m.name not in values]
    if missing:
        logged = ", ".join(sorted(values)) or "none"
        what = (
            f"the optimized metric {missing[0]!r}"
            if missing[0] == request.metric
            else f"metric(s) {missing} of the experiment"
        )
        return failed(request, f"no value for {what} (logged: {logged})")
    readings: list[dict[str, Any]] = []
    for metric in metrics:
        if metric.name not in values:
            continue
        reading = values[metric.name]
        if isinstance(reading, Mapping):
            value, stddev = reading.get("value"), reading.get("value_stddev")
        else:
            value, stddev = reading, None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return failed(request, f"metric {metric.name!r}: expected a number, got {value!r}")
        if not math.isfinite(value):
            return failed(request, f"metric {metric.name!r} is not finite: {value}")
        entry: dict[str, Any] = {"name": metric.name, "value": float(value)}
        if isinstance(stddev, int | float) and not isinstance(stddev, bool):
            entry["value_stddev"] = float(stddev)
        readings.append(entry)
    return result(request, values=readings)


def publish(results: redis.Redis, outcome: TrainResult) -> TrainResult:
    results.xadd(
        RESULTS_STREAM, {"result": outcome.to_json()}, maxlen=RESULTS_MAXLEN, approximate=True
    )
    return outcome
