"""API throughput and latency: ``POST suggestions`` served from the pool, and ``POST
observations``, at 16 concurrent keep-alive clients, on SQLite and PostgreSQL.

Starts a real ``multitune api`` (gunicorn) per backend on this machine, fills the suggestion
pool in Redis (no suggester runs, so every suggestion is a pool hit), and drives it from one
asyncio load generator in this process. Prints one table. Each backend's first row, ``GET
/healthz`` (no token check, no database, no Redis), is the floor that gunicorn, Flask and the
load generator set on this machine: no request can be served faster than that.

    python bench/api.py [--seconds 10] [--clients 16] [--workers 2] [--backends sqlite,postgresql]

Needs Redis and (for the PostgreSQL row) PostgreSQL on 127.0.0.1, as the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.names import pool_key  # noqa: E402
from tests import services  # noqa: E402

EXPERIMENT = {
    "name": "bench",
    "parameters": [
        {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
        {
            "name": "lr",
            "type": "double",
            "bounds": {"min": 1e-5, "max": 1},
            "transformation": "log",
        },
        {"name": "layers", "type": "int", "bounds": {"min": 1, "max": 8}},
        {"name": "opt", "type": "categorical", "categorical_values": ["sgd", "adam", "rmsprop"]},
    ],
    "metrics": [{"name": "accuracy"}],
    "tasks": [{"name": "short", "cost": 0.25}, {"name": "full", "cost": 1.0}],
    "observation_budget": 1_000_000,
    "parallel_bandwidth": 16,
}


def _point(rng: random.Random) -> dict:
    return {
        "x": rng.random(),
        "lr": 10 ** rng.uniform(-5, 0),
        "layers": rng.randint(1, 8),
        "opt": rng.choice(["sgd", "adam", "rmsprop"]),
    }


class Connection:
    """One keep-alive HTTP/1.1 connection (the cheapest client Python has)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, path: str, body: dict | None) -> tuple[int, bytes]:
        """POST ``body`` as JSON, or GET when it is None."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        payload = b"" if body is None else json.dumps(body).encode()
        method = "GET" if body is None else "POST"
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.token}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        assert self.reader is not None
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = await self.reader.readexactly(length)
        return int(status_line.split()[1]), data


async def _drive(
    port: int, token: str, clients: int, seconds: float, path: str, make_body, rate: float = 0.0
) -> tuple[list[float], int]:
    """Closed loop (each client sends its next request at once) or, with ``rate`` > 0, each
    client on a fixed schedule of ``rate / clients`` requests/s (latency counted from the
    scheduled time, so a late start is not hidden: no coordinated omission)."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal errors
        conn = Connection("127.0.0.1", port, token)
        rng = random.Random(i)
        interval = clients / rate if rate > 0 else 0.0
        scheduled = time.perf_counter() + rng.random() * interval
        while time.perf_counter() < stop:
            if interval:
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            started = scheduled if interval else time.perf_counter()
            status, _ = await conn.send(path, make_body(rng))
            latencies.append(time.perf_counter() - started)
            errors += status != 200
            scheduled += interval

    await asyncio.gather(*(worker(i) for i in range(clients)))
    return latencies, errors


def _row(backend: str, name: str, latencies: list[float], errors: int, seconds: float) -> str:
    q = statistics.quantiles(latencies, n=100)
    return (
        f"| {backend:<10} | {name:<36} | {len(latencies):>8} | {len(latencies) / seconds:>8.0f} "
        f"| {q[49] * 1000:>7.1f} | {q[98] * 1000:>7.1f} | {errors:>6} |"
    )


def bench_backend(backend: str, args: argparse.Namespace, redis_url: str) -> list[str]:
    root = Path(tempfile.mkdtemp(prefix=f"multitune-bench-{backend}-"))
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    with services.postgres_database() if backend == "postgresql" else _nothing() as db_url:
        platform = services.Platform(root, redis_url, database_url=db_url, log_level="WARNING")
        try:
            platform.start_api(workers=args.workers, threads=args.threads)
            token = platform.token()
            import requests

            headers = {"Authorization": f"Bearer {token}"}
            eid = requests.post(
                f"{platform.api_url}/v1/experiments", json=EXPERIMENT, headers=headers, timeout=30
            ).json()["id"]
            rng = random.Random(0)
            entries = [
                json.dumps(
                    {
                        "assignments": _point(rng),
                        "task": "full",
                        "observation_count": 0,
                        "source": "model",
                    }
                )
                for _ in range(200_000)
            ]
            for i in range(0, len(entries), 10_000):
                client.rpush(pool_key(eid), *entries[i : i + 10_000])
            rows = []
            loads = [("", 0.0)] + ([(f" @{args.rate:.0f}/s", args.rate)] if args.rate else [])
            for (name, path, body), (load, rate) in [
                (t, load)
                for t in [
                    ("GET /healthz (the server's floor)", "/healthz", lambda r: None),
                    (
                        "POST suggestions (pool hit)",
                        f"/v1/experiments/{eid}/suggestions",
                        lambda r: {},
                    ),
                    (
                        "POST observations",
                        f"/v1/experiments/{eid}/observations",
                        lambda r: {"assignments": _point(r), "task": "short", "value": r.random()},
                    ),
                ]
                for load in loads
            ]:
                asyncio.run(_drive(platform.port, token, args.clients, 1.0, path, body))  # warm-up
                latencies, errors = asyncio.run(
                    _drive(platform.port, token, args.clients, args.seconds, path, body, rate)
                )
                rows.append(_row(backend, name + load, latencies, errors, args.seconds))
                print(rows[-1], flush=True)
            left = client.llen(pool_key(eid))
            assert left > 0, "the pool ran dry: suggestions were not all pool hits"
            return rows
        finally:
            platform.stop_all()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--threads", type=int, default=16, help="threads per gunicorn process")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--rate",
        type=float,
        default=200.0,
        help="also run each request at this fixed total rate (0: closed loop only)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the services on kill too
    redis_url = services.REDIS_URL
    if not services.redis_answers(redis_url):
        sys.exit(f"Redis is not answering at {redis_url}")
    print(
        f"{args.clients} concurrent keep-alive clients, {args.seconds:.0f} s per row, "
        f"gunicorn {args.workers} processes x {args.threads} threads, load generator on the same "
        "machine"
    )
    print(
        "| backend    | request (closed loop, or @ fixed rate) | requests |    req/s | p50 ms  "
        "| p99 ms  | errors |"
    )
    print(
        "|------------|--------------------------------------|----------|----------|---------"
        "|---------|--------|"
    )
    for backend in args.backends.split(","):
        bench_backend(backend, args, redis_url)


if __name__ == "__main__":
    main()
