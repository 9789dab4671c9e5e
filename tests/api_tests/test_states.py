"""States on the wire are the `shared.states` enums' values: the OpenAPI document allows exactly
those, a wrong one is a 400 naming the field and listing them, and JSON output is the same
whether a state was read from the store (text) or set in this process (an enum member)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from services.api import serialize
from services.api.models import Experiment
from services.api.models import Suggestion
from services.api.models import TrainingRun
from services.api.schemas.training_runs import ACTIVE
from shared.states import RESULT_RUN_STATES
from shared.states import ExperimentState
from shared.states import RunState
from shared.states import StateFilter
from shared.states import SuggestionState


def _allowed(doc: dict[str, Any], schema: dict[str, Any]) -> set[Any]:
    """The values a schema allows, through ``$ref``, ``anyOf``, ``enum`` and ``const``."""
    if "$ref" in schema:
        return _allowed(doc, doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    if "anyOf" in schema:
        return set().union(*(_allowed(doc, s) for s in schema["anyOf"]))
    if "enum" in schema:
        return set(schema["enum"])
    if "const" in schema:
        return {schema["const"]}
    assert schema.get("type") == "null", schema
    return {None}


def _query_state(doc: dict[str, Any], path: str, method: str) -> set[Any]:
    (parameter,) = [p for p in doc["paths"][path][method]["parameters"] if p["name"] == "state"]
    return _allowed(doc, parameter["schema"])


def test_the_document_allows_exactly_the_shared_states(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    doc = client.get("/v1/openapi.json", headers=auth).json
    schemas = doc["components"]["schemas"]
    runs = "/v1/experiments/{experiment_id}/training_runs"
    suggestions = "/v1/experiments/{experiment_id}/suggestions"
    assert _allowed(doc, schemas["ExperimentUpdate"]["properties"]["state"]) == {
        *ExperimentState,
        None,
    }
    # SigOpt's ``active`` (a run in progress) is the one alias a client may send.
    assert _allowed(doc, schemas["TrainingRunUpdate"]["properties"]["state"]) == {
        *RunState,
        ACTIVE,
        None,
    }
    assert _allowed(doc, schemas["TrainingRunResult"]["properties"]["state"]) == RESULT_RUN_STATES
    assert _query_state(doc, "/v1/experiments", "get") == {*ExperimentState, StateFilter.ALL}
    assert _query_state(doc, suggestions, "get") == {*SuggestionState, StateFilter.ALL}
    assert _query_state(doc, suggestions, "delete") == {SuggestionState.OPEN, StateFilter.ALL}
    assert _query_state(doc, runs, "get") == {*RunState, *StateFilter}


def test_a_wrong_state_is_a_400_naming_the_field_and_listing_the_values(
    client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]
) -> None:
    eid = experiment["id"]
    update = client.put(f"/v1/experiments/{eid}", json={"state": "asleep"}, headers=auth)
    assert update.status_code == 400
    assert update.json["message"] == (
        "Invalid value for state: Input should be "
        "'active', 'paused', 'stopped', 'completed' or 'deleted'"
    )
    listed = client.get(
        f"/v1/experiments/{eid}/training_runs", query_string={"state": "asleep"}, headers=auth
    )
    assert listed.status_code == 400
    assert listed.json["message"] == (
        "Invalid value for state: Input should be 'queued', 'running', 'paused', "
        "'completed', 'failed', 'lost', 'stopped', 'all' or 'unfinished'"
    )
    suggestion = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json
    run = client.post(
        f"/v1/experiments/{eid}/training_runs", json={"suggestion": suggestion["id"]}, headers=auth
    ).json
    stopped = {"attempt": 1, "state": "stopped"}  # a run stops, but no result says so
    result = client.post(f"/v1/training_runs/{run['id']}/result", json=stopped, headers=auth)
    assert result.status_code == 400
    assert result.json["message"] == (
        "Invalid value for state: Input should be 'completed', 'failed' or 'lost'"
    )
    paused = client.put(f"/v1/experiments/{eid}", json={"state": "paused"}, headers=auth)
    assert paused.json["state"] == ExperimentState.PAUSED


def test_json_is_the_same_for_a_state_read_as_text_or_set_as_an_enum(app: Flask) -> None:
    def experiment(state: str) -> Experiment:
        definition = {"type": "offline", "parameters": [], "metrics": [{"name": "value"}]}
        return Experiment(
            id=1,
            client_id=1,
            name="e",
            state=state,
            definition=definition,
            observation_budget=None,
            parallel_bandwidth=1,
            meta=None,
            created=1.0,
            updated=2.0,
        )

    def run(state: str) -> TrainingRun:
        return TrainingRun(
            id=3, experiment_id=1, suggestion_id=2, state=state, attempt=1, checkpoint_count=0,
            created=1.0, updated=2.0,
        )  # fmt: skip

    def suggestion(state: str) -> Suggestion:
        return Suggestion(
            id=2, experiment_id=1, assignments={}, task=None, key="k", state=state, deleted=False,
            source="user", created=1.0, updated=2.0,
        )  # fmt: skip

    def as_json(state: str, run_state: str, suggestion_state: str) -> list[bytes]:
        """The response bodies the API would send for these objects."""
        e = experiment(state)
        s = suggestion(suggestion_state)
        objects = [
            serialize.experiment(e, None),
            serialize.training_run(run(run_state), serialize.RunRelations({2: s}, {1: e}, {}, {})),
            serialize.suggestion(s, e.definition),
        ]
        with app.app_context():
            return [app.json.response(o).get_data() for o in objects]

    as_text = as_json("paused", "failed", "closed")
    assert as_text == as_json(ExperimentState.PAUSED, RunState.FAILED, SuggestionState.CLOSED)
    assert b'"state":"paused"' in as_text[0] and b'"finished":true' in as_text[1]
