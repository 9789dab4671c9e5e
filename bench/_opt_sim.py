"""Event-clock simulation of W asynchronous workers for ``bench/optimizer.py``.

A method hands out `Job`s; a job on fidelity ``s`` runs for ``cost`` time units (its cost).
When a worker frees up the method is asked again, with everything still running known to it
(its own pending list). A job is only started while the cost issued so far plus its cost fits
the budget, so every method spends at most the budget. The trace records, for each full-cost
result, the compute consumed so far: the sum over started jobs of their elapsed run time.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol


@dataclass
class Job:
    """One evaluation: ``assignments`` at fidelity ``s``, costing ``cost``; ``handle`` is the
    method's own bookkeeping."""

    assignments: dict[str, Any]
    s: float
    cost: float
    handle: Any = None
    start: float = 0.0


class Method(Protocol):
    def ask(self, k: int) -> list[Job]: ...

    def tell(self, job: Job, value: float | None) -> Job | None:
        """Record a result; may return the same worker's next job (a Hyperband rung)."""


@dataclass
class Trace:
    """Full-cost results in time order: (consumed cost, assignments, observed value)."""

    results: list[tuple[float, dict[str, Any], float]] = field(default_factory=list)
    evaluations: dict[float, int] = field(default_factory=dict)
    failures: int = 0
    ask_seconds: list[float] = field(default_factory=list)
    spent: float = 0.0
    #: When the last job finished; ``spent / (workers * clock)`` is the workers' utilization.
    clock: float = 0.0


def simulate(method: Method, evaluate: Any, budget: float, workers: int) -> Trace:
    """Run ``method`` until the budget is spent and every started job has finished."""
    trace = Trace()
    running: list[tuple[float, int, Job]] = []
    clock, issued, counter = 0.0, 0.0, 0
    starts: list[tuple[float, float]] = []
    closed = False

    def start(job: Job) -> bool:
        nonlocal issued, counter
        if issued + job.cost > budget + 1e-9:
            return False
        job.start = clock
        issued += job.cost
        counter += 1
        starts.append((clock, clock + job.cost))
        heapq.heappush(running, (clock + job.cost, counter, job))
        return True

    while True:
        free = workers - len(running)
        if free > 0 and not closed and issued < budget - 1e-9:
            began = time.perf_counter()
            jobs = method.ask(free)
            trace.ask_seconds.append((time.perf_counter() - began) / max(len(jobs), 1))
            started = [start(job) for job in jobs]
            if not jobs or not all(started):
                closed = True
        if not running:
            break
        clock, _, job = heapq.heappop(running)
        value = evaluate(job.assignments, job.s)
        trace.evaluations[job.s] = trace.evaluations.get(job.s, 0) + 1
        trace.failures += value is None
        if job.s == 1.0 and value is not None:
            consumed = sum(min(clock, end) - begin for begin, end in starts if begin < clock)
            trace.results.append((consumed, job.assignments, value))
        follow = method.tell(job, value)
        if follow is not None and not closed and not start(follow):
            closed = True
    trace.spent = issued
    trace.clock = clock
    return trace
