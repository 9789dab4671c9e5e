"""What the v1 API answers, as JSON Schema for the OpenAPI document: one schema per object that
`services.api.serialize` (and the routes' own JSON) produces, named by the ``returns`` of
`services.api.openapi.ApiBlueprint.operation`.

The objects are closed (``additionalProperties: false``) and list every key as required, so the
fuzz tests (schemathesis, ``response_schema_conformance``) catch a field added, dropped or
retyped in `serialize` without this document. ``PROVIDES`` says which path parameters each
object fills, from which of its fields: the document builder draws the OpenAPI links of the
stateful tests from it.
"""

from __future__ import annotations

from typing import Any

from shared.states import ExperimentState
from shared.states import RunState
from shared.states import SuggestionState

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
NUMBER: Schema = {"type": "number"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
NULL: Schema = {"type": "null"}
ANY_OBJECT: Schema = {"type": "object"}
#: A stored id, as SigOpt shows it: decimal text.
ID: Schema = {"type": "string", "pattern": "^[0-9]+$"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, NULL]}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def mapping(values: Schema) -> Schema:
    return {"type": "object", "additionalProperties": values}


def const(value: str) -> Schema:
    return {"const": value}


def closed(properties: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    """An object with exactly these keys, all required but ``optional``."""
    return {
        "type": "object",
        "properties": properties,
        "required": [k for k in properties if k not in optional],
        "additionalProperties": False,
    }


def described(properties: dict[str, Schema]) -> Schema:
    """An object with at least these keys (the analytics objects, which grow with the
    dashboard)."""
    return {"type": "object", "properties": properties, "required": list(properties)}


#: Unix seconds (SigOpt's integer times).
TIME = INTEGER
METADATA = nullable(mapping({"type": ["string", "number", "boolean", "null"]}))
STATE = {"type": "string", "enum": [s.value for s in ExperimentState]}
RUN_STATE = {"type": "string", "enum": [s.value for s in RunState]}

_OBJECTS: dict[str, Schema] = {
    # ------------------------------------------------------------ parts of objects
    "task": closed({"object": const("task"), "name": STRING, "cost": nullable(NUMBER)}),
    "metric_evaluation": closed(
        {
            "object": const("metric_evaluation"),
            "name": nullable(STRING),
            "value": NUMBER,
            "value_stddev": nullable(NUMBER),
        }
    ),
    "parameter": closed(
        {
            "name": STRING,
            "type": {"enum": ["int", "double", "categorical"]},
            "bounds": closed({"min": NUMBER, "max": NUMBER}),
            "categorical_values": array(closed({"name": STRING, "enum_index": INTEGER})),
            "grid": array(NUMBER),
            "transformation": {"enum": ["none", "log"]},
            "prior": closed(
                {
                    "name": {"enum": ["normal", "beta"]},
                    "mean": NUMBER,
                    "scale": NUMBER,
                    "shape_a": NUMBER,
                    "shape_b": NUMBER,
                },
                optional=("mean", "scale", "shape_a", "shape_b"),
            ),
            "default_value": {"type": ["number", "string"]},
            "conditions": mapping(array(STRING)),
        },
        optional=(
            "bounds",
            "categorical_values",
            "grid",
            "transformation",
            "prior",
            "default_value",
            "conditions",
        ),
    ),
    "metric": closed(
        {
            "object": const("metric"),
            "name": STRING,
            "objective": {"enum": ["maximize", "minimize"]},
            "strategy": {"enum": ["optimize", "constraint", "store"]},
            "threshold": NUMBER,
        },
        optional=("threshold",),
    ),
    "conditional": closed(
        {"object": const("conditional"), "name": STRING, "values": array(STRING)}
    ),
    "linear_constraint": closed(
        {
            "object": const("linear_constraint"),
            "type": {"enum": ["greater_than", "less_than"]},
            "terms": array(closed({"name": STRING, "weight": NUMBER})),
            "threshold": NUMBER,
        }
    ),
    "objective": closed({"name": STRING, "config": ANY_OBJECT}),
    "objective_status": closed(
        {
            "object": const("objective_status"),
            "available": nullable(BOOLEAN),
            "reason": nullable(STRING),
        }
    ),
    "progress": closed(
        {
            "object": const("progress"),
            "observation_count": INTEGER,
            "observation_budget_consumed": NUMBER,
            "first_observation": nullable(ref("observation")),
            "last_observation": nullable(ref("observation")),
            "best_observation": nullable(ref("observation")),
        }
    ),
    "run_progress": closed(
        {
            "object": const("progress"),
            "active_run_count": INTEGER,
            "finished_run_count": INTEGER,
            "total_run_count": INTEGER,
            "remaining_budget": nullable(NUMBER),
        }
    ),
    "paging": closed({"before": nullable(STRING), "after": nullable(STRING)}),
    # ------------------------------------------------------------ the API's objects
    "observation": closed(
        {
            "object": const("observation"),
            "id": ID,
            "experiment": ID,
            "suggestion": nullable(ID),
            "assignments": ANY_OBJECT,
            "value": nullable(NUMBER),
            "value_stddev": nullable(NUMBER),
            "values": array(ref("metric_evaluation")),
            "failed": BOOLEAN,
            "metadata": METADATA,
            "created": TIME,
            "deleted": BOOLEAN,
            "task": nullable(ref("task")),
        }
    ),
    "best_assignments": closed(
        {
            "object": const("best_assignments"),
            "id": ID,
            "assignments": ANY_OBJECT,
            "value": nullable(NUMBER),
            "value_stddev": nullable(NUMBER),
            "values": array(ref("metric_evaluation")),
            "task": nullable(ref("task")),
        }
    ),
    "suggestion": closed(
        {
            "object": const("suggestion"),
            "id": ID,
            "experiment": ID,
            "assignments": ANY_OBJECT,
            "state": {"enum": [s.value for s in SuggestionState]},
            "deleted": BOOLEAN,
            "created": TIME,
            "metadata": METADATA,
            "task": nullable(ref("task")),
            "source": nullable(STRING),
        }
    ),
    "queued_suggestion": closed(
        {
            "object": const("queued_suggestion"),
            "id": ID,
            "experiment": ID,
            "assignments": ANY_OBJECT,
            "created": TIME,
            "task": nullable(ref("task")),
        }
    ),
    "token": closed(
        {
            "object": const("token"),
            "token": NULL,
            "token_type": {"enum": ["service", "client", "training_run"]},
            "client": nullable(ID),
            "user": NULL,
            "development": BOOLEAN,
            "all_experiments": BOOLEAN,
            "experiment": NULL,
            "training_run": nullable(ID),
            "permissions": STRING,
            "expires": NULL,
        }
    ),
    "run_token": closed(
        {
            "object": const("token"),
            "token": STRING,
            "token_type": const("run"),
            "client": ID,
            "training_run": ID,
            "attempt": INTEGER,
        }
    ),
    "project": closed(
        {
            "object": const("project"),
            "id": STRING,
            "name": STRING,
            "client": ID,
            "user": NULL,
            "created": TIME,
            "updated": nullable(TIME),
            "metadata": METADATA,
            "experiment_count": INTEGER,
            "training_run_count": INTEGER,
            "deleted": BOOLEAN,
        }
    ),
    "checkpoint": closed(
        {
            "object": const("checkpoint"),
            "id": ID,
            "training_run": ID,
            "attempt": nullable(INTEGER),
            "epoch": nullable(INTEGER),
            "values": array(ref("metric_evaluation")),
            "metadata": METADATA,
            "created": TIME,
        }
    ),
    "file": closed(
        {
            "object": const("file"),
            "id": ID,
            "experiment": nullable(ID),
            "training_run": ID,
            "attempt": nullable(INTEGER),
            "name": STRING,
            "filename": nullable(STRING),
            "status": {"enum": ["pending", "ready"]},
            "content_type": STRING,
            "content_length": INTEGER,
            "content_md5": nullable(STRING),
            "size": INTEGER,
            "sha256": nullable(STRING),
            "created": TIME,
            "url": STRING,
            "download": nullable(closed({"object": const("download"), "url": STRING})),
            "upload": closed(
                {
                    "object": const("upload"),
                    "url": STRING,
                    "method": const("PUT"),
                    "headers": mapping(STRING),
                }
            ),
        },
        optional=("upload",),
    ),
    "checkpoint_archive": closed(
        {
            "object": const("checkpoint_archive"),
            "training_run": ID,
            "attempt": INTEGER,
            "size": INTEGER,
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "created": NUMBER,
        }
    ),
}

_EXPERIMENT: dict[str, Schema] = {
    "object": const("experiment"),
    "id": ID,
    "name": STRING,
    "type": {"enum": ["offline", "random", "grid"]},
    "state": STATE,
    "client": ID,
    "user": NULL,
    "project": nullable(STRING),
    "development": BOOLEAN,
    "created": TIME,
    "updated": nullable(TIME),
    "parameters": array(ref("parameter")),
    "metrics": array(ref("metric")),
    "conditionals": array(ref("conditional")),
    "linear_constraints": array(ref("linear_constraint")),
    "tasks": nullable(array(ref("task"))),
    "observation_budget": nullable(NUMBER),
    "parallel_bandwidth": INTEGER,
    "num_solutions": INTEGER,
    "metadata": METADATA,
    "objective": nullable(ref("objective")),
    "progress": ref("progress"),
    "objective_status": nullable(ref("objective_status")),
}
_OBJECTS["experiment"] = closed(_EXPERIMENT)
_AI = {k: v for k, v in _EXPERIMENT.items() if k not in ("development", "objective_status")}
_AI["budget"] = _AI.pop("observation_budget")
_OBJECTS["aiexperiment"] = closed(
    {**_AI, "object": const("aiexperiment"), "progress": ref("run_progress")}
)

_RUN: dict[str, Schema] = {
    "object": const("training_run"),
    "id": ID,
    "client": nullable(ID),
    "project": nullable(STRING),
    "experiment": nullable(ID),
    "suggestion": nullable(ID),
    "observation": nullable(ID),
    "name": nullable(STRING),
    "state": RUN_STATE,
    "finished": BOOLEAN,
    "deleted": BOOLEAN,
    "attempt": INTEGER,
    "heartbeat": nullable(NUMBER),
    "worker": nullable(STRING),
    "assignments": ANY_OBJECT,
    "assignments_meta": ANY_OBJECT,
    "assignments_sources": ANY_OBJECT,
    "task": nullable(ref("task")),
    "experiment_state": nullable(STATE),
    "values": mapping(ref("metric_evaluation")),
    "failure_reason": nullable(STRING),
    "traceback": nullable(STRING),
    "logs": nullable(mapping(closed({"object": const("log"), "content": nullable(STRING)}))),
    "metadata": METADATA,
    "dev_metadata": METADATA,
    "sys_metadata": nullable(ANY_OBJECT),
    "model": nullable(closed({"object": const("model"), "type": nullable(STRING)})),
    "datasets": mapping(closed({"object": const("dataset")})),
    "source_code": nullable(
        closed(
            {
                "object": const("source_code"),
                "content": nullable(STRING),
                "hash": nullable(STRING),
            }
        )
    ),
    "favorite": BOOLEAN,
    "files": array(ID),
    "checkpoint_count": INTEGER,
    "has_checkpoint_archive": BOOLEAN,
    "continues": nullable(ID),
    "created": TIME,
    "updated": nullable(TIME),
    "started": nullable(NUMBER),
    "completed": nullable(TIME),
}
_OBJECTS["training_run"] = closed(_RUN)
#: A run of a batch create answered with ``fields``: only the fields asked for.
_OBJECTS["training_run_fields"] = {**closed(_RUN), "required": ["object"]}

# ---------------------------------------------------------------- the dashboard's analytics
_OBJECTS.update(
    {
        "experiment_summary": described(
            {
                "object": const("experiment_summary"),
                "id": ID,
                "name": STRING,
                "state": STATE,
                "observation_count": INTEGER,
                "observation_budget": nullable(NUMBER),
                "budget_consumed": NUMBER,
                "budget_fraction": nullable(NUMBER),
                "metric": STRING,
                "best": nullable(ANY_OBJECT),
                "tasks": array(ANY_OBJECT),
                "runs": ANY_OBJECT,
            }
        ),
        "history": described(
            {
                "object": const("history"),
                "experiment": ID,
                "metric": STRING,
                "best_vs_cost": array(ANY_OBJECT),
                "count": INTEGER,
                "data": array(ANY_OBJECT),
            }
        ),
        "importance": described(
            {
                "object": const("importance"),
                "task": {"enum": ["full", "all"]},
                "metric": STRING,
                "observation_count": INTEGER,
                "message": nullable(STRING),
                "data": array(ANY_OBJECT),
            }
        ),
        "task_correlation": described(
            {
                "object": const("task_correlation"),
                "metric": STRING,
                "full_cost_task": nullable(STRING),
                "message": nullable(STRING),
                "data": array(ANY_OBJECT),
            }
        ),
        "training_curves": described(
            {
                "object": const("training_curves"),
                "training_run": ID,
                "run": ANY_OBJECT,
                "metrics": array(STRING),
                "data": array(ANY_OBJECT),
            }
        ),
        "suggestion_row": ANY_OBJECT,
    }
)

_ERROR = closed({"message": STRING, "status": INTEGER})


def _page(item: Schema) -> Schema:
    return closed(
        {
            "object": const("pagination"),
            "count": INTEGER,
            "data": array(item),
            "paging": ref("paging"),
        }
    )


def _list(item: Schema) -> Schema:
    return closed({"object": const("list"), "count": INTEGER, "data": array(item)})


#: What an operation's ``returns`` names that is not one of the objects: its media type and
#: schema.
_OTHER: dict[str, tuple[str, Schema]] = {
    "OpenAPI document": ("application/json", described({"openapi": STRING, "paths": ANY_OBJECT})),
    "text/csv": ("text/csv", STRING),
    "the file's bytes": ("*/*", {}),
    "the archive's bytes": ("application/x-tar", {}),
}


def components() -> dict[str, Schema]:
    """Every object's schema, and ``Error``, for ``components.schemas``."""
    return {**_OBJECTS, "Error": _ERROR}


def content(returns: str) -> dict[str, Any] | None:
    """The ``content`` of an operation's success response: ``returns`` is an object's name,
    ``pagination of <name>s`` or ``list of <name>s`` (a trailing ``s`` of the name may be
    left out), or one of `_OTHER`; None for anything else (documented by its words alone)."""
    if returns in _OTHER:
        media_type, schema = _OTHER[returns]
        return {media_type: {"schema": schema}}
    for prefix, wrap in (("pagination of ", _page), ("list of ", _list)):
        if returns.startswith(prefix):
            item = _object_name(returns.removeprefix(prefix))
            if item is None:
                return None
            return {"application/json": {"schema": wrap(ref(item))}}
    name = _object_name(returns)
    return None if name is None else {"application/json": {"schema": ref(name)}}


def _object_name(words: str) -> str | None:
    name = words.replace(" ", "_")
    for candidate in (name, name.removesuffix("s")):
        if candidate in _OBJECTS:
            return candidate
    return None


def object_name(returns: str) -> str | None:
    """The object an operation answers with (not a page or list of them), if it is one."""
    return _object_name(returns)


#: For the OpenAPI links: the path parameters an object fills, and the field that fills each.
#: An operation answering with the object links to every operation whose path parameters it
#: (or the request's own path) fills.
PROVIDES: dict[str, dict[str, str]] = {
    "experiment": {"experiment_id": "id"},
    "aiexperiment": {"experiment_id": "id", "project": "project", "client": "client"},
    "suggestion": {"suggestion_id": "id", "experiment_id": "experiment"},
    "queued_suggestion": {"queued_id": "id", "experiment_id": "experiment"},
    "observation": {"observation_id": "id", "experiment_id": "experiment"},
    "training_run": {"run_id": "id", "experiment_id": "experiment"},
    "file": {"file_id": "id", "run_id": "training_run"},
    "project": {"project": "id", "client": "client"},
    "token": {"client": "client"},
    "run_token": {"run_id": "training_run"},
}
