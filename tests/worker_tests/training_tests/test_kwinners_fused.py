"""The fused Triton k-th-largest selection against the ``topk`` reference: the same threshold,
hence the same k-WTA winners, on CPU (Triton's interpreter, in a child process: the switch is
read when the kernel is defined) and on CUDA when there is one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from services.worker.training.kwinners import KWinners2d
from services.worker.training.kwinners import kth_largest
from services.worker.training.kwinners import kwinners
from services.worker.training.kwinners import topk_threshold

REPO = Path(__file__).resolve().parents[3]
#: (leading shape, width, k): widths below, at and above a power of two; k from 1 to all.
CASES = [
    ((2, 3, 3), 20, 6),
    ((4, 5), 128, 38),
    ((3,), 100, 30),
    ((7,), 5, 1),
    ((7,), 5, 5),
    ((2, 2), 1, 1),
    ((64,), 64, 19),
]
DTYPES = ["float32", "bfloat16", "float16"]


def _inputs(lead: tuple[int, ...], width: int, dtype: str, kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(width * 31 + len(lead))
    if kind == "ties":  # few distinct values, many ties at the threshold, signed zeros
        values = torch.randint(-2, 3, (*lead, width), generator=gen).float() / 2
        values[..., ::3] = -0.0
    else:
        values = torch.randn(*lead, width, generator=gen) * 3
    return values.to(getattr(torch, dtype))


def mismatches(device: str) -> list[str]:
    """Every case where the fused selection's threshold or winners differ from the reference."""
    from services.worker.training import kth_triton

    found = []
    for lead, width, k in CASES:
        for dtype in DTYPES:
            for kind in ("random", "ties"):
                scores = _inputs(lead, width, dtype, kind).to(device)
                if kind == "ties":  # rows with gaps between them: copied, not misread
                    scores = torch.cat([scores, scores], dim=-1)[..., :width]
                fused = kth_triton.kth_largest(scores, k)
                reference = topk_threshold(scores, k)
                same_winners = torch.equal(
                    scores >= fused.clamp(min=0), scores >= reference.clamp(min=0)
                )
                if not (torch.equal(fused, reference) and same_winners):
                    found.append(f"{lead} x {width}, k={k}, {dtype}, {kind}")
    return found


def test_fused_selection_matches_topk_on_cpu() -> None:
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; from tests.worker_tests.training_tests.test_kwinners_fused "
            "import mismatches; json.dump(mismatches('cpu'), sys.stdout)",
        ],
        cwd=REPO,
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == []


def test_cpu_path_is_the_reference() -> None:
    scores = _inputs((3, 4), 20, "float32", "random")
    assert torch.equal(kth_largest(scores, 6), topk_threshold(scores, 6))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (Triton kernel on GPU)")
def test_fused_selection_matches_topk_on_cuda() -> None:
    assert mismatches("cuda") == []
    torch.manual_seed(0)
    x = torch.randn(8, 96, 14, 14, device="cuda").to(memory_format=torch.channels_last)
    kw = KWinners2d(96, percent_on=0.3).cuda()
    kw.duty_cycles.uniform_(0, 0.5)
    scores = x * torch.exp(kw.duty_cycles * -kw.boost_strength).view(1, 96, 1, 1)
    threshold = topk_threshold(scores.movedim(1, -1), kw.k_for(96)).movedim(-1, 1)
    expected = x.masked_fill(scores < threshold.clamp(min=0), 0)
    assert torch.equal(kwinners(x, scores, kw.k_for(96), dim=1), expected)
    assert torch.equal(kw(x), expected)


def test_too_wide_or_bad_k_is_refused() -> None:
    from services.worker.training import kth_triton

    with pytest.raises(ValueError, match="width=4097"):
        kth_triton.kth_largest(torch.zeros(2, kth_triton.MAX_ROW + 1), 3)
    with pytest.raises(ValueError, match="k=0"):
        kth_triton.kth_largest(torch.zeros(2, 8), 0)
    with pytest.raises(ValueError, match="float64"):  # not exact in the kernel's float32
        kth_triton.kth_largest(torch.zeros(2, 8, dtype=torch.float64), 3)
    assert not kth_triton.supports(torch.zeros(2, 8, dtype=torch.float64))
