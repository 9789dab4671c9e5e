"""Running one training attempt: claim the run, heartbeat, train, publish the result.

Plain functions and classes, called by the thin Celery task (`services.worker.tasks`) and
directly by tests (`tests/worker_tests/test_runner.py`). The worker talks to the API (the only
writer of the store) over HTTP and publishes results to a Redis stream the suggester consumes.
Built-in and entry-point objectives train in this process; a script objective's command runs
as a child (`services.worker.script_runner`). The run's checkpoint directory is a local copy of
the checkpoint archive the API keeps (`services.worker.checkpoint_sync`): fetched on claim,
stored at each sync point, so any worker can run the next attempt.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import traceback
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

import redis

from services.worker.checkpoint_sync import ArchiveTransport
from services.worker.checkpoint_sync import AttemptSuperseded
from services.worker.checkpoint_sync import CheckpointStoreError
from services.worker.checkpoint_sync import CheckpointSync
from services.worker.objectives import Catalog
from services.worker.objectives.scripts import ScriptObjective
from services.worker.results import failed
from services.worker.results import from_values
from services.worker.results import publish
from services.worker.results import stopped
from services.worker.script_runner import run_script
from shared import api_objects
from shared.api_client import ApiClient
from shared.api_client import ApiRequestError
from shared.messages import TrainRequest
from shared.messages import TrainResult
from shared.settings import Settings
from shared.space import Metric
from shared.space import Task
from shared.states import ExperimentState
from shared.states import RunState

log = logging.getLogger(__name__)

#: Experiment states in which a run keeps training.
TRAINING_STATES = frozenset({ExperimentState.ACTIVE})


class ApiRunContext:
    """A `RunContext` backed by the API: checkpoints are POSTed, stop requests come back on
    heartbeats (experiment paused/stopped, or this attempt superseded by a newer one). With
    ``lease_s``, an attempt whose last renewed lease is older than that is lost: the run has
    been or will be retried, so it stops as superseded. With ``sync``, each report first stores
    the checkpoint directory through the API (a sync point)."""

    def __init__(
        self,
        api: ApiClient,
        request: TrainRequest,
        checkpoint_dir: Path,
        lease_s: float | None = None,
        sync: CheckpointSync | None = None,
    ) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.sync = sync
        self._api = api
        self._request = request
        self._lease_s = lease_s
        self._renewed = time.monotonic()
        self._stop = threading.Event()
        self.superseded = threading.Event()

    @functools.cached_property
    def device(self) -> str:
        import torch  # here, not at import: the worker's parent process never imports torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @functools.cached_property
    def devices(self) -> list[str]:
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]

    def report(self, epoch: int, values: Mapping[str, float]) -> None:
        """Store the checkpoint directory (when it changed), then log the epoch's values: a
        logged epoch always has its checkpoint stored. A store that refuses the checkpoint
        raises `CheckpointStoreError`, which fails the run."""
        if self.sync is not None:
            try:
                self.sync.save()
            except AttemptSuperseded:
                self.supersede()
                return
        body = {
            "epoch": epoch,
            "attempt": self._request.attempt,
            "values": [{"name": k, "value": float(v)} for k, v in values.items()],
        }
        try:
            self._api.post(f"/training_runs/{self._request.run_id}/checkpoints", body)
        except ApiRequestError as exc:
            if exc.status != 409:
                raise
            self.supersede()

    def renewed(self, at: float) -> None:
        """The lease was renewed by a heartbeat sent at monotonic time ``at``."""
        self._renewed = max(self._renewed, at)

    def should_stop(self) -> bool:
        if self._stop.is_set():
            return True
        if self._lease_s is not None and time.monotonic() - self._renewed > self._lease_s:
            log.warning(
                "run %s attempt %s: no lease renewed for %.0fs; stopping it as lost",
                self._request.run_id,
                self._request.attempt,
                self._lease_s,
            )
            self.supersede()
            return True
        return False

    def stop(self) -> None:
        self._stop.set()

    def supersede(self) -> None:
        self.superseded.set()
        self._stop.set()


class Heartbeat:
    """Renews the run's lease every ``interval_s``; a refusal (409) or a non-active experiment
    asks the objective to stop."""

    def __init__(
        self, api: ApiClient, request: TrainRequest, context: ApiRunContext, interval_s: float
    ) -> None:
        self._api = api
        self._request = request
        self._context = context
        self._interval_s = interval_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._done.wait(self._interval_s):
            sent = time.monotonic()
            try:
                run = api_objects.update_training_run(
                    self._api,
                    self._request.run_id,
                    {"heartbeat": True, "attempt": self._request.attempt},
                )
            except ApiRequestError as exc:
                if exc.status == 409:
                    self._context.supersede()
                    return
                log.warning("heartbeat of run %s failed: %s", self._request.run_id, exc)
                continue
            except OSError as exc:
                log.warning("heartbeat of run %s failed: %s", self._request.run_id, exc)
                continue
            self._context.renewed(sent)
            if run.experiment_state not in TRAINING_STATES:
                self._context.stop()


def checkpoint_dir(settings: Settings, run_id: int) -> Path:
    """The run's local checkpoint directory on this worker: a copy of the archive the API keeps
    across attempts (`checkpoint_sync`), so a retried run resumes on any worker."""
    path = settings.data_dir / "runs" / str(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_sync(
    settings: Settings, request: TrainRequest, retry_for_s: float
) -> CheckpointSync:
    """The checkpoint sync of this attempt, over the API with the worker's service token; a
    run that continues another starts from that run's archive."""
    transport = ArchiveTransport(
        settings.api_url, settings.resolved_service_token(), retry_for_s=retry_for_s
    )
    return CheckpointSync(
        transport,
        request.run_id,
        request.attempt,
        checkpoint_dir(settings, request.run_id),
        source=request.continues,
    )


