"""Strict request parsing: duplicate keys, NaN/Infinity and NUL characters (raw or escaped, in
bodies and query strings) are rejected before pydantic sees them; unknown fields and wrong types
are rejected by the models."""

from __future__ import annotations

import json
from typing import Any
from typing import TypeVar

from flask import request
from pydantic import BaseModel
from pydantic import ValidationError

from services.api.errors import ApiError
from services.api.errors import describe_validation_error

M = TypeVar("M", bound=BaseModel)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ApiError(400, f"Duplicate key in JSON body: {key}")
        if "\x00" in key:
            raise ApiError(400, "NUL characters are not allowed in JSON keys")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ApiError(400, f"Invalid number in JSON body: {name} is not allowed")


def _field_with_nul(data: Any) -> str | None:
    """The first string in parsed JSON that holds a NUL character (sent escaped, ``\\u0000``),
    named as ``a.b[0].c``; None when there is none. PostgreSQL cannot store NULs in text."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        field, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return field or "body"
        elif isinstance(value, dict):
            stack.extend((f"{field}.{k}" if field else k, v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{field}[{i}]", v) for i, v in enumerate(value))
    return None


def _refuse_nul(field: str | None) -> None:
    if field is not None:
        raise ApiError(400, f"Invalid value for {field}: NUL characters are not allowed")


def load_json(raw: bytes) -> Any:
    """Parse a request body; an empty body is ``{}``."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "Request body is not valid UTF-8") from exc
    if "\x00" in text:
        raise ApiError(400, "NUL characters are not allowed in the request body")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except ApiError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}") from exc
    _refuse_nul(_field_with_nul(data))
    return data


def parse_body(model: type[M]) -> M:
    data = load_json(request.get_data(cache=True))
    if not isinstance(data, dict):
        raise ApiError(400, "Request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, describe_validation_error(exc)) from exc


def parse_query(model: type[M]) -> M:
    """Query strings are text: the query models are lax (``"10"`` is a valid limit)."""
    args: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        args[key] = values[0] if len(values) == 1 else values
        _refuse_nul(key if "\x00" in key else _field_with_nul({key: args[key]}))
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise ApiError(400, describe_validation_error(exc)) from exc
