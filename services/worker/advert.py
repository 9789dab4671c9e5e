"""A live worker's `WorkerAdvert` in Redis: the objectives it provides, renewed while it runs.

The key (`shared.names.worker_key`) expires `WORKER_ADVERT_TTL_S` after its last renewal, so a
worker that dies without a word drops out; `Advertiser.stop` removes it on a clean shutdown. The
API reads the live adverts to refuse an experiment that names an objective no worker provides;
the suggester reads them to tell whether runs can be continued (`shared.workers`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis

from shared.messages import WorkerAdvert
from shared.names import WORKER_ADVERT_TTL_S
from shared.names import worker_key

log = logging.getLogger(__name__)


def node_name(name: str) -> str:
    """The worker's Celery node name (``--hostname name@%h``), unique across hosts."""
    return f"{name}@{socket.gethostname()}"


def make_advert(name: str, objectives: list[str], continuable: list[str]) -> WorkerAdvert:
    """This process's advert: its GPUs are its ``CUDA_VISIBLE_DEVICES`` (none: a CPU worker);
    ``continuable`` names those of ``objectives`` whose runs can continue from a checkpoint."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return WorkerAdvert(
        name=name,
        objectives=sorted(objectives),
        started=time.time(),
        gpus=[g.strip() for g in visible.split(",") if g.strip()],
        continuable=sorted(continuable),
    )


class Advertiser:
    """Writes ``advert`` with a TTL now and every ``interval_s`` on a daemon thread until
    `stop`, which deletes it. A failed write (Redis down) is retried at the next interval."""

    def __init__(
        self,
        client: redis.Redis,
        advert: WorkerAdvert,
        ttl_s: int = WORKER_ADVERT_TTL_S,
        interval_s: float | None = None,
    ) -> None:
        self.client = client
        self.advert = advert
        self.key = worker_key(advert.name)
        self.ttl_s = ttl_s
        self.interval_s = ttl_s / 3 if interval_s is None else interval_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="advert", daemon=True)

    def publish(self) -> bool:
        """Write the advert once; False when Redis did not take it."""
        try:
            self.client.set(self.key, self.advert.to_json(), ex=self.ttl_s)
        except redis.RedisError as exc:
            log.warning("could not advertise worker %s: %s", self.advert.name, exc)
            return False
        return True

    def start(self) -> Advertiser:
        self.publish()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        try:
            self.client.delete(self.key)
        except redis.RedisError as exc:
            log.warning("could not remove the advert of worker %s: %s", self.advert.name, exc)

    def _run(self) -> None:
        while not self._done.wait(self.interval_s):
            self.publish()
