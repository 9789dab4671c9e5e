"""``/v1/experiments/<id>/queued_suggestions``: user points served before any optimizer output."""

from __future__ import annotations

from flask import Response
from flask import jsonify

from services.api import serialize
from services.api.auth import current_principal
from services.api.auth import require_token
from services.api.db import get_session
from services.api.openapi import ApiBlueprint
from services.api.schemas.common import PageQuery
from services.api.schemas.suggestions import QueuedSuggestionCreate
from services.api.store import experiments
from services.api.store import suggestions as store

bp = ApiBlueprint("queued_suggestions", __name__, url_prefix="/v1")
bp.before_request(require_token)

PATH = "/experiments/<id:experiment_id>/queued_suggestions"


@bp.operation(
    "POST",
    PATH,
    "Queue a suggestion (served first, once)",
    body=QueuedSuggestionCreate,
    returns="queued_suggestion",
)
def create(experiment_id: int, body: QueuedSuggestionCreate) -> Response:
    session = get_session()
    experiment = experiments.get_writable(session, current_principal(), experiment_id)
    queued = store.create_queued(
        session, experiment, experiments.spec(experiment), body.assignments, body.task
    )
    return jsonify(serialize.queued_suggestion(queued, experiment.definition))


@bp.operation(
    "GET",
    PATH,
    "List queued suggestions",
    query=PageQuery,
    returns="pagination of queued_suggestions",
)
def list_(experiment_id: int, query: PageQuery) -> Response:
    session = get_session()
    experiment = experiments.get(session, current_principal(), experiment_id)
    rows, count, paging = store.list_queued(session, experiment, query)
    data = [serialize.queued_suggestion(q, experiment.definition) for q in rows]
    return jsonify(serialize.page(data, count, paging))


@bp.operation(
    "GET", PATH + "/<id:queued_id>", "Fetch a queued suggestion", returns="queued_suggestion"
)
def fetch(experiment_id: int, queued_id: int) -> Response:
    session = get_session()
    experiment = experiments.get(session, current_principal(), experiment_id)
    queued = store.get_queued(session, experiment, queued_id)
    return jsonify(serialize.queued_suggestion(queued, experiment.definition))


@bp.operation("DELETE", PATH + "/<id:queued_id>", "Delete a queued suggestion")
def delete(experiment_id: int, queued_id: int) -> tuple[str, int]:
    session = get_session()
    experiment = experiments.get(session, current_principal(), experiment_id)
    store.delete_queued(session, store.get_queued(session, experiment, queued_id))
    return "", 204
