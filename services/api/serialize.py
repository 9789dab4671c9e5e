"""SigOpt v1 JSON for stored objects. Ids are strings, times integer Unix seconds, and every
object carries ``object``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.api.models import Checkpoint
from services.api.models import Experiment
from services.api.models import Observation
from services.api.models import QueuedSuggestion
from services.api.models import Suggestion
from services.api.models import TrainingRun
from shared.states import FINISHED_RUN_STATES


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


def training_run(
    r: TrainingRun, s: Suggestion, observation_id: int | None, exp: Experiment
) -> dict[str, Any]:
    return {
        "object": "training_run",
        "id": str(r.id),
        "experiment": str(r.experiment_id),
        "suggestion": str(r.suggestion_id),
        "observation": _id(observation_id),
        "name": r.name,
        "state": r.state,
        "finished": r.state in FINISHED_RUN_STATES,
        "attempt": r.attempt,
        "heartbeat": r.heartbeat,
        "worker": r.worker,
        "assignments": s.assignments,
        "task": task(exp.definition, s.task),
        "experiment_state": exp.state,
        "failure_reason": r.failure_reason,
        "traceback": r.traceback,
        "logs": {"stdout": {"content": r.logs}} if r.logs else None,
        "metadata": r.meta,
        "checkpoint_count": r.checkpoint_count,
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
