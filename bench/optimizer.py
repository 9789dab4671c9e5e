"""Compare multitune's multitask BO with the leading multi-fidelity methods at equal cost.

Every (problem, method, workers, seed) run simulates asynchronous workers (`_opt_sim`) until
the problem's budget, in full-cost units, is spent. Problems (`_opt_problems`): LCBench's
surrogate on six OpenML instances (``lcbench``; read from ``../shared/data/lcbench``, skipped
with a message when absent) and Hartmann-6 with a cheap-task optimum shifted by 0, a small
and a large amount (``shifted``); ``classic`` adds the earlier Hartmann, Branin and mixed
problems. Methods (`_opt_methods`, `_opt_anchors`): multitune (``mtbo``) and the anchors,
random search, Optuna TPE + Hyperband, DEHB, Syne Tune's MOBSTER and Hyper-Tune, and SMAC3's
multi-fidelity facade.

For each problem and worker count it prints, per method, the final regret (of the best
full-cost observed configuration: median and IQR over seeds) and the cost-to-target: the
compute consumed when that configuration first comes within the *target*, the final regret
the best anchor (the one with the lowest median) reaches in its median run. A seed that never
gets there counts as infinite (``>budget``); medians are the lower median (the 5th of 10), so
the best anchor reaches its own target in at least half its seeds. The median regret of the
incumbent after a quarter, half and three quarters of the budget shows when each method gets
there (``inf`` before its first full-cost result). For an LCBench instance it also prints how
faithfully each cheaper task ranks configurations (`_opt_lcbench.rank_agreement`). Then the
ratio of ``mtbo``'s median cost-to-target to the best anchor's (goal: at most 0.5), and a
summary against the goals: that ratio on the median LCBench instance and on each shifted
problem, at each worker count, and ``mtbo``'s median final regret at most the best anchor's on
at least 5 of the 6 LCBench instances.

Run: ``python bench/optimizer.py`` (10 seeds, 4 and 16 workers, LCBench and the shifted
problems, 2 processes x 1 thread); ``--quick`` for a few-minute development run (3 seeds,
4 workers, two LCBench instances and the large shift).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

# One BLAS thread per process: the processes already fill the cores, and SciPy's threaded
# BLAS (Syne Tune's GP fits) then spent most of its time waiting (6x the single-thread CPU).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

import _opt_lcbench  # noqa: E402
from _opt_methods import METHODS  # noqa: E402
from _opt_methods import MULTITUNE  # noqa: E402
from _opt_methods import make_method  # noqa: E402
from _opt_problems import FIDELITIES  # noqa: E402
from _opt_problems import GROUPS  # noqa: E402
from _opt_problems import expand  # noqa: E402
from _opt_problems import problem  # noqa: E402
from _opt_sim import simulate  # noqa: E402

from services.suggester.optimizer import AcquisitionSettings  # noqa: E402
from services.suggester.optimizer import BayesSettings  # noqa: E402

DEFAULT_METHODS = "mtbo,random,tpe_hb,dehb,mobster,hypertune,smac"
#: Relative compute per run, so that the heaviest start first and the processes end together.
_WEIGHT = {"mtbo": 10, "mtbo_restart": 10, "mtbo_ckpt": 12, "sfbo": 3, "mobster": 3}
_WEIGHT |= {"hypertune": 3, "smac": 2, "gp": 2, "tpe_hb": 1}
#: The ratio goal.
GOAL = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, W=4, 3 problems")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--problems", help="names or families: lcbench, shifted, classic")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"of {','.join(METHODS)}")
    parser.add_argument("--workers", help="simulated asynchronous workers, e.g. 4,16")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--model", default="task", help="multitune model: task | fidelity | lcm")
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument("--raw-samples", type=int, default=256)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a BayesSettings field, e.g. policy.promote=false (repeatable)",
    )
    parser.add_argument("--json", help="also write every run's result to this file")
    parser.add_argument(
        "--reuse", help="take runs found in this earlier --json file instead of re-running them"
    )
    args = parser.parse_args()
    quick = args.quick
    seeds = args.seeds or (3 if quick else 10)
    default_problems = "lcbench-3945,lcbench-7593,shift_large" if quick else "lcbench,shifted"
    names = expand(args.problems or default_problems)
    workers = [int(w) for w in (args.workers or ("4" if quick else "4,16")).split(",")]
    methods = args.methods.split(",")
    reason = _opt_lcbench.missing()
    if reason is not None and any(n.startswith("lcbench-") for n in names):
        print(f"# skipping LCBench: {reason}")
        names = [n for n in names if not n.startswith("lcbench-")]
    settings = BayesSettings(
        model=args.model,
        acquisition=AcquisitionSettings(num_restarts=args.restarts, raw_samples=args.raw_samples),
    )
    for item in args.set:
        settings = _override(settings, item)
    runs = [
        (p, m, w, seed, settings)
        for p in names
        for w in workers
        for m in methods
        for seed in range(seeds)
    ]
    results = []
    if args.reuse:
        earlier = {_key(r): r for r in json.loads(Path(args.reuse).read_text())["runs"]}
        results = [earlier[_key(r)] for r in runs if _key(r) in earlier]
        runs = [r for r in runs if _key(r) not in earlier]
        print(f"# reusing {len(results)} runs from {args.reuse}")
    runs.sort(key=lambda r: -_WEIGHT.get(r[1], 0.5) * r[2] ** 0.5)
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.processes, initializer=_quiet) as pool:
        for i, result in enumerate(pool.map(_run, runs, chunksize=1)):
            results.append(result)
            if (i + 1) % max(len(runs) // 20, 1) == 0:
                elapsed = time.perf_counter() - began
                print(f"# {i + 1}/{len(runs)} runs, {elapsed:.0f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - began
    cpu = sum(r["cpu"] for r in results[-len(runs) :]) if runs else 0.0
    print(
        f"# {len(runs)} runs here, {wall:.0f} s wall, {cpu:.0f} CPU s in the runs (about "
        f"{cpu / args.processes:.0f} s on an unloaded machine), "
        f"{args.processes} processes x 1 thread, "
        f"{seeds} seeds, workers {','.join(map(str, workers))}, model={args.model}, "
        f"restarts={args.restarts}, raw_samples={args.raw_samples}"
        + "".join(f", {item}" for item in args.set)
    )
    summary = []
    for name in names:
        for w in workers:
            rows = [r for r in results if r["problem"] == name and r["workers"] == w]
            summary.append(_print_problem(name, w, methods, rows))
    _print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": results, "wall": wall}, default=str))


def _key(run: Any) -> tuple[str, str, int, int]:
    """(problem, method, workers, seed) of a run tuple or a result."""
    if isinstance(run, dict):
        return run["problem"], run["method"], run["workers"], run["seed"]
    return run[0], run[1], run[2], run[3]


def _override(settings: Any, item: str) -> Any:
    """``settings`` with the dotted field of ``FIELD=VALUE`` replaced (typed like the old)."""
    path, text = item.split("=", 1)
    head, _, rest = path.partition(".")
    old = getattr(settings, head)
    if rest:
        return dataclasses.replace(settings, **{head: _override(old, f"{rest}={text}")})
    value: Any = text
    if isinstance(old, bool):
        value = text.lower() in ("1", "true", "yes")
    elif isinstance(old, int | float):
        value = type(old)(text)
    return dataclasses.replace(settings, **{head: value})


def _quiet() -> None:
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")


def _run(run: tuple[str, str, int, int, BayesSettings]) -> dict[str, Any]:
    """One seeded run; the trajectory of the incumbent's regret against consumed cost."""
    name, method_name, workers, seed, settings = run
    prob = problem(name)
    rng = np.random.default_rng(10_000 + seed)
    began, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as workdir:
        method = make_method(method_name, prob, seed, settings, workers, Path(workdir), rng)
        trace = simulate(method, lambda a, s: prob.evaluate(a, s, rng), prob.budget, workers)
    best, regret = math.inf, math.inf
    path: list[tuple[float, float]] = []
    for consumed, assignments, value in trace.results:
        if value < best:
            best, regret = value, prob.regret(assignments)
            path.append((consumed, regret))
    sources = getattr(method, "sources", {})
    continued = sum(
        o.continues is not None for o in getattr(method, "observations", []) if not o.failed
    )
    return {
        "problem": name,
        "method": method_name,
        "workers": workers,
        "seed": seed,
        "regret": regret,
        "path": path,
        "evaluations": {str(s): n for s, n in trace.evaluations.items()},
        "failures": trace.failures,
        "continued": continued,
        "utilization": trace.spent / (workers * trace.clock) if trace.clock else 0.0,
        "spread": float(np.median(method.spread)) if getattr(method, "spread", None) else None,
        "sources": sources,
        "ask_mean": float(np.mean(trace.ask_seconds)) if trace.ask_seconds else 0.0,
        "ask_max": max(trace.ask_seconds, default=0.0),
        "wall": time.perf_counter() - began,
        "cpu": time.process_time() - cpu,
    }


