"""An experiment's history read through the API, as the optimizer's frozen values."""

from __future__ import annotations

from dataclasses import dataclass

from services.suggester.optimizer import Observation
from services.suggester.optimizer import Pending
from shared import api_objects
from shared.api_client import ApiClient
from shared.space import ExperimentSpec
from shared.states import SuggestionState


@dataclass(frozen=True)
class History:
    experiment: api_objects.Experiment
    observations: list[Observation]
    pending: list[Pending]
    #: Open suggestions as the API returned them, newest first.
    open_suggestions: list[api_objects.Suggestion]

    @property
    def spec(self) -> ExperimentSpec:
        return self.experiment.spec

    @property
    def observation_count(self) -> int:
        return self.experiment.progress.observation_count


def _observation(o: api_objects.Observation) -> Observation:
    return Observation(
        assignments=o.assignments,
        task=o.task,
        values={v.name: v.value for v in o.values},
        stddevs={v.name: v.value_stddev for v in o.values if v.value_stddev is not None},
        failed=o.failed,
    )


def load(client: ApiClient, experiment_id: int) -> History:
    experiment = api_objects.get_experiment(client, experiment_id)
    observations = [_observation(o) for o in api_objects.list_observations(client, experiment_id)]
    observations.reverse()  # oldest first
    open_suggestions = api_objects.list_suggestions(client, experiment_id, SuggestionState.OPEN)
    return History(
        experiment=experiment,
        observations=observations,
        pending=[Pending(assignments=s.assignments, task=s.task) for s in open_suggestions],
        open_suggestions=open_suggestions,
    )
