"""``/v1/tokens/self``: who the caller's token belongs to (the sigopt client reads ``client``)."""

from __future__ import annotations

from flask import Response
from flask import jsonify

from services.api import serialize
from services.api.auth import current_principal
from services.api.auth import require_token
from services.api.openapi import ApiBlueprint

bp = ApiBlueprint("tokens", __name__, url_prefix="/v1")
bp.before_request(require_token)


@bp.operation("GET", "/tokens/self", "The caller's token: its client (and run)", returns="token")
def fetch_self() -> Response:
    return jsonify(serialize.token(current_principal()))