def train(
    request: TrainRequest,
    settings: Settings,
    api: ApiClient,
    results: redis.Redis,
    worker: str,
    catalog: Catalog | None = None,
) -> TrainResult | None:
    """Run one attempt end to end with the objectives of ``catalog`` (default: the built-ins
    and the installed entry points). Returns the published result, or None when this attempt
    was not ours to run (claimed elsewhere, superseded, or a message about another run)."""
    if not _describes_run(api, request):
        return None
    try:
        run = api_objects.update_training_run(
            api,
            request.run_id,
            {
                "state": RunState.RUNNING,
                "attempt": request.attempt,
                "worker": worker,
                "heartbeat": True,
            },
        )
    except ApiRequestError as exc:
        if exc.status in (404, 409):
            log.info(
                "run %s attempt %s is not ours to run: %s",
                request.run_id,
                request.attempt,
                exc.message,
            )
            return None
        raise
    sync = checkpoint_sync(settings, request, api.retry_for_s)
    try:
        context = ApiRunContext(
            api, request, sync.directory, lease_s=settings.run_lease_s, sync=sync
        )
        if run.experiment_state not in TRAINING_STATES:
            context.stop()
            return publish(results, stopped(request))
        metrics = api_objects.get_experiment(api, request.experiment_id).spec.metrics
        with Heartbeat(api, request, context, settings.heartbeat_s):
            outcome = _restore(request, sync) or _run_objective(
                request,
                context,
                catalog or Catalog.discover(),
                metrics,
                api,
                settings.api_url,
                settings.heartbeat_s,
            )
        if context.superseded.is_set():
            log.info(
                "run %s attempt %s was superseded; dropping its result",
                request.run_id,
                request.attempt,
            )
            return None
        published = publish(results, outcome)
        if not outcome.stopped:  # finished: the API keeps the last archive
            sync.forget()
        return published
    finally:
        sync.transport.close()


def _restore(request: TrainRequest, sync: CheckpointSync) -> TrainResult | None:
    """Fetch the run's stored checkpoint before the objective starts; a failed result when it
    cannot be fetched, else None."""
    try:
        done = sync.restore()
    except CheckpointStoreError as exc:
        log.warning("run %s attempt %s: %s", request.run_id, request.attempt, exc)
        return failed(request, f"{type(exc).__name__}: {exc}")
    log.info("run %s attempt %s: %s", request.run_id, request.attempt, done)
    return None


def _describes_run(api: ApiClient, request: TrainRequest) -> bool:
    """A message whose run, suggestion, assignments or task differ from the store's is stale
    (e.g. left in Redis across a database reset) and must not train anything."""
    try:
        run = api_objects.get_training_run(api, request.run_id)
    except ApiRequestError as exc:
        if exc.status == 404:
            log.warning("dropping a message for unknown run %s", request.run_id)
            return False
        raise
    same = (
        run.experiment == request.experiment_id
        and run.suggestion == request.suggestion_id
        and run.assignments == request.assignments
        and run.task == request.task
    )
    if not same:
        log.warning(
            "dropping a stale message for run %s: it does not match the store", request.run_id
        )
    return same


def _run_objective(
    request: TrainRequest,
    context: ApiRunContext,
    catalog: Catalog,
    metrics: Sequence[Metric],
    api: ApiClient,
    api_url: str,
    sync_interval_s: float,
) -> TrainResult:
    """Train with the objective of ``request``; the result holds the values of the
    experiment's ``metrics`` (`results.from_values`). A script's checkpoint directory is synced
    every ``sync_interval_s`` while it runs."""
    if request.objective not in catalog:
        return failed(
            request,
            f"this worker provides no objective {request.objective!r} "
            f"(it provides {', '.join(catalog.names())})",
        )
    task = Task(name=request.task, cost=request.cost) if request.task is not None else None
    try:
        objective = catalog.load(request.objective)
        if isinstance(objective, ScriptObjective):
            return run_script(
                objective,
                request,
                context,
                metrics,
                api,
                api_url,
                checkpoints=context.sync,
                sync_interval_s=sync_interval_s,
            )
        result = objective.run(request.assignments, task, request.config, context)
    except Exception as exc:  # noqa: BLE001 - any failure of user training is a failed run
        if context.should_stop():  # the objective stopped as asked (e.g. raised TrainingStopped)
            return stopped(request)
        log.warning("run %s attempt %s failed: %s", request.run_id, request.attempt, exc)
        return failed(request, f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    if context.should_stop():
        return stopped(request)
    return from_values(request, result.values(request.metric), metrics)
