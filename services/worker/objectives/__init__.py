"""The objectives a worker provides, loaded by name: built-ins (`REGISTRY`), Python objectives of
installed packages (entry-point group `ENTRY_POINT_GROUP`) and script objectives of the file
given to ``multitune worker --objectives`` (`services.worker.objectives.scripts`).

`Catalog.discover` lists them without importing any objective's module, so the worker's parent
process never imports torch or user code (CUDA must not be initialised before fork); an
objective's module is imported when a run of it starts (`Catalog.load`).
"""

from __future__ import annotations

import importlib
import multiprocessing
from collections.abc import Callable
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from importlib.metadata import EntryPoint
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from services.worker.objectives._base import Objective
from services.worker.objectives._base import ObjectiveResult
from services.worker.objectives._base import RunContext
from services.worker.objectives.scripts import NAME_PATTERN
from services.worker.objectives.scripts import ScriptObjective
from services.worker.objectives.scripts import load_objectives_file
from shared.space import Task

#: name -> "module:Class"; the names are `shared.names.OBJECTIVE_NAMES` (a test checks this).
REGISTRY = {
    "augmented_branin": "services.worker.objectives.synthetic:AugmentedBraninObjective",
    "augmented_hartmann": "services.worker.objectives.synthetic:AugmentedHartmannObjective",
    "sparse_resnet50": "services.worker.objectives.sparse_resnet50:SparseResNet50Objective",
}

#: The built-ins whose class is `Objective.continuable` (a test checks this): read here so that
#: the worker's parent does not import their modules to advertise them.
CONTINUABLE = frozenset({"augmented_branin", "augmented_hartmann"})

#: Installed packages declare objectives here: ``name = "package.module:attr"``, where ``attr``
#: is an `Objective` subclass (constructed with no arguments) or a function
#: ``(assignments, task, config, context) -> float | dict`` (`FunctionObjective`).
ENTRY_POINT_GROUP = "multitune.objectives"


class CatalogError(ValueError):
    """Objectives a worker cannot provide as declared (it refuses to start)."""


def load(name: str) -> Objective:
    """A fresh instance of the built-in objective ``name``.

    Raises:
        KeyError: when no built-in objective has that name.
    """
    module_name, _, class_name = REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    objective: Objective = cls()
    return objective


class FunctionObjective(Objective):
    """A plain function as an objective: it returns a number (the experiment's first metric) or
    a dict of metric names to numbers (the experiment's first metric among them)."""

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        self.name = name
        self.function = function

    def run(
        self,
        assignments: Mapping[str, Any],
        task: Task | None,
        config: Mapping[str, Any],
        context: RunContext,
    ) -> ObjectiveResult:
        returned = self.function(assignments, task, config, context)
        if isinstance(returned, Mapping):
            return ObjectiveResult(
                value=None, extra={str(k): _number(f"{k!r}", v) for k, v in returned.items()}
            )
        return ObjectiveResult(value=_number("value", returned))


def _number(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"an objective function returns a number or a dict of metric names to numbers; "
            f"{what} is {type(value).__name__}"
        )
    return float(value)


def load_entry_point(entry_point: EntryPoint) -> Objective:
    """Import an entry point's target and make it an `Objective` named after the entry point."""
    target = entry_point.load()
    if isinstance(target, type) and issubclass(target, Objective):
        objective = target()
    elif isinstance(target, Objective):
        objective = target
    elif callable(target):
        return FunctionObjective(entry_point.name, target)
    else:
        raise CatalogError(
            f"entry point {entry_point.name} = {entry_point.value!r} is neither an Objective "
            f"subclass nor a function, but {type(target).__name__}"
        )
    objective.name = entry_point.name
    return objective


