"""``/v1/experiments/<id>/observations``: single, batch, fetch, list, update, delete."""

from __future__ import annotations

from flask import Response
from flask import jsonify
from flask import request

from services.api import serialize
from services.api.auth import current_principal
from services.api.auth import require_token
from services.api.db import get_session
from services.api.errors import invalid
from services.api.openapi import ApiBlueprint
from services.api.schemas.observations import ObservationBatchCreate
from services.api.schemas.observations import ObservationCreate
from services.api.schemas.observations import ObservationListQuery
from services.api.store import experiments
from services.api.store import observations as store

bp = ApiBlueprint("observations", __name__, url_prefix="/v1")
bp.before_request(require_token)

PATH = "/experiments/<id:experiment_id>/observations"
MAX_IDEMPOTENCY_KEY = 200


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise invalid("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return key


@bp.operation(
    "POST",
    PATH,
    "Report an observation (accepts an Idempotency-Key header)",
    body=ObservationCreate,
    returns="observation",
)
def create(experiment_id: int, body: ObservationCreate) -> Response:
    session = get_session()
    experiment = experiments.get_writable(session, current_principal(), experiment_id)
    observation = store.create(
        session, experiment, experiments.spec(experiment), body, _idempotency_key()
    )
    return jsonify(serialize.observation(observation, experiment.definition))


@bp.operation(
    "POST",
    PATH + "/batch",
    "Report up to 2500 observations at once (all or nothing)",
    body=ObservationBatchCreate,
    returns="pagination of observations",
)
def create_batch(experiment_id: int, body: ObservationBatchCreate) -> Response:
    session = get_session()
    experiment = experiments.get_writable(session, current_principal(), experiment_id)
    rows = store.create_many(
        session, experiment, experiments.spec(experiment), body.observations, _idempotency_key()
    )
    data = [serialize.observation(o, experiment.definition) for o in rows]
    return jsonify(serialize.page(data, len(data), {"before": None, "after": None}))


@bp.operation(
    "GET",
    PATH,
    "List observations",
    query=ObservationListQuery,
    returns="pagination of observations",
)
def list_(experiment_id: int, query: ObservationListQuery) -> Response:
    session = get_session()
    experiment = experiments.get(session, current_principal(), experiment_id)
    rows, count, paging = store.list_page(session, experiment, query)
    data = [serialize.observation(o, experiment.definition) for o in rows]
    return jsonify(serialize.page(data, count, paging))


@bp.operation("GET", PATH + "/<id:observation_id>", "Fetch an observation", returns="observation")
def fetch(experiment_id: int, observation_id: int) -> Response:
    session = get_session()
    experiment = experiments.get(session, current_principal(), experiment_id)
    observation = store.get(session, experiment, observation_id)
    return jsonify(serialize.observation(observation, experiment.definition))


@bp.operation(
    "PUT",
    PATH + "/<id:observation_id>",
    "Update an observation",
    body=ObservationCreate,
    returns="observation",
)
def update(experiment_id: int, observation_id: int, body: ObservationCreate) -> Response:
    session = get_session()
    experiment = experiments.get_writable(session, current_principal(), experiment_id)
    observation = store.get(session, experiment, observation_id)
    store.update_one(session, experiment, experiments.spec(experiment), observation, body)
    return jsonify(serialize.observation(observation, experiment.definition))


@bp.operation("DELETE", PATH + "/<id:observation_id>", "Delete an observation")
def delete(experiment_id: int, observation_id: int) -> tuple[str, int]:
    session = get_session()
    experiment = experiments.get(session, current_principal(), experiment_id)
    store.delete(session, experiment, store.get(session, experiment, observation_id))
    return "", 204


@bp.operation("DELETE", PATH, "Delete all observations")
def delete_all(experiment_id: int) -> tuple[str, int]:
    session = get_session()
    store.delete_all(session, experiments.get(session, current_principal(), experiment_id))
    return "", 204
