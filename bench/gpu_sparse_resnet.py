"""GPU benchmark: dense vs sparse ResNet-50 training images/s (bf16, channels_last), k-WTA cost,
and the data-parallel scaling of the sparse model over the GPUs present.

Usually run through ``bench/gpu_sparse_resnet.sh``. On CUDA it trains on synthetic 224 px
batches under bf16 autocast with channels_last inputs and weights, and prints for three models
built by the same builder (``dense``: torchvision ResNet-50; ``masks``: sparse weights, ReLU;
``sparse``: sparse weights + k-WTA):

* training images/s (forward, backward, SGD step, rezero), median over timed windows, and
  sparse / dense (the goal is >= 0.85);
* k-WTA time per step, two ways: the step-time difference ``sparse - masks``, and the summed
  forward time of the 13 k-WTA modules measured with CUDA events;
* the per-position threshold alone on the k-WTA inputs of one step: ``topk`` (the reference)
  against the fused Triton selection (CUDA only);
* with several GPUs, the sparse model trained with DistributedDataParallel over all of them (one
  process per GPU, the objective's own code: duty cycles summed over the ranks, batch per GPU as
  above) and the scaling efficiency ``images/s on N GPUs / (N x images/s on one)``.

``--device cpu --tiny`` is a seconds-long smoke run of the same code (narrow net, 32 px; the
data-parallel part over 2 CPU processes with gloo).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.worker.training.distributed import EpochReporter  # noqa: E402
from services.worker.training.distributed import Ranks  # noqa: E402
from services.worker.training.distributed import run_ranks  # noqa: E402
from services.worker.training.kwinners import KWinnersBase  # noqa: E402
from services.worker.training.kwinners import count_over_ranks  # noqa: E402
from services.worker.training.kwinners import kth_largest  # noqa: E402
from services.worker.training.kwinners import topk_threshold  # noqa: E402
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


def threshold_ms(model: nn.Module, x: Tensor, device: torch.device) -> dict[str, float]:
    """Milliseconds per step of the per-position k-WTA threshold on the inputs the k-WTA modules
    of ``model`` see for batch ``x``: ``topk`` and, on CUDA, the fused selection."""
    inputs: list[tuple[Tensor, int]] = []

    def keep(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        assert isinstance(module, KWinnersBase)
        inputs.append((args[0].detach().movedim(1, -1), module.k_for(args[0].shape[1])))

    kws = [m for m in model.modules() if isinstance(m, KWinnersBase)]
    handles = [m.register_forward_pre_hook(keep) for m in kws]
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, device.type == "cuda"):
        model(x)
    for handle in handles:
        handle.remove()
    ways: dict[str, Callable[[Tensor, int], Tensor]] = {"topk": topk_threshold}
    if device.type == "cuda":
        ways["fused"] = kth_largest
    result = {}
    for name, select in ways.items():
        for _ in range(3):
            for values, k in inputs:
                select(values, k)
        sync(device)
        start = time.perf_counter()
        for _ in range(10):
            for values, k in inputs:
                select(values, k)
        sync(device)
        result[name] = (time.perf_counter() - start) * 100  # ms per step: 10 steps
    return result


def _ddp_rank(
    ranks: Ranks,
    device: torch.device,
    reporter: EpochReporter | None,
    width: float,
    batch: int,
    size: int,
    steps: int,
    windows: int,
    warmup: int,
) -> None:
    """One rank of the data-parallel measurement; rank 0 reports the run's images/s."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    torch.manual_seed(ranks.rank)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,), device=device)
    net = build_sparse_resnet(SparseResNetSpec(width=width)).to(device, memory_format=fmt)
    count_over_ranks(net, ranks.world)
    step = make_step(ranks.parallel(net, device), device, x, y)
    for _ in range(warmup):
        step()
    rate = images_per_second(step, device, batch * ranks.world, steps, windows)
    if reporter is not None:
        reporter.report(0, {"images_per_second": rate})


class _Rate:
    """Receives rank 0's report."""

    def __init__(self) -> None:
        self.images_per_second = 0.0

    def report(self, epoch: int, values: Mapping[str, float]) -> None:
        self.images_per_second = values["images_per_second"]

    def should_stop(self) -> bool:
        return False


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
    print(f"sparse / dense images/s: {results['sparse'] / results['dense']:.3f} (goal >= 0.85)")
    print(
        f"k-WTA per step: {ms['sparse'] - ms['masks']:.2f} ms (sparse - masks step time), "
        f"{kwta_forward_ms(sparse_model, sparse_step, device, args.steps):.2f} ms "
        f"(forward of the 13 k-WTA modules)"
    )
    selection = threshold_ms(sparse_model, x, device)
    print(
        "k-WTA threshold per step: "
        + ", ".join(f"{name} {value:.2f} ms" for name, value in selection.items())
    )
    del sparse_model, sparse_step
    if device.type == "cuda":
        torch.cuda.empty_cache()

    devices = (
        [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if device.type == "cuda"
        else ["cpu"] * 2
    )
    if len(devices) < 2:
        print("data-parallel scaling: one GPU present, not measured")
        return
    rate = _Rate()
    shape = (width, batch, size, args.steps, args.windows, args.warmup)
    run_ranks(_ddp_rank, shape, devices, rate)
    n = len(devices)
    print(
        f"data-parallel sparse, {n} x {devices[0].split(':')[0]}: "
        f"{rate.images_per_second:.1f} images/s ({rate.images_per_second / n:.1f} per device), "
        f"scaling efficiency {rate.images_per_second / (n * results['sparse']):.1%} "
        f"of {n} x {results['sparse']:.1f}"
    )


if __name__ == "__main__":
    main()
