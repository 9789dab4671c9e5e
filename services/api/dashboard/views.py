"""Dashboard pages: login/logout, the experiment list, an experiment, a run, and compare.

Pages render their summary server-side and load their charts from ``/v1/.../analytics`` with
the session cookie. Scoping is the API's: another client's experiment or run is a 404 page.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from pydantic import ValidationError
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as ResponseBase

from services.api.analytics import curves
from services.api.analytics import dataset
from services.api.analytics import summary
from services.api.auth import Principal
from services.api.dashboard import session as auth
from services.api.db import get_session
from services.api.errors import ApiError
from services.api.errors import describe_validation_error
from services.api.errors import invalid
from services.api.errors import not_found
from services.api.models import Experiment
from services.api.models import Observation
from services.api.models import Suggestion
from services.api.schemas.analytics import parse_ids
from services.api.schemas.experiments import ExperimentListQuery
from services.api.store import artifacts
from services.api.store import experiments
from services.api.store import training_runs
from services.api.store import workers
from services.api.store.results import observation_stats_many
from shared.states import ExperimentState
from shared.states import StateFilter

bp = Blueprint("dashboard", __name__)

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
LIST_PAGE_SIZE = 50
LOG_TAIL_LINES = 200
#: The list page's state filter, in menu order.
STATES = (StateFilter.ALL, *ExperimentState)


class _SignIn(Exception):
    """Raised by `_principal` when nobody is signed in: answered with a redirect to /login."""


@bp.errorhandler(_SignIn)
def _to_login(_exc: _SignIn) -> ResponseBase:
    return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> tuple[str, int]:
    page = render_template("dashboard/error.html", status=exc.status, message=exc.message)
    return page, exc.status


@bp.errorhandler(ValidationError)
def _validation_error(exc: ValidationError) -> tuple[str, int]:
    return render_template(
        "dashboard/error.html", status=400, message=describe_validation_error(exc)
    ), 400


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    status = exc.code or 500
    return render_template("dashboard/error.html", status=status, message=exc.name), status


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    return {
        "csrf_token": auth.csrf_token,
        "signed_in": auth.session_principal,
        "fmt": _fmt,
        "ago": _ago,
    }


def _fmt(value: Any, digits: int = 5) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    delta = max(0.0, time.time() - seconds)
    if delta < 120:
        return f"{delta:.0f} s ago"
    if delta < 7200:
        return f"{delta / 60:.0f} min ago"
    if delta < 172800:
        return f"{delta / 3600:.0f} h ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _principal() -> Principal:
    principal = auth.session_principal()
    if principal is None:
        raise _SignIn()
    return principal


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or a scheme) is followed after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("dashboard.experiment_list")


@bp.get("/")
def index() -> ResponseBase:
    return redirect(url_for("dashboard.experiment_list"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseBase | tuple[str, int] | str:
    """The sign-in form; failed sign-ins are throttled per address and per token
    (`auth.sign_in_blocked`)."""
    target = request.values.get("next")
    if request.method == "GET":
        return render_template("dashboard/login.html", next=target, error=None)
    auth.check_csrf()
    token = request.form.get("token", "")
    blocked = auth.sign_in_blocked(token)
    if blocked is not None:
        page = render_template("dashboard/login.html", next=target, error=blocked.message)
        return Response(page, 429, {"Retry-After": str(blocked.retry_after)})
    if auth.sign_in(token) is None:
        return render_template(
            "dashboard/login.html",
            next=target,
            error="Invalid value for token: not a valid API token",
        ), 401
    return redirect(_safe_next(target))


@bp.post("/logout")
def logout() -> ResponseBase:
    auth.check_csrf()
    auth.sign_out()
    return redirect(url_for("dashboard.login"))


@bp.get("/experiments")
def experiment_list() -> str:
    principal = _principal()
    session = get_session()
    query = ExperimentListQuery.model_validate(
        {
            "state": request.args.get("state") or StateFilter.ALL,
            "search": request.args.get("q") or None,
            "before": request.args.get("before") or None,
            "limit": LIST_PAGE_SIZE,
        }
    )
    rows, count, paging = experiments.list_page(session, principal, query)
    best = summary.best_values(session, rows)
    owner = summary.owners(session, {e.client_id for e in rows})
    stats = observation_stats_many(session, [e.id for e in rows])
    items = [
        {
            "experiment": e,
            "best": best.get(e.id),
            "owner": owner.get(e.client_id),
            "stats": stats[e.id],
            "fraction": summary.budget_fraction(e, stats[e.id]),
            "metric": dataset.choose_metric(experiments.spec(e), None),
        }
        for e in rows
    ]
    return render_template(
        "dashboard/experiments.html",
        items=items,
        count=count,
        paging=paging,
        q=query.search or "",
        state=query.state,
        states=STATES,
    )


@bp.get("/experiments/<id:experiment_id>")
def experiment_page(experiment_id: int) -> str:
    session = get_session()
    experiment = experiments.get(session, _principal(), experiment_id)
    data = dataset.load(session, experiment)
    info = summary.experiment_summary(session, experiment, data)
    return render_template(
        "dashboard/experiment.html",
        e=experiment,
        s=info,
        d=experiment.definition,
        full_cost=data.spec.full_cost_task,
        objective_status=workers.status_json(experiment.definition),
    )


@bp.get("/runs/<id:run_id>")
def run_page(run_id: int) -> str:
    session = get_session()
    run, experiment = training_runs.get(session, _principal(), run_id)
    suggestion = session.get(Suggestion, run.suggestion_id)
    observation = session.scalar(
        select(Observation).where(Observation.exclusive_suggestion_id == run.suggestion_id)
    )
    logs = (run.logs or "").splitlines()
    files = artifacts.of_run(session, run)
    return render_template(
        "dashboard/run.html",
        run=run,
        e=experiment,
        suggestion=suggestion,
        observation=observation,
        files=files,
        image_types=artifacts.IMAGE_TYPES,
        preview_types=artifacts.PREVIEW_TYPES,
        log_tail="\n".join(logs[-LOG_TAIL_LINES:]),
        log_lines=len(logs),
        lease_s=current_app.config["SETTINGS"].run_lease_s,
        task_cost=experiments.spec(experiment).task_cost(suggestion.task if suggestion else None),
    )


def _ids(field: str) -> list[int]:
    """``?runs=1,2`` or, from the list page's checkboxes, ``?experiments=1&experiments=2``."""
    return parse_ids(field, ",".join(request.args.getlist(field)))


