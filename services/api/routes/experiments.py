"""``/v1/experiments``: create, fetch, list, update, delete, best assignments, OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask import current_app
from flask import jsonify
from sqlalchemy.orm import Session

from services.api import openapi
from services.api import serialize
from services.api.auth import current_principal
from services.api.auth import require_token
from services.api.db import get_session
from services.api.models import Experiment
from services.api.openapi import ApiBlueprint
from services.api.schemas.common import PageQuery
from services.api.schemas.experiments import ExperimentCreate
from services.api.schemas.experiments import ExperimentListQuery
from services.api.schemas.experiments import ExperimentUpdate
from services.api.store import experiments as store
from services.api.store import results
from services.api.store import workers

bp = ApiBlueprint("experiments", __name__, url_prefix="/v1")
bp.before_request(require_token)


def experiment_json(session: Session, experiment: Experiment) -> dict[str, Any]:
    spec = store.spec(experiment)
    progress = results.progress(session, experiment, spec)
    d = experiment.definition
    for key in ("first_observation", "last_observation", "best_observation"):
        if progress[key] is not None:
            progress[key] = serialize.observation(progress[key], d)
    body = serialize.experiment(experiment, {"object": "progress", **progress})
    body["objective_status"] = workers.status_json(d)
    return body


@bp.operation(
    "POST", "/experiments", "Create an experiment", body=ExperimentCreate, returns="experiment"
)
def create(body: ExperimentCreate) -> Response:
    session = get_session()
    experiment = store.create(session, current_principal(), body)
    return jsonify(experiment_json(session, experiment))


@bp.operation(
    "GET",
    "/experiments",
    "List experiments (newest first)",
    query=ExperimentListQuery,
    returns="pagination of experiments",
)
def list_(query: ExperimentListQuery) -> Response:
    session = get_session()
    rows, count, paging = store.list_page(session, current_principal(), query)
    return jsonify(serialize.page([experiment_json(session, e) for e in rows], count, paging))


@bp.operation(
    "GET", "/experiments/<id:experiment_id>", "Fetch an experiment", returns="experiment"
)
def fetch(experiment_id: int) -> Response:
    session = get_session()
    return jsonify(
        experiment_json(session, store.get(session, current_principal(), experiment_id))
    )


@bp.operation(
    "PUT",
    "/experiments/<id:experiment_id>",
    "Update an experiment",
    body=ExperimentUpdate,
    returns="experiment",
)
def update(experiment_id: int, body: ExperimentUpdate) -> Response:
    session = get_session()
    experiment = store.get(session, current_principal(), experiment_id)
    store.update(session, experiment, body)
    return jsonify(experiment_json(session, experiment))


@bp.operation("DELETE", "/experiments/<id:experiment_id>", "Delete an experiment (soft)")
def delete(experiment_id: int) -> tuple[str, int]:
    session = get_session()
    store.delete(session, store.get(session, current_principal(), experiment_id))
    return "", 204


@bp.operation(
    "GET",
    "/experiments/<id:experiment_id>/best_assignments",
    "Best observation(s): feasible and full-cost only; with two optimized metrics the Pareto "
    "front, best first by the first",
    query=PageQuery,
    returns="pagination of best_assignments",
)
def best_assignments(experiment_id: int, query: PageQuery) -> Response:
    session = get_session()
    experiment = store.get(session, current_principal(), experiment_id)
    best = results.best_observations(session, experiment, store.spec(experiment))
    data = [serialize.best_assignment(o, experiment.definition) for o in best[: query.limit]]
    return jsonify(serialize.page(data, len(best), {"before": None, "after": None}))


@bp.operation("GET", "/openapi.json", "This document", returns="OpenAPI document")
def openapi_document() -> Response:
    return jsonify(openapi.build_document(current_app))
