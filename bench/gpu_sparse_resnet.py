"""GPU benchmark: dense vs sparse ResNet-50 training images/s (bf16, channels_last), k-WTA cost.

Usually run through ``bench/gpu_sparse_resnet.sh``. On CUDA it trains on synthetic 224 px
batches under bf16 autocast with channels_last inputs and weights, and prints for three models
built by the same builder (``dense``: torchvision ResNet-50; ``masks``: sparse weights, ReLU;
``sparse``: sparse weights + k-WTA):

* training images/s (forward, backward, SGD step, rezero), median over timed windows;
* k-WTA time per step, two ways: the step-time difference ``sparse - masks``, and the summed
  forward time of the 13 k-WTA modules measured with CUDA events.

``--device cpu --tiny`` is a seconds-long smoke run of the same code (narrow net, 32 px).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.worker.training.kwinners import KWinnersBase  # noqa: E402
from services.worker.training.sparse_resnet import SparseResNetSpec  # noqa: E402
from services.worker.training.sparse_resnet import build_sparse_resnet  # noqa: E402
from services.worker.training.sparse_weights import rezero_weights  # noqa: E402

KINDS = {
    "dense": {"weight_density": 1.0, "stem_density": None, "fc_density": 1.0, "percent_on": None},
    "masks": {"percent_on": None},
    "sparse": {},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model: nn.Module, device: torch.device, x: Tensor, y: Tensor) -> Callable[[], None]:
    """A closure running one SGD training step on the fixed batch ``x`` (``n x 3 x s x s``)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)
    amp = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rezero_weights(model)

    return step


def images_per_second(
    step: Callable[[], None], device: torch.device, batch: int, steps: int, windows: int
) -> float:
    """Median over ``windows`` timed windows of ``steps`` steps each."""
    rates = []
    for _ in range(windows):
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        rates.append(batch * steps / (time.perf_counter() - start))
    return statistics.median(rates)


def kwta_forward_ms(
    model: nn.Module, step: Callable[[], None], device: torch.device, steps: int
) -> float:
    """Mean summed forward time of all k-WTA modules per training step (CUDA events on GPU)."""
    cuda = device.type == "cuda"
    spans: list[tuple[Any, Any]] = []
    starts: dict[int, Any] = {}

    def now() -> Any:
        if not cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def before(module: nn.Module, _inputs: object) -> None:
        starts[id(module)] = now()

    def after(module: nn.Module, _inputs: object, _out: object) -> None:
        spans.append((starts.pop(id(module)), now()))

    kws = [m for m in model.modules() if isinstance(m, KWinnersBase)]
    handles = [m.register_forward_pre_hook(before) for m in kws]
    handles += [m.register_forward_hook(after) for m in kws]
    for _ in range(steps):
        step()
    sync(device)
    for handle in handles:
        handle.remove()
    total = sum(s.elapsed_time(e) if cuda else (e - s) * 1000 for s, e in spans)
    return float(total) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="narrow net, 32 px: a smoke test")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    width, size, batch = 1.0, args.image_size, args.batch_size
    if args.tiny:
        width, size, batch = 0.125, 32, 8
        args.steps, args.windows, args.warmup = 2, 1, 1
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        torch.set_num_threads(2)
        name = "cpu"
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    print(
        f"device {name}, torch {torch.__version__}, batch {batch} at {size} px, width {width}, "
        f"{'bf16 autocast + channels_last' if device.type == 'cuda' else 'fp32'}"
    )

    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,), device=device)
    results: dict[str, float] = {}
    sparse_model, sparse_step = None, None
    for kind, overrides in KINDS.items():
        spec = SparseResNetSpec(width=width, **overrides)  # type: ignore[arg-type]
        model = build_sparse_resnet(spec).to(device, memory_format=fmt).train()
        step = make_step(model, device, x, y)
        for _ in range(args.warmup):
            step()
        results[kind] = images_per_second(step, device, batch, args.steps, args.windows)
        print(f"{kind:<8}{results[kind]:>10.1f} images/s")
        if kind == "sparse":
            sparse_model, sparse_step = model, step
        else:
            del model, step
    assert sparse_model is not None and sparse_step is not None
    ms = {k: batch / v * 1000 for k, v in results.items()}
    print(f"step ms: dense {ms['dense']:.2f}, masks {ms['masks']:.2f}, sparse {ms['sparse']:.2f}")
    print(
        f"overhead vs dense: masks {ms['masks'] / ms['dense'] - 1:+.1%}, "
        f"sparse {ms['sparse'] / ms['dense'] - 1:+.1%}"
    )
    print(
        f"k-WTA per step: {ms['sparse'] - ms['masks']:.2f} ms (sparse - masks step time), "
        f"{kwta_forward_ms(sparse_model, sparse_step, device, args.steps):.2f} ms "
        f"(forward of the 13 k-WTA modules)"
    )


if __name__ == "__main__":
    main()
