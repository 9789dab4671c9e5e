"""``/v1/experiments/<id>/suggestions``: served from the pool, or stored as given."""

from __future__ import annotations

from flask import Response
from flask import current_app
from flask import jsonify

from services.api import serialize
from services.api.auth import current_principal
from services.api.auth import require_token
from services.api.db import get_session
from services.api.openapi import ApiBlueprint
from services.api.schemas.suggestions import SuggestionCreate
from services.api.schemas.suggestions import SuggestionDeleteQuery
from services.api.schemas.suggestions import SuggestionListQuery
from services.api.schemas.suggestions import SuggestionUpdate
from services.api.store import experiments
from services.api.store import suggestions as store
from shared.states import SuggestionState

bp = ApiBlueprint("suggestions", __name__, url_prefix="/v1")
bp.before_request(require_token)

PATH = "/experiments/<id:experiment_id>/suggestions"


@bp.operation(
    "POST",
    PATH,
    "Create a suggestion: empty body = the optimizer's next point; with "
    "assignments (+ task) = stored as given",
    body=SuggestionCreate,
    returns="suggestion",
)
def create(experiment_id: int, body: SuggestionCreate) -> Response:
    session = get_session()
    experiment = experiments.get_writable(session, current_principal(), experiment_id)
    spec = experiments.spec(experiment)
    if body.assignments is not None or body.task is not None:
        if body.assignments is None:
            store.check_task(spec, None, "assignments")
        suggestion = store.create_explicit(
            session, experiment, spec, body.assignments or {}, body.task, body.metadata
        )
    else:
        settings = current_app.config["SETTINGS"]
        suggestion = store.serve(
            session,
            current_app.extensions["redis"],
            experiment,
            spec,
            settings.suggestion_wait_s,
            body.metadata,
        )
    return jsonify(serialize.suggestion(suggestion, experiment.definition))


@bp.operation(
    "GET", PATH, "List suggestions", query=SuggestionListQuery, returns="pagination of suggestions"
)
def list_(experiment_id: int, query: SuggestionListQuery) -> Response:
    session = get_session()
    experiment = experiments.get(session, current_principal(), experiment_id)
    rows, count, paging = store.list_page(session, experiment, query)
    data = [serialize.suggestion(s, experiment.definition) for s in rows]
    return jsonify(serialize.page(data, count, paging))


@bp.operation("GET", PATH + "/<id:suggestion_id>", "Fetch a suggestion", returns="suggestion")
def fetch(experiment_id: int, suggestion_id: int) -> Response:
    session = get_session()
    experiment = experiments.get(session, current_principal(), experiment_id)
    suggestion = store.get(session, experiment, suggestion_id)
    return jsonify(serialize.suggestion(suggestion, experiment.definition))


@bp.operation(
    "PUT",
    PATH + "/<id:suggestion_id>",
    "Update a suggestion's metadata",
    body=SuggestionUpdate,
    returns="suggestion",
)
def update(experiment_id: int, suggestion_id: int, body: SuggestionUpdate) -> Response:
    session = get_session()
    experiment = experiments.get(session, current_principal(), experiment_id)
    suggestion = store.get(session, experiment, suggestion_id)
    store.update_metadata(session, suggestion, body.metadata)
    return jsonify(serialize.suggestion(suggestion, experiment.definition))


@bp.operation(
    "DELETE",
    PATH + "/<id:suggestion_id>",
    "Delete a suggestion; observations that reference it later are refused",
)
def delete(experiment_id: int, suggestion_id: int) -> tuple[str, int]:
    session = get_session()
    experiment = experiments.get(session, current_principal(), experiment_id)
    store.delete(session, experiment, store.get(session, experiment, suggestion_id))
    return "", 204


@bp.operation(
    "DELETE",
    PATH,
    "Delete all suggestions, or only the open ones (state=open)",
    query=SuggestionDeleteQuery,
)
def delete_all(experiment_id: int, query: SuggestionDeleteQuery) -> tuple[str, int]:
    session = get_session()
    experiment = experiments.get(session, current_principal(), experiment_id)
    store.delete_all(session, experiment, only_open=query.state == SuggestionState.OPEN)
    return "", 204
