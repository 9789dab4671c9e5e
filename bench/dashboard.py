"""Dashboard render time: every page and analytics endpoint of an experiment with 1,000
observations (4 tasks, 6 parameters) and 50 training runs x 100 checkpoints.

Builds the data through the app (experiment and observations through the API, runs and
checkpoints through the ORM for speed), signs in with a real session, then times each request
in-process with Flask's test client: that is the server's time (routing, queries, analytics,
templates), without a network. Prints one table: the first (cold) request, the median of the
next ``--repeats``, and the SQL statements per request.

    python bench/dashboard.py [--repeats 5] [--database-url postgresql+psycopg://...]

Needs Redis on 127.0.0.1 (the app connects to it; nothing here uses it).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.api import create_app  # noqa: E402
from services.api.auth import create_token  # noqa: E402
from services.api.db import get_session  # noqa: E402
from services.api.models import Checkpoint  # noqa: E402
from services.api.models import Suggestion  # noqa: E402
from services.api.models import TrainingRun  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.space import assignment_key  # noqa: E402

TASKS = [("s0.125", 0.125), ("s0.25", 0.25), ("s0.5", 0.5), ("s1", 1.0)]
EXPERIMENT = {
    "name": "dashboard bench",
    "parameters": [
        {"name": f"x{i}", "type": "double", "bounds": {"min": 0, "max": 1}} for i in range(1, 7)
    ],
    "metrics": [{"name": "value", "objective": "minimize"}],
    "tasks": [{"name": n, "cost": c} for n, c in TASKS],
    "observation_budget": 500,
    "parallel_bandwidth": 8,
}


def _value(a: dict[str, float], cost: float) -> float:
    return sum((a[f"x{i}"] - 0.2 * i / 1.2) ** 2 * i for i in range(1, 7)) + 0.3 * (1 - cost)


def build(
    client,
    app,
    headers: dict[str, str],
    observations: int,
    runs: int,  # type: ignore[no-untyped-def]
    checkpoints: int,
) -> tuple[str, list[int]]:
    rng = random.Random(0)
    eid = client.post("/v1/experiments", json=EXPERIMENT, headers=headers).json["id"]
    batch = []
    for i in range(observations):
        a = {f"x{k}": rng.random() for k in range(1, 7)}
        name, cost = TASKS[i % 4] if i % 5 else TASKS[3]
        batch.append({"assignments": a, "task": name, "value": _value(a, cost)})
        if i % 7 == 0:  # the same configuration at the full cost too (rank correlation)
            batch.append({"assignments": a, "task": "s1", "value": _value(a, 1.0)})
    batch = batch[:observations]
    for start in range(0, len(batch), 500):
        response = client.post(
            f"/v1/experiments/{eid}/observations/batch",
            json={"observations": batch[start : start + 500]},
            headers=headers,
        )
        assert response.status_code == 200, response.json
    run_ids = []
    with app.app_context():
        session = get_session()
        now = time.time()
        for r in range(runs):
            a = {f"x{k}": rng.random() for k in range(1, 7)}
            task = TASKS[r % 4][0]
            suggestion = Suggestion(
                experiment_id=int(eid),
                assignments=a,
                task=task,
                key=assignment_key(a, task),
                state="open",
                deleted=False,
                source="pool",
                created=now,
                updated=now,
            )
            session.add(suggestion)
            session.flush()
            run = TrainingRun(
                experiment_id=int(eid),
                suggestion_id=suggestion.id,
                state="completed",
                attempt=1 + r % 2,
                heartbeat=now,
                worker="bench@host",
                checkpoint_count=checkpoints,
                created=now,
                updated=now,
                started=now,
                completed=now,
                logs="\n".join(f"epoch {e} done" for e in range(checkpoints)),
            )
            session.add(run)
            session.flush()
            run_ids.append(run.id)
            session.add_all(
                Checkpoint(
                    training_run_id=run.id,
                    attempt=run.attempt,
                    epoch=e,
                    values=[
                        {"name": "value", "value": 1 / (e + 1)},
                        {"name": "loss", "value": 2 / (e + 1)},
                    ],
                    created=now,
                )
                for e in range(checkpoints)
            )
        session.commit()
    return str(eid), run_ids


def sign_in(client, token: str) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert client.post("/login", data={"token": token, "csrf": csrf}).status_code == 302


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--observations", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--checkpoints", type=int, default=100)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="multitune-bench-dashboard-"))
    settings = Settings.from_env(
        env={},
        data_dir=data_dir,
        database_url=args.database_url,
        redis_url=args.redis_url,
        service_token="bench-service",
    )
    app = create_app(settings, start_relay=False)
    statements = [0]
    event.listen(
        app.extensions["db_engine"],
        "before_cursor_execute",
        lambda *_: statements.__setitem__(0, statements[0] + 1),
    )
    with app.app_context():
        token = create_token(get_session(), "bench", "bench")
    client = app.test_client()
    started = time.perf_counter()
    eid, runs = build(
        client,
        app,
        {"Authorization": f"Bearer {token}"},
        args.observations,
        args.runs,
        args.checkpoints,
    )
    built = time.perf_counter() - started
    sign_in(client, token)
    all_runs = ",".join(map(str, runs))
    base = f"/v1/experiments/{eid}/analytics"
    targets = [
        ("page  /experiments", "/experiments"),
        ("page  /experiments/{id}", f"/experiments/{eid}"),
        ("page  /runs/{id}", f"/runs/{runs[0]}"),
        ("page  /compare?runs=(50)", f"/compare?runs={all_runs}"),
        ("page  /compare?experiments=(1)", f"/compare?experiments={eid}"),
        ("json  analytics/summary", f"{base}/summary"),
        ("json  analytics/history", f"{base}/history"),
        ("json  analytics/importance", f"{base}/importance"),
        ("json  analytics/importance?task=all", f"{base}/importance?task=all"),
        ("json  analytics/task_correlation", f"{base}/task_correlation"),
        ("json  analytics/suggestions", f"{base}/suggestions"),
        ("csv   analytics/observations.csv", f"{base}/observations.csv"),
        ("json  runs/{id}/analytics/curves", f"/v1/training_runs/{runs[0]}/analytics/curves"),
        ("json  analytics/curves?runs=(50)", f"/v1/analytics/curves?runs={all_runs}"),
    ]
    backend = app.extensions["db_engine"].dialect.name
    print(
        f"{backend}: {args.observations} observations, {args.runs} runs x {args.checkpoints} "
        f"checkpoints (built in {built:.1f} s); server time per request, in-process\n"
    )
    print(
        f"| {'request':<38} | {'first (ms)':>10} | {'median (ms)':>11} | {'SQL':>4} | "
        f"{'bytes':>9} |"
    )
    print(f"|{'-' * 40}|{'-' * 12}|{'-' * 13}|{'-' * 6}|{'-' * 11}|")
    worst = 0.0
    for label, url in targets:
        times = []
        for i in range(args.repeats + 1):
            statements[0] = 0
            t0 = time.perf_counter()
            response = client.get(url)
            body = response.get_data()
            times.append(time.perf_counter() - t0)
            assert response.status_code == 200, (url, response.status_code, body[:300])
            if i == 0:
                queries = statements[0]
        median = statistics.median(times[1:])
        worst = max(worst, median)
        print(
            f"| {label:<38} | {times[0] * 1000:>10.1f} | {median * 1000:>11.1f} | "
            f"{queries:>4} | {len(body):>9} |"
        )
    print(f"\nslowest median: {worst * 1000:.0f} ms (target < 1000 ms)")
    app.extensions["db_engine"].dispose()


if __name__ == "__main__":
    main()
