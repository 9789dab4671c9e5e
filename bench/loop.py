"""Scheduling overhead of managed experiments, with an instant objective and no model fitting
(``type: random``): the time from a worker publishing a result to the next run starting, and
completed runs per second with 4 workers. Then the cost of a script objective: one run at a
time, the time from a worker claiming a run to its result for the in-process objective and for
a trivial script objective (process start, run context and token, ``sigopt.log_metric``, the
values read back), and their ratio. Real processes: gunicorn API, suggester, Celery workers,
Redis, SQLite.

    python bench/loop.py [--runs 120] [--script-runs 40]
"""

from __future__ import annotations

import argparse
import json
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

#: A script objective that does nothing but report its one metric, as a `sigopt run` script.
SCRIPT = "import sigopt\nsigopt.log_metric('value', sigopt.params.x1 + sigopt.params.x2)\n"


def experiment(budget: float, bandwidth: int, objective: str = "augmented_branin") -> dict:
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
        "objective": {"name": objective, "config": {"sleep_per_cost": 0}},
    }


def run_experiment(
    platform: services.Platform,
    api: ApiClient,
    client: redis.Redis,
    runs: int,
    workers: int,
    objective: str = "augmented_branin",
) -> tuple[list[float], float, list[float]]:
    """Returns (result-to-next-start gaps in s, completed runs per s, claim-to-result times of
    the runs in s)."""
    last = client.xrevrange(RESULTS_STREAM, count=1)
    after = last[0][0].decode() if last else "0"
    started = time.perf_counter()
    eid = api.post("/experiments", experiment(runs, workers, objective))["id"]
    while api.get(f"/experiments/{eid}")["state"] != "completed":
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    entries = client.xrange(RESULTS_STREAM, min=f"({after}")
    result_at = {
        json.loads(fields[b"result"])["run_id"]: int(entry_id.split(b"-")[0]) / 1000
        for entry_id, fields in entries
    }
    result_times = sorted(result_at.values())
    runs_json = list(api.iterate(f"/experiments/{eid}/training_runs"))
    starts = sorted(r["started"] for r in runs_json)
    gaps = []
    for t in result_times:
        later = [s for s in starts if s > t]
        if later:
            gaps.append(later[0] - t)
    durations = [
        result_at[int(r["id"])] - r["started"] for r in runs_json if int(r["id"]) in result_at
    ]
    return gaps, len(starts) / elapsed, durations


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=120)
    parser.add_argument("--script-runs", type=int, default=40)
    args = parser.parse_args()
    if not services.redis_answers(services.REDIS_URL):
        sys.exit(f"Redis is not answering at {services.REDIS_URL}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the services on kill too
    client = redis.Redis.from_url(services.REDIS_URL)
    client.flushdb()
    root = Path(tempfile.mkdtemp(prefix="multitune-loop-"))
    (root / "script.py").write_text(SCRIPT)
    (root / "objectives.yaml").write_text(
        "bench_script: {command: [python, script.py], env: {OMP_NUM_THREADS: '1'}}\n"
    )
    platform = services.Platform(root, services.REDIS_URL, log_level="WARNING")
    try:
        platform.start_api()
        platform.start("suggester", "suggester")
        for i in range(4):
            objectives = str(root / "objectives.yaml")
            platform.start(f"w{i}", "worker", "--name", f"w{i}", "--objectives", objectives)
        api = ApiClient(platform.api_url, platform.token())
        run_experiment(platform, api, client, 8, 4)  # warm-up: workers import their objective
        print("| setup | runs | result -> next start p50 ms | p99 ms | completed runs/s |")
        print("|---|---|---|---|---|", flush=True)
        for workers in (1, 4):
            gaps, throughput, _ = run_experiment(platform, api, client, args.runs, workers)
            q = statistics.quantiles(gaps, n=100)
            print(
                f"| {workers} worker(s) in flight | {args.runs} | {q[49] * 1000:.1f} "
                f"| {q[98] * 1000:.1f} | {throughput:.1f} |",
                flush=True,
            )
        print()
        print(
            "| objective, 1 run in flight | runs | claim -> result p50 ms | p99 ms "
            "| completed runs/s |"
        )
        print("|---|---|---|---|---|", flush=True)
        rows = {}
        for label, objective in (
            ("in-process (augmented_branin)", "augmented_branin"),
            ("script (python, sigopt.log_metric)", "bench_script"),
        ):
            _, throughput, durations = run_experiment(
                platform, api, client, args.script_runs, 1, objective
            )
            q = statistics.quantiles(durations, n=100)
            rows[objective] = (q[49], throughput)
            print(
                f"| {label} | {args.script_runs} | {q[49] * 1000:.1f} | {q[98] * 1000:.1f} "
                f"| {throughput:.1f} |",
                flush=True,
            )
        (inline_p50, inline_rate), (script_p50, script_rate) = rows.values()
        print(
            f"\nscript / in-process: claim -> result p50 {script_p50 / inline_p50:.1f}x, "
            f"completed runs/s {script_rate / inline_rate:.2f}x"
        )
    finally:
        platform.stop_all()


if __name__ == "__main__":
    main()
