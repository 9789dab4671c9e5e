"""A worker's `WorkerAdvert` in the real Redis: written with the TTL at start, renewed while the
worker runs, removed when it stops; and what ``multitune worker`` advertises and consumes; and
the rule that reads the live adverts to tell whether an objective's runs can be continued."""

from __future__ import annotations

import json
import os
import time

import click
import pytest
import redis

from services.cli.serve import gpu_list
from services.worker.advert import Advertiser
from services.worker.advert import make_advert
from services.worker.advert import node_name
from shared.messages import WorkerAdvert
from shared.names import WORKER_ADVERT_TTL_S
from shared.names import worker_key
from shared.workers import continuable
from shared.workers import live_adverts


def test_an_advert_lives_with_its_ttl_is_renewed_and_is_removed_on_stop(
    redis_client: redis.Redis,
) -> None:
    advert = WorkerAdvert(name="w1@host", objectives=["a", "b"], started=1.0, gpus=["0"])
    advertiser = Advertiser(redis_client, advert, ttl_s=2, interval_s=0.2).start()
    try:
        key = worker_key("w1@host")
        assert WorkerAdvert.from_json(redis_client.get(key)) == advert
        assert 0 < redis_client.pttl(key) <= 2000
        time.sleep(1.5)  # past most of the first TTL: only renewals keep it
        assert redis_client.exists(key) and redis_client.pttl(key) > 1000
    finally:
        advertiser.stop()
    assert not redis_client.exists(key)


def test_an_advert_that_is_not_renewed_expires(redis_client: redis.Redis) -> None:
    advert = WorkerAdvert(name="gone@host", objectives=["a"], started=1.0)
    Advertiser(redis_client, advert, ttl_s=1).publish()  # written once, never renewed
    assert redis_client.exists(worker_key("gone@host"))
    time.sleep(1.2)
    assert not redis_client.exists(worker_key("gone@host"))


def test_the_default_ttl_and_renewal_interval() -> None:
    advert = WorkerAdvert(name="n", objectives=[], started=0.0)
    advertiser = Advertiser(redis.Redis(), advert)
    assert advertiser.ttl_s == WORKER_ADVERT_TTL_S
    assert advertiser.interval_s == WORKER_ADVERT_TTL_S / 3


@pytest.mark.parametrize(("visible", "gpus"), [("", []), ("1", ["1"]), ("0, 2", ["0", "2"])])
def test_an_advert_names_the_node_objectives_and_gpus(
    monkeypatch: pytest.MonkeyPatch, visible: str, gpus: list[str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    before = time.time()
    advert = make_advert(node_name("gpu0"), ["b", "a"], ["b"])
    assert advert.name == f"gpu0@{os.uname().nodename}"
    assert advert.objectives == ["a", "b"] and advert.gpus == gpus
    assert advert.continuable == ["b"]
    assert before <= advert.started <= time.time()


@pytest.mark.parametrize(("given", "visible"), [(None, None), ("0", "0"), ("0, 1,2,3", "0,1,2,3")])
def test_worker_gpus_become_cuda_visible_devices(given: str | None, visible: str | None) -> None:
    assert gpu_list(given) == visible


@pytest.mark.parametrize("given", ["", "0,,1", "a", "0,0", "-1", "1.5"])
def test_worker_gpus_must_be_distinct_indices(given: str) -> None:
    with pytest.raises(click.BadParameter, match="distinct GPU indices"):
        gpu_list(given)


def test_an_objective_is_continuable_when_every_live_provider_says_so(
    redis_client: redis.Redis,
) -> None:
    assert live_adverts(redis_client) == [] and not continuable("a", [])
    old = WorkerAdvert(name="old@host", objectives=["a", "b"], started=1.0)
    raw = json.loads(old.to_json())
    del raw["continuable"]  # what a worker of the previous version writes
    redis_client.set(worker_key(old.name), json.dumps(raw))
    new = WorkerAdvert(name="new@host", objectives=["a"], started=1.0, continuable=["a"])
    Advertiser(redis_client, new).publish()
    assert live_adverts(redis_client) == [new, old]
    assert not continuable("a", live_adverts(redis_client))  # the old worker may train it
    redis_client.delete(worker_key(old.name))
    assert continuable("a", live_adverts(redis_client))
    assert not continuable("b", live_adverts(redis_client))  # no live provider