@dataclass(frozen=True)
class Catalog:
    """Every objective one worker provides, by name (names are unique across the three kinds)."""

    entry_points: Mapping[str, EntryPoint] = field(default_factory=dict)
    scripts: Mapping[str, ScriptObjective] = field(default_factory=dict)

    @classmethod
    def discover(cls, objectives_file: Path | None = None) -> Catalog:
        """Built-ins, the installed entry points and the script objectives of
        ``objectives_file``. Raises `CatalogError` (an `ObjectivesFileError` for the file)
        naming the offending declaration."""
        found = _entry_points()
        scripts = load_objectives_file(objectives_file) if objectives_file is not None else {}
        for name in scripts:
            if name in REGISTRY:
                raise CatalogError(
                    f"{objectives_file}: {name}: a built-in objective has this name; built-in "
                    "objectives cannot be replaced, rename the script objective"
                )
            if name in found:
                raise CatalogError(
                    f"{objectives_file}: {name}: the installed entry point "
                    f"{_describe(found[name])} has this name; rename one of them"
                )
        return cls(entry_points=found, scripts=scripts)

    def __contains__(self, name: object) -> bool:
        return name in REGISTRY or name in self.entry_points or name in self.scripts

    def names(self) -> list[str]:
        """Every objective this worker can train, sorted."""
        return sorted({*REGISTRY, *self.entry_points, *self.scripts})

    def continuable(self) -> list[str]:
        """The objectives whose runs can continue from a cheaper run's checkpoint, sorted:
        built-ins by `CONTINUABLE`, scripts by their ``continuable`` key, entry points by their
        class's `Objective.continuable` (plain functions: no), read in a spawned child process
        so that this one imports no user code."""
        scripts = {name for name, script in self.scripts.items() if script.continuable}
        return sorted(CONTINUABLE | scripts | _continuable_entry_points(self.entry_points))

    def load(self, name: str) -> Objective | ScriptObjective:
        """What trains ``name``: a fresh `Objective` (its module imported now), or the script.

        Raises:
            KeyError: when this worker provides no objective of that name.
        """
        if name in self.scripts:
            return self.scripts[name]
        if name in self.entry_points:
            return load_entry_point(self.entry_points[name])
        return load(name)


def _entry_points() -> dict[str, EntryPoint]:
    """The group's entry points by name, unloaded. A name that shadows a built-in, is declared
    twice with different targets, or cannot name a queue is a `CatalogError`."""
    found: dict[str, EntryPoint] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        name = entry_point.name
        if name in REGISTRY:
            raise CatalogError(
                f"the installed entry point {_describe(entry_point)} shadows the built-in "
                f"objective {name!r}; built-in objectives cannot be replaced, rename the entry "
                "point"
            )
        if not NAME_PATTERN.fullmatch(name):
            raise CatalogError(
                f"the installed entry point {_describe(entry_point)}: objective names are 1-100 "
                "letters, digits, '_', '.' or '-', starting with a letter or digit"
            )
        seen = found.get(name)
        if seen is not None and seen.value != entry_point.value:
            raise CatalogError(
                f"objective {name!r} is declared by two installed entry points: "
                f"{_describe(seen)} and {_describe(entry_point)}"
            )
        found[name] = entry_point
    return found


def _continuable_entry_points(found: Mapping[str, EntryPoint]) -> set[str]:
    if not found:
        return set()
    declared = [(e.name, e.value, e.group) for e in found.values()]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as child:
        return child.submit(_read_continuable, declared).result()


def _read_continuable(declared: list[tuple[str, str, str]]) -> set[str]:
    """In the child: the entry points whose objective is continuable. One that fails to load
    counts as not continuable here; its runs fail with the error when they start."""
    names = set()
    for name, value, group in declared:
        try:
            if load_entry_point(EntryPoint(name, value, group)).continuable:
                names.add(name)
        except Exception:  # noqa: BLE001, S112 - reported when a run of it loads it
            continue
    return names


def _describe(entry_point: EntryPoint) -> str:
    dist = entry_point.dist
    source = f" of {dist.name} {dist.version}" if dist is not None else ""
    return f"{entry_point.name} = {entry_point.value!r} (group {ENTRY_POINT_GROUP}{source})"
