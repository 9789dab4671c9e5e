"""SigOpt v1 JSON for stored objects. Ids are strings, times integer Unix seconds, and every
object carries ``object``."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

from services.api.models import Checkpoint
from services.api.models import Experiment
from services.api.models import Observation
from services.api.models import Project
from services.api.models import QueuedSuggestion
from services.api.models import Suggestion
from services.api.models import TrainingRun
from shared.states import FINISHED_RUN_STATES

if TYPE_CHECKING:
    from services.api.auth import Principal


def _id(value: int | None) -> str | None:
    return None if value is None else str(value)


def _time(value: float | None) -> int | None:
    return None if value is None else int(value)


def task(definition: dict[str, Any], name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    for t in definition.get("tasks") or ():
        if t["name"] == name:
            return {"object": "task", "name": name, "cost": t["cost"]}
    return {"object": "task", "name": name, "cost": None}


def metric_values(values: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "object": "metric_evaluation",
            "name": v.get("name"),
            "value": v["value"],
            "value_stddev": v.get("value_stddev"),
        }
        for v in values
    ]


def experiment(exp: Experiment, progress: dict[str, Any] | None) -> dict[str, Any]:
    d = exp.definition
    return {
        "object": "experiment",
        "id": str(exp.id),
        "name": exp.name,
        "type": d["type"],
        "state": exp.state,
        "client": str(exp.client_id),
        "user": None,
        "project": d.get("project"),
        "development": False,
        "created": _time(exp.created),
        "updated": _time(exp.updated),
        "parameters": d["parameters"],
        "metrics": [{"object": "metric", **m} for m in d["metrics"]],
        "conditionals": [{"object": "conditional", **c} for c in d.get("conditionals") or ()],
        "linear_constraints": [
            {"object": "linear_constraint", **c} for c in d.get("linear_constraints") or ()
        ],
        "tasks": [{"object": "task", **t} for t in d.get("tasks") or ()] or None,
        "observation_budget": exp.observation_budget,
        "parallel_bandwidth": exp.parallel_bandwidth,
        "num_solutions": d.get("num_solutions", 1),
        "metadata": exp.meta,
        "objective": d.get("objective"),
        "progress": progress,
    }


def aiexperiment(exp: Experiment, progress: dict[str, Any]) -> dict[str, Any]:
    """An AI experiment: the experiment's JSON with SigOpt's AI-module names (``budget``) and
    run progress (``remaining_budget``, run counts)."""
    core = experiment(exp, {"object": "progress", **progress})
    names = {"observation_budget": "budget"}
    out = {names.get(k, k): v for k, v in core.items() if k != "development"}
    out["object"] = "aiexperiment"
    return out


def project(p: Project, experiment_count: int, training_run_count: int) -> dict[str, Any]:
    return {
        "object": "project",
        "id": p.reference_id,
        "name": p.name,
        "client": str(p.client_id),
        "user": None,
        "created": _time(p.created),
        "updated": _time(p.updated),
        "metadata": p.meta,
        "experiment_count": experiment_count,
        "training_run_count": training_run_count,
        "deleted": False,
    }


def token(principal: Principal) -> dict[str, Any]:
    """The caller's token (``GET /tokens/self``); the secret itself is never shown."""
    if principal.is_service:
        kind = "service"
    elif principal.run_id is not None:
        kind = "training_run"
    else:
        kind = "client"
    return {
        "object": "token",
        "token": None,
        "token_type": kind,
        "client": _id(principal.client_id),
        "user": None,
        "development": False,
        "all_experiments": principal.run_id is None,
        "experiment": None,
        "training_run": _id(principal.run_id),
        "permissions": "write",
        "expires": None,
    }


def suggestion(s: Suggestion, definition: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "suggestion",
        "id": str(s.id),
        "experiment": str(s.experiment_id),
        "assignments": s.assignments,
        "state": s.state,
        "deleted": s.deleted,
        "created": _time(s.created),
        "metadata": s.meta,
        "task": task(definition, s.task),
        "source": s.source,
    }


def queued_suggestion(q: QueuedSuggestion, definition: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "queued_suggestion",
        "id": str(q.id),
        "experiment": str(q.experiment_id),
        "assignments": q.assignments,
        "created": _time(q.created),
        "task": task(definition, q.task),
    }


