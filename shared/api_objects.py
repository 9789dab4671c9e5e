"""Typed, read-only views of the API's JSON objects, for the services that read them over HTTP.

The suggester and the workers read experiments, observations, suggestions and training runs
through these views instead of indexing dicts: a field that `services.api.serialize` renames,
drops or retypes fails where the JSON is parsed, with one `ApiObjectError` that names the object
and the field (``training_run.heartbeat: missing``). Each view holds only what those services
read; other fields are ignored. States are parsed into the enums of `shared.states`.

The functions at the end are the typed reads and writes over an `ApiClient` that the services
use; they add no HTTP behaviour of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from enum import StrEnum
from typing import TYPE_CHECKING
from typing import Any
from typing import Self
from typing import TypeVar

from shared.space import ExperimentSpec
from shared.states import ExperimentState
from shared.states import RunState
from shared.states import StateFilter
from shared.states import SuggestionState

if TYPE_CHECKING:
    from shared.api_client import ApiClient

E = TypeVar("E", bound=StrEnum)


class ApiObjectError(ValueError):
    """API JSON without a field a view needs, or with a value of the wrong type."""


class _Fields:
    """Reads the fields of one JSON object; errors name ``<object>.<field>``."""

    def __init__(self, where: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise ApiObjectError(f"{where}: expected an object, got {type(data).__name__}")
        self._where = where
        self._data: Mapping[str, Any] = data

    def whole(self) -> dict[str, Any]:
        return dict(self._data)

    def _get(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise ApiObjectError(f"{self._where}.{name}: missing") from None

    def _wrong(self, name: str, expected: str, value: object) -> ApiObjectError:
        return ApiObjectError(f"{self._where}.{name}: expected {expected}, got {value!r}")

    def id(self, name: str) -> int:
        """An object id: a string of digits (as the API writes them) or an integer."""
        value = self._get(name)
        if isinstance(value, str) and value.isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._wrong(name, "an id", value)

    def optional_id(self, name: str) -> int | None:
        return None if self._get(name) is None else self.id(name)

    def integer(self, name: str) -> int:
        value = self._get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._wrong(name, "an integer", value)

    def number(self, name: str) -> float:
        value = self._get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise self._wrong(name, "a number", value)

    def optional_number(self, name: str) -> float | None:
        return None if self._get(name) is None else self.number(name)

    def string(self, name: str) -> str:
        value = self._get(name)
        if isinstance(value, str):
            return value
        raise self._wrong(name, "a string", value)

    def optional_string(self, name: str) -> str | None:
        return None if self._get(name) is None else self.string(name)

    def boolean(self, name: str) -> bool:
        value = self._get(name)
        if isinstance(value, bool):
            return value
        raise self._wrong(name, "a boolean", value)

    def mapping(self, name: str) -> dict[str, Any]:
        value = self._get(name)
        if isinstance(value, Mapping):
            return dict(value)
        raise self._wrong(name, "an object", value)

    def state(self, name: str, states: type[E]) -> E:
        value = self._get(name)
        try:
            return states(value)
        except ValueError:
            raise self._wrong(name, f"a {states.__name__}", value) from None

    def nested(self, name: str) -> _Fields:
        return _Fields(f"{self._where}.{name}", self._get(name))

    def optional_nested(self, name: str) -> _Fields | None:
        return None if self._get(name) is None else self.nested(name)

    def items(self, name: str) -> list[_Fields]:
        value = self._get(name)
        if not isinstance(value, list):
            raise self._wrong(name, "a list", value)
        return [_Fields(f"{self._where}.{name}[{i}]", item) for i, item in enumerate(value)]

    def task(self) -> str | None:
        """The name of the ``task`` reference (``{"object": "task", "name", "cost"}``), or None
        for a single-task experiment."""
        task = self.optional_nested("task")
        return None if task is None else task.string("name")


@dataclass(frozen=True)
class Objective:
    """What a managed experiment trains: a registered objective and its config."""

    name: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Progress:
    """An experiment's live observations: how many, and the sum of their task costs."""

    observation_count: int
    observation_budget_consumed: float


