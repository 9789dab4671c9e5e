"""Query string of a file upload (the body is the file itself, raw or multipart)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic import StringConstraints

from services.api.schemas.common import LaxModel
from services.api.schemas.common import PageQuery

FileName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ArtifactUploadQuery(LaxModel):
    """``name``: the file's name (a multipart part's filename otherwise); ``content_type``
    overrides the request's or part's Content-Type; ``attempt`` fences like checkpoints do."""

    name: FileName | None = None
    content_type: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    attempt: Annotated[int, Field(ge=1)] | None = None


class ArtifactListQuery(PageQuery):
    pass
