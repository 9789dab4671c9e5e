"""The ``sparse_resnet50`` objective: train a Numenta-style sparse ResNet once, return val top-1.

Hyperparameters (the suggestion's assignments; any missing take the default of
:class:`Hyperparameters`, Numenta's recipe): ``max_lr``, ``pct_start``, ``weight_decay``,
``momentum``, ``weight_density``, ``percent_on``, ``label_smoothing``, ``batch_size``,
``div_factor``, ``final_div_factor``, ``boost_strength``, ``boost_strength_factor``. Unknown
names are an error.

Objective config (:class:`RunConfig`): ``dataset`` (digits | cifar10 | imagefolder), ``data_dir``,
``arch`` (resnet50 | resnet18 | resnet34), ``width``, ``image_size``, ``max_epochs``,
``num_classes`` (inferred when omitted), ``num_workers`` (DataLoader processes per rank),
``seed``, ``dense_stem``, ``ddp_scale``.

Data parallelism: the run trains on every device of ``context.devices`` (each GPU the worker
owns, ``multitune worker --gpus 0,1,2,3``), one process per device with PyTorch
DistributedDataParallel (:mod:`~services.worker.training.distributed`); one device trains in
this process. ``ddp_scale`` says how N processes share the work:

* ``linear`` (default): every process takes ``batch_size`` samples per step (a global batch of
  N x ``batch_size``) and ``max_lr`` is multiplied by N (the linear scaling rule), so
  ``batch_size`` stays the per-GPU batch of the recipe. The checkpoint of such a run resumes
  only with the same N (its fingerprint holds the scaled batch and learning rate).
* ``none``: ``batch_size`` is the global batch, split evenly over the processes (it must be a
  multiple of N), and learning rates are as assigned: the run follows one process's recipe and
  data order whatever N is, and resumes with any N. BatchNorm statistics are per process.

The run lasts ``epochs_for(task, config) = round(cost x max_epochs)`` epochs with a OneCycle
schedule built for that length. After every epoch it checkpoints atomically into
``context.checkpoint_dir`` and reports ``val_top1`` (fraction), ``val_loss``, ``train_loss``,
``weight_sparsity`` (zeros over all conv+fc weights), ``activation_sparsity`` (zeros among
k-WTA outputs on the val set), ``images_per_second`` (all processes together) and
``boost_strength``; with several processes each metric covers all of them (sums reduced over the
ranks) and rank 0 alone writes the checkpoint, which every rank resumes from. A run that finds a
checkpoint resumes from it exactly.

Failures raise: a non-finite train loss raises ``FloatingPointError`` (a failed observation, not
a NaN value); ``context.should_stop()`` true after an epoch other than the last raises
:class:`~services.worker.training.loop.TrainingStopped` once that epoch is checkpointed; a
process of a data-parallel run that fails or dies raises
:class:`~services.worker.training.distributed.RankFailed` here, after the others are ended.
The value returned is the val top-1 of the last epoch, a fraction in [0, 1]; ``extra`` is empty.
"""

from __future__ import annotations

import dataclasses
import math
import random
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from services.worker.objectives._base import Objective
from services.worker.objectives._base import ObjectiveResult
from services.worker.objectives._base import RunContext
from services.worker.training.checkpoint import capture_rng
from services.worker.training.checkpoint import load_checkpoint
from services.worker.training.checkpoint import restore_rng
from services.worker.training.checkpoint import save_checkpoint
from services.worker.training.data import load_datasets
from services.worker.training.data import make_loaders
from services.worker.training.distributed import ONE_PROCESS
from services.worker.training.distributed import EpochReporter
from services.worker.training.distributed import Ranks
from services.worker.training.distributed import run_ranks
from services.worker.training.kwinners import KWinnersBase
from services.worker.training.kwinners import count_over_ranks
from services.worker.training.kwinners import decay_boost
from services.worker.training.loop import Device
from services.worker.training.loop import TrainingStopped
from services.worker.training.loop import evaluate
from services.worker.training.loop import train_epoch
from services.worker.training.optim import build_onecycle
from services.worker.training.optim import build_sgd
from services.worker.training.sparse_resnet import SparseResNetSpec
from services.worker.training.sparse_resnet import build_sparse_resnet
from services.worker.training.sparse_weights import weight_sparsity
from shared.space import Task

#: How batch size and learning rate follow the number of data-parallel processes (see above).
DDP_SCALES = ("linear", "none")


