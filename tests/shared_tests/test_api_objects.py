"""`shared.api_objects` parses every JSON object the suggester and the workers read, as the real
API app writes it; a field that the API drops or renames fails here, with the field named."""

from __future__ import annotations

import copy
from dataclasses import fields
from typing import Any

import pytest

from shared.api_objects import ApiObjectError
from shared.api_objects import Experiment
from shared.api_objects import MetricValue
from shared.api_objects import Objective
from shared.api_objects import Observation
from shared.api_objects import Progress
from shared.api_objects import Suggestion
from shared.api_objects import TrainingRun
from shared.states import ExperimentState
from shared.states import RunState
from shared.states import SuggestionState
from tests.inprocess import BRANIN
from tests.inprocess import CLIENT_DRIVEN
from tests.inprocess import InProcessApi

#: The JSON objects of one scenario, by view; filled by `_objects`.
Objects = dict[type, list[dict[str, Any]]]


def _objects(server: InProcessApi) -> Objects:
    """Drive a managed and a client-driven experiment through every call whose answer the
    suggester or a worker reads, parse each answer and check what it says; return the JSON."""
    api = server.service
    seen: Objects = {Experiment: [], Observation: [], Suggestion: [], TrainingRun: []}

    def run(data: dict[str, Any]) -> TrainingRun:
        seen[TrainingRun].append(data)
        return TrainingRun.from_json(data)

    eid = int(server.user.post("/experiments", BRANIN)["id"])
    new = {"assignments": {"x1": 1.0, "x2": 2.0}, "task": "full"}
    created = run(api.post(f"/experiments/{eid}/training_runs", {"suggestion": new}))
    assert (created.experiment, created.state, created.attempt) == (eid, RunState.QUEUED, 1)
    assert (created.task, created.assignments) == ("full", {"x1": 1.0, "x2": 2.0})
    assert (created.heartbeat, created.started, created.worker) == (None, None, None)
    assert created.updated > 0 and created.experiment_state is ExperimentState.ACTIVE
    rid = created.id
    again = run(api.post(f"/experiments/{eid}/training_runs", {"suggestion": created.suggestion}))
    assert again == created  # one run per suggestion

    claim = {"state": "running", "attempt": 1, "worker": "w1", "heartbeat": True}
    claimed = run(api.put(f"/training_runs/{rid}", claim))
    assert (claimed.state, claimed.worker) == (RunState.RUNNING, "w1")
    assert claimed.heartbeat is not None and claimed.started is not None
    beat = run(api.put(f"/training_runs/{rid}", {"heartbeat": True, "attempt": 1}))
    assert beat.heartbeat is not None and beat.heartbeat >= claimed.heartbeat
    retried = run(api.put(f"/training_runs/{rid}", {"new_attempt": True, "attempt": 1}))
    assert (retried.attempt, retried.state, retried.heartbeat) == (2, RunState.QUEUED, None)
    run(api.put(f"/training_runs/{rid}", {**claim, "attempt": 2}))
    (listed,) = [run(r) for r in api.iterate(f"/experiments/{eid}/training_runs", state="running")]
    assert listed.id == rid and listed.attempt == 2
    values = [{"name": "value", "value": 1.5, "value_stddev": 0.1}]
    done = run(
        api.post(
            f"/training_runs/{rid}/result", {"attempt": 2, "state": "completed", "values": values}
        )
    )
    assert done.state is RunState.COMPLETED

    cheap = {"assignments": {"x1": 3.0, "x2": 4.0}, "task": "cheap"}
    failing = run(api.post(f"/experiments/{eid}/training_runs", {"suggestion": cheap}))
    run(
        api.post(
            f"/training_runs/{failing.id}/result",
            {"attempt": 1, "state": "failed", "failure_reason": "boom"},
        )
    )
    paused = {"assignments": {"x1": 5.0, "x2": 6.0}, "task": "cheap"}
    queued = run(api.post(f"/experiments/{eid}/training_runs", {"suggestion": paused}))
    api.put(f"/experiments/{eid}", {"state": "paused"})
    on_pause = run(api.put(f"/training_runs/{queued.id}", {"state": "paused", "attempt": 1}))
    assert on_pause.state is RunState.PAUSED
    assert on_pause.experiment_state is ExperimentState.PAUSED
    (unfinished,) = [
        run(r) for r in api.iterate(f"/experiments/{eid}/training_runs", state="unfinished")
    ]
    assert unfinished.id == queued.id
    assert run(api.get(f"/training_runs/{queued.id}")) == unfinished

    seen[Suggestion] += api.iterate(f"/experiments/{eid}/suggestions", state="open")
    (open_suggestion,) = [Suggestion.from_json(s) for s in seen[Suggestion]]
    assert open_suggestion.id == queued.suggestion and open_suggestion.experiment == eid
    assert (open_suggestion.state, open_suggestion.task) == (SuggestionState.OPEN, "cheap")
    assert open_suggestion.assignments == {"x1": 5.0, "x2": 6.0}

    seen[Observation] += api.iterate(f"/experiments/{eid}/observations")
    failed, completed = [Observation.from_json(o) for o in seen[Observation]]  # newest first
    assert completed.suggestion == created.suggestion and completed.task == "full"
    assert completed.values == (MetricValue("value", 1.5, 0.1),) and not completed.failed
    assert failed.failed and failed.values == () and failed.task == "cheap"

    seen[Experiment].append(api.get(f"/experiments/{eid}"))
    managed = Experiment.from_json(seen[Experiment][-1])
    assert managed.id == eid and managed.state is ExperimentState.PAUSED
    assert managed.objective == Objective("augmented_branin", BRANIN["objective"]["config"])
    assert (managed.observation_budget, managed.parallel_bandwidth) == (3.0, 2)
    assert managed.progress == Progress(observation_count=2, observation_budget_consumed=1.25)
    assert [t.name for t in managed.spec.tasks] == ["cheap", "full"]

    cid = int(server.user.post("/experiments", CLIENT_DRIVEN)["id"])
    suggestion = Suggestion.from_json(server.user.post(f"/experiments/{cid}/suggestions"))
    assert suggestion.task is None and set(suggestion.assignments) == {"x"}
    body = {"suggestion": suggestion.id, "value": 0.5}
    seen[Observation].append(server.user.post(f"/experiments/{cid}/observations", body))
    single = Observation.from_json(seen[Observation][-1])
    assert single.task is None and single.values == (MetricValue("loss", 0.5, None),)
    seen[Experiment] += api.iterate("/experiments", state="all")
    listed_experiments = [Experiment.from_json(e) for e in seen[Experiment][-2:]]
    assert [e.id for e in listed_experiments] == [cid, eid]  # newest first
    assert listed_experiments[0].objective is None
    assert listed_experiments[0].progress.observation_count == 1
    return seen


