"""Experiments: create, read (scoped to the caller's client), update, soft delete, list."""

from __future__ import annotations

import time

from sqlalchemy import Select
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api import outbox
from services.api.auth import Principal
from services.api.errors import ApiError
from services.api.errors import invalid
from services.api.errors import not_found
from services.api.models import Experiment
from services.api.models import Project
from services.api.schemas.experiments import ExperimentCreate
from services.api.schemas.experiments import ExperimentListQuery
from services.api.schemas.experiments import ExperimentUpdate
from services.api.schemas.experiments import apply_update
from services.api.schemas.experiments import definition_from_create
from services.api.store import workers
from services.api.store.paging import fetch_page
from shared.messages import EventType
from shared.space import ExperimentSpec
from shared.states import ExperimentState
from shared.states import StateFilter


def scoped(principal: Principal) -> Select[Experiment]:
    stmt = select(Experiment)
    if not principal.is_service:
        stmt = stmt.where(Experiment.client_id == principal.client_id)
    return stmt


def get(
    session: Session, principal: Principal, experiment_id: int, *, lock: bool = False
) -> Experiment:
    """The experiment if the caller may see it, else 404 (never 403: ids do not leak)."""
    stmt = scoped(principal).where(Experiment.id == experiment_id)
    if lock:
        stmt = stmt.with_for_update()
    experiment = session.scalar(stmt)
    if experiment is None:
        raise not_found("experiment", experiment_id)
    return experiment


def get_writable(session: Session, principal: Principal, experiment_id: int) -> Experiment:
    experiment = get(session, principal, experiment_id)
    if experiment.state == ExperimentState.DELETED:
        raise ApiError(
            400,
            f"Experiment {experiment_id} is deleted; undelete it (state: active) "
            "before adding suggestions or observations",
        )
    return experiment


def spec(experiment: Experiment) -> ExperimentSpec:
    return ExperimentSpec.from_json(experiment.definition)


def create(
    session: Session,
    principal: Principal,
    body: ExperimentCreate,
    *,
    project: Project | None = None,
    budget_field: str = "observation_budget",
) -> Experiment:
    """An experiment; with ``project``, an AI experiment of that project (errors about its
    budget then name ``budget_field``)."""
    if principal.is_service:
        raise ApiError(403, "The service token cannot own experiments; use a client token")
    definition = definition_from_create(body, budget_field)
    if body.objective is not None:
        workers.check_objective(body.objective.name)
    now = time.time()
    experiment = Experiment(
        client_id=principal.client_id,
        project_id=project.id if project is not None else None,
        ai=project is not None,
        name=body.name,
        state=ExperimentState.ACTIVE,
        definition=definition,
        observation_budget=body.observation_budget,
        parallel_bandwidth=body.parallel_bandwidth,
        meta=body.metadata,
        created=now,
        updated=now,
        design_cursor=0,
    )
    session.add(experiment)
    session.flush()
    outbox.record(session, EventType.EXPERIMENT_CREATED, experiment)
    session.commit()
    return experiment


def update(session: Session, experiment: Experiment, body: ExperimentUpdate) -> Experiment:
    if experiment.project_id is not None and body.project not in (
        None,
        experiment.definition.get("project"),
    ):
        raise invalid("project", "an AI experiment stays in the project it was created in")
    definition = apply_update(experiment.definition, body)
    if body.name is not None:
        experiment.name = body.name
    if body.metadata is not None:
        experiment.meta = body.metadata
    if body.observation_budget is not None:
        experiment.observation_budget = body.observation_budget
    if body.parallel_bandwidth is not None:
        experiment.parallel_bandwidth = body.parallel_bandwidth
    if body.state is not None:
        experiment.state = body.state
    experiment.definition = definition
    experiment.updated = time.time()
    deleted = experiment.state == ExperimentState.DELETED
    kind = EventType.EXPERIMENT_DELETED if deleted else EventType.EXPERIMENT_UPDATED
    outbox.record(session, kind, experiment)
    session.commit()
    return experiment


def delete(session: Session, experiment: Experiment) -> None:
    experiment.state = ExperimentState.DELETED
    experiment.updated = time.time()
    outbox.record(session, EventType.EXPERIMENT_DELETED, experiment)
    session.commit()


def list_page(
    session: Session, principal: Principal, query: ExperimentListQuery
) -> tuple[list[Experiment], int, dict[str, str | None]]:
    stmt = scoped(principal)
    if query.state != StateFilter.ALL:
        stmt = stmt.where(Experiment.state == query.state)
    if query.search:
        stmt = stmt.where(Experiment.name.contains(query.search, autoescape=True))
    return fetch_page(session, stmt, Experiment.id, query)
