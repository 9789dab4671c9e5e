"""The objective registry: exactly the names an experiment may give (`shared.names`), each
loading the objective of that name."""

from __future__ import annotations

import pytest

from services.worker import objectives
from shared.names import OBJECTIVE_NAMES


def test_the_registry_holds_exactly_the_objective_names_the_api_accepts() -> None:
    assert sorted(objectives.REGISTRY) == sorted(OBJECTIVE_NAMES)


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_each_registered_objective_loads_under_its_name(name: str) -> None:
    assert objectives.load(name).name == name


def test_an_unknown_objective_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        objectives.load("no_such_objective")


def test_the_continuable_built_ins_are_those_whose_class_says_so() -> None:
    declared = {name for name in OBJECTIVE_NAMES if type(objectives.load(name)).continuable}
    assert declared == objectives.CONTINUABLE == {"augmented_branin", "augmented_hartmann"}
    assert objectives.Catalog().continuable() == sorted(objectives.CONTINUABLE)
