"""Project bodies: SigOpt's AI module keeps AI experiments and runs in a client's projects."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from services.api.schemas.common import Metadata
from services.api.schemas.common import Name
from services.api.schemas.common import PageQuery
from services.api.schemas.common import StrictModel
from services.api.schemas.common import examples

#: What a project id may be (as the sigopt client checks it too).
PROJECT_ID_PATTERN = r"^[a-z0-9._-]{1,32}$"
ProjectId = Annotated[str, StringConstraints(pattern=PROJECT_ID_PATTERN)]


class ProjectCreate(StrictModel):
    """``id``: lower-case letters, digits, ``.``, ``_`` and ``-``, at most 32 characters;
    ``name`` defaults to the id."""

    model_config = examples({"id": "example", "name": "Example"})

    id: ProjectId
    name: Name | None = None
    metadata: Metadata = None


class ProjectListQuery(PageQuery):
    pass