def test_every_object_the_services_read_parses_into_its_view(
    inprocess_api: InProcessApi,
) -> None:
    seen = _objects(inprocess_api)
    assert all(seen.values())


@pytest.mark.parametrize(
    ("view", "name"),
    [
        (Experiment, "experiment"),
        (Observation, "observation"),
        (Suggestion, "suggestion"),
        (TrainingRun, "training_run"),
    ],
)
def test_each_field_a_view_reads_is_required_and_named_when_missing(
    inprocess_api: InProcessApi, view: Any, name: str
) -> None:
    data = _objects(inprocess_api)[view][-1]
    read = [f.name for f in fields(view) if f.name in data]
    assert len(read) >= 4
    for field_name in read:
        broken = copy.deepcopy(data)
        del broken[field_name]
        with pytest.raises(ApiObjectError, match=rf"^{name}\.{field_name}: missing$"):
            view.from_json(broken)


def test_nested_and_mistyped_fields_are_named(inprocess_api: InProcessApi) -> None:
    seen = _objects(inprocess_api)
    experiment = copy.deepcopy(seen[Experiment][0])
    del experiment["progress"]["observation_budget_consumed"]
    with pytest.raises(
        ApiObjectError, match=r"^experiment\.progress\.observation_budget_consumed: missing$"
    ):
        Experiment.from_json(experiment)
    observation = copy.deepcopy(seen[Observation][0])
    observation["values"] = [{"name": "value"}]
    observation["failed"] = False
    with pytest.raises(ApiObjectError, match=r"^observation\.values\[0\]\.value: missing$"):
        Observation.from_json(observation)
    run = copy.deepcopy(seen[TrainingRun][0])
    for key, value, expected in (
        ("heartbeat", "soon", "a number"),
        ("state", "dancing", "a RunState"),
        ("attempt", True, "an integer"),
        ("id", "r1", "an id"),
    ):
        with pytest.raises(ApiObjectError, match=rf"^training_run\.{key}: expected {expected}"):
            TrainingRun.from_json({**run, key: value})
    run["task"] = {"object": "task"}
    with pytest.raises(ApiObjectError, match=r"^training_run\.task\.name: missing$"):
        TrainingRun.from_json(run)
    with pytest.raises(ApiObjectError, match=r"^suggestion: expected an object, got list$"):
        Suggestion.from_json([])
