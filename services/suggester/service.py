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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from typing import Any
from typing import cast

import redis

from services.suggester import history as history_mod
from services.suggester import pools
from services.suggester.liveness import Liveness
from services.suggester.liveness import liveness_file
from services.suggester.managed import OPTIMIZER_LOCK
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
#: A sweep starts at least this many times its last duration after it ended, so that listing
#: many experiments never takes most of the loop's time.
SWEEP_DUTY = 4.0
#: Experiments per page of a sweep's listing: one page a step, one request each.
SWEEP_PAGE = 25
LEASE_CHECK_S = 1.0
#: Experiments refreshed at once. A refresh mostly waits on the API (4 to 6 calls), so one at a
#: time leaves the API idle and managed runs waiting while busy client-driven experiments
#: queue up; the API serves these in parallel.
REFRESH_THREADS = 8
#: Stream entries read per stream and call; a pass reads until the streams are drained or
#: `READ_MAX` entries were read (events coalesce: a pass refreshes each experiment once).
READ_BATCH = 200
READ_MAX = 20_000
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


class _Outcome(Enum):
    """What refreshing an experiment found."""

    #: The API does not know it (deleted for good).
    GONE = "gone"
    #: Client-driven: its pool was refilled if it had to be.
    CLIENT_DRIVEN = "client-driven"
    #: Managed, with runs in flight: checked for lost leases every `LEASE_CHECK_S`.
    IN_FLIGHT = "in flight"
    #: Managed, nothing in flight.
    IDLE = "idle"


