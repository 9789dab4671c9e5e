"""``/v1/clients/{client}/projects``: a client's projects (SigOpt's AI module)."""

from __future__ import annotations

from flask import Response
from flask import jsonify

from services.api import serialize
from services.api.auth import current_principal
from services.api.auth import require_token
from services.api.db import get_session
from services.api.openapi import ApiBlueprint
from services.api.routes import paths
from services.api.schemas.projects import ProjectCreate
from services.api.schemas.projects import ProjectListQuery
from services.api.store import projects as store

bp = ApiBlueprint("projects", __name__, url_prefix="/v1", path_check=paths.check_visible)
bp.before_request(require_token)

PATH = "/clients/<client>/projects"


@bp.operation(
    "POST",
    PATH,
    "Create a project (a second create of the same id is a 409)",
    body=ProjectCreate,
    returns="project",
)
def create(client: str, body: ProjectCreate) -> Response:
    project = store.create(get_session(), current_principal(), client, body)
    return jsonify(serialize.project(project, 0, 0))


@bp.operation(
    "GET", PATH, "List projects", query=ProjectListQuery, returns="pagination of projects"
)
def list_(client: str, query: ProjectListQuery) -> Response:
    session = get_session()
    rows, count, paging = store.list_page(session, current_principal(), client, query)
    counts = store.counts(session, rows)
    data = [serialize.project(p, *counts[p.id]) for p in rows]
    return jsonify(serialize.page(data, count, paging))


@bp.operation("GET", PATH + "/<project>", "Fetch a project", returns="project")
def fetch(client: str, project: str) -> Response:
    session = get_session()
    found = store.get(session, current_principal(), client, project)
    return jsonify(serialize.project(found, *store.counts(session, [found])[found.id]))
