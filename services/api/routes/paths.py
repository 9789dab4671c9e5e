"""The objects a path names, checked before a request's body or query is judged (see
`services.api.openapi.ApiBlueprint`): another client's ids answer 404 whatever is sent."""

from __future__ import annotations

from typing import Any

from services.api.auth import current_principal
from services.api.db import get_session
from services.api.store import experiments
from services.api.store import projects
from services.api.store import training_runs


def check_visible(args: dict[str, Any]) -> None:
    """404 for a client, project, experiment or training run in ``args`` (a view's path
    arguments) that the caller may not see."""
    session = get_session()
    principal = current_principal()
    if "project" in args:
        projects.get(session, principal, args["client"], args["project"])
    elif "client" in args:
        projects.client_id(session, principal, args["client"])
    if "experiment_id" in args:
        experiments.get(session, principal, args["experiment_id"])
    if "run_id" in args:
        training_runs.get_any(session, principal, args["run_id"])
