"""SGD without weight decay on BatchNorm and biases, and a OneCycle schedule sized to the run.

The schedule follows Numenta's recipe in shape: linear warm-up from ``max_lr / div_factor`` to
``max_lr`` over ``pct_start`` of the run, then a linear anneal to
``max_lr / div_factor / final_div_factor``; stepped per batch, no momentum cycling. It is always
built for the whole (possibly shortened) run, ``epochs x steps_per_epoch`` steps, never truncated.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR


def build_sgd(
    model: nn.Module, lr: float, momentum: float, weight_decay: float
) -> torch.optim.SGD:
    """SGD with two groups: conv/linear weights decay, BatchNorm parameters and biases do not.

    Args:
        model: The network; parameters of dimension <= 1 (BN gamma/beta, biases) skip decay.
        lr: Initial learning rate (the scheduler overwrites it).
        momentum: SGD momentum (0 in Numenta's recipe).
        weight_decay: L2 coefficient of the decayed group.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def build_onecycle(
    optimizer: torch.optim.Optimizer,
    max_lr: float,
    total_steps: int,
    pct_start: float,
    div_factor: float,
    final_div_factor: float,
) -> OneCycleLR:
    """A linear OneCycle over ``total_steps`` optimizer steps (call ``step()`` once per batch)."""
    return OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=total_steps,
        pct_start=pct_start,
        anneal_strategy="linear",
        cycle_momentum=False,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )
