"""Requests about files: the query string of a direct upload (the body is the file itself, raw
or multipart), the sigopt client's JSON declaration of a file, and listing."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic import StringConstraints

from services.api.schemas.common import Attempt
from services.api.schemas.common import LaxModel
from services.api.schemas.common import PageQuery
from services.api.schemas.common import StrictModel
from services.api.schemas.common import examples

FileName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ArtifactUploadQuery(LaxModel):
    """``name``: the file's name (a multipart part's filename otherwise); ``content_type``
    overrides the request's or part's Content-Type; ``attempt`` fences like checkpoints do."""

    name: FileName | None = None
    content_type: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    attempt: Attempt | None = None


class FileCreate(StrictModel):
    """What the sigopt client declares before it uploads a file (``run.log_image``): the
    answer carries the signed URL to ``PUT`` exactly these bytes to. One of ``name`` and
    ``filename`` is required; ``filename`` may be a path (only its base name is kept)."""

    model_config = examples(
        {
            "content_length": 3,
            "content_md5": "kAFQmDzST7DWlj99KOF/cg==",
            "content_type": "text/plain",
            "name": "notes.txt",
        }
    )

    content_length: Annotated[int, Field(ge=0, le=2**63 - 1)]
    #: Base64 of the MD5 digest of the content.
    content_md5: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    content_type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    name: FileName | None = None
    filename: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = None


class ArtifactListQuery(PageQuery):
    pass
