"""`pools`: the suggestion pool as versioned `PoolEntry` messages in Redis, its freshness, and the
optimizer state kept beside it; the API serves what the suggester wrote."""

from __future__ import annotations

import redis

from services.suggester import pools
from services.suggester.optimizer import Candidate
from shared.messages import PoolEntry
from shared.names import pool_key
from shared.names import pool_ready_channel
from shared.names import pool_version_key
from tests.inprocess import CLIENT_DRIVEN
from tests.inprocess import InProcessApi

EID = 7
CANDIDATES = [
    Candidate({"x": 0.25}, None, "design", {"design_index": 0}),
    Candidate({"x": 0.75}, "full", "model", {"acquisition": 1.0}),
]


def _pool(client: redis.Redis, experiment_id: int = EID) -> list[PoolEntry]:
    return [PoolEntry.from_json(raw) for raw in client.lrange(pool_key(experiment_id), 0, -1)]


def test_replace_swaps_in_tagged_entries_and_announces_them(redis_client: redis.Redis) -> None:
    listener = redis_client.pubsub()
    listener.subscribe(pool_ready_channel(EID))
    subscribed = listener.get_message(timeout=1)
    assert subscribed is not None and subscribed["type"] == "subscribe"
    pools.replace(redis_client, EID, CANDIDATES, observation_count=4)
    assert _pool(redis_client) == [
        PoolEntry(assignments={"x": 0.25}, task=None, observation_count=4, source="design"),
        PoolEntry(assignments={"x": 0.75}, task="full", observation_count=4, source="model"),
    ]
    assert redis_client.get(pool_version_key(EID)) == b"4"
    announced = listener.get_message(timeout=1)
    assert announced is not None and announced["data"] == b"4"
    listener.close()

    pools.replace(redis_client, EID, CANDIDATES[1:], observation_count=5)
    assert [e.assignments for e in _pool(redis_client)] == [{"x": 0.75}]  # swapped, not added
    pools.replace(redis_client, EID, [], observation_count=6)
    assert _pool(redis_client) == [] and redis_client.get(pool_version_key(EID)) == b"6"


def test_a_pool_is_fresh_while_it_has_entries_from_the_current_data(
    redis_client: redis.Redis,
) -> None:
    assert not pools.is_fresh(redis_client, EID, 0)  # no pool yet
    pools.replace(redis_client, EID, CANDIDATES, observation_count=3)
    assert pools.is_fresh(redis_client, EID, 3)
    assert pools.is_fresh(redis_client, EID, 2)  # observations deleted meanwhile
    assert not pools.is_fresh(redis_client, EID, 4)  # a newer observation
    redis_client.delete(pool_key(EID))  # every entry served
    assert not pools.is_fresh(redis_client, EID, 3)


def test_drop_removes_the_pool_its_version_and_the_optimizer_state(
    redis_client: redis.Redis,
) -> None:
    assert pools.load_state(redis_client, EID) is None
    for eid in (EID, EID + 1):
        pools.replace(redis_client, eid, CANDIDATES, observation_count=1)
        pools.save_state(redis_client, eid, {"design": [1, 2], "seed": eid})
    assert pools.load_state(redis_client, EID) == {"design": [1, 2], "seed": EID}
    pools.drop(redis_client, EID)
    assert pools.load_state(redis_client, EID) is None
    assert redis_client.exists(pool_key(EID), pool_version_key(EID)) == 0
    assert len(_pool(redis_client, EID + 1)) == 2  # another experiment's pool is untouched
    assert pools.load_state(redis_client, EID + 1) == {"design": [1, 2], "seed": EID + 1}


def test_the_api_serves_the_entries_the_suggester_wrote(
    inprocess_api: InProcessApi, redis_client: redis.Redis
) -> None:
    eid = int(inprocess_api.user.post("/experiments", CLIENT_DRIVEN)["id"])
    pools.replace(redis_client, eid, [Candidate({"x": 0.3141}, None, "model")], 0)
    served = inprocess_api.user.post(f"/experiments/{eid}/suggestions")
    assert served["assignments"] == {"x": 0.3141}
    assert _pool(redis_client, eid) == []
