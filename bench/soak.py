"""Load and soak: the platform under steady load for ``--minutes``, on PostgreSQL.

Real services as processes, on a PostgreSQL cluster and a redis-server of their own (started
here, so nothing else on the machine shares or flushes them): the gunicorn API (2 processes x
16 threads), the suggester. The load comes from two processes of this script:

- ``--workers`` (32) simulated workers: threads, not 32 Celery processes (which do not fit 2
  cores). Each takes the next training task from the objective's broker queue (a BRPOP of the
  Celery message the suggester sent; no Celery acknowledgement) and runs the worker's own
  `runner.train` on it: the claim, heartbeats, the checkpoint stored through the API, the
  objective (``augmented_branin``, instant) and the result on the results stream, which the
  suggester records. Two managed ``type: random`` experiments (16 runs in flight each, 200
  runs; random search takes no tasks) are kept active: when one completes, another starts.
- ``--clients`` (16) ask/tell clients: sigopt clients (``sigopt.Connection``), each looping
  suggestion -> observation on a client-driven ``type: random`` experiment of its own (a new
  one every 200 observations), so the suggester refills their pools all along.

Random search keeps model fitting out of it (bench/suggest_latency.py and bench/optimizer.py
measure that): this measures the platform's plumbing. It prints a line a minute, then runs
and observations per second, API latency p50/p99 per kind of request, lost and doubled counts
(both must be 0: every run finished and recorded once, every acknowledged observation stored
once, cost consumed = sum of task costs) and the resident memory of every service at the start,
after the warm-up (``--warmup-minutes``, default a fifth of the run) and at the end, with the
growth after the warm-up (must be <= 10%).

    python bench/soak.py [--minutes 10] [--workers 32] [--clients 16]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import multiprocessing
import queue
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.api_client import ApiClient  # noqa: E402
from shared.names import EVENTS_STREAM  # noqa: E402
from shared.names import RESULTS_STREAM  # noqa: E402
from shared.names import SUGGESTER_GROUP  # noqa: E402
from shared.names import train_queue  # noqa: E402
from tests import services  # noqa: E402

OBJECTIVE = "augmented_branin"
PARAMETERS = [
    {"name": "x1", "type": "double", "bounds": {"min": -5, "max": 10}},
    {"name": "x2", "type": "double", "bounds": {"min": 0, "max": 15}},
]
MANAGED = {
    "name": "soak managed",
    "type": "random",
    "parameters": PARAMETERS,
    "metrics": [{"name": "value", "objective": "minimize"}],
    "observation_budget": 200,
    "parallel_bandwidth": 16,
    "objective": {"name": OBJECTIVE, "config": {"sleep_per_cost": 0, "max_epochs": 2}},
}
MANAGED_ACTIVE = 2
CLIENT_BUDGET = 200
#: Growth of a service's resident memory after the warm-up that fails the soak.
MAX_GROWTH = 0.10
#: The processes that run multitune's code, whose growth is judged. Redis's and PostgreSQL's
#: memory follows their data (streams filling up to their cap, shared buffers filling with
#: the growing tables) and the clients are the sigopt library: shown, not judged.
JUDGED = ("api", "suggester", "workers")
REPORT_S = 2.0

_ID = re.compile(r"/\d+")


# ---------------------------------------------------------------------- statistics
class Stats:
    """Counters and request latencies of one load process, sent to the parent every
    `REPORT_S` (and reset)."""

    def __init__(self, out: multiprocessing.Queue[Any]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._latencies: dict[str, list[float]] = defaultdict(list)
        self.extra: dict[str, Any] = {}

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[what] += n

    def latency(self, label: str, seconds: float) -> None:
        with self._lock:
            self._latencies[label].append(seconds)

    def hook(self, who: str) -> Callable[..., None]:
        """A requests response hook recording each request's latency as ``who METHOD path``."""

        def record(response: requests.Response, *_: Any, **__: Any) -> None:
            request = response.request
            path = _ID.sub("/{id}", (request.path_url or "").split("?")[0])
            self.latency(f"{who} {request.method} {path}", response.elapsed.total_seconds())

        return record

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, Counter()
            latencies, self._latencies = self._latencies, defaultdict(list)
        self._out.put({"time": time.time(), "counts": dict(counts), "latencies": latencies})

    def report_until(self, stop: threading.Event) -> threading.Thread:
        def run() -> None:
            while not stop.wait(REPORT_S):
                self.flush()

        thread = threading.Thread(target=run, name="stats", daemon=True)
        thread.start()
        return thread


