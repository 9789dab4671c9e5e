"""AI experiment bodies: an experiment's fields with SigOpt's AI-module names (``budget``)."""

from __future__ import annotations

from typing import Annotated
from typing import Any

from pydantic import Field

from services.api.schemas.common import EXAMPLE_METRICS
from services.api.schemas.common import EXAMPLE_PARAMETERS
from services.api.schemas.common import LaxModel
from services.api.schemas.common import Metadata
from services.api.schemas.common import StrictModel
from services.api.schemas.common import TaskRef
from services.api.schemas.common import examples
from services.api.schemas.experiments import Budget
from services.api.schemas.experiments import ExperimentCreate
from services.api.schemas.experiments import ExperimentFields
from services.api.schemas.experiments import ExperimentUpdate
from services.api.schemas.experiments import ExperimentUpdateFields
from services.api.schemas.training_runs import RunName

#: The name of an AI experiment's budget in requests and in its JSON.
BUDGET_FIELD = "budget"


class AiExperimentCreate(ExperimentFields):
    """Tasks are accepted (SigOpt refused them): ``budget`` then counts task costs."""

    model_config = examples(
        {
            "name": "example",
            "parameters": EXAMPLE_PARAMETERS,
            "metrics": EXAMPLE_METRICS,
            "budget": 10,
        }
    )

    budget: Budget | None = None

    def as_experiment(self, project: str) -> ExperimentCreate:
        """The same experiment as `ExperimentCreate` (already validated)."""
        return ExperimentCreate.model_construct(
            **{name: getattr(self, name) for name in ExperimentFields.model_fields},
            observation_budget=self.budget,
            project=project,
        )


class AiExperimentUpdate(ExperimentUpdateFields):
    """``{"state": "active"}`` unarchives."""

    model_config = examples({"name": "renamed", "budget": 20})

    budget: Budget | None = None

    def as_experiment(self) -> ExperimentUpdate:
        return ExperimentUpdate.model_construct(
            **{name: getattr(self, name) for name in ExperimentUpdateFields.model_fields},
            observation_budget=self.budget,
        )


class ArchiveQuery(LaxModel):
    """``DELETE /aiexperiments/{id}``: ``include_runs=true`` archives its runs too."""

    include_runs: bool = False


class AiRunCreate(StrictModel):
    """A run of an AI experiment: the next suggestion's assignments, or explicit ``assignments``
    (and ``task`` in a multitask experiment)."""

    model_config = examples({"name": "run"}, {"assignments": {"x": 0.5}})

    name: RunName | None = None
    metadata: Metadata = None
    assignments: Annotated[dict[str, Any], Field(min_length=1)] | None = None
    task: TaskRef | None = None
