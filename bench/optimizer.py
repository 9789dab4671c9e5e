"""Compare multitune's multitask BO with baselines at equal total cost (see `_opt_problems`).

Every (problem, method, seed) run simulates 4 asynchronous workers (`_opt_sim`) until the
problem's budget (in full-cost evaluations) is spent. For each problem and method it prints:

* final regret of the best full-cost observed configuration: median and IQR;
* evaluations per fidelity, failures, and the optimizer's seconds per suggestion (mean, max);
* per target level (``--targets``: a regret of at most 1% and 0.1% of the function's range),
  cost-to-target: the compute consumed when the best full-cost observation first has regret
  within the target, median and IQR over seeds, an unreached seed counting as infinite (shown
  as ``>budget``), and the fraction of seeds that reach it.

Random search and TPE + Hyperband are cheap to run, so their cost-to-target is also measured
on a second run with ``--extend`` times the budget (rows ``random xN``, ``tpe_hb xN``); their
final regret always comes from the equal-budget run. For random search the exact law is also
known: with ``p`` the share of the space within the target (estimated from ``--mc`` uniform
samples), its median cost-to-target is ``ln 2 / p`` full evaluations one at a time (row
``random (law)``) and, with ``W`` workers busy, ``W`` times the rounds of ``W`` results its
median number of draws needs (row ``random (law, W=4)``).

Then, per problem and target, the cost-to-target ratio of ``mtbo`` to each baseline: the ratio
of medians (using the extended runs and the law where they exist; ``<=`` when the baseline's
median is still censored, so the true ratio is smaller) and the paired median ratio over seeds
where both reach the target. The goals are <= 0.2 against random search and <= 0.5 against
TPE + HB. A last line gives the floor of the ratio to ``random (law)``: with ``W`` workers
busy, no method sees a full-cost result before ``W`` cost units (``W`` one-unit runs started
together), so a loose target that random search reaches within about ``5 W`` evaluations
cannot show a 5x gap at ``W`` workers (on Branin at 1%: 11.9 evaluations, floor 0.34 at
``W = 4``); hence the tighter level, and ``--workers 1`` for the one-at-a-time comparison.

multitune runs with the library's default settings (``--restarts``/``--raw-samples`` change the
acquisition effort, ``--model fidelity`` or ``--model lcm`` the surrogate).

Run: ``python bench/optimizer.py`` (10 seeds, all problems, 2 processes x 1 thread, 10 to 30
minutes on the 2-core VM, whose speed varies); ``--seeds 2 --problems branin`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

from _opt_methods import METHODS  # noqa: E402
from _opt_methods import make_method  # noqa: E402
from _opt_problems import FIDELITIES  # noqa: E402
from _opt_problems import problems  # noqa: E402
from _opt_sim import simulate  # noqa: E402

from services.suggester.optimizer import AcquisitionSettings  # noqa: E402
from services.suggester.optimizer import BayesSettings  # noqa: E402
from shared.design import random_point  # noqa: E402
from shared.space import ExperimentSpec  # noqa: E402

#: Heaviest first, so the two processes finish together.
_WEIGHT = {"mtbo": 8, "sfbo": 2, "gp": 2, "tpe_hb": 1, "random": 0}
#: Baselines that are also run with ``--extend`` times the budget.
_EXTENDED = ("random", "tpe_hb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", default="hartmann,branin,mixed")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4, help="simulated asynchronous workers")
    parser.add_argument("--extend", type=int, default=4, help="budget factor of extended runs")
    parser.add_argument("--mc", type=int, default=200_000, help="samples for the random law")
    parser.add_argument(
        "--targets", default="0.01,0.001", help="target regrets, as fractions of the range"
    )
    parser.add_argument(
        "--model", default="task", help="multitune model kind: task | fidelity | lcm"
    )
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument("--raw-samples", type=int, default=256)
    parser.add_argument("--json", help="also write every run's result to this file")
    args = parser.parse_args()
    settings = BayesSettings(
        model=args.model,
        acquisition=AcquisitionSettings(num_restarts=args.restarts, raw_samples=args.raw_samples),
    )
    names, methods = args.problems.split(","), args.methods.split(",")
    targets = tuple(float(t) for t in args.targets.split(","))
    runs: list[tuple[Any, ...]] = [
        (p, m, seed, 1, args.workers, settings, targets)
        for p in names
        for m in methods
        for seed in range(args.seeds)
    ]
    runs += [
        (p, m, seed, args.extend, args.workers, settings, targets)
        for p in names
        for m in methods
        if m in _EXTENDED and args.extend > 1
        for seed in range(args.seeds)
    ]
    runs.sort(key=lambda r: -_WEIGHT.get(r[1], 0) * r[3])
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.processes, initializer=_quiet) as pool:
        jobs = [(p, args.mc, targets) for p in names]
        laws = pool.map(_random_law, jobs) if "random" in methods else []
        results = list(pool.map(_run, runs))
        law = dict(laws)
    print(
        f"# {len(runs)} runs, {time.perf_counter() - began:.0f} s wall, "
        f"{args.processes} processes x 1 thread, W={args.workers}, model={args.model}, "
        f"restarts={args.restarts}, raw_samples={args.raw_samples}, extend={args.extend}"
    )
    _print_tables(results, law, names, methods, args.extend, targets, args.workers)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": results, "law": law}, default=str))


def _quiet() -> None:
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")


def _run(
    run: tuple[str, str, int, int, int, BayesSettings, tuple[float, ...]],
) -> dict[str, Any]:
    name, method_name, seed, extend, workers, settings, targets = run
    problem = problems()[name]
    rng = np.random.default_rng(10_000 + seed)
    method = make_method(method_name, problem, seed, settings)
    began = time.perf_counter()
    budget = problem.budget * extend
    trace = simulate(method, lambda a, s: problem.evaluate(a, s, rng), budget, workers)
    best, best_regret = math.inf, math.inf
    reached = {str(target): math.inf for target in targets}
    for consumed, assignments, value in trace.results:
        if value < best:
            best, best_regret = value, problem.regret(assignments)
            for target in targets:
                if best_regret <= target * problem.span and math.isinf(reached[str(target)]):
                    reached[str(target)] = consumed
    return {
        "problem": name,
        "method": method_name if extend == 1 else f"{method_name} x{extend}",
        "seed": seed,
        "reached": reached,
        "regret": best_regret,
        "evaluations": trace.evaluations,
        "failures": trace.failures,
        "ask_mean": float(np.mean(trace.ask_seconds)) if trace.ask_seconds else 0.0,
        "ask_max": max(trace.ask_seconds, default=0.0),
        "wall": time.perf_counter() - began,
    }


def _random_law(
    job: tuple[str, int, tuple[float, ...]],
) -> tuple[str, dict[float, tuple[int, int]]]:
    """Per target, (hits within it, samples) of uniform full-cost random search on a problem."""
    name, samples, targets = job
    problem = problems()[name]
    spec = ExperimentSpec.from_json(problem.definition(multitask=False))
    rng = np.random.default_rng(0)
    regrets = np.array([problem.regret(random_point(spec, rng)[0]) for _ in range(samples)])
    return name, {t: (int((regrets <= t * problem.span).sum()), samples) for t in targets}


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    q = np.quantile(np.array(values, dtype=float), [0.5, 0.25, 0.75], method="lower")
    return float(q[0]), float(q[1]), float(q[2])


def _cost(value: float, budget: float) -> str:
    return f">{budget:g}" if math.isinf(value) else f"{value:.2f}"


def _print_tables(
    results: list[dict[str, Any]],
    law: dict[str, dict[float, tuple[int, int]]],
    names: list[str],
    methods: list[str],
    extend: int,
    targets: tuple[float, ...],
    workers: int,
) -> None:
    catalog = problems()
    labels = methods + [f"{m} x{extend}" for m in methods if m in _EXTENDED and extend > 1]
    for name in names:
        problem = catalog[name]
        by_label = {
            label: rows
            for label in labels
            if (rows := [r for r in results if r["problem"] == name and r["method"] == label])
        }
        print(f"\n## {name}: budget {problem.budget:g}, range {problem.span:.4g}")
        print(
            "| method | seeds | final regret median [IQR] | evals at s=1/8,1/4,1/2,1 | failures "
            "| s/suggestion mean / max | wall s |"
        )
        print("|---|---|---|---|---|---|---|")
        for label, rows in by_label.items():
            regret = _quantiles([r["regret"] for r in rows])
            evals = "/".join(
                f"{np.mean([r['evaluations'].get(s, 0) for r in rows]):.1f}" for s in FIDELITIES
            )
            regret_text = (
                "(see equal budget)"
                if " x" in label
                else f"{regret[0]:.4g} [{regret[1]:.4g}, {regret[2]:.4g}]"
            )
            print(
                f"| {label} | {len(rows)} | {regret_text} | {evals} | "
                f"{np.mean([r['failures'] for r in rows]):.1f} | "
                f"{np.mean([r['ask_mean'] for r in rows]):.3f} / "
                f"{max(r['ask_max'] for r in rows):.2f} | "
                f"{np.mean([r['wall'] for r in rows]):.0f} |"
            )
        for target in targets:
            law_hits = law.get(name, {}).get(target)
            _print_target(problem, by_label, law_hits, extend, target, workers)


def _print_target(
    problem: Any,
    by_label: dict[str, list[dict[str, Any]]],
    law: tuple[int, int] | None,
    extend: int,
    target: float,
    workers: int,
) -> None:
    """Cost-to-target rows and ratios at one target level."""
    key = str(target)
    print(f"\n{problem.name}, target regret <= {target:g} x range = {target * problem.span:.4g}:")
    print("| method | reached | cost-to-target median [IQR] |")
    print("|---|---|---|")
    medians: dict[str, tuple[float, bool]] = {}
    for label, rows in by_label.items():
        budget = problem.budget * (extend if " x" in label else 1)
        cost = _quantiles([r["reached"][key] for r in rows])
        medians[label] = (cost[0] if not math.isinf(cost[0]) else budget, math.isinf(cost[0]))
        reached = sum(not math.isinf(r["reached"][key]) for r in rows)
        print(
            f"| {label} | {reached}/{len(rows)} | {_cost(cost[0], budget)} "
            f"[{_cost(cost[1], budget)}, {_cost(cost[2], budget)}] |"
        )
    if law is not None:
        hits, samples = law
        median = math.log(2) * samples / max(hits, 1)
        medians["random (law)"] = (median, hits == 0)
        print(f"| random (law) | p = {hits}/{samples} | {'>' if hits == 0 else ''}{median:.3g} |")
        if workers > 1 and hits:
            parallel = _parallel_law(hits / samples, workers)
            medians[f"random (law, W={workers})"] = (parallel, False)
            print(f"| random (law, W={workers}) | | {parallel:.3g} |")
    _print_ratios(problem.name, medians, by_label, extend, key)
    if workers > 1 and "random (law)" in medians:
        law_median = medians["random (law)"][0]
        print(
            f"- {problem.name}: floor: with {workers} workers busy, the first full-cost result "
            f"comes after at least {workers} cost units, {workers / law_median:.3g} x random (law)"
        )


def _parallel_law(p: float, workers: int) -> float:
    """Median cost-to-target of full-cost random search with ``workers`` busy workers.

    Results arrive in rounds of ``workers``, the ``n``-th after ``workers * ceil(n / workers)``
    cost units; the target is first hit at the ``n``-th draw with ``P(N <= n) = 1 - (1-p)^n``.
    """
    draws = math.ceil(math.log(0.5) / math.log1p(-p))
    return float(workers * math.ceil(draws / workers))


def _print_ratios(
    name: str,
    medians: dict[str, tuple[float, bool]],
    by_label: dict[str, list[dict[str, Any]]],
    extend: int,
    key: str,
) -> None:
    if "mtbo" not in medians:
        return
    ours, censored = medians["mtbo"]
    goals = {"random": 0.2, "tpe_hb": 0.5}
    baselines = [label for label in medians if label.startswith("random (law")]
    for baseline in (*baselines, f"random x{extend}", f"tpe_hb x{extend}", "sfbo", "gp"):
        if baseline not in medians:
            continue
        theirs, bound = medians[baseline]
        if censored:
            ratio = "n/a (mtbo median not reached)"
        else:
            ratio = f"{'<= ' if bound else ''}{ours / theirs:.3g}"
        goal = goals.get(baseline.split(" ")[0])
        verdict = "" if goal is None else f" (goal <= {goal})"
        paired = _paired(by_label, baseline, key)
        print(f"- {name}: cost-to-target mtbo / {baseline} = {ratio}{verdict}; {paired}")


def _paired(by_label: dict[str, list[dict[str, Any]]], baseline: str, key: str) -> str:
    ours = {r["seed"]: r["reached"][key] for r in by_label["mtbo"]}
    ratios = [
        ours[r["seed"]] / r["reached"][key]
        for r in by_label.get(baseline, [])
        if not math.isinf(ours.get(r["seed"], math.inf)) and not math.isinf(r["reached"][key])
    ]
    if not ratios:
        return "no paired seed reaches the target"
    return f"paired median {np.median(ratios):.3f} over {len(ratios)} seeds where both reach"


if __name__ == "__main__":
    main()
