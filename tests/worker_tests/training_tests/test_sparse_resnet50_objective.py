from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from services.worker.objectives.sparse_resnet50 import Hyperparameters
from services.worker.objectives.sparse_resnet50 import RunConfig
from services.worker.objectives.sparse_resnet50 import SparseResNet50Objective
from services.worker.training.checkpoint import load_checkpoint
from services.worker.training.data import DataError
from services.worker.training.loop import TrainingStopped
from shared.space import ExperimentSpec
from shared.space import Task

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo_digits.yaml"
TINY: dict[str, Any] = {
    "dataset": "digits",
    "arch": "resnet18",
    "width": 0.125,
    "image_size": 16,
    "max_epochs": 2,
    "seed": 3,
}
TINY_HP: dict[str, Any] = {"max_lr": 0.5, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 64}
FULL = Task("full", 1.0)


class Context:
    """A RunContext that records reports and can ask to stop after some epoch."""

    def __init__(self, directory: Path, stop_after: int | None = None, processes: int = 1) -> None:
        self.checkpoint_dir = directory
        self.device = "cpu"
        self.devices = ["cpu"] * processes
        self.reports: list[tuple[int, dict[str, float]]] = []
        self.stop_after = stop_after

    def report(self, epoch: int, values: Mapping[str, float]) -> None:
        self.reports.append((epoch, dict(values)))

    def should_stop(self) -> bool:
        return self.stop_after is not None and self.reports[-1][0] >= self.stop_after


def _final_state(directory: Path) -> dict[str, Any]:
    state = load_checkpoint(directory)
    assert state is not None
    return state


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path: Path) -> None:
    straight = Context(tmp_path / "straight")
    expected = SparseResNet50Objective().run(TINY_HP, FULL, TINY, straight)
    assert [epoch for epoch, _ in straight.reports] == [1, 2]

    first = Context(tmp_path / "resumed", stop_after=1)
    with pytest.raises(TrainingStopped, match="after epoch 1 of 2"):
        SparseResNet50Objective().run(TINY_HP, FULL, TINY, first)
    assert _final_state(tmp_path / "resumed")["history"][0]["val_top1"] == pytest.approx(
        straight.reports[0][1]["val_top1"]
    )
    second = Context(tmp_path / "resumed")
    resumed = SparseResNet50Objective().run(TINY_HP, FULL, TINY, second)
    assert [epoch for epoch, _ in second.reports] == [2]

    assert resumed.value == expected.value
    a, b = _final_state(tmp_path / "straight"), _final_state(tmp_path / "resumed")
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b["model"][key]), key
        else:
            assert value == b["model"][key], key  # k-WTA boost strength and samples seen
    for key, value in a["optimizer"]["state"].items():
        assert torch.equal(
            value["momentum_buffer"], b["optimizer"]["state"][key]["momentum_buffer"]
        )
    assert a["scheduler"] == b["scheduler"]
    for name in ("val_top1", "val_loss", "train_loss", "activation_sparsity"):
        assert straight.reports[1][1][name] == second.reports[0][1][name], name

    third = Context(tmp_path / "resumed")  # a finished run returns its result without training
    assert SparseResNet50Objective().run(TINY_HP, FULL, TINY, third).value == expected.value
    assert third.reports == []


def test_shorter_task_rebuilds_the_schedule(tmp_path: Path) -> None:
    ctx = Context(tmp_path)
    config = {**TINY, "max_epochs": 4}
    SparseResNet50Objective().run(TINY_HP, Task("quarter", 0.25), config, ctx)
    state = _final_state(tmp_path)
    steps_per_epoch = 1438 // 64
    assert len(ctx.reports) == 1
    assert state["scheduler"]["total_steps"] == steps_per_epoch
    assert state["scheduler"]["last_epoch"] == steps_per_epoch
    metrics = ctx.reports[0][1]
    required = {"val_top1", "val_loss", "train_loss", "weight_sparsity", "activation_sparsity"}
    assert required | {"images_per_second"} <= metrics.keys()
    assert 0.5 < metrics["weight_sparsity"] < 0.9
    assert 0.5 < metrics["activation_sparsity"] < 1.0
    assert 0.0 <= metrics["val_top1"] <= 1.0


def test_demo_reaches_90_percent_at_full_cost(tmp_path: Path) -> None:
    definition = yaml.safe_load(DEMO.read_text())
    config = definition["objective"]["config"]
    full = next(t for t in definition["tasks"] if t["cost"] == 1.0)
    assignments = {
        "max_lr": 1.0,
        "pct_start": 0.1,
        "weight_decay": 5e-5,
        "momentum": 0.5,
        "weight_density": 0.4,
        "percent_on": 0.3,
        "label_smoothing": 0.0,
        "batch_size": 64,
    }
    for parameter in definition["parameters"]:  # the point lies inside the demo's space
        bounds = parameter["bounds"]
        assert bounds["min"] <= assignments[parameter["name"]] <= bounds["max"]
    result = SparseResNet50Objective().run(
        assignments, Task(full["name"], full["cost"]), config, Context(tmp_path)
    )
    assert result.value >= 0.90


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    objective = SparseResNet50Objective()
    ctx = Context(tmp_path)
    with pytest.raises(ValueError, match="unknown assignments"):
        objective.run({"learning_rate": 0.1}, FULL, TINY, ctx)
    with pytest.raises(ValueError, match="unknown objective config"):
        objective.run({}, FULL, {**TINY, "epochs": 3}, ctx)
    with pytest.raises(DataError, match="data_dir"):
        objective.run({}, FULL, {**TINY, "dataset": "imagefolder"}, ctx)
    with pytest.raises(ValueError, match="num_classes"):
        objective.run({}, FULL, {**TINY, "num_classes": 7}, ctx)
    assert load_checkpoint(tmp_path) is None


def test_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    config = {**TINY, "max_epochs": 1}
    SparseResNet50Objective().run(TINY_HP, FULL, config, Context(tmp_path))
    with pytest.raises(ValueError, match="belongs to another run"):
        SparseResNet50Objective().run({**TINY_HP, "max_lr": 0.3}, FULL, config, Context(tmp_path))


def test_divergence_fails_instead_of_reporting_nan(tmp_path: Path) -> None:
    hp = {**TINY_HP, "max_lr": 1e6, "div_factor": 1.0}
    with pytest.raises(FloatingPointError, match="diverged"):
        SparseResNet50Objective().run(hp, FULL, {**TINY, "max_epochs": 1}, Context(tmp_path))


@pytest.mark.parametrize(
    ("name", "epochs"),
    [("demo_digits.yaml", [1, 2, 4, 8]), ("sparse_resnet50_imagenet.yaml", [10, 20, 40, 80])],
)
def test_examples_are_valid_for_this_objective(name: str, epochs: list[int]) -> None:
    definition = yaml.safe_load((DEMO.parent / name).read_text())
    spec = ExperimentSpec.from_json(definition)
    objective = definition["objective"]
    assert objective["name"] == SparseResNet50Objective.name
    RunConfig.from_mapping(objective["config"])  # no unknown or mistyped keys
    Hyperparameters.from_assignments({p.name: p.min for p in spec.parameters})
    assert [SparseResNet50Objective().epochs_for(t, objective["config"]) for t in spec.tasks] == (
        epochs
    )
    assert spec.metrics[0].name == "val_top1" and spec.metrics[0].objective == "maximize"
