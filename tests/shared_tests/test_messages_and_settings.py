from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.messages import SCHEMA_VERSION
from shared.messages import Event
from shared.messages import EventType
from shared.messages import MessageError
from shared.messages import PoolEntry
from shared.messages import TrainRequest
from shared.messages import TrainResult
from shared.settings import Settings


def test_messages_round_trip_and_reject_other_versions() -> None:
    request = TrainRequest(
        experiment_id=1,
        suggestion_id=2,
        run_id=3,
        attempt=2,
        objective="augmented_hartmann",
        config={"a": 1},
        assignments={"x": 0.5},
        task="full",
        cost=1.0,
        metric="value",
    )
    assert TrainRequest.from_json(request.to_json()) == request
    result = TrainResult(
        experiment_id=1, suggestion_id=2, run_id=3, attempt=2, failed=True, reason="boom"
    )
    assert TrainResult.from_json(result.to_json()) == result
    assert Event.from_json(Event(type="observation.created", experiment_id=4).to_json()).type == (
        "observation.created"
    )
    for bad in (
        '{"schema": 99, "type": "x", "experiment_id": 1}',
        "not json",
        '{"schema": 1, "type": "x"}',
        '{"schema": 1, "type": "x", "experiment_id": 1, "z": 1}',
    ):
        with pytest.raises(MessageError):
            Event.from_json(bad)


def test_pool_entries_round_trip_and_reject_other_versions() -> None:
    entry = PoolEntry(
        assignments={"x": 0.25, "opt": "adam"}, task="full", observation_count=7, source="model"
    )
    assert PoolEntry.from_json(entry.to_json()) == entry
    assert PoolEntry.from_json(entry.to_json().encode()) == entry
    single_task = PoolEntry(assignments={"x": 1}, task=None, observation_count=0, source="design")
    assert PoolEntry.from_json(single_task.to_json()) == single_task
    fields = json.loads(entry.to_json())
    assert fields["schema"] == SCHEMA_VERSION
    for bad in (
        {**fields, "schema": SCHEMA_VERSION + 1},
        {k: v for k, v in fields.items() if k != "schema"},  # an entry written before versions
        {k: v for k, v in fields.items() if k != "source"},
        {**fields, "left": 3},
    ):
        with pytest.raises(MessageError):
            PoolEntry.from_json(json.dumps(bad))


def test_event_types_are_their_wire_strings_and_unknown_ones_are_refused() -> None:
    for event_type in EventType:
        event = Event(type=event_type, experiment_id=5, id=9)
        decoded = Event.from_json(event.to_json())
        assert decoded == event and decoded.type is event_type
        assert json.loads(event.to_json())["type"] == event_type.value
    assert Event(type="suggestion.created", experiment_id=1).type is EventType.SUGGESTION_CREATED
    with pytest.raises(MessageError):
        Event.from_json(json.dumps({"schema": SCHEMA_VERSION, "type": "x", "experiment_id": 1}))


def test_settings_from_env_with_overrides(tmp_path: Path) -> None:
    env = {
        "MULTITUNE_DATA_DIR": str(tmp_path),
        "MULTITUNE_REDIS_URL": "redis://h:1/2",
        "MULTITUNE_RUN_LEASE_S": "7",
    }
    settings = Settings.from_env(env)
    assert settings.database_url == f"sqlite:///{tmp_path / 'multitune.db'}"
    assert settings.redis_url == "redis://h:1/2" and settings.run_lease_s == 7.0
    assert Settings.from_env(env, redis_url="redis://o:3/0").redis_url == "redis://o:3/0"
    assert Settings.from_env(Settings.from_env(env).as_env()) == settings
    with pytest.raises(TypeError):
        Settings.from_env(env, nonsense=1)


def test_service_token_is_created_once_and_shared(tmp_path: Path) -> None:
    env = {"MULTITUNE_DATA_DIR": str(tmp_path)}
    first = Settings.from_env(env).resolved_service_token()
    assert first == Settings.from_env(env).resolved_service_token()
    assert (tmp_path / "service_token").stat().st_mode & 0o077 == 0
    assert (
        Settings.from_env({**env, "MULTITUNE_SERVICE_TOKEN": "x"}).resolved_service_token() == "x"
    )
