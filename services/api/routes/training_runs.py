"""Training runs of suggestions and their checkpoints (per-epoch metric values)."""

from __future__ import annotations

from flask import Response
from flask import jsonify
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api import serialize
from services.api.auth import current_principal
from services.api.auth import require_token
from services.api.db import get_session
from services.api.models import Experiment
from services.api.models import Observation
from services.api.models import TrainingRun
from services.api.openapi import ApiBlueprint
from services.api.schemas.common import PageQuery
from services.api.schemas.training_runs import CheckpointCreate
from services.api.schemas.training_runs import TrainingRunCreate
from services.api.schemas.training_runs import TrainingRunListQuery
from services.api.schemas.training_runs import TrainingRunResult
from services.api.schemas.training_runs import TrainingRunUpdate
from services.api.store import experiments
from services.api.store import training_runs as store

bp = ApiBlueprint("training_runs", __name__, url_prefix="/v1")
bp.before_request(require_token)


def _runs_json(session: Session, experiment: Experiment, runs: list[TrainingRun]) -> list[dict]:
    suggestions = store.suggestions_of(session, runs)
    ids = [r.suggestion_id for r in runs]
    observed = (
        dict(
            session.execute(
                select(Observation.exclusive_suggestion_id, Observation.id).where(
                    Observation.exclusive_suggestion_id.in_(ids)
                )
            )
            .tuples()
            .all()
        )
        if ids
        else {}
    )
    return [
        serialize.training_run(
            r, suggestions[r.suggestion_id], observed.get(r.suggestion_id), experiment
        )
        for r in runs
    ]


@bp.operation(
    "POST",
    "/experiments/<id:experiment_id>/training_runs",
    "Create the training run of a suggestion (again: returns the existing one), or a new "
    "suggestion and its run together",
    body=TrainingRunCreate,
    returns="training_run",
)
def create(experiment_id: int, body: TrainingRunCreate) -> Response:
    session = get_session()
    experiment = experiments.get_writable(session, current_principal(), experiment_id)
    run = store.create(session, experiment, experiments.spec(experiment), body)
    return jsonify(_runs_json(session, experiment, [run])[0])


@bp.operation(
    "GET",
    "/experiments/<id:experiment_id>/training_runs",
    "List training runs",
    query=TrainingRunListQuery,
    returns="pagination of training_runs",
)
def list_(experiment_id: int, query: TrainingRunListQuery) -> Response:
    session = get_session()
    experiment = experiments.get(session, current_principal(), experiment_id)
    rows, count, paging = store.list_page(session, experiment, query)
    return jsonify(serialize.page(_runs_json(session, experiment, rows), count, paging))


@bp.operation("GET", "/training_runs/<id:run_id>", "Fetch a training run", returns="training_run")
def fetch(run_id: int) -> Response:
    session = get_session()
    run, experiment = store.get(session, current_principal(), run_id)
    return jsonify(_runs_json(session, experiment, [run])[0])


@bp.operation(
    "PUT",
    "/training_runs/<id:run_id>",
    "Update a training run (state, heartbeat, attempt fencing, logs)",
    body=TrainingRunUpdate,
    returns="training_run",
)
def update(run_id: int, body: TrainingRunUpdate) -> Response:
    session = get_session()
    run, experiment = store.get(session, current_principal(), run_id)
    store.update_one(session, experiment, run, body)
    return jsonify(_runs_json(session, experiment, [run])[0])


@bp.operation(
    "POST",
    "/training_runs/<id:run_id>/result",
    "Record how an attempt ended: its observation and the run's final state, atomically",
    body=TrainingRunResult,
    returns="training_run",
)
def finish(run_id: int, body: TrainingRunResult) -> Response:
    session = get_session()
    run, experiment = store.get(session, current_principal(), run_id)
    store.finish(session, experiment, experiments.spec(experiment), run, body)
    return jsonify(_runs_json(session, experiment, [run])[0])


@bp.operation(
    "POST",
    "/training_runs/<id:run_id>/checkpoints",
    "Log a checkpoint",
    body=CheckpointCreate,
    returns="checkpoint",
)
def create_checkpoint(run_id: int, body: CheckpointCreate) -> Response:
    session = get_session()
    run, _ = store.get(session, current_principal(), run_id)
    return jsonify(serialize.checkpoint(store.add_checkpoint(session, run, body)))


@bp.operation(
    "GET",
    "/training_runs/<id:run_id>/checkpoints",
    "List checkpoints (newest first)",
    query=PageQuery,
    returns="pagination of checkpoints",
)
def list_checkpoints(run_id: int, query: PageQuery) -> Response:
    session = get_session()
    run, _ = store.get(session, current_principal(), run_id)
    rows, count, paging = store.list_checkpoints(session, run, query)
    return jsonify(serialize.page([serialize.checkpoint(c) for c in rows], count, paging))
