"""One training epoch and one evaluation pass, without a GPU sync per step.

Losses are summed on the device and read once per epoch; with several data-parallel ranks
(:class:`~services.worker.training.distributed.Ranks`) the sums are added over the ranks first,
so every rank returns the same statistics of the whole epoch. Every optimizer step is followed by
:func:`~services.worker.training.sparse_weights.rezero_weights` and a scheduler step. On CUDA the
forward pass runs under bf16 autocast; inputs follow the model's memory format.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch import nn
from torch.nn import functional as F
from torch.optim.lr_scheduler import LRScheduler

from services.worker.training.distributed import ONE_PROCESS
from services.worker.training.distributed import Ranks
from services.worker.training.kwinners import KWinnersBase
from services.worker.training.sparse_weights import rezero_weights

Batches = Iterable[tuple[Tensor, Tensor]]


class TrainingStopped(RuntimeError):
    """Raised between epochs when the run was asked to stop; the last epoch is checkpointed."""


@dataclass(frozen=True)
class Device:
    """Where and how to compute: bf16 autocast and channels_last are used on CUDA."""

    device: torch.device

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.cuda else torch.contiguous_format

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda)

    def inputs(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Move a batch (``n x 3 x h x w`` images, ``n`` labels) to the device."""
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        return images, labels.to(self.device, non_blocking=True)

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


@dataclass(frozen=True)
class TrainStats:
    """Mean train loss (with label smoothing), images seen by all ranks, this rank's wall time."""

    loss: float
    images: int
    seconds: float


@dataclass(frozen=True)
class EvalStats:
    """Top-1 accuracy (fraction), mean cross-entropy, and the fraction of zero k-WTA outputs."""

    top1: float
    loss: float
    activation_sparsity: float


def train_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    where: Device,
    label_smoothing: float = 0.0,
    ranks: Ranks = ONE_PROCESS,
) -> TrainStats:
    """Train over ``batches`` once, stepping optimizer, masks and scheduler per batch.

    ``model`` is the network, or its ``DistributedDataParallel`` wrapper when ``ranks`` has
    more than one process (each rank then passes its own share of every batch).
    """
    model.train()
    total = torch.zeros((), device=where.device)
    seen = 0
    start = time.perf_counter()
    for images, labels in batches:
        images, labels = where.inputs(images, labels)
        with where.autocast():
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        rezero_weights(model)
        scheduler.step()
        total += loss.detach() * labels.shape[0]
        seen += labels.shape[0]
    totals = torch.tensor([0.0, seen], dtype=torch.float64, device=where.device)
    totals[0] = total
    totals = ranks.sum(totals)
    loss_sum, images = totals.tolist()
    seconds = time.perf_counter() - start
    return TrainStats(loss=loss_sum / max(images, 1), images=round(images), seconds=seconds)


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Batches, where: Device, ranks: Ranks = ONE_PROCESS
) -> EvalStats:
    """Top-1, cross-entropy and k-WTA output sparsity in eval mode, over ``batches`` of every
    rank (each rank passes its own share of the validation set)."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=where.device)
    loss_sum = torch.zeros((), device=where.device)
    zeros = torch.zeros((), dtype=torch.int64, device=where.device)
    outputs = 0
    seen = 0

    def count_zeros(_module: nn.Module, _inputs: object, out: Tensor) -> None:
        nonlocal zeros, outputs
        zeros += (out == 0).sum()
        outputs += out.numel()

    hooks = [
        m.register_forward_hook(count_zeros)
        for m in model.modules()
        if isinstance(m, KWinnersBase)
    ]
    try:
        for images, labels in batches:
            images, labels = where.inputs(images, labels)
            with where.autocast():
                logits = model(images).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(dim=1) == labels).sum()
            seen += labels.shape[0]
    finally:
        for hook in hooks:
            hook.remove()
    sums = [correct, loss_sum, zeros, torch.tensor(outputs), torch.tensor(seen)]
    totals = ranks.sum(torch.stack([v.to(where.device, torch.float64) for v in sums]))
    right, losses, zero, outs, images = totals.tolist()
    images = max(images, 1)
    return EvalStats(
        top1=right / images,
        loss=losses / images,
        activation_sparsity=zero / outs if outs else 0.0,
    )