@bp.get("/compare")
def compare() -> str:
    principal = _principal()
    session = get_session()
    if "runs" in request.args:
        runs = curves.scoped_runs(session, principal, _ids("runs"))
        suggestions = training_runs.suggestions_of(session, [r for r, _ in runs])
        items: list[dict[str, Any]] = [
            {
                "id": r.id,
                "name": r.name or f"run {r.id}",
                "experiment": e,
                "state": r.state,
                "suggestion": (
                    None if r.suggestion_id is None else suggestions.get(r.suggestion_id)
                ),
            }
            for r, e in runs
        ]
        return render_template("dashboard/compare.html", kind="runs", items=items)
    if "experiments" in request.args:
        ids = _ids("experiments")
        stmt = select(Experiment).where(Experiment.id.in_(ids))
        if not principal.is_service:  # the scoping of experiments.scoped
            stmt = stmt.where(Experiment.client_id == principal.client_id)
        by_id = {e.id: e for e in session.scalars(stmt)}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise not_found("experiment", missing[0])
        found = [by_id[i] for i in ids]
        best = summary.best_values(session, found)
        stats = observation_stats_many(session, ids)
        items = [
            {
                "id": e.id,
                "name": e.name,
                "experiment": e,
                "state": e.state,
                "stats": stats[e.id],
                "best": best.get(e.id),
            }
            for e in found
        ]
        return render_template("dashboard/compare.html", kind="experiments", items=items)
    raise invalid("runs", "give ?runs=1,2,3 or ?experiments=1,2")
