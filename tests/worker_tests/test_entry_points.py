"""Python objectives of installed packages (entry-point group ``multitune.objectives``): listed
without being imported, loaded as a class implementing the contract or as a plain function,
trained by `runner.train` against the real API; a name that shadows a built-in, a name declared
twice and a target that is no objective are refused clearly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import redis

from services.worker import runner
from services.worker.objectives import Catalog
from services.worker.objectives import CatalogError
from services.worker.objectives import FunctionObjective
from services.worker.objectives import Objective
from tests.inprocess import InProcessApi
from tests.worker_tests import plugins
from tests.worker_tests.test_runner import Worker


@pytest.fixture()
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = plugins.install(tmp_path / "site")
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("mt_plugin", None)


def test_entry_points_are_listed_without_importing_them(installed: Path) -> None:
    catalog = Catalog.discover()
    assert set(plugins.ENTRY_POINTS) <= set(catalog.names())
    assert {"augmented_branin", "sparse_resnet50"} <= set(catalog.names())
    assert "mt_plugin" not in sys.modules  # the worker's parent never imports user code


def test_continuable_entry_points_are_read_without_importing_them_here(installed: Path) -> None:
    continuable = Catalog.discover().continuable()
    assert "plugin_steps" in continuable  # a class that says so
    assert not {"plugin_bowl", "plugin_metrics"} & set(continuable)  # default; a function
    assert {"augmented_branin", "augmented_hartmann"} <= set(continuable)
    assert "mt_plugin" not in sys.modules


def test_a_class_and_a_function_load_under_their_entry_point_names(installed: Path) -> None:
    catalog = Catalog.discover()
    bowl = catalog.load("plugin_bowl")
    assert isinstance(bowl, Objective) and type(bowl).__name__ == "Bowl"
    assert bowl.name == "plugin_bowl"
    function = catalog.load("plugin_metrics")
    assert isinstance(function, FunctionObjective) and function.name == "plugin_metrics"
    with pytest.raises(CatalogError, match="is neither an Objective subclass nor a function"):
        catalog.load("plugin_not_an_objective")


def test_an_entry_point_may_not_shadow_a_built_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = plugins.install(tmp_path / "site", {"augmented_branin": "mt_plugin:bowl_value"})
    monkeypatch.syspath_prepend(str(folder))
    with pytest.raises(CatalogError) as caught:
        Catalog.discover()
    message = str(caught.value)
    assert "augmented_branin = 'mt_plugin:bowl_value'" in message
    assert "of mt-plugin 0.1" in message
    assert "shadows the built-in objective 'augmented_branin'" in message


def test_one_name_from_two_packages_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = plugins.install(tmp_path / "one", {"shared_name": "mt_plugin:bowl_value"}, "one")
    second = plugins.install(tmp_path / "two", {"shared_name": "mt_plugin:Bowl"}, "two")
    monkeypatch.syspath_prepend(str(first))
    monkeypatch.syspath_prepend(str(second))
    with pytest.raises(CatalogError, match="'shared_name' is declared by two installed entry"):
        Catalog.discover()


def test_an_objectives_file_may_not_reuse_an_entry_points_name(
    installed: Path, tmp_path: Path
) -> None:
    path = tmp_path / "objectives.yaml"
    path.write_text("plugin_bowl: {command: [python, train.py]}\n")
    with pytest.raises(CatalogError, match="plugin_bowl: the installed entry point plugin_bowl"):
        Catalog.discover(path)


@pytest.fixture()
def worker(installed: Path, inprocess_api: InProcessApi, redis_client: redis.Redis) -> Worker:
    return Worker(inprocess_api, redis_client)


def test_a_class_objective_trains_and_reports_through_the_run(worker: Worker) -> None:
    run = worker.new_run("cheap", x1=4.0)
    request = worker.request(run, "plugin_bowl", config={"scale": 3})
    result = runner.train(request, worker.server.settings, worker.api, worker.redis, "w1")
    assert result is not None and not result.failed, result
    # "scale" is no metric of the experiment: it stays out of the result.
    assert result.values == [{"name": "value", "value": (4.0 - 2) ** 2 + (2.0 - 3) ** 2}]
    (checkpoint,) = worker.checkpoints(run.id)
    assert checkpoint["values"][0]["value"] == 0.25  # the task reached the objective
    assert worker.published() == [result]


@pytest.mark.parametrize(
    ("objective", "values"),
    [
        ("plugin_metrics", [{"name": "value", "value": 3.0}]),
        ("plugin_value", [{"name": "value", "value": 10.0}]),
    ],
)
def test_a_function_objective_returns_a_number_or_metrics_by_name(
    worker: Worker, objective: str, values: list[dict[str, float]]
) -> None:
    run = worker.new_run("full", x1=1.0)
    result = runner.train(
        worker.request(run, objective), worker.server.settings, worker.api, worker.redis, "w1"
    )
    assert result is not None and result.values == values and not result.failed


@pytest.mark.parametrize(
    ("objective", "reason"),
    [
        ("plugin_wrong_metric", "no value for the optimized metric 'value'"),
        ("plugin_not_a_number", "TypeError: an objective function returns a number or a dict"),
        ("plugin_not_an_objective", "CatalogError: entry point plugin_not_an_objective"),
        ("plugin_nowhere", "this worker provides no objective 'plugin_nowhere'"),
    ],
)
def test_what_cannot_give_the_metric_is_a_failed_result(
    worker: Worker, objective: str, reason: str
) -> None:
    run = worker.new_run("full")
    result = runner.train(
        worker.request(run, objective), worker.server.settings, worker.api, worker.redis, "w1"
    )
    assert result is not None and result.failed and result.values == []
    assert result.reason is not None and reason in result.reason
    assert worker.published() == [result]
