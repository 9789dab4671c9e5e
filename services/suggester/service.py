"""The suggester service loop: all I/O lives here and in the modules it wires together.

It reads two Redis streams through one consumer group: events from the API's outbox (an
experiment changed) and results from workers. Results are recorded through the API and then
acknowledged; events mark experiments "dirty", and each dirty experiment is refreshed once per
pass (coalescing bursts) before its events are acknowledged. Refreshing means refilling the
suggestion pool of a client-driven experiment, or scheduling runs of a managed one. A periodic
sweep catches anything an event missed (lost leases, a restart).
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from typing import cast

import redis

from services.suggester import history as history_mod
from services.suggester import pools
from services.suggester.managed import Managed
from services.suggester.optimizer import suggest
from services.suggester.publish import Publisher
from shared import api_objects
from shared.api_client import ApiClient
from shared.api_client import ApiRequestError
from shared.messages import Event
from shared.messages import EventType
from shared.messages import MessageError
from shared.messages import TrainResult
from shared.names import EVENTS_STREAM
from shared.names import RESULTS_STREAM
from shared.names import SUGGESTER_GROUP
from shared.settings import Settings
from shared.states import ExperimentState
from shared.states import StateFilter

log = logging.getLogger(__name__)

#: Pool entries computed per refill beyond the parallel bandwidth (a little slack).
POOL_SLACK = 1
MAX_POOL = 8
SWEEP_S = 15.0
LEASE_CHECK_S = 1.0
#: Stream entries idle this long in another consumer's pending list are taken over.
RECLAIM_IDLE_MS = 60_000
#: Events after which even a pool computed from the current observation count is outdated.
_FORCE_REFILL = frozenset(
    {EventType.EXPERIMENT_UPDATED, EventType.OBSERVATION_UPDATED, EventType.OBSERVATION_DELETED}
)
#: What XREADGROUP returns: per stream, its entries (id, fields).
_StreamReplies = list[tuple[bytes | str, list[tuple[bytes, dict[bytes, bytes]]]]]
#: Events that a managed experiment's own loop causes (this service's writes, a worker claiming
#: a run). Its results come on the results stream and the lease check refreshes it every second
#: while runs are in flight, so these echoes need no refresh of their own.
_MANAGED_ECHOES = frozenset(
    {EventType.SUGGESTION_CREATED, EventType.OBSERVATION_CREATED, EventType.TRAINING_RUN_UPDATED}
)


class Suggester:
    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis,
        api: ApiClient,
        publisher: Publisher,
        consumer: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` (monotonic seconds) paces the sweep and the lease checks."""
        self._settings = settings
        self._redis = redis_client
        self._api = api
        self._consumer = consumer
        self._managed = Managed(api, publisher, settings, redis_client)
        self._dirty: dict[int, set[str]] = defaultdict(set)
        self._unacked: dict[int, set[bytes]] = defaultdict(set)
        #: Managed experiments with runs in flight, checked for lost leases every second.
        self._watched: set[int] = set()
        #: Experiments known to be managed (an objective never goes away).
        self._managed_ids: set[int] = set()
        self._cursor = "0"  # first read our own pending entries, then new ones
        self._next_sweep = 0.0
        self._next_lease_check = 0.0
        self._stopping = False
        self._clock = clock

    def stop(self, *_: Any) -> None:
        self._stopping = True

    # ------------------------------------------------------------------ setup
    def ensure_groups(self) -> None:
        for stream in (EVENTS_STREAM, RESULTS_STREAM):
            try:
                self._redis.xgroup_create(stream, SUGGESTER_GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def recover(self) -> None:
        """After a (re)start: look at every experiment; re-send runs that may not be queued."""
        for experiment in api_objects.iterate_experiments(self._api, StateFilter.ALL):
            if experiment.state is ExperimentState.DELETED:
                continue
            self._dirty[experiment.id].add("sweep")
            if experiment.is_managed and experiment.state is ExperimentState.ACTIVE:
                self._managed.resend_queued(history_mod.load(self._api, experiment.id))

    # ------------------------------------------------------------------ loop
    def run_forever(self) -> None:
        """Steps until stopped. Failures (Redis or the API unreachable, a stream deleted under
        us) back off and re-read this consumer's pending entries, so nothing is skipped."""
        while not self._stopping:
            try:
                self.step(block_ms=500)
            except (redis.RedisError, ApiRequestError, OSError) as exc:
                log.warning("suggester step failed (%s); retrying", exc)
                if isinstance(exc, redis.ResponseError):
                    self.ensure_groups()
                self._cursor = "0"
                time.sleep(1.0)

    def step(self, block_ms: int) -> None:
        """One pass: sweep and lease checks when due, read the streams (blocking up to
        ``block_ms`` when there is nothing to do), dispatch, refresh dirty experiments."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep()
            self._reclaim()
            self._next_sweep = now + SWEEP_S
        if now >= self._next_lease_check:
            for eid in self._watched:
                self._dirty[eid].add("lease")
            self._next_lease_check = now + LEASE_CHECK_S
        # Reading our own pending entries ("0") or with work waiting: do not block.
        block = None if (self._dirty or self._cursor == "0") else block_ms
        replies = cast(
            _StreamReplies | None,
            self._redis.xreadgroup(
                SUGGESTER_GROUP,
                self._consumer,
                {EVENTS_STREAM: self._cursor, RESULTS_STREAM: self._cursor},
                count=200,
                block=block,
            ),
        )
        got = 0
        for stream, entries in replies or ():
            got += len(entries)
            for entry_id, fields in entries:
                self._dispatch(
                    stream.decode() if isinstance(stream, bytes) else stream, entry_id, fields
                )
        if self._cursor == "0" and not got:
            self._cursor = ">"
        self._refresh_dirty()

    def _dispatch(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        if stream == RESULTS_STREAM:
            try:
                result = TrainResult.from_json(fields[b"result"])
            except (MessageError, KeyError):
                log.error("dropping malformed result %s", entry_id)
                self._redis.xack(RESULTS_STREAM, SUGGESTER_GROUP, entry_id)
                return
            self._managed.handle_result(result)
            self._redis.xack(RESULTS_STREAM, SUGGESTER_GROUP, entry_id)
            self._dirty[result.experiment_id].add("result")
            return
        try:
            event = Event.from_json(fields[b"event"])
        except (MessageError, KeyError):
            log.error("dropping malformed event %s", entry_id)
            self._redis.xack(EVENTS_STREAM, SUGGESTER_GROUP, entry_id)
            return
        if event.experiment_id in self._managed_ids and event.type in _MANAGED_ECHOES:
            self._redis.xack(EVENTS_STREAM, SUGGESTER_GROUP, entry_id)
            return
        self._dirty[event.experiment_id].add(event.type)
        self._unacked[event.experiment_id].add(entry_id)

    def _refresh_dirty(self) -> None:
        dirty, self._dirty = self._dirty, defaultdict(set)
        for eid, kinds in dirty.items():
            try:
                self._refresh(eid, kinds)
            except (ApiRequestError, OSError, redis.RedisError):
                log.warning("refreshing experiment %s failed; will retry", eid, exc_info=True)
                self._dirty[eid] |= kinds
                continue
            entries = self._unacked.pop(eid, set())
            if entries:
                self._redis.xack(EVENTS_STREAM, SUGGESTER_GROUP, *entries)

    def _refresh(self, eid: int, kinds: set[str]) -> None:
        try:
            h = history_mod.load(self._api, eid)
        except ApiRequestError as exc:
            if exc.status == 404:
                pools.drop(self._redis, eid)
                self._watched.discard(eid)
                self._managed_ids.discard(eid)
                return
            raise
        if h.experiment.is_managed:
            self._managed_ids.add(eid)
            if self._managed.schedule(h):
                self._watched.add(eid)
            else:
                self._watched.discard(eid)
            return
        if h.experiment.state is ExperimentState.DELETED:
            pools.drop(self._redis, eid)
            return
        if not kinds & _FORCE_REFILL and pools.is_fresh(self._redis, eid, h.observation_count):
            return
        self._refill(h, kinds)

    def _refill(self, h: history_mod.History, kinds: set[str]) -> None:
        eid = h.experiment.id
        k = min(h.experiment.parallel_bandwidth + POOL_SLACK, MAX_POOL)
        started = time.perf_counter()
        result = suggest(
            h.spec,
            h.observations,
            h.pending,
            k,
            seed=eid,
            state=pools.load_state(self._redis, eid),
        )
        pools.save_state(self._redis, eid, result.state)
        pools.replace(self._redis, eid, result.candidates, h.observation_count)
        for candidate in result.candidates:
            if candidate.source == "fallback":
                log.warning(
                    "experiment %s: optimizer fell back to random: %s",
                    eid,
                    candidate.info.get("error"),
                )
        log.info(
            "experiment %s: pool of %d refilled from %d observations in %.2fs (after %s)",
            eid,
            len(result.candidates),
            h.observation_count,
            time.perf_counter() - started,
            ",".join(sorted(kinds)),
        )

    def _sweep(self) -> None:
        try:
            for experiment in api_objects.iterate_experiments(self._api, ExperimentState.ACTIVE):
                self._dirty[experiment.id].add("sweep")
        except (ApiRequestError, OSError):
            log.warning("sweep failed; will retry", exc_info=True)

    def _reclaim(self) -> None:
        """Take over entries a dead consumer read but never acknowledged."""
        for stream in (EVENTS_STREAM, RESULTS_STREAM):
            _, entries, *_ = self._redis.xautoclaim(
                stream, SUGGESTER_GROUP, self._consumer, min_idle_time=RECLAIM_IDLE_MS, count=100
            )
            for entry_id, fields in entries:
                if fields:
                    self._dispatch(stream, entry_id, fields)


def run(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    redis_client = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
    api = ApiClient(settings.api_url, settings.resolved_service_token(), retry_for_s=120)
    publisher = Publisher(settings)
    consumer = f"{socket.gethostname()}-suggester"
    suggester = Suggester(settings, redis_client, api, publisher, consumer)
    signal.signal(signal.SIGTERM, suggester.stop)
    signal.signal(signal.SIGINT, suggester.stop)
    suggester.ensure_groups()
    suggester.recover()
    log.info("suggester %s running (api %s)", consumer, settings.api_url)
    try:
        suggester.run_forever()
    finally:
        publisher.close()
        api.close()
