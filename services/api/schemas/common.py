"""Building blocks shared by the request models."""

from __future__ import annotations

from typing import Annotated
from typing import Any

from pydantic import AfterValidator
from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import StringConstraints

MAX_METADATA_KEYS = 100
MAX_METADATA_KEY_LENGTH = 100
MAX_METADATA_STRING_LENGTH = 500


def examples(*bodies: dict[str, Any]) -> ConfigDict:
    """A model's request examples in the OpenAPI document (the fuzz tests start from them).
    They agree with each other: an experiment of one double parameter ``x`` in [0, 1] and one
    metric ``value``."""
    return ConfigDict(json_schema_extra={"examples": list(bodies)})


EXAMPLE_PARAMETERS = [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}]
EXAMPLE_METRICS = [{"name": "value", "objective": "maximize"}]


class StrictModel(BaseModel):
    """Unknown fields and type coercion are errors (a string is never a number)."""

    model_config = ConfigDict(strict=True, extra="forbid")


class LaxModel(BaseModel):
    """For query strings, whose values are always text."""

    model_config = ConfigDict(extra="forbid")


Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Number = Annotated[float, Field(allow_inf_nan=False)]


def _check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"at most {MAX_METADATA_KEYS} keys are allowed")
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY_LENGTH:
            raise ValueError(f"key {key[:20]!r}... is longer than {MAX_METADATA_KEY_LENGTH}")
        if isinstance(item, str) and len(item) > MAX_METADATA_STRING_LENGTH:
            raise ValueError(f"value of {key!r} is longer than {MAX_METADATA_STRING_LENGTH}")
    return value


MetadataValue = str | int | float | bool | None
Metadata = Annotated[dict[str, MetadataValue] | None, AfterValidator(_check_metadata)]


def _to_id(value: Any) -> Any:
    """SigOpt ids are decimal strings; integers are accepted too."""
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return value


#: Ids are 32-bit integers in the store; larger ones cannot exist.
MAX_ID = 2**31 - 1
ObjectId = Annotated[int, BeforeValidator(_to_id), Field(ge=1, le=MAX_ID)]
#: An attempt or epoch number: a 32-bit integer column (a larger one is a 400, not a database
#: error).
Attempt = Annotated[int, Field(ge=1, le=MAX_ID)]
Epoch = Annotated[int, Field(ge=0, le=MAX_ID)]


def _task_name(value: Any) -> Any:
    """A task may be sent as ``"name"`` or ``{"name": ...}``."""
    if isinstance(value, dict) and set(value) <= {"name", "cost"} and "name" in value:
        return value["name"]
    return value


TaskRef = Annotated[Name, BeforeValidator(_task_name)]


class MetricValue(StrictModel):
    """One metric's value in an observation, best assignment or checkpoint."""

    name: Name | None = None
    value: Number
    value_stddev: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class PageQuery(LaxModel):
    """SigOpt paging: newest first; ``before``/``after`` are opaque markers from ``paging``."""

    limit: int = Field(default=100, ge=1, le=1000)
    before: str | None = None
    after: str | None = None
