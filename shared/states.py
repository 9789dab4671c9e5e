"""The states of experiments, suggestions and training runs, and the list filters over them.

Every process names a state through these enums: the API stores their values, the suggester and
workers compare against them. They are `StrEnum`s, so a member equals its wire string, is
stored as that string and serializes to it in JSON. The transitions themselves are enforced by
the API (`services.api.store`), the one writer of the store.
"""

from __future__ import annotations

from enum import StrEnum


class ExperimentState(StrEnum):
    """``active`` until its budget is spent (``completed``) or a user pauses, stops or deletes
    it. ``paused``, ``stopped`` and ``completed`` are multitune additions to SigOpt's two."""

    ACTIVE = "active"
    PAUSED = "paused"
    STOPPED = "stopped"
    COMPLETED = "completed"
    DELETED = "deleted"


class SuggestionState(StrEnum):
    """``open`` until a live observation references it, then ``closed``."""

    OPEN = "open"
    CLOSED = "closed"


class RunState(StrEnum):
    """A training run: ``queued`` for a worker, ``running`` on one, ``paused`` with its
    experiment, or finished (`FINISHED_RUN_STATES`)."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    LOST = "lost"
    STOPPED = "stopped"


#: Runs a worker holds or will pick up.
IN_FLIGHT_RUN_STATES = frozenset({RunState.QUEUED, RunState.RUNNING})
#: Runs that will never train again.
FINISHED_RUN_STATES = frozenset(
    {RunState.COMPLETED, RunState.FAILED, RunState.LOST, RunState.STOPPED}
)
#: Final states a result may record (``POST /training_runs/{id}/result``).
RESULT_RUN_STATES = frozenset({RunState.COMPLETED, RunState.FAILED, RunState.LOST})


class StateFilter(StrEnum):
    """List filters that are not a single state (``?state=all``, ``?state=unfinished``)."""

    ALL = "all"
    #: Training runs that are queued, running or paused.
    UNFINISHED = "unfinished"
