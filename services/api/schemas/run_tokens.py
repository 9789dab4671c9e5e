"""``POST /v1/training_runs/{id}/tokens``: a token scoped to one attempt of one run."""

from __future__ import annotations

from services.api.schemas.common import Attempt
from services.api.schemas.common import StrictModel
from services.api.schemas.common import examples


class RunTokenCreate(StrictModel):
    """``attempt``: the run's current attempt (a superseded one gets 409)."""

    model_config = examples({"attempt": 1})

    attempt: Attempt
