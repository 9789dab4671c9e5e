"""Training runs (of suggestions, or of projects only) and their checkpoints."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask import jsonify
from sqlalchemy.orm import Session

from services.api import serialize
from services.api.auth import current_principal
from services.api.auth import require_token
from services.api.db import get_session
from services.api.models import TrainingRun
from services.api.openapi import ApiBlueprint
from services.api.routes import paths
from services.api.schemas.common import PageQuery
from services.api.schemas.training_runs import MAX_RUN_BATCH
from services.api.schemas.training_runs import CheckpointCreate
from services.api.schemas.training_runs import TrackedRunBatch
from services.api.schemas.training_runs import TrackedRunCreate
from services.api.schemas.training_runs import TrackedRunListQuery
from services.api.schemas.training_runs import TrainingRunCreate
from services.api.schemas.training_runs import TrainingRunListQuery
from services.api.schemas.training_runs import TrainingRunResult
from services.api.schemas.training_runs import TrainingRunUpdate
from services.api.store import checkpoints
from services.api.store import experiments
from services.api.store import projects
from services.api.store import tracking
from services.api.store import training_runs as store

bp = ApiBlueprint("training_runs", __name__, url_prefix="/v1", path_check=paths.check_visible)
bp.before_request(require_token)

RUN = "/training_runs/<id:run_id>"


def runs_json(session: Session, runs: list[TrainingRun]) -> list[dict[str, Any]]:
    related = store.relations(session, runs)
    return [serialize.training_run(r, related) for r in runs]


def _run_json(session: Session, run: TrainingRun) -> Response:
    return jsonify(runs_json(session, [run])[0])


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
    return _run_json(session, run)


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
    return jsonify(serialize.page(runs_json(session, rows), count, paging))


@bp.operation("GET", RUN, "Fetch a training run", returns="training_run")
def fetch(run_id: int) -> Response:
    session = get_session()
    run, _ = store.get_any(session, current_principal(), run_id)
    return _run_json(session, run)


@bp.operation(
    "PUT",
    RUN,
    "Update a training run: the maps sent (values, metadata, logs, ...) replace the stored ones; "
    "state, heartbeat, attempt fencing; deleted: false unarchives. A run of an experiment that "
    "ends completed or failed records its observation",
    body=TrainingRunUpdate,
    returns="training_run",
)
def update(run_id: int, body: TrainingRunUpdate) -> Response:
    session = get_session()
    run, experiment = store.get_any(session, current_principal(), run_id)
    return _run_json(session, store.update(session, experiment, run, body, merge=False))


@bp.operation(
    "PATCH",
    RUN,
    "Merge into a training run (SigOpt's MERGE): maps are merged recursively and a null inside "
    "a map deletes that key; otherwise as PUT",
    body=TrainingRunUpdate,
    returns="training_run",
    also=("MERGE",),
)
def merge(run_id: int, body: TrainingRunUpdate) -> Response:
    session = get_session()
    run, experiment = store.get_any(session, current_principal(), run_id)
    return _run_json(session, store.update(session, experiment, run, body, merge=True))


@bp.operation("DELETE", RUN, "Archive a training run (PUT deleted: false unarchives it)")
def delete(run_id: int) -> tuple[str, int]:
    session = get_session()
    run, experiment = store.get_any(session, current_principal(), run_id)
    store.delete(session, experiment, run)
    return "", 204


@bp.operation(
    "POST",
    RUN + "/result",
    "Record how an attempt ended: its observation and the run's final state, atomically",
    body=TrainingRunResult,
    returns="training_run",
)
def finish(run_id: int, body: TrainingRunResult) -> Response:
    session = get_session()
    run, experiment = store.get(session, current_principal(), run_id)
    store.finish(session, experiment, experiments.spec(experiment), run, body)
    return _run_json(session, run)


@bp.operation(
    "POST", RUN + "/checkpoints", "Log a checkpoint", body=CheckpointCreate, returns="checkpoint"
)
def create_checkpoint(run_id: int, body: CheckpointCreate) -> Response:
    session = get_session()
    run, _ = store.get_any(session, current_principal(), run_id)
    return jsonify(serialize.checkpoint(checkpoints.add(session, run, body)))


@bp.operation(
    "GET",
    RUN + "/checkpoints",
    "List checkpoints (newest first)",
    query=PageQuery,
    returns="pagination of checkpoints",
)
def list_checkpoints(run_id: int, query: PageQuery) -> Response:
    session = get_session()
    run, _ = store.get_any(session, current_principal(), run_id)
    rows, count, paging = checkpoints.list_page(session, run, query)
    return jsonify(serialize.page([serialize.checkpoint(c) for c in rows], count, paging))


# ------------------------------------------------------------------ runs of a project
PROJECT_RUNS = "/clients/<client>/projects/<project>/training_runs"


@bp.operation(
    "POST",
    PROJECT_RUNS,
    "Create a run of a project outside any experiment (running unless state says it ended)",
    body=TrackedRunCreate,
    returns="training_run",
)
def create_tracked(client: str, project: str, body: TrackedRunCreate) -> Response:
    session = get_session()
    owner = projects.get(session, current_principal(), client, project)
    return _run_json(session, tracking.create(session, owner, body))


@bp.operation(
    "POST",
    PROJECT_RUNS + "/batch",
    f"Create up to {MAX_RUN_BATCH} runs of a project at once (all or none)",
    body=TrackedRunBatch,
    returns="pagination of training_run_fields",
)
def create_tracked_batch(client: str, project: str, body: TrackedRunBatch) -> Response:
    session = get_session()
    owner = projects.get(session, current_principal(), client, project)
    runs = tracking.create_batch(session, owner, body)
    data = runs_json(session, runs)
    if body.fields:
        wanted = {"object", *(f.strip() for f in body.fields.split(","))}
        data = [{k: v for k, v in item.items() if k in wanted} for item in data]
    return jsonify(serialize.page(data, len(data), {"before": None, "after": None}))


@bp.operation(
    "GET",
    PROJECT_RUNS,
    "List a project's runs (archived ones too), newest first; filters is a JSON array of "
    '{"field", "operator", "value"} (fields id, experiment, suggestion, state, deleted, name; '
    "operators ==, != and isnull)",
    query=TrackedRunListQuery,
    returns="pagination of training_runs",
)
def list_tracked(client: str, project: str, query: TrackedRunListQuery) -> Response:
    session = get_session()
    owner = projects.get(session, current_principal(), client, project)
    rows, count, paging = tracking.list_page(session, owner, query)
    return jsonify(serialize.page(runs_json(session, rows), count, paging))
