"""``POST /v1/training_runs/{id}/tokens``: a token scoped to one attempt of one run."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from services.api.schemas.common import StrictModel


class RunTokenCreate(StrictModel):
    """``attempt``: the run's current attempt (a superseded one gets 409)."""

    attempt: Annotated[int, Field(ge=1, le=2**31 - 1)]
