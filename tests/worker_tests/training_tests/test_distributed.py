"""Data-parallel training over two real CPU processes (gloo): the objective killed after its
first epoch and resumed matches a single-process run; replicated state is identical on every
rank; a failing rank takes the run down."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from services.worker.objectives.sparse_resnet50 import SparseResNet50Objective
from services.worker.training.checkpoint import load_checkpoint
from services.worker.training.distributed import EpochReporter
from services.worker.training.distributed import RankFailed
from services.worker.training.distributed import Ranks
from services.worker.training.distributed import run_ranks
from services.worker.training.kwinners import KWinners2d
from services.worker.training.kwinners import count_over_ranks
from services.worker.training.loop import Device
from services.worker.training.loop import train_epoch
from services.worker.training.optim import build_onecycle
from services.worker.training.optim import build_sgd
from services.worker.training.sparse_resnet import SparseResNetSpec
from services.worker.training.sparse_resnet import build_sparse_resnet
from tests.worker_tests.training_tests.test_sparse_resnet50_objective import FULL
from tests.worker_tests.training_tests.test_sparse_resnet50_objective import TINY
from tests.worker_tests.training_tests.test_sparse_resnet50_objective import TINY_HP
from tests.worker_tests.training_tests.test_sparse_resnet50_objective import Context

#: ``batch_size`` is the global batch: 128 per process, in the single process's data order.
#: Large per-process batches keep BatchNorm's per-process statistics (the one difference from a
#: single process) close to the single process's, so the runs stay comparable.
CONFIG = {**TINY, "ddp_scale": "none", "num_workers": 0}
HP = {**TINY_HP, "batch_size": 256, "max_lr": 1.0}
SPEC = SparseResNetSpec(arch="resnet18", num_classes=10, width=0.125, seed=3)
WORLD = 2


class KillRankAfterFirstEpoch(Context):
    """Two processes; SIGKILLs one rank while the parent reports epoch 1 (its checkpoint is
    already written, rank 0 waits for the parent and the other rank for rank 0)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, processes=WORLD)
        self.killed: int | None = None

    def report(self, epoch: int, values: Mapping[str, float]) -> None:
        super().report(epoch, values)
        ranks = sorted(multiprocessing.active_children(), key=lambda p: p.pid or 0)
        assert len(ranks) == WORLD
        self.killed = ranks[-1].pid
        assert self.killed is not None
        os.kill(self.killed, signal.SIGKILL)


def _state(directory: Path) -> dict[str, Any]:
    state = load_checkpoint(directory)
    assert state is not None
    return state


