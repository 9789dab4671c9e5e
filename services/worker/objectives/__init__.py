"""Registered objectives, loaded by name. Modules are imported only when an objective runs, so
the worker's parent process never imports torch (CUDA must not be initialised before fork)."""

from __future__ import annotations

import importlib

from services.worker.objectives._base import Objective

#: name -> "module:Class"; the names are `shared.names.OBJECTIVE_NAMES` (a test checks this).
REGISTRY = {
    "augmented_branin": "services.worker.objectives.synthetic:AugmentedBraninObjective",
    "augmented_hartmann": "services.worker.objectives.synthetic:AugmentedHartmannObjective",
    "sparse_resnet50": "services.worker.objectives.sparse_resnet50:SparseResNet50Objective",
}


def load(name: str) -> Objective:
    """A fresh instance of the objective registered as ``name``.

    Raises:
        KeyError: when no objective has that name.
    """
    module_name, _, class_name = REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    objective: Objective = cls()
    return objective