@dataclass(frozen=True)
class Experiment:
    """``spec`` is built from the whole JSON (`ExperimentSpec.from_json`), kept as
    ``definition``. ``objective`` is None for a client-driven experiment."""

    id: int
    state: ExperimentState
    objective: Objective | None
    observation_budget: float | None
    parallel_bandwidth: int
    progress: Progress
    spec: ExperimentSpec = field(repr=False)
    definition: dict[str, Any] = field(repr=False, compare=False)

    @property
    def is_managed(self) -> bool:
        return self.objective is not None

    @classmethod
    def from_json(cls, data: object) -> Self:
        f = _Fields("experiment", data)
        objective = f.optional_nested("objective")
        progress = f.nested("progress")
        definition = f.whole()
        try:
            spec = ExperimentSpec.from_json(definition)
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiObjectError(f"experiment: definition not readable: {exc!r}") from exc
        return cls(
            id=f.id("id"),
            state=f.state("state", ExperimentState),
            objective=(
                None
                if objective is None
                else Objective(name=objective.string("name"), config=objective.mapping("config"))
            ),
            observation_budget=f.optional_number("observation_budget"),
            parallel_bandwidth=f.integer("parallel_bandwidth"),
            progress=Progress(
                observation_count=progress.integer("observation_count"),
                observation_budget_consumed=progress.number("observation_budget_consumed"),
            ),
            spec=spec,
            definition=definition,
        )


@dataclass(frozen=True)
class MetricValue:
    name: str
    value: float
    value_stddev: float | None


@dataclass(frozen=True)
class Observation:
    """``values`` is empty for a failed observation; ``task`` is the task's name."""

    id: int
    suggestion: int | None
    assignments: dict[str, Any]
    values: tuple[MetricValue, ...]
    failed: bool
    task: str | None

    @classmethod
    def from_json(cls, data: object) -> Self:
        f = _Fields("observation", data)
        return cls(
            id=f.id("id"),
            suggestion=f.optional_id("suggestion"),
            assignments=f.mapping("assignments"),
            values=tuple(
                MetricValue(
                    name=v.string("name"),
                    value=v.number("value"),
                    value_stddev=v.optional_number("value_stddev"),
                )
                for v in f.items("values")
            ),
            failed=f.boolean("failed"),
            task=f.task(),
        )


@dataclass(frozen=True)
class Suggestion:
    id: int
    experiment: int
    state: SuggestionState
    assignments: dict[str, Any]
    task: str | None

    @classmethod
    def from_json(cls, data: object) -> Self:
        f = _Fields("suggestion", data)
        return cls(
            id=f.id("id"),
            experiment=f.id("experiment"),
            state=f.state("state", SuggestionState),
            assignments=f.mapping("assignments"),
            task=f.task(),
        )


@dataclass(frozen=True)
class TrainingRun:
    """One training run of a suggestion. ``attempt`` fences writes (an older attempt's are
    refused); ``heartbeat``, ``started`` and ``updated`` are Unix seconds;
    ``experiment_state`` is its experiment's state when the run was read. ``observation`` is
    recorded when the run ends; ``continues`` is the run whose checkpoint it resumes."""

    id: int
    experiment: int
    suggestion: int
    state: RunState
    attempt: int
    assignments: dict[str, Any]
    task: str | None
    worker: str | None
    heartbeat: float | None
    started: float | None
    updated: float
    experiment_state: ExperimentState
    observation: int | None = None
    has_checkpoint_archive: bool = False
    continues: int | None = None

    @classmethod
    def from_json(cls, data: object) -> Self:
        f = _Fields("training_run", data)
        return cls(
            id=f.id("id"),
            experiment=f.id("experiment"),
            suggestion=f.id("suggestion"),
            state=f.state("state", RunState),
            attempt=f.integer("attempt"),
            assignments=f.mapping("assignments"),
            task=f.task(),
            worker=f.optional_string("worker"),
            heartbeat=f.optional_number("heartbeat"),
            started=f.optional_number("started"),
            updated=f.number("updated"),
            experiment_state=f.state("experiment_state", ExperimentState),
            observation=f.optional_id("observation"),
            has_checkpoint_archive=f.boolean("has_checkpoint_archive"),
            continues=f.optional_id("continues"),
        )