def test_killed_ddp_run_resumes_and_matches_one_process(tmp_path: Path) -> None:
    single = Context(tmp_path / "single")
    expected = SparseResNet50Objective().run(HP, FULL, CONFIG, single)

    killer = KillRankAfterFirstEpoch(tmp_path / "ddp")
    started = time.monotonic()
    with pytest.raises(RankFailed, match=r"rank \d: killed by SIGKILL"):
        SparseResNet50Objective().run(HP, FULL, CONFIG, killer)
    assert time.monotonic() - started < 60  # the surviving rank was ended, not waited for
    assert multiprocessing.active_children() == []
    assert [epoch for epoch, _ in killer.reports] == [1]
    assert _state(tmp_path / "ddp")["epoch"] == 1

    resumed = Context(tmp_path / "ddp", processes=WORLD)
    result = SparseResNet50Objective().run(HP, FULL, CONFIG, resumed)
    assert [epoch for epoch, _ in resumed.reports] == [2]

    ddp_epochs = [killer.reports[0][1], resumed.reports[0][1]]
    for (_, one), two in zip(single.reports, ddp_epochs, strict=True):
        assert two["weight_sparsity"] == one["weight_sparsity"]
        assert two["boost_strength"] == one["boost_strength"]
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=0.05)
        assert two["val_loss"] == pytest.approx(one["val_loss"], rel=0.05)
        assert two["val_top1"] == pytest.approx(one["val_top1"], abs=0.05)
        assert two["activation_sparsity"] == pytest.approx(one["activation_sparsity"], abs=0.01)
    assert result.value == pytest.approx(expected.value, abs=0.05)
    assert ddp_epochs[1]["val_loss"] < ddp_epochs[0]["val_loss"] - 0.1  # it learned

    one, two = _state(tmp_path / "single")["model"], _state(tmp_path / "ddp")["model"]
    masks = [key for key in one if key.endswith("weight_mask")]
    assert len(masks) > 10
    for key in masks:
        assert torch.equal(one[key], two[key]), key
        assert not two[key.replace("weight_mask", "weight")][two[key] == 0].any(), key
    duty = [key for key in one if key.endswith("duty_cycles")]
    assert duty
    for key in duty:  # a layer's mean activity; per channel, see the replica test below
        assert float(two[key].mean()) == pytest.approx(float(one[key].mean()), abs=0.02), key
    samples = 2 * (1438 // 256) * 256  # the global count on every rank, not one rank's half
    extra = [key for key in one if key.endswith("_extra_state")]
    assert extra and all(two[key]["samples_seen"] == samples for key in extra)
    pruned = {key.removesuffix("_mask"): two[key] == 0 for key in masks}
    params = list(build_sparse_resnet(SPEC).named_parameters())
    in_groups = [n for n, p in params if p.ndim > 1] + [n for n, p in params if p.ndim <= 1]
    momentum = _state(tmp_path / "ddp")["optimizer"]["state"]
    for index, name in enumerate(in_groups):  # build_sgd's order: decayed group, then the rest
        if name in pruned:  # momentum never revived a pruned weight under DDP
            assert not momentum[index]["momentum_buffer"][pruned[name]].any(), name


def _replica_rank(
    ranks: Ranks, device: torch.device, reporter: EpochReporter | None, out: str
) -> None:
    """Rank target: (a) a k-WTA module fed this rank's half of a global batch; (b) a sparse
    ResNet trained a few DDP steps. Saves what must be identical on every rank."""
    torch.manual_seed(0)
    kw = KWinners2d(6, percent_on=0.5, boost_strength=1.0, duty_cycle_period=20)
    count_over_ranks(kw, ranks.world)
    inputs = torch.randn(3, 8, 6, 2, 2, generator=torch.Generator().manual_seed(1))
    share = inputs.shape[1] // ranks.world
    for batch in inputs:
        kw(batch[ranks.rank * share : (ranks.rank + 1) * share])

    net = build_sparse_resnet(SPEC)
    count_over_ranks(net, ranks.world)
    optimizer = build_sgd(net, 0.05, 0.9, 1e-4)
    scheduler = build_onecycle(optimizer, 0.2, 3, 0.3, 6.0, 100.0)
    data = torch.Generator().manual_seed(2 + ranks.rank)  # each rank its own images
    batches = [(torch.randn(4, 3, 16, 16, generator=data), torch.arange(4) % 10) for _ in range(3)]
    model = ranks.parallel(net, device)
    stats = train_epoch(model, batches, optimizer, scheduler, Device(device), ranks=ranks)
    ranks.average_batchnorm(net)
    ranks.check_replicas(net)
    if reporter is not None:
        reporter.report(1, {"images": stats.images})
    torch.save(
        {"kw": kw.state_dict(), "net": net.state_dict()}, Path(out) / f"rank{ranks.rank}.pt"
    )


def _raising_rank(
    ranks: Ranks, device: torch.device, reporter: EpochReporter | None, out: str
) -> None:
    if ranks.rank == 1:
        raise RuntimeError("rank 1 gives up")
    time.sleep(600)  # rank 0 would train on for ever


class Recorder:
    def __init__(self) -> None:
        self.reports: list[tuple[int, dict[str, float]]] = []

    def report(self, epoch: int, values: Mapping[str, float]) -> None:
        self.reports.append((epoch, dict(values)))

    def should_stop(self) -> bool:
        return False


def test_replicated_state_is_identical_on_every_rank(tmp_path: Path) -> None:
    recorder = Recorder()
    run_ranks(_replica_rank, (str(tmp_path),), ["cpu"] * WORLD, recorder)
    assert recorder.reports == [(1, {"images": 3 * 4 * WORLD})]
    zero, one = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD))

    torch.manual_seed(0)
    alone = KWinners2d(6, percent_on=0.5, boost_strength=1.0, duty_cycle_period=20)
    for batch in torch.randn(3, 8, 6, 2, 2, generator=torch.Generator().manual_seed(1)):
        alone(batch)
    for rank in (zero, one):  # the same duty cycles as one process on the whole batch
        assert torch.equal(rank["kw"]["duty_cycles"], alone.duty_cycles)
        assert rank["kw"]["_extra_state"] == alone.get_extra_state()

    assert zero["net"].keys() == one["net"].keys()
    for key, value in zero["net"].items():  # masks, duty cycles, weights, BN statistics
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, one["net"][key]), key
        else:
            assert value == one["net"][key], key
    duty = [key for key in zero["net"] if key.endswith("duty_cycles")]
    assert len(duty) == 6 and all(zero["net"][key].any() for key in duty)


def test_a_failing_rank_ends_the_run(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(RankFailed, match="rank 1: exit code 1") as failed:
        run_ranks(_raising_rank, (str(tmp_path),), ["cpu"] * WORLD, Recorder())
    assert "rank 0: killed by SIGTERM" in str(failed.value)  # ended, not waited for
    assert "RuntimeError: rank 1 gives up" in str(failed.value)
    assert time.monotonic() - started < 60
    assert multiprocessing.active_children() == []