class Suggester:
    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis,
        api: ApiClient,
        publisher: Publisher,
        consumer: str,
        clock: Callable[[], float] = time.monotonic,
        liveness: Liveness | None = None,
    ) -> None:
        """``clock`` (monotonic seconds) paces the sweep and the lease checks; ``liveness``, if
        given, is touched by every pass of `run_forever`."""
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
        #: The pages of the sweep in progress (None between sweeps), and the time it took.
        self._sweep_pages: Iterator[tuple[list[api_objects.Experiment], bool]] | None = None
        self._sweep_took = 0.0
        self._next_lease_check = 0.0
        self._stopping = False
        self._clock = clock
        self._liveness = liveness
        self._refresher = ThreadPoolExecutor(REFRESH_THREADS, thread_name_prefix="refresh")
        #: Redis lost its data: `recover` at the next step.
        self._recover_pending = False

    def stop(self, *_: Any) -> None:
        self._stopping = True

    def close(self) -> None:
        self._refresher.shutdown(wait=True)

    # ------------------------------------------------------------------ setup
    def ensure_groups(self) -> bool:
        """Create the consumer group on both streams where it is missing; True if any was."""
        created = False
        for stream in (EVENTS_STREAM, RESULTS_STREAM):
            try:
                self._redis.xgroup_create(stream, SUGGESTER_GROUP, id="0", mkstream=True)
                created = True
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        return created

    def start(self) -> None:
        """Create the consumer groups and `recover`; when Redis or the API is not there yet,
        leave both to the loop, which retries until they answer."""
        try:
            self.ensure_groups()
            self.recover()
        except (redis.RedisError, ApiRequestError, OSError) as exc:
            log.warning("cannot start up yet (%s); the loop will retry", exc)
            self._recover_pending = True

    def recover(self) -> None:
        """After a (re)start, or Redis losing its data: look at every experiment that may need
        work (a managed one not completed; a client-driven one whose pool is not fresh) and
        re-send the runs of active managed ones that may not be queued."""
        client_driven: dict[int, int] = {}
        for experiment in api_objects.iterate_experiments(self._api, StateFilter.ALL):
            if experiment.state is ExperimentState.DELETED:
                continue
            if not experiment.is_managed:
                client_driven[experiment.id] = experiment.progress.observation_count
                continue
            if experiment.state is not ExperimentState.COMPLETED:
                self._dirty[experiment.id].add("sweep")
            if experiment.state is ExperimentState.ACTIVE:
                self._managed.resend_queued(history_mod.load(self._api, experiment.id))
        fresh = pools.fresh_pools(self._redis, client_driven) if client_driven else set()
        for experiment_id in client_driven.keys() - fresh:
            self._dirty[experiment_id].add("sweep")

    # ------------------------------------------------------------------ loop
    def run_forever(self) -> None:
        """Steps until stopped. Failures (Redis or the API unreachable, a stream deleted under
        us) back off and re-read this consumer's pending entries, so nothing is skipped."""
        while not self._stopping:
            if self._liveness is not None:
                self._liveness.beat()
            try:
                self.step(block_ms=500)
            except (redis.RedisError, ApiRequestError, OSError) as exc:
                log.warning("suggester step failed (%s); retrying", exc)
                self._cursor = "0"
                time.sleep(1.0)
                if isinstance(exc, redis.ResponseError):
                    self._regroup()

    def _regroup(self) -> None:
        """After a stream command failed: a missing consumer group (it was created at start)
        means Redis lost its data, e.g. restarted without its append-only file. Queues, pools,
        optimizer state and unread results went with it; the API has what matters. Recreate
        the groups, and on the next step re-read every experiment as after a restart."""
        try:
            lost = self.ensure_groups()
        except redis.RedisError as exc:
            log.warning("cannot check the consumer groups (%s); retrying", exc)
            return
        if lost:
            log.warning(
                "Redis lost its data (the consumer groups were gone): re-sending queued runs "
                "and refilling pools from the API; runs whose results were lost are retried "
                "when their lease runs out"
            )
            self._unacked.clear()
            self._recover_pending = True

    def step(self, block_ms: int) -> None:
        """One pass: sweep and lease checks when due, read the streams (blocking up to
        ``block_ms`` when there is nothing to do), dispatch, refresh dirty experiments."""
        if self._recover_pending:
            self.recover()
            self._recover_pending = False
        now = self._clock()
        if self._sweep_pages is None and now >= self._next_sweep:
            self._reclaim()
            self._sweep_pages = self._active_pages()
            self._sweep_took = 0.0
        if self._sweep_pages is not None:
            self._sweep_page(self._sweep_pages)
        if now >= self._next_lease_check:
            for eid in self._watched:
                self._dirty[eid].add("lease")
            self._next_lease_check = now + LEASE_CHECK_S
        # Reading our own pending entries ("0") or with work waiting: do not block.
        busy = self._dirty or self._cursor == "0" or self._sweep_pages is not None
        block: int | None = None if busy else block_ms
        read = 0
        while True:
            got, full = self._read(block)
            read += got
            if self._cursor == "0" and not got:
                self._cursor = ">"
            # New entries keep coming while a pass refreshes: read them all (up to a bound),
            # or a busy events stream outruns the loop and its backlog grows without end.
            if self._cursor != ">" or not full or read >= READ_MAX:
                break
            block = None
        self._refresh_dirty()

    def _read(self, block: int | None) -> tuple[int, bool]:
        """Read and dispatch up to `READ_BATCH` entries of each stream; returns how many, and
        whether a stream had more."""
        replies = cast(
            _StreamReplies | None,
            self._redis.xreadgroup(
                SUGGESTER_GROUP,
                self._consumer,
                {EVENTS_STREAM: self._cursor, RESULTS_STREAM: self._cursor},
                count=READ_BATCH,
                block=block,
            ),
        )
        got = 0
        full = False
        for stream, entries in replies or ():
            got += len(entries)
            full = full or len(entries) == READ_BATCH
            for entry_id, fields in entries:
                self._dispatch(
                    stream.decode() if isinstance(stream, bytes) else stream, entry_id, fields
                )
        return got, full

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
        """Refresh every dirty experiment, `REFRESH_THREADS` at a time (each is mostly waiting
        on API calls; one experiment is never refreshed twice at once), then acknowledge the
        events of those that succeeded."""
        dirty, self._dirty = self._dirty, defaultdict(set)
        if not dirty:
            return
        futures = {
            eid: self._refresher.submit(self._refresh, eid, kinds) for eid, kinds in dirty.items()
        }
        for eid, future in futures.items():
            try:
                outcome = future.result()
            except (ApiRequestError, OSError, redis.RedisError):
                log.warning("refreshing experiment %s failed; will retry", eid, exc_info=True)
                self._dirty[eid] |= dirty[eid]
                continue
            if outcome is _Outcome.GONE:
                self._watched.discard(eid)
                self._managed_ids.discard(eid)
            elif outcome is not _Outcome.CLIENT_DRIVEN:
                self._managed_ids.add(eid)
                if outcome is _Outcome.IN_FLIGHT:
                    self._watched.add(eid)
                else:
                    self._watched.discard(eid)
            entries = self._unacked.pop(eid, set())
            if entries:
                self._redis.xack(EVENTS_STREAM, SUGGESTER_GROUP, *entries)

    def _refresh(self, eid: int, kinds: set[str]) -> _Outcome:
        """Refill the pool of a client-driven experiment or schedule a managed one. Runs on a
        `_refresher` thread: it touches no state of this object, and says what it found."""
        try:
            h = history_mod.load(self._api, eid, self._redis)
        except ApiRequestError as exc:
            if exc.status == 404:
                pools.drop(self._redis, eid)
                return _Outcome.GONE
            raise
        if h.experiment.is_managed:
            return _Outcome.IN_FLIGHT if self._managed.schedule(h) else _Outcome.IDLE
        if h.experiment.state is ExperimentState.DELETED:
            pools.drop(self._redis, eid)
            return _Outcome.CLIENT_DRIVEN
        if not kinds & _FORCE_REFILL and pools.is_fresh(self._redis, eid, h.observation_count):
            return _Outcome.CLIENT_DRIVEN
        self._refill(h, kinds)
        return _Outcome.CLIENT_DRIVEN

    def _refill(self, h: history_mod.History, kinds: set[str]) -> None:
        eid = h.experiment.id
        k = min(h.experiment.parallel_bandwidth + POOL_SLACK, MAX_POOL)
        state = pools.load_state(self._redis, eid)
        started = time.perf_counter()
        with OPTIMIZER_LOCK:
            result = suggest(h.spec, h.observations, h.pending, k, seed=eid, state=state)
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

    def _sweep_page(self, pages: Iterator[tuple[list[api_objects.Experiment], bool]]) -> None:
        """One page of a sweep (one page a step, so that a sweep over many experiments never
        holds up the loop): mark the active experiments that may need work an event did not
        announce, a managed one this loop does not watch (after a restart) or a client-driven
        one whose pool is not fresh for its observation count. Others cost nothing more than
        their listing: an abandoned client-driven experiment stays active for ever, and there
        may be many. After the last page, the next sweep is due in `SWEEP_S`, or
        `SWEEP_DUTY` times as long as this one took."""
        started = self._clock()
        try:
            page, last = next(pages)
            counts = {e.id: e.progress.observation_count for e in page}
            fresh = pools.fresh_pools(self._redis, counts) if counts else set()
            for experiment in page:
                if experiment.is_managed:
                    if experiment.id not in self._watched:
                        self._dirty[experiment.id].add("sweep")
                elif experiment.id not in fresh:
                    self._dirty[experiment.id].add("sweep")
        except (ApiRequestError, OSError, redis.RedisError):
            log.warning("sweep failed; will retry", exc_info=True)
            last = True
        self._sweep_took += self._clock() - started
        if last:
            self._sweep_pages = None
            self._next_sweep = self._clock() + max(SWEEP_S, SWEEP_DUTY * self._sweep_took)

    def _active_pages(self) -> Iterator[tuple[list[api_objects.Experiment], bool]]:
        """The active experiments, a page at a time, each with whether it is the last."""
        params: dict[str, Any] = {"state": ExperimentState.ACTIVE, "limit": SWEEP_PAGE}
        while True:
            page = self._api.get("/experiments", **params)
            before = page["paging"].get("before")
            yield [api_objects.Experiment.from_json(data) for data in page["data"]], not before
            if not before:
                return
            params["before"] = before

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
    liveness = Liveness(liveness_file(settings.data_dir))
    suggester = Suggester(settings, redis_client, api, publisher, consumer, liveness=liveness)
    signal.signal(signal.SIGTERM, suggester.stop)
    signal.signal(signal.SIGINT, suggester.stop)
    suggester.start()
    log.info("suggester %s running (api %s)", consumer, settings.api_url)
    try:
        suggester.run_forever()
    finally:
        suggester.close()
        publisher.close()
        api.close()