def _lower(values: list[float], q: float) -> float:
    return float(np.quantile(np.array(values, dtype=float), q, method="lower"))


def _reach(path: list[tuple[float, float]], level: float) -> float:
    """Consumed cost when the incumbent first has regret at most ``level`` (inf if never)."""
    tolerance = 1e-9 * max(abs(level), 1.0)
    return next((c for c, r in path if r <= level + tolerance), math.inf)


def _regret_at(path: list[tuple[float, float]], cost: float) -> float:
    """The incumbent's regret once ``cost`` is consumed (inf before the first full-cost result)."""
    return next((r for c, r in reversed(path) if c <= cost + 1e-9), math.inf)


def _spread(rows: list[dict[str, Any]]) -> str:
    values = [r["spread"] for r in rows if r.get("spread") is not None]
    return f"{np.median(values):.2f}" if values else ""


def _fmt(value: float, budget: float) -> str:
    return f">{budget:g}" if math.isinf(value) else f"{value:.2f}"


def _print_problem(
    name: str, workers: int, methods: list[str], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """The per-method table of one problem at one worker count; its summary row."""
    prob = problem(name)
    budget = prob.budget
    by_method = {m: [r for r in rows if r["method"] == m] for m in methods}
    by_method = {m: v for m, v in by_method.items() if v}
    medians = {m: _lower([r["regret"] for r in v], 0.5) for m, v in by_method.items()}
    anchors = [m for m in by_method if m not in MULTITUNE]
    best = min(anchors, key=lambda m: medians[m]) if anchors else None
    level = medians[best] if best else 0.0
    print(f"\n## {name}, {workers} workers: budget {budget:g}, range {prob.span:.4g}")
    if best:
        print(f"target: regret <= {level:.4g}, the median final regret of {best}")
    if name.startswith("lcbench-"):
        agreement = _opt_lcbench.rank_agreement(name.removeprefix("lcbench-"))
        print(
            "rank correlation with 52 epochs (Spearman, 2,048 configurations): "
            + ", ".join(f"{_opt_lcbench.EPOCHS[s]} epochs {r:.2f}" for s, r in agreement.items())
        )
    print(
        "| method | seeds | final regret median [IQR] | cost-to-target: reached, median [IQR] "
        "| regret at 1/4, 1/2, 3/4 budget | evals at s=1/8,1/4,1/2,1 | continued | busy | spread "
        "| s/ask mean / max | CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    costs: dict[str, float] = {}
    for m, v in by_method.items():
        regrets = [r["regret"] for r in v]
        reach = [_reach(r["path"], level) for r in v]
        costs[m] = _lower(reach, 0.5)
        reached = sum(not math.isinf(c) for c in reach)
        during = ", ".join(
            f"{_lower([_regret_at(r['path'], q * budget) for r in v], 0.5):.3g}"
            for q in (0.25, 0.5, 0.75)
        )
        evals = "/".join(
            f"{np.mean([r['evaluations'].get(str(s), 0) for r in v]):.1f}" for s in FIDELITIES
        )
        print(
            f"| {m} | {len(v)} | {_lower(regrets, 0.5):.4g} [{_lower(regrets, 0.25):.4g}, "
            f"{_lower(regrets, 0.75):.4g}] | {reached}/{len(v)}, {_fmt(costs[m], budget)} "
            f"[{_fmt(_lower(reach, 0.25), budget)}, {_fmt(_lower(reach, 0.75), budget)}] | "
            f"{during} | {evals} | {np.mean([r['continued'] for r in v]):.1f} | "
            f"{np.mean([r.get('utilization', 0.0) for r in v]):.2f} | {_spread(v)} | "
            f"{np.mean([r['ask_mean'] for r in v]):.3f} / {max(r['ask_max'] for r in v):.2f} | "
            f"{np.mean([r['cpu'] for r in v]):.0f} |"
        )
    row: dict[str, Any] = {"problem": name, "workers": workers, "best": best, "level": level}
    if best and "mtbo" in costs:
        ours, theirs = costs["mtbo"], costs[best]
        ratio = ours / theirs if theirs > 0 else math.inf
        row.update(ratio=ratio, ours=ours, theirs=theirs, regret=medians["mtbo"])
        text = f"> {budget / theirs:.3g}" if math.isinf(ours) else f"{ratio:.3g}"
        verdict = "met" if ratio <= GOAL else "missed"
        print(
            f"- {name}, W={workers}: cost-to-target mtbo / {best} = {text} (goal <= {GOAL}: "
            f"{verdict}); final regret mtbo {medians['mtbo']:.4g} vs {level:.4g}"
        )
    return row


def _print_summary(summary: list[dict[str, Any]]) -> None:
    rows = [r for r in summary if "ratio" in r]
    if not rows:
        return
    print("\n## Summary against the goals")
    print(
        "| problem | W | best anchor | target regret | mtbo cost | anchor cost | ratio "
        "| mtbo final regret |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        budget = problem(r["problem"]).budget
        ratio = f"> {budget / r['theirs']:.3g}" if math.isinf(r["ours"]) else f"{r['ratio']:.3g}"
        print(
            f"| {r['problem']} | {r['workers']} | {r['best']} | {r['level']:.4g} | "
            f"{_fmt(r['ours'], budget)} | {_fmt(r['theirs'], budget)} | {ratio} | "
            f"{r['regret']:.4g} |"
        )
    for w in sorted({r["workers"] for r in rows}):
        lc = [r for r in rows if r["workers"] == w and r["problem"] in GROUPS["lcbench"]]
        if lc:
            ratios = sorted(r["ratio"] for r in lc)
            median = ratios[(len(ratios) - 1) // 2]
            wins = sum(r["regret"] <= r["level"] for r in lc)
            print(
                f"- W={w}: median LCBench ratio {median:.3g} over {len(lc)} instances "
                f"(goal <= {GOAL}: {'met' if median <= GOAL else 'missed'}); final regret <= "
                f"the best anchor's on {wins}/{len(lc)} (goal >= 5 of 6: "
                f"{'met' if wins >= 5 and len(lc) >= 6 else 'missed'})"
            )
        for r in rows:
            if r["workers"] == w and r["problem"] in GROUPS["shifted"]:
                verdict = "met" if r["ratio"] <= GOAL else "missed"
                print(f"- W={w}: {r['problem']} ratio {r['ratio']:.3g} ({verdict})")


if __name__ == "__main__":
    main()
