"""AI experiments (SigOpt's AI module): experiments of a project whose runs clients track."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask import current_app
from flask import jsonify
from sqlalchemy.orm import Session

from services.api import serialize
from services.api.auth import current_principal
from services.api.auth import require_token
from services.api.db import get_session
from services.api.models import Experiment
from services.api.openapi import ApiBlueprint
from services.api.routes import paths
from services.api.routes.training_runs import runs_json
from services.api.schemas.aiexperiments import AiExperimentCreate
from services.api.schemas.aiexperiments import AiExperimentUpdate
from services.api.schemas.aiexperiments import AiRunCreate
from services.api.schemas.aiexperiments import ArchiveQuery
from services.api.schemas.common import PageQuery
from services.api.store import aiexperiments as store
from services.api.store import experiments
from services.api.store import projects

bp = ApiBlueprint("aiexperiments", __name__, url_prefix="/v1", path_check=paths.check_visible)
bp.before_request(require_token)

PROJECT_PATH = "/clients/<client>/projects/<project>/aiexperiments"
PATH = "/aiexperiments/<id:experiment_id>"


def aiexperiment_json(session: Session, experiment: Experiment) -> dict[str, Any]:
    progress = store.progress(session, experiment, experiments.spec(experiment))
    return serialize.aiexperiment(experiment, progress)


@bp.operation(
    "POST",
    PROJECT_PATH,
    "Create an AI experiment in a project (tasks accepted: the budget then counts task costs)",
    body=AiExperimentCreate,
    returns="aiexperiment",
)
def create(client: str, project: str, body: AiExperimentCreate) -> Response:
    session = get_session()
    principal = current_principal()
    owner = projects.get(session, principal, client, project)
    return jsonify(aiexperiment_json(session, store.create(session, principal, owner, body)))


@bp.operation(
    "GET",
    PROJECT_PATH,
    "List a project's AI experiments (newest first)",
    query=PageQuery,
    returns="pagination of aiexperiments",
)
def list_(client: str, project: str, query: PageQuery) -> Response:
    session = get_session()
    owner = projects.get(session, current_principal(), client, project)
    rows, count, paging = store.list_page(session, owner, query)
    return jsonify(serialize.page([aiexperiment_json(session, e) for e in rows], count, paging))


@bp.operation("GET", PATH, "Fetch an AI experiment", returns="aiexperiment")
def fetch(experiment_id: int) -> Response:
    session = get_session()
    experiment = store.get(session, current_principal(), experiment_id)
    return jsonify(aiexperiment_json(session, experiment))


@bp.operation(
    "PUT",
    PATH,
    'Update an AI experiment; {"state": "active"} unarchives it',
    body=AiExperimentUpdate,
    returns="aiexperiment",
)
def update(experiment_id: int, body: AiExperimentUpdate) -> Response:
    session = get_session()
    experiment = store.get(session, current_principal(), experiment_id)
    return jsonify(aiexperiment_json(session, store.update(session, experiment, body)))


@bp.operation(
    "DELETE",
    PATH,
    "Archive an AI experiment (include_runs=true: its runs too)",
    query=ArchiveQuery,
)
def delete(experiment_id: int, query: ArchiveQuery) -> tuple[str, int]:
    session = get_session()
    experiment = store.get(session, current_principal(), experiment_id)
    store.archive(session, experiment, query.include_runs)
    return "", 204


@bp.operation(
    "POST",
    PATH + "/training_runs",
    "Create a run carrying the next suggestion's assignments (or explicit ones), running; "
    "409 once the budget is spent",
    body=AiRunCreate,
    returns="training_run",
)
def create_run(experiment_id: int, body: AiRunCreate) -> Response:
    session = get_session()
    experiment = store.get(session, current_principal(), experiment_id)
    settings = current_app.config["SETTINGS"]
    run = store.create_run(
        session, current_app.extensions["redis"], settings.suggestion_wait_s, experiment, body
    )
    return jsonify(runs_json(session, [run])[0])


@bp.operation(
    "GET",
    PATH + "/best_training_runs",
    "The runs of the best observations (full cost only; the Pareto front with two metrics)",
    query=PageQuery,
    returns="pagination of training_runs",
)
def best_training_runs(experiment_id: int, query: PageQuery) -> Response:
    session = get_session()
    experiment = store.get(session, current_principal(), experiment_id)
    best = store.best_runs(session, experiment, experiments.spec(experiment))
    data = runs_json(session, best[: query.limit])
    return jsonify(serialize.page(data, len(best), {"before": None, "after": None}))
