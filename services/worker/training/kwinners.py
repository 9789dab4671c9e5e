"""k-winners-take-all (k-WTA) activations with boosting and a fused ReLU.

Winners are ranked by the boosted score ``x * exp(-boost_strength * duty_cycle)``; the *unboosted*
``x`` of each winner passes, everything else becomes 0. The threshold is the k-th largest score
(:func:`kth_largest`: a fused Triton selection on CUDA, the smallest of ``topk``'s values
elsewhere; no index scatter), clamped at 0 so that negatives never win
(the fused ReLU). The mask is computed under ``no_grad`` and applied with ``masked_fill``, so the
gradient is 1 for winners and 0 elsewhere. Ties at the threshold all win (no tie-breaking).

Duty cycles (per channel, training mode only) follow
``dc = (dc * (period - batch) + active) / period`` with ``period = min(duty_cycle_period,
samples seen)``; ``active`` counts outputs > 0 per channel over batch, h and w, divided by
``h * w``. :meth:`KWinnersBase.decay_boost` multiplies the boost strength by
``boost_strength_factor``; the training loop calls :func:`decay_boost` once per epoch. The boost
strength and the sample count are Python numbers (no GPU sync per step); they travel in the
module's ``extra_state``, so ``state_dict`` holds everything needed to resume.

Data-parallel training (:func:`count_over_ranks`): each step's per-channel counts are summed
over the ranks with one all-reduce of ``c`` integers per module, and the batch counts as the
global batch. Every rank then folds the same numbers into the same duty cycles and sample count,
which equal a single process's on the whole global batch. (Broadcasting rank 0's buffers instead
would keep the ranks equal but average over rank 0's share of the data only, and DDP's buffer
broadcast would also resend every weight mask on every step.)
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

import torch
from torch import Tensor
from torch import nn


def kwinners(x: Tensor, scores: Tensor, k: int, dim: int, inplace: bool = False) -> Tensor:
    """Keep the ``k`` largest ``scores`` along ``dim`` (at least 0) and zero the rest of ``x``.

    Args:
        x: Values to pass on, any shape; may require grad.
        scores: Ranking scores, the shape of ``x`` (e.g. boosted ``x``); never differentiated.
        k: Winners per slice along ``dim``, ``1 <= k <= x.shape[dim]``.
        dim: The dimension ranked over.
        inplace: Overwrite ``x`` (allowed where autograd does not need ``x`` itself).

    Returns:
        A tensor the shape of ``x``: ``x`` where ``scores >= max(k-th largest score, 0)``, else 0.
    """
    with torch.no_grad():
        # Ranked along the last dimension: a free view of channels_last maps.
        threshold = kth_largest(scores.movedim(dim, -1), k).movedim(-1, dim)
        off = scores < threshold.clamp_(min=0)
    return x.masked_fill_(off, 0) if inplace else x.masked_fill(off, 0)


def kth_largest(values: Tensor, k: int) -> Tensor:
    """The ``k``-th largest value along the last dimension (kept, as size 1).

    On CUDA, float32/bfloat16/float16 rows of up to 4,096 values go to the fused Triton
    selection (:mod:`~services.worker.training.kth_triton`), which returns exactly the value of
    :func:`topk_threshold`; elsewhere (CPU, wider rows, other dtypes, no Triton) it is
    :func:`topk_threshold` itself.
    """
    if values.is_cuda:
        fused = _fused_selection()
        if fused is not None and fused.supports(values):
            result: Tensor = fused.kth_largest(values, k)
            return result
    return topk_threshold(values, k)


def topk_threshold(values: Tensor, k: int) -> Tensor:
    """The reference selection: the smallest of ``topk``'s ``k`` values along the last dimension.

    ``topk`` along the last dimension took 0.45-0.87x ``kthvalue``'s time on an H100 (batch
    128) and 0.62-0.83x on 2 CPU cores; see docs/sparse-resnet50.md.
    """
    return values.topk(k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)


@functools.cache
def _fused_selection() -> ModuleType | None:
    """The Triton selection module, imported on first use; None where Triton is missing."""
    try:
        return importlib.import_module("services.worker.training.kth_triton")
    except ImportError:
        return None


class KWinnersBase(nn.Module):
    """Boosting, duty cycles and ``k`` for the k-WTA modules; subclasses define ``forward``.

    Args:
        channels: Number of channels ``c`` that carry a duty cycle.
        percent_on: Fraction of units that win (of ``c``, or of ``c*h*w`` for global k-WTA).
        k_inference_factor: ``k`` is multiplied by this in eval mode.
        boost_strength: Initial boost strength (a Python float, >= 0).
        boost_strength_factor: Multiplier applied by :meth:`decay_boost`.
        duty_cycle_period: Upper bound of the averaging period, in samples.
        inplace: Write the output into the input tensor.
    """

    def __init__(
        self,
        channels: int,
        percent_on: float,
        k_inference_factor: float = 1.0,
        boost_strength: float = 1.0,
        boost_strength_factor: float = 0.9,
        duty_cycle_period: int = 1000,
        inplace: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 < percent_on <= 1.0:
            raise ValueError(f"percent_on must be in (0, 1], got {percent_on}")
        if boost_strength < 0.0:
            raise ValueError(f"boost_strength must be >= 0, got {boost_strength}")
        self.channels = channels
        self.percent_on = percent_on
        self.k_inference_factor = k_inference_factor
        self.boost_strength = float(boost_strength)
        self.boost_strength_factor = boost_strength_factor
        self.duty_cycle_period = duty_cycle_period
        self.inplace = inplace
        self.samples_seen = 0
        self.world_size = 1  # processes whose counts are summed (see count_over_ranks)
        self.register_buffer("duty_cycles", torch.zeros(channels))

    duty_cycles: Tensor

    def k_for(self, units: int) -> int:
        """Winners among ``units`` candidates in the current mode (at least 1, at most all)."""
        factor = 1.0 if self.training else self.k_inference_factor
        return min(units, max(1, round(units * self.percent_on * factor)))

    def boost_factors(self, dtype: torch.dtype) -> Tensor | None:
        """Per-channel ``exp(-boost_strength * duty_cycle)`` (``c``), or None when boost is 0."""
        if self.boost_strength == 0.0:
            return None
        return torch.exp(self.duty_cycles * -self.boost_strength).to(dtype)

    @torch.no_grad()
    def update_duty_cycles(self, active: Tensor, batch: int, positions: int = 1) -> None:
        """Fold one batch into the duty cycles: ``dc = (dc*(period-batch) + active) / period``.

        Computed as ``dc * ((period-batch)/period) + counts / (positions*period)``: two in-place
        ops on ``c`` values, with the divisions done on Python numbers.

        Args:
            active: ``c`` counts of outputs > 0 in this batch (over ``n, h, w``).
            batch: Number of samples in the batch, ``n``.
            positions: Spatial positions per sample the counts are divided by (``h*w``).
        """
        if self.world_size > 1:  # the same global counts on every rank
            torch.distributed.all_reduce(active)
            batch *= self.world_size
        self.samples_seen += batch
        period = min(self.duty_cycle_period, self.samples_seen)
        self.duty_cycles.mul_((period - batch) / period)
        self.duty_cycles.add_(active, alpha=1.0 / (positions * period))

    def decay_boost(self) -> None:
        """Multiply the boost strength by ``boost_strength_factor`` (once per epoch)."""
        self.boost_strength *= self.boost_strength_factor

    def get_extra_state(self) -> dict[str, Any]:
        return {"boost_strength": self.boost_strength, "samples_seen": self.samples_seen}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.boost_strength = float(state["boost_strength"])
        self.samples_seen = int(state["samples_seen"])

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, percent_on={self.percent_on}, "
            f"boost_strength={self.boost_strength:.4g}"
        )


class KWinners2d(KWinnersBase):
    """2-D k-WTA on ``n x c x h x w`` maps.

    ``local=True`` ranks across channels independently at every ``(n, h, w)``, with
    ``k = round(c x percent_on)``; ``local=False`` ranks over all ``c*h*w`` values of a sample.
    """

    def __init__(
        self, channels: int, percent_on: float, local: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(channels, percent_on, **kwargs)
        self.local = local

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: ``n x c x h x w``. Returns: ``n x c x h x w`` with the losers zeroed."""
        n, c, h, w = x.shape
        factors = self.boost_factors(x.dtype)
        scores = x.detach() if factors is None else x.detach() * factors.view(1, c, 1, 1)
        if self.local:
            out = kwinners(x, scores, self.k_for(c), dim=1, inplace=self.inplace)
        else:
            flat = kwinners(
                x.flatten(1), scores.flatten(1), self.k_for(c * h * w), 1, self.inplace
            )
            out = flat.view_as(x)
        if self.training:  # out >= 0, so non-zero means > 0
            self.update_duty_cycles(torch.count_nonzero(out, dim=(0, 2, 3)), n, h * w)
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, local={self.local}"


def count_over_ranks(model: nn.Module, world_size: int) -> None:
    """Make every k-WTA module of ``model`` sum its duty-cycle counts over ``world_size`` ranks
    of the default process group (equal per-rank batches; 1 = this process alone)."""
    for module in model.modules():
        if isinstance(module, KWinnersBase):
            module.world_size = world_size


def decay_boost(model: nn.Module) -> None:
    """Call :meth:`KWinnersBase.decay_boost` on every k-WTA module of ``model``."""
    for module in model.modules():
        if isinstance(module, KWinnersBase):
            module.decay_boost()
