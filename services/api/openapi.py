"""Routes that declare their request models, so one declaration both validates requests and
describes them in the OpenAPI document at ``/v1/openapi.json``."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint
from flask import Flask
from pydantic import BaseModel

from services.api import IdConverter
from services.api.errors import ApiError
from services.api.request_json import parse_body
from services.api.request_json import parse_query
from services.api.schemas import responses


@dataclass(frozen=True)
class Operation:
    method: str
    rule: str
    summary: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    returns: str
    #: Further methods served by the same view; documented in the description, as OpenAPI has
    #: no name for them (``MERGE``).
    also: tuple[str, ...] = ()
    #: The status of success (201 where the operation says so).
    status: int = 200
    #: Errors of this operation besides those of every operation (`_ERRORS`).
    errors: tuple[int, ...] = ()


#: Raises (404) for an object named in a path that the caller cannot see.
PathCheck = Callable[[dict[str, Any]], None]


class ApiBlueprint(Blueprint):
    """A blueprint whose `operation` decorator records each operation for the document.

    With ``path_check``, a malformed body or query of a path naming an object the caller cannot
    see answers 404, not 400: another client's ids look the same whatever is sent."""

    def __init__(
        self, name: str, import_name: str, *, path_check: PathCheck | None = None, **kwargs: Any
    ) -> None:
        super().__init__(name, import_name, **kwargs)
        self.operations: list[Operation] = []
        self.path_check = path_check

    def operation(
        self,
        method: str,
        rule: str,
        summary: str,
        *,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        returns: str = "object",
        also: tuple[str, ...] = (),
        status: int = 200,
        errors: tuple[int, ...] = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``view`` for ``method rule`` (and the methods in ``also``); it gets the
        parsed ``body``/``query`` kwargs. ``returns`` names what it answers with (see
        `services.api.schemas.responses.content`), ``status`` its success status, ``errors`` the
        error statuses only it answers."""

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(view)
            def wrapper(**kwargs: Any) -> Any:
                path_args = dict(kwargs)
                try:
                    if body is not None:
                        kwargs["body"] = parse_body(body)
                    if query is not None:
                        kwargs["query"] = parse_query(query)
                except ApiError:
                    if self.path_check is not None:
                        self.path_check(path_args)
                    raise
                return view(**kwargs)

            name = f"{view.__name__}_{method.lower()}"
            self.add_url_rule(rule, endpoint=name, view_func=wrapper, methods=[method, *also])
            self.operations.append(
                Operation(method, rule, summary, body, query, returns, also, status, errors)
            )
            return wrapper

        return decorator


#: Path parameters by the converter of their rule (``<id:...>``): a positive 32-bit integer.
_CONVERTER_SCHEMAS: dict[str, dict[str, Any]] = {
    "id": {"type": "string", "pattern": f"^{IdConverter.regex}$"},
}
#: Errors every operation may answer (a token scoped to a run gets 403 outside its run).
_ERRORS = ("400", "401", "403", "404")
#: Errors of writes: a state conflict, a body over the limit.
_WRITE_ERRORS = ("409", "413")
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer"},
    }
}


def _path(prefix: str, rule: str) -> tuple[str, list[tuple[str, str | None]]]:
    """The OpenAPI path of a Werkzeug rule, and its parameters as (name, converter)."""
    params = [(name, conv or None) for conv, name in re.findall(r"<(?:(\w+):)?(\w+)>", rule)]
    return prefix + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule), params


def _operation_id(method: str, path: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", path.strip("/").replace("/", "_"))
    return f"{method.lower()}_{name}"


def _responses(op: Operation) -> dict[str, Any]:
    """Every status ``op`` may answer: its success (with the schema of what it returns), 204
    for a write that said ``X-Response-Content: skip``, and the errors."""
    success: dict[str, Any] = {"description": op.returns}
    body = responses.content(op.returns)
    if body is not None:
        success["content"] = body
    write = op.method != "GET"
    out: dict[str, Any] = {}
    if op.method == "DELETE":
        out["204"] = {"description": "Deleted"}
    else:
        out[str(op.status)] = success
        if write:
            out["204"] = {"description": "No body: the request said X-Response-Content: skip"}
    for status in (*_ERRORS, *(_WRITE_ERRORS if write else ()), *map(str, op.errors)):
        out[status] = {"$ref": "#/components/responses/Error"}
    out["429"] = {"$ref": "#/components/responses/RateLimited"}
    out["503"] = {"$ref": "#/components/responses/Unavailable"}
    return out


@dataclass(frozen=True)
class _Documented:
    op: Operation
    tag: str
    path: str
    operation_id: str
    params: tuple[str, ...]


def _links(source: _Documented, targets: list[_Documented]) -> dict[str, Any]:
    """OpenAPI links from an operation that creates an object (a POST whose path does not
    already name it) or reads one without a path parameter (``GET /tokens/self``) to every
    operation on that object: whose path names it (`responses.PROVIDES`), its other path
    parameters coming from the source's own path or from the object's fields."""
    kind = responses.object_name(source.op.returns)
    if kind is None or (source.op.method != "POST" and source.params):
        return {}
    provides = responses.PROVIDES.get(kind, {})
    own = {name for name, field in provides.items() if field == "id"} or set(provides)
    if own & set(source.params):
        return {}  # the source acts on an object its path names; it creates nothing
    links: dict[str, Any] = {}
    for target in targets:
        if target is source or not own & set(target.params):
            continue
        values: dict[str, str] = {}
        for name in target.params:
            if name in source.params:
                values[name] = f"$request.path.{name}"
            elif name in provides:
                values[name] = f"$response.body#/{provides[name]}"
            else:
                break
        else:
            links[target.operation_id] = {
                "operationId": target.operation_id,
                "parameters": values,
            }
    return links


def build_document(app: Flask) -> dict[str, Any]:
    """OpenAPI 3.1 for every `ApiBlueprint` registered on ``app``: requests, responses (see
    `services.api.schemas.responses`) and the links between creates and the operations on what
    they created."""
    documented: list[_Documented] = []
    for blueprint in app.blueprints.values():
        if not isinstance(blueprint, ApiBlueprint):
            continue
        for op in blueprint.operations:
            path, params = _path(blueprint.url_prefix or "", op.rule)
            documented.append(
                _Documented(
                    op,
                    blueprint.name,
                    path,
                    _operation_id(op.method, path),
                    tuple(n for n, _ in params),
                )
            )
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    ref = "#/components/schemas/{model}"
    for doc in documented:
        op = doc.op
        _, params = _path("", op.rule)
        item: dict[str, Any] = {
            "summary": op.summary,
            "operationId": doc.operation_id,
            "tags": [doc.tag],
            "parameters": [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": _CONVERTER_SCHEMAS.get(converter or "", {"type": "string"}),
                }
                for name, converter in params
            ],
            "responses": _responses(op),
        }
        links = _links(doc, documented)
        if links:
            item["responses"][str(op.status)]["links"] = links
        if op.also:
            item["description"] = (
                f"{' and '.join(op.also)} {'is' if len(op.also) == 1 else 'are'} accepted "
                f"too, with the same meaning as {op.method}."
            )
        if op.body is not None:
            schema = op.body.model_json_schema(ref_template=ref)
            schemas.update(schema.pop("$defs", {}))
            schemas[op.body.__name__] = schema
            item["requestBody"] = {
                "required": False,
                "content": {
                    "application/json": {"schema": {"$ref": ref.format(model=op.body.__name__)}}
                },
            }
        if op.query is not None:
            schema = op.query.model_json_schema(ref_template=ref)
            schemas.update(schema.pop("$defs", {}))
            for name, prop in schema.get("properties", {}).items():
                item["parameters"].append(
                    {"name": name, "in": "query", "required": False, "schema": prop}
                )
        paths.setdefault(doc.path, {})[op.method.lower()] = item
    schemas.update(responses.components())
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "multitune API",
            "version": "1",
            "description": "SigOpt v1 compatible experiment API",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "Error": {"description": "Error", "content": error},
                "RateLimited": {
                    "description": "Too many requests for this token; retry after the header's "
                    "seconds",
                    "headers": _RETRY_AFTER,
                    "content": error,
                },
                "Unavailable": {
                    "description": "The database is unavailable; retry after the header's seconds",
                    "headers": _RETRY_AFTER,
                    "content": error,
                },
            },
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"basic": []}, {"bearer": []}],
    }
