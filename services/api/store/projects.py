"""Projects: per client, addressed as ``/clients/{client}/projects/{project}`` with the string id
the client chose. Another client's projects (and clients) are simply not found."""

from __future__ import annotations

import re
import time

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.api.auth import Principal
from services.api.errors import ApiError
from services.api.errors import not_found
from services.api.models import Client
from services.api.models import Experiment
from services.api.models import Project
from services.api.models import TrainingRun
from services.api.schemas.projects import PROJECT_ID_PATTERN
from services.api.schemas.projects import ProjectCreate
from services.api.schemas.projects import ProjectListQuery
from services.api.store.paging import fetch_page


def client_id(session: Session, principal: Principal, client: str) -> int:
    """The id of the client in a path: the caller's own (the service may name any), else 404."""
    if not (client.isascii() and client.isdigit()) or len(client) > 10:
        raise not_found("client", client)
    number = int(client)
    if principal.is_service:
        if session.get(Client, number) is None:
            raise not_found("client", client)
    elif number != principal.client_id:
        raise not_found("client", client)
    return number


def get(session: Session, principal: Principal, client: str, reference_id: str) -> Project:
    owner = client_id(session, principal, client)
    if not re.fullmatch(PROJECT_ID_PATTERN, reference_id):
        raise not_found("project", reference_id[:100])  # no project can have this id
    project = session.scalar(
        select(Project).where(
            Project.client_id == owner,
            Project.reference_id == reference_id,
        )
    )
    if project is None:
        raise not_found("project", reference_id)
    return project


def create(session: Session, principal: Principal, client: str, body: ProjectCreate) -> Project:
    """A second project with the same id is a 409 (the client's ConflictingProjectException)."""
    owner = client_id(session, principal, client)
    if principal.is_service:
        raise ApiError(403, "The service token cannot own projects; use a client token")
    now = time.time()
    project = Project(
        client_id=owner,
        reference_id=body.id,
        name=body.name or body.id,
        meta=body.metadata,
        created=now,
        updated=now,
    )
    session.add(project)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ApiError(409, f"Conflict in id: project {body.id!r} already exists") from exc
    return project


def list_page(
    session: Session, principal: Principal, client: str, query: ProjectListQuery
) -> tuple[list[Project], int, dict[str, str | None]]:
    stmt = select(Project).where(Project.client_id == client_id(session, principal, client))
    return fetch_page(session, stmt, Project.id, query)


def counts(session: Session, projects: list[Project]) -> dict[int, tuple[int, int]]:
    """Per project id: (experiments, training runs) in it."""
    ids = [p.id for p in projects]
    if not ids:
        return {}
    experiments = dict(
        session.execute(
            select(Experiment.project_id, func.count())
            .where(Experiment.project_id.in_(ids))
            .group_by(Experiment.project_id)
        )
        .tuples()
        .all()
    )
    runs = dict(
        session.execute(
            select(TrainingRun.project_id, func.count())
            .where(TrainingRun.project_id.in_(ids))
            .group_by(TrainingRun.project_id)
        )
        .tuples()
        .all()
    )
    return {i: (experiments.get(i, 0), runs.get(i, 0)) for i in ids}
