"""An experiment's history read through the API, as the optimizer's frozen values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.suggester.optimizer import Observation
from services.suggester.optimizer import Pending
from shared.api_client import ApiClient
from shared.space import ExperimentSpec


@dataclass(frozen=True)
class History:
    experiment: dict[str, Any]
    spec: ExperimentSpec
    observations: list[Observation]
    pending: list[Pending]
    #: Open suggestions as the API returned them (ids, metadata), newest first.
    open_suggestions: list[dict[str, Any]]

    @property
    def observation_count(self) -> int:
        return int(self.experiment["progress"]["observation_count"])


def _observation(o: dict[str, Any]) -> Observation:
    values = {v["name"]: float(v["value"]) for v in o["values"]}
    stddevs = {
        v["name"]: float(v["value_stddev"])
        for v in o["values"]
        if v.get("value_stddev") is not None
    }
    task = o["task"]["name"] if o.get("task") else None
    return Observation(
        assignments=o["assignments"],
        task=task,
        values=values,
        stddevs=stddevs,
        failed=bool(o["failed"]),
    )


def load(client: ApiClient, experiment_id: int) -> History:
    experiment = client.get(f"/experiments/{experiment_id}")
    observations = [
        _observation(o) for o in client.iterate(f"/experiments/{experiment_id}/observations")
    ]
    observations.reverse()  # oldest first
    open_suggestions = list(
        client.iterate(f"/experiments/{experiment_id}/suggestions", state="open")
    )
    pending = [
        Pending(assignments=s["assignments"], task=s["task"]["name"] if s.get("task") else None)
        for s in open_suggestions
    ]
    return History(
        experiment=experiment,
        spec=ExperimentSpec.from_json(experiment),
        observations=observations,
        pending=pending,
        open_suggestions=open_suggestions,
    )
