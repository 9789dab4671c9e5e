"""Tiny installed distributions that declare objectives in the ``multitune.objectives``
entry-point group: a package and its ``*.dist-info`` in a folder that goes on ``sys.path`` (or
``PYTHONPATH`` of a worker process), which is what ``pip install --target`` leaves."""

from __future__ import annotations

import textwrap
from pathlib import Path

#: The package's module: a class implementing the objective contract, and plain functions.
PLUGIN_MODULE = '''
from services.worker.objectives._base import Objective
from services.worker.objectives._base import ObjectiveResult


class Bowl(Objective):
    """(x1 - 2)^2 + (x2 - 3)^2, with the task's cost reported as a checkpoint."""

    name = "ignored: the entry point names it"

    def run(self, assignments, task, config, context):
        context.report(1, {"value": float(task.cost if task else 1.0)})
        value = (assignments["x1"] - 2) ** 2 + (assignments["x2"] - 3) ** 2
        return ObjectiveResult(value=value, extra={"scale": float(config.get("scale", 1))})


class Steps(Bowl):
    """`Bowl`, declared continuable."""

    continuable = True


def bowl_metrics(assignments, task, config, context):
    """Every metric by name: the optimized one ("value") among them."""
    return {"distance": abs(assignments["x1"]), "value": assignments["x1"] + assignments["x2"]}


def bowl_value(assignments, task, config, context):
    return assignments["x1"] * 10


def wrong_metric(assignments, task, config, context):
    return {"not_the_metric": 1.0}


def not_a_number(assignments, task, config, context):
    return "3.5"


NOT_AN_OBJECTIVE = 42
'''

ENTRY_POINTS = {
    "plugin_bowl": "mt_plugin:Bowl",
    "plugin_steps": "mt_plugin:Steps",
    "plugin_metrics": "mt_plugin:bowl_metrics",
    "plugin_value": "mt_plugin:bowl_value",
    "plugin_wrong_metric": "mt_plugin:wrong_metric",
    "plugin_not_a_number": "mt_plugin:not_a_number",
    "plugin_not_an_objective": "mt_plugin:NOT_AN_OBJECTIVE",
}


def install(
    folder: Path, entry_points: dict[str, str] | None = None, name: str = "mt-plugin"
) -> Path:
    """Write the package ``mt_plugin`` and a distribution ``name`` declaring ``entry_points``
    (default `ENTRY_POINTS`) into ``folder``; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    package = folder / "mt_plugin"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(PLUGIN_MODULE)
    info = folder / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in (entry_points or ENTRY_POINTS).items())
    (info / "entry_points.txt").write_text(
        textwrap.dedent("[multitune.objectives]\n") + lines + "\n"
    )
    return folder
