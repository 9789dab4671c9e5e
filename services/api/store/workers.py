"""Which objectives the live workers provide, from their adverts in Redis.

The adverts are read with `shared.workers.live_adverts`. `check_objective` is the one rule
for an experiment that names an objective:

* a built-in objective (`OBJECTIVE_NAMES`, which every worker provides) is always available;
* another one is refused (400 naming ``objective.name``) when workers are live and none of them
  provides it;
* with no live worker, or Redis not answering, the experiment is accepted and waits, and
  `objective_status` (shown in its JSON and on its page) says why.

`check_continuable` applies `shared.workers.continuable` to a run that would continue another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
from flask import current_app
from flask import g

from services.api.errors import invalid
from shared.messages import WorkerAdvert
from shared.names import OBJECTIVE_NAMES
from shared.workers import continuable
from shared.workers import live_adverts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectiveStatus:
    """Whether a worker can train the objective now: True, False (no live worker provides
    it), or None (unknown: Redis did not answer); ``reason`` says why when not True."""

    available: bool | None
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"object": "objective_status", "available": self.available, "reason": self.reason}


def _adverts() -> list[WorkerAdvert] | None:
    """`live_adverts` of the app's Redis, read once per request; None when Redis fails."""
    if "worker_adverts" not in g:
        try:
            g.worker_adverts = live_adverts(current_app.extensions["redis"])
        except (redis.RedisError, OSError) as exc:
            log.warning("cannot read the worker adverts: %s", exc)
            g.worker_adverts = None
    adverts: list[WorkerAdvert] | None = g.worker_adverts
    return adverts


def _providers(name: str, adverts: list[WorkerAdvert]) -> list[str]:
    return sorted(a.name for a in adverts if name in a.objectives)


def objective_status(name: str) -> ObjectiveStatus:
    """Can a live worker train objective ``name`` now (see the module's rule)?"""
    if name in OBJECTIVE_NAMES:
        return ObjectiveStatus(True)
    adverts = _adverts()
    if adverts is None:
        return ObjectiveStatus(
            None,
            f"unknown whether a worker provides objective {name!r}: the worker adverts "
            "could not be read from Redis; runs wait for a worker that provides it",
        )
    if not adverts:
        return ObjectiveStatus(
            False,
            f"no live worker provides objective {name!r} (no worker is running); "
            "runs wait until one that provides it starts",
        )
    if _providers(name, adverts):
        return ObjectiveStatus(True)
    return ObjectiveStatus(False, f"no live worker provides objective {name!r}")


def check_objective(name: str) -> ObjectiveStatus:
    """`objective_status`, or 400 naming ``objective.name`` when workers are live and none of
    them provides ``name``."""
    status = objective_status(name)
    adverts = _adverts() if status.available is False else None
    if adverts:
        offered = sorted({o for a in adverts for o in a.objectives} | set(OBJECTIVE_NAMES))
        raise invalid(
            "objective.name",
            f"no live worker provides objective {name!r}; the live workers provide: "
            f"{', '.join(offered)}",
        )
    return status


def check_continuable(name: str, field: str) -> None:
    """400 naming ``field`` unless the live workers say runs of objective ``name`` can continue
    from a cheaper run's checkpoint (`shared.workers.continuable`). When that is unknown (Redis
    does not answer) the run is refused too: restarting is always safe, continuing an objective
    whose schedule depends on the run's length is not."""
    adverts = _adverts()
    if adverts is None:
        raise invalid(
            field,
            f"cannot tell whether runs of objective {name!r} can continue: the worker adverts "
            "could not be read from Redis",
        )
    if not continuable(name, adverts):
        raise invalid(
            field,
            f"runs of objective {name!r} cannot continue from a checkpoint: no live worker "
            "provides it, or not every one that does declares it continuable",
        )


def status_json(definition: dict[str, Any]) -> dict[str, Any] | None:
    """An experiment's ``objective_status`` (None without a managed objective)."""
    objective = definition.get("objective")
    if not objective:
        return None
    return objective_status(str(objective["name"])).as_json()