@dataclass(frozen=True)
class Hyperparameters:
    """Tunable values; defaults follow Numenta's sparse ResNet-50 recipe.

    ``weight_density`` None = Numenta's per-layer table; a number is the density of every conv
    but the stem (0.5) and the fc (0.25). ``div_factor`` 6 and ``final_div_factor`` 4000 give
    the recipe's 1.0 -> 6.0 -> 2.5e-4 at ``max_lr`` 6.
    """

    max_lr: float = 6.0
    pct_start: float = 5 / 120
    weight_decay: float = 5e-5
    momentum: float = 0.0
    weight_density: float | None = None
    percent_on: float = 0.3
    label_smoothing: float = 0.0
    batch_size: int = 128
    div_factor: float = 6.0
    final_div_factor: float = 4000.0
    boost_strength: float = 1.0
    boost_strength_factor: float = 0.9

    @classmethod
    def from_assignments(cls, assignments: Mapping[str, Any]) -> Hyperparameters:
        return cls(**_typed(cls, assignments, "assignments"))


@dataclass(frozen=True)
class RunConfig:
    """The experiment's ``objective.config`` (see the module docstring)."""

    dataset: str = "digits"
    data_dir: str | None = None
    arch: str = "resnet50"
    width: float = 1.0
    image_size: int | None = None
    max_epochs: int = 1
    num_classes: int | None = None
    num_workers: int | None = None
    seed: int = 0
    dense_stem: bool = False
    ddp_scale: str = "linear"

    def __post_init__(self) -> None:
        if self.ddp_scale not in DDP_SCALES:
            raise ValueError(
                f"ddp_scale must be one of {', '.join(DDP_SCALES)}, got {self.ddp_scale!r}"
            )

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> RunConfig:
        return cls(**_typed(cls, config, "objective config"))

    def workers(self) -> int:
        """DataLoader workers: as configured, else 0 for in-memory digits and 8 otherwise."""
        if self.num_workers is not None:
            return self.num_workers
        return 0 if self.dataset == "digits" else 8


class SparseResNet50Objective(Objective):
    """Train a sparse ResNet (default ResNet-50) for one task and return its final val top-1."""

    name = "sparse_resnet50"

    def run(
        self,
        assignments: Mapping[str, Any],
        task: Task | None,
        config: Mapping[str, Any],
        context: RunContext,
    ) -> ObjectiveResult:
        job = _Job(
            Hyperparameters.from_assignments(assignments),
            RunConfig.from_mapping(config),
            self.epochs_for(task, config),
            str(context.checkpoint_dir),
        )
        devices = list(context.devices)
        if len(devices) == 1:
            _train(ONE_PROCESS, torch.device(devices[0]), context, job)
        else:
            run_ranks(_train, (job,), devices, context)
        state = load_checkpoint(Path(job.checkpoint_dir))
        assert state is not None  # every epoch ends with a checkpoint
        history: list[dict[str, float]] = state["history"]
        if len(history) < job.epochs:
            raise TrainingStopped(
                f"stopped after epoch {len(history)} of {job.epochs}; checkpoint kept for resume"
            )
        return ObjectiveResult(value=history[-1]["val_top1"])


@dataclass(frozen=True)
class _Job:
    """One run's settings, as every rank receives them."""

    hp: Hyperparameters
    cfg: RunConfig
    epochs: int
    checkpoint_dir: str

    def scaled(self, world: int) -> tuple[int, float]:
        """The global batch size and peak learning rate over ``world`` processes."""
        if self.cfg.ddp_scale == "linear":
            return self.hp.batch_size * world, self.hp.max_lr * world
        return self.hp.batch_size, self.hp.max_lr


