"""CPU benchmark: dense vs sparse ResNet-50 train step time, and MACs counted by density.

Run from the repository root::

    python bench/sparse_resnet.py              # ~2-3 minutes on 2 cores
    python bench/sparse_resnet.py --steps 3 --threads 1

For each setting (batch 32 at 64 px, batch 64 at 32 px) it times full SGD steps (forward,
backward, step, rezero) of three models built by the same builder, interleaving them so that
load from other processes hits all three alike, and prints the median step time:

* ``dense``: torchvision's ResNet-50 (all densities 1, ReLU everywhere);
* ``masks``: Numenta's sparse weights, ReLU everywhere (cost of the masks alone);
* ``sparse``: sparse weights + k-WTA (the real model).

``overhead`` is ``sparse / dense - 1`` (target <= 15%). MACs per image are counted with forward
hooks on every conv and linear: dense, with weight density applied (``x nonzero weights /
weights``), and additionally with the k-WTA zeros at the input of each bottleneck's last 1x1 conv.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.worker.training.kwinners import KWinnersBase  # noqa: E402
from services.worker.training.sparse_resnet import KWBottleneck  # noqa: E402
from services.worker.training.sparse_resnet import SparseResNetSpec  # noqa: E402
from services.worker.training.sparse_resnet import build_sparse_resnet  # noqa: E402
from services.worker.training.sparse_weights import rezero_weights  # noqa: E402
from services.worker.training.sparse_weights import weight_sparsity  # noqa: E402

DENSE = SparseResNetSpec(weight_density=1.0, stem_density=None, fc_density=1.0, percent_on=None)
MASKS = SparseResNetSpec(percent_on=None)
SPARSE = SparseResNetSpec()
MODELS = {"dense": DENSE, "masks": MASKS, "sparse": SPARSE}


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor) -> None:
    """One full SGD step on ``n x 3 x s x s`` images ``x`` and ``n`` labels ``y``."""
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    rezero_weights(model)


def time_steps(batch: int, size: int, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per train step of each model in :data:`MODELS`, measured interleaved."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))
    runs = {}
    for name, spec in MODELS.items():
        model = build_sparse_resnet(spec).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-5)
        runs[name] = (model, opt)
    times: dict[str, list[float]] = {name: [] for name in MODELS}
    names = list(runs)
    for i in range(warmup + steps):
        for name in names[i % 3 :] + names[: i % 3]:  # rotate the order every round
            model, opt = runs[name]
            start = time.perf_counter()
            train_step(model, opt, x, y)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


@torch.no_grad()
def count_macs(model: nn.Module, size: int) -> tuple[float, float, float]:
    """Per-image MACs of one ``1 x 3 x size x size`` forward: dense, by weight density, and
    by weight density with k-WTA zeros at the input of each bottleneck's ``conv3``."""
    model.eval()
    totals = [0.0, 0.0, 0.0]
    after_kwta = {
        id(block.conv3)
        for block in model.modules()
        if isinstance(block, KWBottleneck) and isinstance(block.act2, KWinnersBase)
    }

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
        weight = module.weight
        assert isinstance(weight, Tensor)
        per_output = weight[0].numel()
        dense = out.numel() * per_output
        density = float((weight != 0).sum()) / weight.numel()
        in_density = float((inputs[0] != 0).sum()) / inputs[0].numel()
        totals[0] += dense
        totals[1] += dense * density
        totals[2] += dense * density * (in_density if id(module) in after_kwta else 1.0)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    torch.manual_seed(0)
    model(torch.randn(1, 3, size, size))
    for handle in handles:
        handle.remove()
    return totals[0], totals[1], totals[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(
        f"train step, median of {args.steps} after {args.warmup} warm-up, "
        f"{args.threads} threads, fp32 CPU"
    )
    print(
        f"{'setting':<16}{'dense s':>9}{'masks s':>9}{'sparse s':>10}"
        f"{'masks ovh':>11}{'sparse ovh':>12}"
    )
    for batch, size in ((32, 64), (64, 32)):
        t = time_steps(batch, size, args.steps, args.warmup)
        print(
            f"{f'b{batch} @ {size}px':<16}{t['dense']:>9.3f}{t['masks']:>9.3f}{t['sparse']:>10.3f}"
            f"{t['masks'] / t['dense'] - 1:>+11.1%}{t['sparse'] / t['dense'] - 1:>+12.1%}"
        )

    model = build_sparse_resnet(SPARSE)
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    nonzero = sum(int((w != 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    print(
        f"\nsparse ResNet-50 conv+fc weights: {nonzero / 1e6:.2f}M of {total / 1e6:.2f}M "
        f"non-zero, {weight_sparsity(model):.1%} sparse"
    )
    print("\nMACs per image (G): dense | weight density | + k-WTA inputs of conv3")
    for size in (32, 64, 224):
        dense, weighted, kwta = count_macs(model, size)
        print(
            f"{f'{size} px':<16}{dense / 1e9:>8.3f} | {weighted / 1e9:>6.3f} "
            f"({weighted / dense:.1%}) | {kwta / 1e9:>6.3f} ({kwta / dense:.1%})"
        )


if __name__ == "__main__":
    main()
