"""An experiment's history read through the API, as the optimizer's frozen values.

Continuation: when the experiment's objective is continuable by the live workers' adverts
(`shared.workers.continuable`), each successful observation whose training run stored a
checkpoint archive carries ``run`` (the run's id), and observations and pending suggestions
whose run continued another carry ``continues``; the optimizer may then propose to continue a
run (`services.suggester.optimizer._continuation`). Otherwise no run id is passed, and every
run starts from scratch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from services.suggester.optimizer import Observation
from services.suggester.optimizer import Pending
from shared import api_objects
from shared.api_client import ApiClient
from shared.space import ExperimentSpec
from shared.states import RunState
from shared.states import StateFilter
from shared.states import SuggestionState
from shared.workers import continuable
from shared.workers import live_adverts

log = logging.getLogger(__name__)


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


def _observation(o: api_objects.Observation, run: api_objects.TrainingRun | None) -> Observation:
    resumable = (
        run is not None
        and run.state is RunState.COMPLETED
        and run.has_checkpoint_archive
        and not o.failed
    )
    return Observation(
        assignments=o.assignments,
        task=o.task,
        values={v.name: v.value for v in o.values},
        stddevs={v.name: v.value_stddev for v in o.values if v.value_stddev is not None},
        failed=o.failed,
        run=run_ref(run.id) if resumable and run is not None else None,
        continues=_continues(run),
    )


def run_ref(run_id: int | None) -> str | None:
    """A training run's id as the optimizer's opaque ``run`` (and ``continues``)."""
    return None if run_id is None else str(run_id)


def _continues(run: api_objects.TrainingRun | None) -> str | None:
    return None if run is None else run_ref(run.continues)


def _is_continuable(experiment: api_objects.Experiment, redis_client: redis.Redis | None) -> bool:
    """Whether the live workers can continue runs of the experiment's objective; no when
    Redis does not answer (restarting is always safe)."""
    if experiment.objective is None or redis_client is None:
        return False
    try:
        adverts = live_adverts(redis_client)
    except (redis.RedisError, OSError) as exc:
        log.warning("cannot read the worker adverts; runs start from scratch: %s", exc)
        return False
    return continuable(experiment.objective.name, adverts)


def load(
    client: ApiClient, experiment_id: int, redis_client: redis.Redis | None = None
) -> History:
    """The experiment's history; with ``redis_client``, the live worker adverts there decide
    whether run ids are passed (see the module docstring)."""
    experiment = api_objects.get_experiment(client, experiment_id)
    runs = (
        api_objects.list_training_runs(client, experiment_id, StateFilter.ALL)
        if _is_continuable(experiment, redis_client)
        else []
    )
    by_observation = {r.observation: r for r in runs if r.observation is not None}
    by_suggestion = {r.suggestion: r for r in runs}
    observations = [
        _observation(o, by_observation.get(o.id))
        for o in api_objects.list_observations(client, experiment_id)
    ]
    observations.reverse()  # oldest first
    open_suggestions = api_objects.list_suggestions(client, experiment_id, SuggestionState.OPEN)
    return History(
        experiment=experiment,
        observations=observations,
        pending=[
            Pending(
                assignments=s.assignments,
                task=s.task,
                continues=_continues(by_suggestion.get(s.id)),
            )
            for s in open_suggestions
        ],
        open_suggestions=open_suggestions,
    )