# ---------------------------------------------------------------------- simulated workers
def _decode(raw: bytes) -> str:
    """The `TrainRequest` JSON in a Celery message of kombu's Redis transport."""
    envelope = json.loads(raw)
    args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    return str(args[0])


def run_workers(
    env: dict[str, str], count: int, stop: Any, out: multiprocessing.Queue[Any]
) -> None:
    """``count`` threads that train what the suggester sends, with the worker's runner."""
    logging.basicConfig(level=logging.ERROR)
    from services.worker import runner
    from services.worker.advert import Advertiser
    from services.worker.advert import make_advert
    from services.worker.objectives import Catalog
    from shared.messages import TrainRequest
    from shared.settings import Settings

    settings = Settings.from_env(env=env)
    catalog = Catalog.discover()
    stats = Stats(out)
    done = threading.Event()
    advertiser = Advertiser(
        redis.Redis.from_url(settings.redis_url),
        make_advert(f"soak@{socket.gethostname()}", catalog.names()),
    ).start()

    def work(i: int) -> None:
        api = ApiClient(settings.api_url, settings.resolved_service_token(), retry_for_s=300)
        api._session.hooks["response"].append(stats.hook("worker"))
        broker = redis.Redis.from_url(settings.redis_url)
        name = f"soak{i}@{socket.gethostname()}"
        while not stop.is_set():
            item = broker.brpop([train_queue(OBJECTIVE)], timeout=1)
            if item is None:
                continue
            request = TrainRequest.from_json(_decode(item[1]))
            started = time.perf_counter()
            try:
                result = runner.train(request, settings, api, broker, name, catalog)
            except Exception:  # noqa: BLE001 - counted; the run's lease brings it back
                logging.exception("run %s attempt %s", request.run_id, request.attempt)
                stats.count("worker errors")
                continue
            stats.latency("run claim -> result", time.perf_counter() - started)
            if result is None:
                stats.count("messages dropped (not ours)")
            elif result.failed:
                stats.count("runs failed")
            elif result.stopped:
                stats.count("runs stopped")
            else:
                stats.count("runs")
        api.close()

    threads = [threading.Thread(target=work, args=(i,), name=f"w{i}") for i in range(count)]
    reporter = stats.report_until(done)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    advertiser.stop()
    done.set()
    reporter.join()
    stats.flush()


# ---------------------------------------------------------------------- ask/tell clients
def run_clients(
    url: str, token: str, count: int, stop: Any, out: multiprocessing.Queue[Any]
) -> None:
    """``count`` sigopt clients looping suggestion -> observation; at the end, each experiment's
    acknowledged observations go to the parent (``told``)."""
    from sigopt import Connection

    stats = Stats(out)
    done = threading.Event()
    told: dict[str, int] = {}
    told_lock = threading.Lock()

    def client(i: int) -> None:
        session = requests.Session()
        session.hooks["response"].append(stats.hook("client"))
        connection = Connection(client_token=token, session=session)
        connection.set_api_url(url)
        experiment_id: str | None = None
        while not stop.is_set():
            try:
                if experiment_id is None or told[experiment_id] >= CLIENT_BUDGET:
                    experiment_id = (
                        connection.experiments()
                        .create(
                            name=f"soak client {i}",
                            type="random",
                            parameters=PARAMETERS,
                            metrics=[{"name": "y", "objective": "maximize"}],
                            observation_budget=CLIENT_BUDGET,
                            parallel_bandwidth=1,
                        )
                        .id
                    )
                    with told_lock:
                        told[experiment_id] = 0
                experiments = connection.experiments(experiment_id)
                suggestion = experiments.suggestions().create()
                x1, x2 = suggestion.assignments["x1"], suggestion.assignments["x2"]
                experiments.observations().create(suggestion=suggestion.id, value=-x1 * x2)
            except Exception:  # noqa: BLE001 - counted; a missing tell is not counted as told
                logging.exception("client %s", i)
                stats.count("client errors")
                continue
            with told_lock:
                told[experiment_id] += 1
            stats.count("observations")

    threads = [threading.Thread(target=client, args=(i,), name=f"c{i}") for i in range(count)]
    reporter = stats.report_until(done)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reporter.join()
    stats.flush()
    out.put({"told": told})


