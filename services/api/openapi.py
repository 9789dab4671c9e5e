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

from services.api.errors import ApiError
from services.api.request_json import parse_body
from services.api.request_json import parse_query


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
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``view`` for ``method rule`` (and the methods in ``also``); it gets the
        parsed ``body``/``query`` kwargs."""

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
            self.operations.append(Operation(method, rule, summary, body, query, returns, also))
            return wrapper

        return decorator


def _path(prefix: str, rule: str) -> tuple[str, list[str]]:
    params = re.findall(r"<(?:\w+:)?(\w+)>", rule)
    return prefix + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule), params


def build_document(app: Flask) -> dict[str, Any]:
    """OpenAPI 3.1 for every `ApiBlueprint` registered on ``app``."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    ref = "#/components/schemas/{model}"
    for blueprint in app.blueprints.values():
        if not isinstance(blueprint, ApiBlueprint):
            continue
        for op in blueprint.operations:
            path, params = _path(blueprint.url_prefix or "", op.rule)
            item: dict[str, Any] = {
                "summary": op.summary,
                "operationId": f"{op.method.lower()}_{path.strip('/').replace('/', '_')}",
                "tags": [blueprint.name],
                "parameters": [
                    {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                    for p in params
                ],
                "responses": {
                    "200": {"description": op.returns},
                    "204": {"description": "No body: the request said X-Response-Content: skip"},
                    "400": {"$ref": "#/components/responses/Error"},
                    "401": {"$ref": "#/components/responses/Error"},
                    "404": {"$ref": "#/components/responses/Error"},
                },
            }
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
                        "application/json": {
                            "schema": {"$ref": ref.format(model=op.body.__name__)}
                        }
                    },
                }
            if op.query is not None:
                schema = op.query.model_json_schema(ref_template=ref)
                schemas.update(schema.pop("$defs", {}))
                for name, prop in schema.get("properties", {}).items():
                    item["parameters"].append(
                        {"name": name, "in": "query", "required": False, "schema": prop}
                    )
            paths.setdefault(path, {})[op.method.lower()] = item
    schemas["Error"] = {
        "type": "object",
        "properties": {"message": {"type": "string"}, "status": {"type": "integer"}},
        "required": ["message", "status"],
    }
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
                "Error": {
                    "description": "Error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            },
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"basic": []}, {"bearer": []}],
    }
