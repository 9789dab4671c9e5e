"""Scheduling overhead of managed experiments, with an instant objective and no model fitting
(``type: random``): the time from a worker publishing a result to the next run starting, and
completed runs per second with 4 workers. Real processes: gunicorn API, suggester, Celery
workers, Redis, SQLite.

    python bench/loop.py [--runs 120]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.api_client import ApiClient  # noqa: E402
from shared.names import RESULTS_STREAM  # noqa: E402
from tests import services  # noqa: E402


def experiment(budget: float, bandwidth: int) -> dict:
    return {
        "name": "loop bench",
        "type": "random",
        "parameters": [
            {"name": "x1", "type": "double", "bounds": {"min": -5, "max": 10}},
            {"name": "x2", "type": "double", "bounds": {"min": 0, "max": 15}},
        ],
        "metrics": [{"name": "value", "objective": "minimize"}],
        "observation_budget": budget,
        "parallel_bandwidth": bandwidth,
        "objective": {"name": "augmented_branin", "config": {"sleep_per_cost": 0}},
    }


def run_experiment(
    platform: services.Platform, api: ApiClient, client: redis.Redis, runs: int, workers: int
) -> tuple[list[float], float]:
    """Returns (result-to-next-start gaps in s, completed runs per s)."""
    last = client.xrevrange(RESULTS_STREAM, count=1)
    after = last[0][0].decode() if last else "0"
    started = time.perf_counter()
    eid = api.post("/experiments", experiment(runs, workers))["id"]
    while api.get(f"/experiments/{eid}")["state"] != "completed":
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    result_times = sorted(
        int(entry_id.split(b"-")[0]) / 1000
        for entry_id, _ in client.xrange(RESULTS_STREAM, min=f"({after}")
    )
    starts = sorted(r["started"] for r in api.iterate(f"/experiments/{eid}/training_runs"))
    gaps = []
    for t in result_times:
        later = [s for s in starts if s > t]
        if later:
            gaps.append(later[0] - t)
    return gaps, len(starts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=120)
    args = parser.parse_args()
    if not services.redis_answers(services.REDIS_URL):
        sys.exit(f"Redis is not answering at {services.REDIS_URL}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the services on kill too
    client = redis.Redis.from_url(services.REDIS_URL)
    client.flushdb()
    platform = services.Platform(
        Path(tempfile.mkdtemp(prefix="multitune-loop-")), services.REDIS_URL, log_level="WARNING"
    )
    try:
        platform.start_api()
        platform.start("suggester", "suggester")
        for i in range(4):
            platform.start(f"w{i}", "worker", "--name", f"w{i}")
        api = ApiClient(platform.api_url, platform.token())
        run_experiment(platform, api, client, 8, 4)  # warm-up: workers import their objective
        print("| setup | runs | result -> next start p50 ms | p99 ms | completed runs/s |")
        print("|---|---|---|---|---|", flush=True)
        for workers in (1, 4):
            gaps, throughput = run_experiment(platform, api, client, args.runs, workers)
            q = statistics.quantiles(gaps, n=100)
            print(
                f"| {workers} worker(s) in flight | {args.runs} | {q[49] * 1000:.1f} "
                f"| {q[98] * 1000:.1f} | {throughput:.1f} |",
                flush=True,
            )
    finally:
        platform.stop_all()


if __name__ == "__main__":
    main()