def observation(o: Observation, definition: dict[str, Any]) -> dict[str, Any]:
    first = o.values[0] if o.values else None
    return {
        "object": "observation",
        "id": str(o.id),
        "experiment": str(o.experiment_id),
        "suggestion": _id(o.suggestion_id),
        "assignments": o.assignments,
        "value": first["value"] if first else None,
        "value_stddev": first.get("value_stddev") if first else None,
        "values": metric_values(o.values),
        "failed": o.failed,
        "metadata": o.meta,
        "created": _time(o.created),
        "deleted": o.deleted,
        "task": task(definition, o.task),
    }


def best_assignment(o: Observation, definition: dict[str, Any]) -> dict[str, Any]:
    first = o.values[0] if o.values else None
    return {
        "object": "best_assignments",
        "id": str(o.id),
        "assignments": o.assignments,
        "value": first["value"] if first else None,
        "value_stddev": first.get("value_stddev") if first else None,
        "values": metric_values(o.values),
        "task": task(definition, o.task),
    }


@dataclass(frozen=True)
class RunRelations:
    """What a run's JSON shows besides the run: its suggestion and experiment (by id), its
    project's reference id and its files' ids (by run id)."""

    suggestions: Mapping[int, Suggestion]
    experiments: Mapping[int, Experiment]
    projects: Mapping[int, str]
    files: Mapping[int, list[str]]


def _log(content: str | None) -> dict[str, Any]:
    return {"object": "log", "content": content}


def training_run(r: TrainingRun, related: RunRelations) -> dict[str, Any]:
    """SigOpt's training run, plus multitune's run fields (attempt, heartbeat, worker, task,
    failure). ``assignments`` is always an object: the suggestion's, then any others a client
    added (`services.api.store.tracking` keeps a suggestion's own unchanged)."""
    data = r.data or {}
    s = related.suggestions.get(r.suggestion_id) if r.suggestion_id is not None else None
    exp = related.experiments.get(r.experiment_id) if r.experiment_id is not None else None
    logs = {"stdout": _log(r.logs)} if r.logs else {}
    logs.update({k: _log(v.get("content")) for k, v in (data.get("logs") or {}).items()})
    model = data.get("model")
    source = data.get("source_code")
    return {
        "object": "training_run",
        "id": str(r.id),
        "client": _id(r.client_id),
        "project": related.projects.get(r.project_id) if r.project_id is not None else None,
        "experiment": _id(r.experiment_id),
        "suggestion": _id(r.suggestion_id),
        "observation": _id(r.observation_id),
        "name": r.name,
        "state": r.state,
        "finished": r.state in FINISHED_RUN_STATES,
        "deleted": bool(r.deleted),
        "attempt": r.attempt,
        "heartbeat": r.heartbeat,
        "worker": r.worker,
        "assignments": {**(s.assignments if s else {}), **(data.get("assignments") or {})},
        "assignments_meta": data.get("assignments_meta") or {},
        "assignments_sources": data.get("assignments_sources") or {},
        "task": task(exp.definition, s.task) if exp is not None and s is not None else None,
        "experiment_state": exp.state if exp is not None else None,
        "values": {
            name: {
                "object": "metric_evaluation",
                "name": name,
                "value": v["value"],
                "value_stddev": v.get("value_stddev"),
            }
            for name, v in (data.get("values") or {}).items()
        },
        "failure_reason": r.failure_reason,
        "traceback": r.traceback,
        "logs": logs or None,
        "metadata": r.meta,
        "dev_metadata": data.get("dev_metadata"),
        "sys_metadata": data.get("sys_metadata"),
        "model": {"object": "model", "type": model.get("type")} if model else None,
        "datasets": {name: {"object": "dataset"} for name in data.get("datasets") or {}},
        "source_code": (
            {"object": "source_code", "content": source.get("content"), "hash": source.get("hash")}
            if source
            else None
        ),
        "favorite": bool(data.get("favorite", False)),
        "files": related.files.get(r.id, []),
        "checkpoint_count": r.checkpoint_count,
        "has_checkpoint_archive": bool(r.has_checkpoint_archive),
        "continues": _id(r.continues_id),
        "created": _time(r.created),
        "updated": _time(r.updated),
        "started": r.started,  # float seconds: scheduling latency is measured with it
        "completed": _time(r.completed),
    }


def checkpoint(c: Checkpoint) -> dict[str, Any]:
    return {
        "object": "checkpoint",
        "id": str(c.id),
        "training_run": str(c.training_run_id),
        "attempt": c.attempt,
        "epoch": c.epoch,
        "values": metric_values(c.values),
        "metadata": c.meta,
        "created": _time(c.created),
    }


def page(data: list[dict[str, Any]], count: int, paging: dict[str, str | None]) -> dict[str, Any]:
    return {"object": "pagination", "count": count, "data": data, "paging": paging}
