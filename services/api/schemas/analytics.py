"""Query strings of the ``/v1/.../analytics`` endpoints."""

from __future__ import annotations

from typing import Annotated
from typing import Literal

from pydantic import AfterValidator
from pydantic import Field

from services.api.errors import invalid
from services.api.schemas.common import MAX_ID
from services.api.schemas.common import LaxModel
from services.api.schemas.common import Name


class MetricQuery(LaxModel):
    """``metric``: which metric to analyse (default: the first optimized one)."""

    metric: Name | None = None


class ImportanceQuery(MetricQuery):
    """``task=full``: full-cost observations only; ``task=all``: every task, with the task cost
    as an input whose share is reported apart."""

    task: Literal["full", "all"] = "full"


class SuggestionTableQuery(LaxModel):
    limit: int = Field(default=200, ge=1, le=1000)


#: Most runs or experiments one compare request may name.
MAX_COMPARE = 50


def ids_of(raw: str, most: int = MAX_COMPARE) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (first occurrence order); ValueError saying what is wrong."""
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        raise ValueError("give a comma-separated list of ids")
    if len(parts) > most:
        raise ValueError(f"at most {most} ids")
    if not all(p.isdigit() and len(p) < 11 and 0 < int(p) <= MAX_ID for p in parts):
        raise ValueError("ids are positive integers")
    return list(dict.fromkeys(int(p) for p in parts))


def parse_ids(field: str, raw: str) -> list[int]:
    """`ids_of`, with a 400 naming ``field``."""
    try:
        return ids_of(raw)
    except ValueError as exc:
        raise invalid(field, str(exc)) from exc


#: An id as `ids_of` takes it (the document's pattern; `ids_of` says what is wrong).
_ID = "[1-9][0-9]{0,8}"


def _run_ids(value: str) -> str:
    ids_of(value)
    return value


class RunsQuery(LaxModel):
    """``runs``: comma-separated training run ids (at most 50)."""

    runs: Annotated[
        str,
        AfterValidator(_run_ids),
        Field(json_schema_extra={"pattern": f"^{_ID}(,{_ID}){{0,{MAX_COMPARE - 1}}}$"}),
    ]
