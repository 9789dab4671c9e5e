"""A fused Triton selection of the k-th largest value along the last dimension (CUDA).

:func:`kth_largest` is the threshold of :func:`~services.worker.training.kwinners.kwinners`
without ``topk``: each program loads a block of rows (one row = the channels of one ``(n, h, w)``
position, contiguous in channels_last) into registers once and bisects the row's k-th largest
value over the 2^32 float32 bit patterns, counting ``values >= candidate`` in registers at each
of the 32 steps. Floats are compared through an order-preserving map to int32 (non-negative bit
patterns as they are, negative ones with the 31 low bits flipped; -0.0 sorts below +0.0), so the
result is exactly the value ``topk(k).values.amin()`` returns: the same threshold, hence the same
winners, ties included. ``topk`` instead writes k values and indices per row to memory and reads
them back for the minimum.

Importing this module imports Triton; :mod:`~services.worker.training.kwinners` imports it on the
first CUDA call only. With ``TRITON_INTERPRET=1`` set before the import, the same kernel runs on
CPU tensors (how its test runs without a GPU).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

#: Rows wider than this fall back to ``topk`` (a whole row must fit in one program's registers).
MAX_ROW = 4096
#: Dtypes whose every value converts to float32 exactly (the kernel compares float32 bits).
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: Values one program holds: the rows of a block times the padded row width.
BLOCK_VALUES = 4096


@triton.jit
def _kth_largest_rows(
    values_ptr,
    out_ptr,
    rows,
    width,
    k,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_WIDTH: tl.constexpr,
):
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    col = tl.arange(0, BLOCK_WIDTH)
    valid = (row[:, None] < rows) & (col[None, :] < width)
    offsets = row.to(tl.int64)[:, None] * width + col[None, :]  # no int32 overflow
    values = tl.load(values_ptr + offsets, mask=valid, other=0.0)
    bits = values.to(tl.float32).to(tl.int32, bitcast=True)
    keys = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    # Invariant: at least k keys of the row are >= lo; the range [lo, hi] halves each step.
    lo = tl.full([BLOCK_ROWS], -2147483648, tl.int64)
    hi = tl.full([BLOCK_ROWS], 2147483647, tl.int64)
    for _ in range(32):
        mid = lo + (hi - lo + 1) // 2
        above = (keys >= mid.to(tl.int32)[:, None]) & valid
        enough = tl.sum(above.to(tl.int32), axis=1) >= k
        lo = tl.where(enough, mid, lo)
        hi = tl.where(enough, hi, mid - 1)
    key = lo.to(tl.int32)
    kth = tl.where(key >= 0, key, key ^ 0x7FFFFFFF).to(tl.float32, bitcast=True)
    tl.store(out_ptr + row, kth.to(out_ptr.dtype.element_ty), mask=row < rows)


def supports(values: Tensor) -> bool:
    """Whether :func:`kth_largest` takes ``values`` (dtype and row width)."""
    return values.dtype in DTYPES and values.shape[-1] <= MAX_ROW


def kth_largest(values: Tensor, k: int) -> Tensor:
    """The ``k``-th largest of each row along the last dimension, as ``values[..., :1]``'s shape.

    Args:
        values: ``... x c`` tensor that :func:`supports`; a non-contiguous one is copied first
            (channels_last maps moved to ``n h w c`` are contiguous).
        k: ``1 <= k <= c``.
    """
    width = values.shape[-1]
    if not supports(values) or not 1 <= k <= width:
        raise ValueError(
            f"need a {'/'.join(map(str, DTYPES))} tensor and 1 <= k <= width <= {MAX_ROW}, "
            f"got {values.dtype}, k={k}, width={width}"
        )
    flat = values.reshape(-1, width).contiguous()
    out = torch.empty(flat.shape[0], dtype=values.dtype, device=values.device)
    block_width = triton.next_power_of_2(width)
    block_rows = max(1, BLOCK_VALUES // block_width)
    grid = (triton.cdiv(flat.shape[0], block_rows),)
    _kth_largest_rows[grid](
        flat, out, flat.shape[0], width, k, BLOCK_ROWS=block_rows, BLOCK_WIDTH=block_width
    )
    return out.view(*values.shape[:-1], 1)
