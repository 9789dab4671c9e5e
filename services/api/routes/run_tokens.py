"""``POST /v1/training_runs/{id}/tokens``: the service mints a token scoped to one attempt of
one run, for a script objective's child process (what `sigopt run` gives its child). What such
a token may call is decided in one place, `services.api.auth.check_run_scope`."""

from __future__ import annotations

from flask import Response
from flask import jsonify

from services.api.auth import create_run_token
from services.api.auth import current_principal
from services.api.auth import require_token
from services.api.db import get_session
from services.api.errors import ApiError
from services.api.openapi import ApiBlueprint
from services.api.schemas.run_tokens import RunTokenCreate
from services.api.store import training_runs
from shared.states import FINISHED_RUN_STATES

bp = ApiBlueprint("run_tokens", __name__, url_prefix="/v1")
bp.before_request(require_token)


@bp.operation(
    "POST",
    "/training_runs/<id:run_id>/tokens",
    "Mint a token scoped to this run's current attempt (the service token only); it stops "
    "working when the run moves to a later attempt or finishes",
    body=RunTokenCreate,
    returns="run_token",
    status=201,
)
def create(run_id: int, body: RunTokenCreate) -> tuple[Response, int]:
    principal = current_principal()
    if not principal.is_service:
        raise ApiError(403, "Forbidden: only the service token mints run-scoped tokens")
    session = get_session()
    run, _ = training_runs.get_any(session, principal, run_id)
    if body.attempt != run.attempt:
        raise ApiError(
            409,
            f"Conflict in attempt: run {run.id} is at attempt {run.attempt}, not {body.attempt}",
        )
    if run.state in FINISHED_RUN_STATES:
        raise ApiError(409, f"Conflict in state: run {run.id} is {run.state}, already finished")
    token = create_run_token(session, run)
    return jsonify(
        {
            "object": "token",
            "token": token,
            "token_type": "run",
            "client": str(run.client_id),
            "training_run": str(run.id),
            "attempt": run.attempt,
        }
    ), 201