# ---------------------------------------------------------------------- the parent
class Collector:
    """Everything the load processes report, kept with its time."""

    def __init__(self, source: multiprocessing.Queue[Any]) -> None:
        self._source = source
        self.events: list[tuple[float, dict[str, int]]] = []
        self.latencies: list[tuple[float, str, list[float]]] = []
        self.told: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() or not self._source.empty():
            try:
                item = self._source.get(timeout=0.5)
            except queue.Empty:
                continue
            if "told" in item:
                self.told.update(item["told"])
                continue
            self.events.append((item["time"], item["counts"]))
            for label, values in item["latencies"].items():
                self.latencies.append((item["time"], label, values))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def counts(self, since: float, until: float) -> Counter[str]:
        total: Counter[str] = Counter()
        for at, counts in self.events:
            if since <= at < until:
                total.update(counts)
        return total

    def quantiles(self, since: float, until: float) -> dict[str, tuple[int, float, float]]:
        """Per label: count, p50 and p99 in ms."""
        by_label: dict[str, list[float]] = defaultdict(list)
        for at, label, values in self.latencies:
            if since <= at < until:
                by_label[label] += values
        out = {}
        for label, values in sorted(by_label.items()):
            if len(values) >= 2:
                q = statistics.quantiles(values, n=100)
                out[label] = (len(values), q[49] * 1000, q[98] * 1000)
        return out


class KeepManaged:
    """Keeps `MANAGED_ACTIVE` managed experiments active until `stop`."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.created: list[str] = []
        self.active: list[str] = []
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="managed", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                self.active = [e for e in self.active if self._state(e) == "active"]
                if self.stopping.is_set() and not self.active:
                    return
                while not self.stopping.is_set() and len(self.active) < MANAGED_ACTIVE:
                    eid = self.api.post("/experiments", MANAGED)["id"]
                    self.created.append(eid)
                    self.active.append(eid)
                time.sleep(1)
        except BaseException as exc:  # noqa: BLE001 - reported by main
            self.error = exc

    def _state(self, eid: str) -> str:
        return str(self.api.get(f"/experiments/{eid}")["state"])

    def drain(self, timeout_s: float) -> None:
        """Start no more; wait for the active ones to complete."""
        self.stopping.set()
        self._thread.join(timeout_s)


def _service_processes(
    platform: services.Platform, redis_server: services.RedisServer, pg: services.PostgresServer
) -> dict[str, list[psutil.Process]]:
    api = psutil.Process(platform.running["api"].pid)
    pid_file = (pg.data / "postmaster.pid").read_text().split()
    postmaster = psutil.Process(int(pid_file[0]))
    assert redis_server.process is not None
    return {
        "api (gunicorn master)": [api],
        **{f"api worker {i + 1}": [p] for i, p in enumerate(api.children())},
        "suggester": [psutil.Process(platform.running["suggester"].pid)],
        "redis-server": [psutil.Process(redis_server.process.pid)],
        "postgresql (all processes, USS)": [postmaster],
    }


def _cpu_s(processes: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each service, children included."""
    out = {}
    for name, procs in processes.items():
        family = procs + (
            procs[0].children(recursive=True) if name.startswith("postgresql") else []
        )
        total = 0.0
        for proc in family:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        out[name] = total
    return out


