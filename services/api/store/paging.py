"""Keyset paging over integer ids, newest first (SigOpt's default order)."""

from __future__ import annotations

from typing import Any
from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.orm import Session

from services.api.errors import invalid
from services.api.schemas.common import PageQuery

T = TypeVar("T")


def _marker(value: str | None, field: str) -> int | None:
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise invalid(field, "is not a paging marker returned by this API")
    return int(value)


def fetch_page(
    session: Session,
    stmt: Select[Any],
    id_column: InstrumentedAttribute[int],
    query: PageQuery,
) -> tuple[list[Any], int, dict[str, str | None]]:
    """Rows of ``stmt`` for one page, the total count, and the ``paging`` markers.

    ``before=X`` gives rows with id < X (older), ``after=X`` rows with id > X (newer); either
    way a page is ordered newest first.
    """
    before = _marker(query.before, "before")
    after = _marker(query.after, "after")
    count = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    paged = stmt
    if before is not None:
        paged = paged.where(id_column < before)
    if after is not None:
        paged = paged.where(id_column > after).order_by(None).order_by(id_column.asc())
        rows = list(session.scalars(paged.limit(query.limit + 1)))
        more_newer = len(rows) > query.limit
        rows = rows[: query.limit][::-1]
        return (
            rows,
            count,
            {
                "before": None,
                "after": str(_row_id(rows[0])) if rows and more_newer else None,
            },
        )
    rows = list(
        session.scalars(paged.order_by(None).order_by(id_column.desc()).limit(query.limit + 1))
    )
    more_older = len(rows) > query.limit
    rows = rows[: query.limit]
    return (
        rows,
        count,
        {
            "before": str(_row_id(rows[-1])) if rows and more_older else None,
            "after": str(_row_id(rows[0])) if rows else None,
        },
    )


def _row_id(row: Any) -> int:
    return int(row.id)
