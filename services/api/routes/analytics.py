"""``/v1/.../analytics``: the JSON behind every dashboard chart (token or dashboard session).

Each view loads the experiment's observations once (`analytics.dataset.load`); importance, the
one analysis that costs more than a query, is cached per (experiment, observation count,
last change, task mode, metric).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Response
from flask import jsonify
from sqlalchemy import select

from services.api.analytics import cache
from services.api.analytics import curves
from services.api.analytics import dataset
from services.api.analytics import summary
from services.api.analytics.correlation import task_correlation
from services.api.analytics.history import best_vs_cost
from services.api.analytics.history import history as history_of
from services.api.analytics.importance import parameter_importance
from services.api.auth import current_principal
from services.api.dashboard.session import token_or_session
from services.api.db import get_session
from services.api.models import Experiment
from services.api.models import Observation
from services.api.openapi import ApiBlueprint
from services.api.schemas.analytics import ImportanceQuery
from services.api.schemas.analytics import MetricQuery
from services.api.schemas.analytics import RunsQuery
from services.api.schemas.analytics import SuggestionTableQuery
from services.api.schemas.analytics import ids_of
from services.api.store import experiments
from services.api.store import training_runs
from services.api.store.results import observation_stats
from services.api.store.results import values_by_name
from shared.space import ExperimentSpec

bp = ApiBlueprint("analytics", __name__, url_prefix="/v1")
bp.before_request(token_or_session)

PATH = "/experiments/<id:experiment_id>/analytics"


def _experiment(experiment_id: int) -> Experiment:
    return experiments.get(get_session(), current_principal(), experiment_id)


def _definition(experiment: Experiment) -> dict[str, Any]:
    d = experiment.definition
    return {
        "parameters": d.get("parameters") or [],
        "metrics": d.get("metrics") or [],
        "tasks": sorted(d.get("tasks") or [], key=lambda t: t["cost"]),
    }


@bp.operation(
    "GET",
    PATH + "/summary",
    "Budget, best full-cost value, progress by task and run states",
    query=MetricQuery,
    returns="experiment_summary",
)
def summary_(experiment_id: int, query: MetricQuery) -> Response:
    experiment = _experiment(experiment_id)
    data = dataset.load(get_session(), experiment, query.metric)
    return jsonify(summary.experiment_summary(get_session(), experiment, data))


@bp.operation(
    "GET",
    PATH + "/history",
    "Per observation (oldest first): task, cost, value, "
    "cumulative cost and best full-cost value so far",
    query=MetricQuery,
    returns="history",
)
def history(experiment_id: int, query: MetricQuery) -> Response:
    experiment = _experiment(experiment_id)
    data = dataset.load(get_session(), experiment, query.metric)
    entries = history_of(data)
    return jsonify(
        {
            "object": "history",
            "experiment": str(experiment.id),
            "name": experiment.name,
            "state": experiment.state,
            "metric": data.metric.name,
            "objective": data.metric.objective,
            "full_cost_task": getattr(data.spec.full_cost_task, "name", None),
            **_definition(experiment),
            "best_vs_cost": best_vs_cost(entries),
            "count": len(entries),
            "data": entries,
        }
    )


@bp.operation(
    "GET",
    PATH + "/importance",
    "Parameter importance (sorted, summing to 1) from "
    "full-cost observations (task=full) or every task (task=all)",
    query=ImportanceQuery,
    returns="importance",
)
def importance(experiment_id: int, query: ImportanceQuery) -> Response:
    experiment = _experiment(experiment_id)
    spec = ExperimentSpec.from_json(experiment.definition)
    metric = dataset.choose_metric(spec, query.metric).name
    stats = observation_stats(get_session(), experiment.id)
    key = (
        "importance",
        experiment.id,
        stats.count,
        stats.last_change,
        experiment.updated,
        query.task,
        metric,
    )
    result = cache.cached(
        key,
        lambda: parameter_importance(dataset.load(get_session(), experiment, metric), query.task),
    )
    return jsonify(result)


@bp.operation(
    "GET",
    PATH + "/task_correlation",
    "Spearman rank correlation of cheap-task and "
    "full-cost values over configurations seen at both",
    query=MetricQuery,
    returns="task_correlation",
)
def correlation(experiment_id: int, query: MetricQuery) -> Response:
    experiment = _experiment(experiment_id)
    return jsonify(task_correlation(dataset.load(get_session(), experiment, query.metric)))


@bp.operation(
    "GET",
    PATH + "/suggestions",
    "Suggestions (newest first) with their state (open, "
    "queued, running, completed, failed, lost, stopped, observed, deleted) and attempts",
    query=SuggestionTableQuery,
    returns="pagination of suggestion rows",
)
def suggestions(experiment_id: int, query: SuggestionTableQuery) -> Response:
    experiment = _experiment(experiment_id)
    rows, count = summary.suggestions(get_session(), experiment, query.limit)
    return jsonify(
        {
            "object": "pagination",
            "count": count,
            "data": rows,
            "paging": {"before": None, "after": None},
        }
    )


def _csv_cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula is quoted with a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "@", "\t", "\r"):
        return "'" + value
    return value


@bp.operation(
    "GET", PATH + "/observations.csv", "Every live observation as CSV", returns="text/csv"
)
def observations_csv(experiment_id: int) -> Response:
    experiment = _experiment(experiment_id)
    spec = ExperimentSpec.from_json(experiment.definition)
    rows = (
        get_session()
        .execute(
            select(
                Observation.id,
                Observation.created,
                Observation.suggestion_id,
                Observation.task,
                Observation.cost,
                Observation.failed,
                Observation.values,
                Observation.assignments,
            )
            .where(Observation.experiment_id == experiment.id, Observation.deleted.is_(False))
            .order_by(Observation.id)
        )
        .tuples()
    )
    columns = [c.name for c in spec.columns]
    metrics = [m.name for m in spec.metrics]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            _csv_cell(h)
            for h in ["id", "created", "suggestion", "task", "cost", "failed", *metrics, *columns]
        ]
    )
    for oid, created, suggestion, task, cost, failed, values, assignments in rows:
        by_name = values_by_name(values, metrics[0])
        writer.writerow(
            [
                oid,
                int(created),
                suggestion or "",
                _csv_cell(task or ""),
                cost,
                str(failed).lower(),
                *(by_name.get(m, "") for m in metrics),
                *(_csv_cell(assignments.get(c, "")) for c in columns),
            ]
        )
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f"attachment; filename=experiment-{experiment.id}-observations.csv"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.operation(
    "GET",
    "/training_runs/<id:run_id>/analytics/curves",
    "A run's state and its checkpoints as training curves (every logged metric, per epoch)",
    returns="training_curves",
)
def run_curves(run_id: int) -> Response:
    session = get_session()
    run, _ = training_runs.get(session, current_principal(), run_id)
    return jsonify(curves.curves(session, [run])[0])


@bp.operation(
    "GET",
    "/analytics/curves",
    "Training curves of several runs (?runs=1,2,3, at most 50) in one request",
    query=RunsQuery,
    returns="list of training_curves",
)
def many_curves(query: RunsQuery) -> Response:
    session = get_session()
    runs = curves.scoped_runs(session, current_principal(), ids_of(query.runs))
    data = curves.curves(session, [r for r, _ in runs])
    return jsonify({"object": "list", "count": len(data), "data": data})