# ---------------------------------------------------------------------- typed API calls
def get_experiment(api: ApiClient, experiment_id: int) -> Experiment:
    return Experiment.from_json(api.get(f"/experiments/{experiment_id}"))


def iterate_experiments(
    api: ApiClient, state: ExperimentState | StateFilter
) -> Iterator[Experiment]:
    """Every experiment in ``state``, newest first."""
    for data in api.iterate("/experiments", state=state):
        yield Experiment.from_json(data)


def set_experiment_state(api: ApiClient, experiment_id: int, state: ExperimentState) -> None:
    api.put(f"/experiments/{experiment_id}", {"state": state})


def list_observations(api: ApiClient, experiment_id: int) -> list[Observation]:
    """Every live observation, newest first."""
    return [
        Observation.from_json(o) for o in api.iterate(f"/experiments/{experiment_id}/observations")
    ]


def list_suggestions(
    api: ApiClient, experiment_id: int, state: SuggestionState | StateFilter
) -> list[Suggestion]:
    """Suggestions in ``state`` (``open``, or ``StateFilter.ALL``), newest first."""
    return [
        Suggestion.from_json(s)
        for s in api.iterate(f"/experiments/{experiment_id}/suggestions", state=state)
    ]


def delete_suggestion(api: ApiClient, experiment_id: int, suggestion_id: int) -> None:
    api.delete(f"/experiments/{experiment_id}/suggestions/{suggestion_id}")


def get_training_run(api: ApiClient, run_id: int) -> TrainingRun:
    return TrainingRun.from_json(api.get(f"/training_runs/{run_id}"))


def list_training_runs(
    api: ApiClient, experiment_id: int, state: RunState | StateFilter
) -> list[TrainingRun]:
    """Runs in ``state`` (or ``StateFilter.UNFINISHED``, ``StateFilter.ALL``), newest first."""
    return [
        TrainingRun.from_json(r)
        for r in api.iterate(f"/experiments/{experiment_id}/training_runs", state=state)
    ]


def create_training_run(
    api: ApiClient,
    experiment_id: int,
    suggestion: int | Mapping[str, Any],
    continues: int | None = None,
) -> TrainingRun:
    """The run of an existing suggestion (its id; idempotent), or of a new suggestion created
    with it (``{"assignments", "task"?, "metadata"?}``) in one transaction; with ``continues``,
    it resumes that cheaper run's checkpoint."""
    body: dict[str, Any] = {"suggestion": suggestion}
    if continues is not None:
        body["continues"] = continues
    return TrainingRun.from_json(api.post(f"/experiments/{experiment_id}/training_runs", body))


def update_training_run(api: ApiClient, run_id: int, body: Mapping[str, Any]) -> TrainingRun:
    """``PUT /training_runs/{id}``: state, heartbeat, ``new_attempt``; an ``attempt`` in the body
    fences the write (409 when it is not the run's current attempt)."""
    return TrainingRun.from_json(api.put(f"/training_runs/{run_id}", dict(body)))


def record_result(api: ApiClient, run_id: int, body: Mapping[str, Any]) -> TrainingRun:
    """``POST /training_runs/{id}/result``: the attempt's observation and final state."""
    return TrainingRun.from_json(api.post(f"/training_runs/{run_id}/result", dict(body)))