def _memory_mb(processes: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """Resident memory per service in MiB. PostgreSQL's backends share its buffers, so it is
    the sum of unique memory (USS) of the postmaster and all its children."""
    out = {}
    for name, procs in processes.items():
        try:
            if name.startswith("postgresql"):
                family = procs + procs[0].children(recursive=True)
                total = 0
                for proc in family:
                    try:
                        total += proc.memory_full_info().uss
                    except psutil.NoSuchProcess:
                        continue
                out[name] = total / 2**20
            else:
                out[name] = sum(p.memory_info().rss for p in procs) / 2**20
        except psutil.NoSuchProcess:
            out[name] = float("nan")
    return out


def _verify(api: ApiClient, managed: list[str], told: dict[str, int]) -> dict[str, int]:
    """Lost and doubled runs and observations, from the store."""
    lost = doubled = cost_mismatch = unfinished = 0
    for eid in managed:
        experiment = api.get(f"/experiments/{eid}")
        observations = list(api.iterate(f"/experiments/{eid}/observations"))
        per_suggestion = Counter(o["suggestion"] for o in observations)
        doubled += sum(n - 1 for n in per_suggestion.values())
        runs = list(api.iterate(f"/experiments/{eid}/training_runs"))
        unfinished += sum(1 for r in runs if not r["finished"])
        lost += sum(1 for r in runs if r["state"] == "lost")
        # A finished run whose suggestion has no observation was lost on the way.
        lost += sum(
            1
            for r in runs
            if r["state"] in ("completed", "failed") and r["suggestion"] not in per_suggestion
        )
        costs = {t["name"]: t["cost"] for t in experiment.get("tasks") or []}
        spent = sum(costs[o["task"]["name"]] if o.get("task") else 1.0 for o in observations)
        consumed = experiment["progress"]["observation_budget_consumed"]
        cost_mismatch += abs(spent - consumed) > 1e-9
        if experiment["state"] != "completed":
            unfinished += 1
    for eid, count in told.items():
        observations = list(api.iterate(f"/experiments/{eid}/observations"))
        per_suggestion = Counter(o["suggestion"] for o in observations)
        doubled += sum(n - 1 for n in per_suggestion.values())
        lost += max(count - len(observations), 0)
        doubled += max(len(observations) - count, 0)
    return {
        "lost": lost,
        "doubled": doubled,
        "unfinished": unfinished,
        "cost mismatches": cost_mismatch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup-minutes", type=float, default=None)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    warmup_s = 60 * (args.warmup_minutes if args.warmup_minutes is not None else args.minutes / 5)
    duration_s = 60 * args.minutes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the services on kill too

    root = Path(tempfile.mkdtemp(prefix="multitune-soak-"))
    redis_server = services.RedisServer()
    pg = services.PostgresServer()
    context = multiprocessing.get_context("spawn")
    load: list[multiprocessing.process.BaseProcess] = []
    platform: services.Platform | None = None
    try:
        redis_server.start()
        pg.start()
        platform = services.Platform(
            root, redis_server.url, pg.create_database(), log_level="WARNING"
        )
        platform.start_api(workers=2, threads=16)
        platform.start("suggester", "suggester")
        token = platform.token()
        api = ApiClient(platform.api_url, token, retry_for_s=120)
        processes = _service_processes(platform, redis_server, pg)

        reports: multiprocessing.Queue[Any] = context.Queue()
        stop_clients, stop_workers = context.Event(), context.Event()
        collector = Collector(reports)
        workers = context.Process(
            target=run_workers, args=(platform.env, args.workers, stop_workers, reports)
        )
        clients = context.Process(
            target=run_clients,
            args=(platform.api_url, token, args.clients, stop_clients, reports),
        )
        load += [workers, clients]
        for process in load:
            process.start()
        keeper = KeepManaged(api)
        keeper.start()
        processes[f"workers ({args.workers} threads, this script)"] = [psutil.Process(workers.pid)]
        processes[f"clients ({args.clients} threads, this script)"] = [psutil.Process(clients.pid)]
        while not collector.counts(0, float("inf"))["runs"]:  # load is on, imports done
            time.sleep(0.5)
        memory = {"start": _memory_mb(processes)}
        cpu = {"start": _cpu_s(processes)}

        started = time.time()
        print(
            f"soak: {args.minutes:g} min, {args.workers} simulated workers, {args.clients} "
            f"ask/tell clients, warm-up {warmup_s / 60:g} min; services on PostgreSQL "
            f"{pg.port}, Redis {redis_server.port}; logs in {root / 'logs'}",
            flush=True,
        )
        print("| minute | runs/s | ask/tell observations/s | errors | API p50 / p99 ms |")
        print("|---|---|---|---|---|", flush=True)
        minute = 0
        warmed = False
        while time.time() - started < duration_s:
            time.sleep(1)
            if keeper.error is not None:
                raise RuntimeError("keeping managed experiments failed") from keeper.error
            if not warmed and time.time() - started >= warmup_s:
                memory["after warm-up"] = _memory_mb(processes)
                cpu["after warm-up"] = _cpu_s(processes)
                warmed = True
            if time.time() - started >= 60 * (minute + 1):
                since = started + 60 * minute
                counts = collector.counts(since, since + 60)
                latencies = [  # HTTP requests only, not the runs' claim -> result
                    v
                    for at, label, values in collector.latencies
                    if since <= at < since + 60 and "/v1/" in label
                    for v in values
                ]
                q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0] * 99
                errors = counts["worker errors"] + counts["client errors"]
                print(
                    f"| {minute + 1} | {counts['runs'] / 60:.1f} "
                    f"| {counts['observations'] / 60:.1f} | {errors} "
                    f"| {q[49] * 1000:.1f} / {q[98] * 1000:.1f} |",
                    flush=True,
                )
                minute += 1
        ended = time.time()
        memory["end"] = _memory_mb(processes)
        cpu["end"] = _cpu_s(processes)
        if not warmed:
            memory["after warm-up"], cpu["after warm-up"] = memory["start"], cpu["start"]
        streams = {
            name: redis.Redis.from_url(redis_server.url).xlen(name)
            for name in (EVENTS_STREAM, RESULTS_STREAM)
        }

        stop_clients.set()
        clients.join(120)
        keeper.drain(300)
        stop_workers.set()
        workers.join(120)
        time.sleep(2 * REPORT_S)
        collector.close()

        measured = (started + warmup_s, ended)
        total = collector.counts(started, ended + 60)
        after = collector.counts(*measured)
        seconds = measured[1] - measured[0]
        print()
        print(
            f"after the warm-up ({seconds / 60:.1f} min): "
            f"{after['runs'] / seconds:.1f} runs/s, "
            f"{after['observations'] / seconds:.1f} ask/tell observations/s; "
            f"over the whole run: {total['runs']} runs, {total['observations']} observations, "
            f"{len(keeper.created)} managed and {len(collector.told)} client experiments"
        )
        print()
        print("| requests (after the warm-up) | count | p50 ms | p99 ms |")
        print("|---|---|---|---|")
        for label, (n, p50, p99) in collector.quantiles(*measured).items():
            print(f"| {label} | {n} | {p50:.1f} | {p99:.1f} |")
        checks = _verify(api, keeper.created, collector.told)
        pending = redis.Redis.from_url(redis_server.url).xpending(RESULTS_STREAM, SUGGESTER_GROUP)
        checks["results not recorded"] = int(pending["pending"])
        other = {k: v for k, v in total.items() if k not in ("runs", "observations")}
        print()
        print("| check | count |")
        print("|---|---|")
        for name, value in {**checks, **other}.items():
            print(f"| {name} | {value} |")
        print()
        print(
            "| process | RSS MiB at start | after warm-up | at the end | growth after warm-up "
            "| CPU after warm-up |"
        )
        print("|---|---|---|---|---|---|")
        failed = bool(checks["lost"] or checks["doubled"] or checks["unfinished"])
        for name in memory["start"]:
            warm, end = memory["after warm-up"][name], memory["end"][name]
            growth = (end - warm) / warm if warm else float("nan")
            judged = name.startswith(JUDGED)
            failed = failed or (judged and growth > MAX_GROWTH)
            busy = (cpu["end"][name] - cpu["after warm-up"][name]) / seconds
            print(
                f"| {name} | {memory['start'][name]:.0f} | {warm:.0f} | {end:.0f} "
                f"| {growth * 100:+.1f}%{'' if judged else ' (not judged)'} | {busy:.0%} |"
            )
        print(
            f"\nRedis streams at the end: {streams[EVENTS_STREAM]:,} events, "
            f"{streams[RESULTS_STREAM]:,} results (each capped near 100,000 entries)"
        )
        print()
        print(
            "FAILED"
            if failed
            else "passed: 0 lost, 0 doubled, all finished, memory growth within 10%"
        )
        if failed:
            sys.exit(1)
    finally:
        for process in load:
            if process.is_alive():
                process.kill()
        if platform is not None:
            platform.stop_all()
        redis_server.close()
        pg.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
