"""The slow fuzz configuration: schemathesis over every operation of the live API, as
``tests/api_tests/test_fuzz.py`` runs it but with many more examples and longer stateful
sequences, on SQLite and PostgreSQL. Prints one row per backend, then what schemathesis
reported for any backend that failed.

    python bench/fuzz.py [--examples 200] [--steps 50] [--seed N] [--backends sqlite,postgresql]

Needs Redis and (for the PostgreSQL row) PostgreSQL on 127.0.0.1, as the tests do. Exits 1 when
schemathesis found anything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import services  # noqa: E402
from tests.api_tests.test_fuzz import DOCUMENT  # noqa: E402
from tests.api_tests.test_fuzz import SLOW  # noqa: E402
from tests.api_tests.test_fuzz import FuzzConfig  # noqa: E402
from tests.api_tests.test_fuzz import documented_operations  # noqa: E402
from tests.api_tests.test_fuzz import live_api  # noqa: E402
from tests.api_tests.test_fuzz import run_schemathesis  # noqa: E402
from tests.api_tests.test_fuzz import successes  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=SLOW.max_examples)
    parser.add_argument("--steps", type=int, default=SLOW.max_steps)
    parser.add_argument("--seed", type=int, default=SLOW.seed)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    config = FuzzConfig(max_examples=args.examples, max_steps=args.steps, seed=args.seed)
    rows = []
    outputs = []
    with ExitStack() as stack:
        redis_url = services.REDIS_URL
        if not services.redis_answers(redis_url):
            redis_url = stack.enter_context(services.private_redis())
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="multitune-fuzz-")))
        for backend in args.backends.split(","):
            if backend == "sqlite":
                database_url = f"sqlite:///{root / 'fuzz.db'}"
            else:
                database_url = stack.enter_context(services.postgres_database())
            redis.Redis.from_url(redis_url).flushdb()
            started = time.monotonic()
            with live_api(root / backend, database_url, redis_url) as api:
                result, report = run_schemathesis(api, config, root / f"{backend}-schemathesis")
                documented = documented_operations(api) - {DOCUMENT}
                succeeded = len(documented & successes(api))
            seconds = time.monotonic() - started
            cases = report.get("test_cases", {})
            rows.append(
                (
                    backend,
                    f"{report.get('operations', {}).get('tested', 0)}/{len(documented)}",
                    f"{succeeded}/{len(documented)}",
                    str(cases.get("generated", 0)),
                    str(len(report.get("failures", [])) + len(report.get("errors", []))),
                    f"{seconds:.0f}",
                    str(report.get("seed")),
                )
            )
            if result.returncode != 0:
                outputs.append(f"--- {backend}\n{result.stdout[-30000:]}\n{result.stderr[-3000:]}")
    header = ("backend", "tested", "answered 2xx", "test cases", "failures", "seconds", "seed")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    print(
        f"schemathesis: {config.max_examples} examples, stateful sequences of {config.max_steps}"
    )
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for output in outputs:
        print(output)
    return 1 if outputs else 0


if __name__ == "__main__":
    sys.exit(main())
