"""Observation bodies (single, batch, update)."""

from __future__ import annotations

from typing import Annotated
from typing import Any

from pydantic import Field

from services.api.schemas.common import Metadata
from services.api.schemas.common import MetricValue
from services.api.schemas.common import Number
from services.api.schemas.common import ObjectId
from services.api.schemas.common import PageQuery
from services.api.schemas.common import StrictModel
from services.api.schemas.common import TaskRef
from services.api.schemas.common import examples

MAX_BATCH = 2500


class ObservationCreate(StrictModel):
    """Exactly one of ``suggestion`` or ``assignments``; exactly one of a value or ``failed``."""

    model_config = examples({"assignments": {"x": 0.5}, "value": 1.0})

    suggestion: ObjectId | None = None
    assignments: dict[str, Any] | None = None
    task: TaskRef | None = None
    value: Number | None = None
    value_stddev: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    values: Annotated[list[MetricValue], Field(min_length=1, max_length=50)] | None = None
    failed: bool | None = None
    metadata: Metadata = None
    no_optimize: bool | None = None
    #: Allow a second live observation of the same suggestion (off by default, so a retried POST
    #: never double-counts).
    allow_multiple: bool | None = None


class ObservationBatchCreate(StrictModel):
    model_config = examples({"observations": [{"assignments": {"x": 0.5}, "value": 1.0}]})

    observations: Annotated[list[ObservationCreate], Field(min_length=1, max_length=MAX_BATCH)]
    no_optimize: bool | None = None


class ObservationListQuery(PageQuery):
    pass