def _train(ranks: Ranks, device: torch.device, reporter: EpochReporter | None, job: _Job) -> None:
    """Train (or resume) the run as one of ``ranks``; rank 0 checkpoints and reports.

    Returns when the run is finished or the reporter asked it to stop after an epoch.
    """
    hp, cfg = job.hp, job.cfg
    where = Device(device)
    if where.cuda:
        torch.backends.cudnn.benchmark = True
    _seed_everything(cfg.seed)

    data = load_datasets(cfg.dataset, cfg.data_dir, cfg.image_size)
    if cfg.num_classes is not None and cfg.num_classes != data.num_classes:
        raise ValueError(
            f"num_classes {cfg.num_classes} does not match the dataset's {data.num_classes}"
        )
    batch_size, max_lr = job.scaled(ranks.world)
    data_order = torch.Generator().manual_seed(cfg.seed)
    train_loader, val_loader = make_loaders(
        data, batch_size, data_order, cfg.workers(), where.cuda, ranks.rank, ranks.world
    )
    spec = SparseResNetSpec(
        arch=cfg.arch,
        num_classes=data.num_classes,
        width=cfg.width,
        weight_density=hp.weight_density,
        stem_density=None if cfg.dense_stem else 0.5,
        percent_on=hp.percent_on,
        boost_strength=hp.boost_strength,
        boost_strength_factor=hp.boost_strength_factor,
        seed=cfg.seed,
    )
    net = build_sparse_resnet(spec).to(where.device, memory_format=where.memory_format)
    count_over_ranks(net, ranks.world)
    optimizer = build_sgd(net, max_lr / hp.div_factor, hp.momentum, hp.weight_decay)
    scheduler = build_onecycle(
        optimizer,
        max_lr=max_lr,
        total_steps=job.epochs * len(train_loader),
        pct_start=hp.pct_start,
        div_factor=hp.div_factor,
        final_div_factor=hp.final_div_factor,
    )

    training = _Training(
        net,
        optimizer,
        scheduler,
        data_order,
        fingerprint={
            "hyperparameters": dataclasses.asdict(hp),
            "config": dataclasses.asdict(cfg),
            "epochs": job.epochs,
            "batch_size": batch_size,
            "max_lr": max_lr,
        },
    )
    directory = Path(job.checkpoint_dir)
    state = load_checkpoint(directory)
    history = [] if state is None else training.restore(state, directory)
    model = ranks.parallel(net, where.device)
    for epoch in range(len(history), job.epochs):
        stats = train_epoch(
            model, train_loader, optimizer, scheduler, where, hp.label_smoothing, ranks
        )
        if not math.isfinite(stats.loss):
            raise FloatingPointError(
                f"training diverged in epoch {epoch + 1}: train loss is {stats.loss}"
            )
        decay_boost(net)
        ranks.average_batchnorm(net)
        ranks.check_replicas(net)
        val = evaluate(net, val_loader, where, ranks)
        history.append(
            {
                "val_top1": val.top1,
                "val_loss": val.loss,
                "train_loss": stats.loss,
                "weight_sparsity": weight_sparsity(net),
                "activation_sparsity": val.activation_sparsity,
                "images_per_second": stats.images / stats.seconds,
                "boost_strength": _boost_strength(net),
            }
        )
        stop = False
        if reporter is not None:  # rank 0
            save_checkpoint(directory, training.snapshot(history))
            reporter.report(epoch + 1, history[-1])
            stop = epoch + 1 < job.epochs and reporter.should_stop()
        if ranks.broadcast(stop, where.device):
            return


@dataclass
class _Training:
    """The state a checkpoint captures, and the run it belongs to (``fingerprint``)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    data_order: torch.Generator
    fingerprint: dict[str, Any]

    def snapshot(self, history: list[dict[str, float]]) -> dict[str, Any]:
        """Everything needed to resume after ``len(history)`` epochs."""
        return {
            "fingerprint": self.fingerprint,
            "epoch": len(history),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": capture_rng(self.data_order),
            "history": history,
        }

    def restore(self, state: dict[str, Any], where: Path) -> list[dict[str, float]]:
        """Load a :meth:`snapshot`; return its per-epoch metrics. Refuse another run's state."""
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"checkpoint in {where} belongs to another run: "
                f"{state['fingerprint']} != {self.fingerprint}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"], self.data_order)
        history: list[dict[str, float]] = state["history"]
        return history


def _typed(cls: type, values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Check names against ``cls``'s fields and coerce each value to its field's type."""
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; expected some of {sorted(hints)}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        kinds = [k for k in typing.get_args(hints[name]) if k is not type(None)]
        kind = kinds[0] if kinds else hints[name]
        if value is None:
            out[name] = None
        elif kind is int:
            out[name] = int(round(float(value)))
        else:
            out[name] = kind(value)
    return out


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _boost_strength(model: nn.Module) -> float:
    strengths = [m.boost_strength for m in model.modules() if isinstance(m, KWinnersBase)]
    return strengths[0] if strengths else 0.0
