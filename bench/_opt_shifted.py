"""Synthetic problems whose cheap-task optimum shifts by a controlled amount.

``value(x, s) = H6(x - d(s) u) + 0.4 l(s) + noise`` with ``l(s) = log2(1 / s) / 3`` (0 at full
cost, 1 at the cheapest task), ``d(s) = shift * l(s)``, ``u = (1, 1, 0, 0, 0, 0) / sqrt(2)``
and ``H6`` the 6-D Hartmann function (minimized, optimum -3.32237 at
``x* = (0.20, 0.15, 0.48, 0.28, 0.31, 0.66)``), noise ``N(0, 0.01^2)``. So each halving of the
training budget moves the optimum by ``shift / 3`` along the first two coordinates (as the best
learning rate moves with the number of epochs) and adds an offset. Three members:

* ``shift0``: ``shift = 0``, the tasks agree up to the offset and the noise;
* ``shift_small``: ``shift = 0.05``; the cheapest task's optimum has a full-cost regret of 0.029
  (0.9% of the range);
* ``shift_large``: ``shift = 0.2``; the cheapest task's optimum has a full-cost regret of 0.43
  (13% of the range), and even the half-cost task's optimum 0.05.

A curve continues: an evaluation at ``s`` continued to ``s'`` returns what one at ``s'`` would,
so the problems declare continuation. Regret is ``H6(x) - H6(x*)``; the range is Hartmann's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SHIFTS = {"shift0": 0.0, "shift_small": 0.05, "shift_large": 0.2}
NOISE = 0.01
OFFSET = 0.4
OPTIMUM = -3.32237
SPAN = 3.32237
NAMES = tuple(f"x{i}" for i in range(1, 7))
_DIRECTION = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 0.0]) / math.sqrt(2.0)
#: The 6-D Hartmann function's published constants (Dixon and Szego 1978).
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_A = np.array(
    [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ]
)
_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def level(s: float) -> float:
    """``log2(1 / s) / 3``: 0 at full cost, 1 at cost 1/8."""
    return math.log2(1.0 / s) / 3.0


def hartmann(x: np.ndarray) -> float:
    """Noise-free 6-D Hartmann at ``x`` (length 6; defined outside the unit cube too)."""
    return float(-(_ALPHA * np.exp(-(_A * (x - _P) ** 2).sum(axis=1))).sum())


def value(shift: float, assignments: dict[str, Any], s: float) -> float:
    """Noise-free value of ``assignments`` at fidelity ``s`` for a given shift."""
    x = np.array([float(assignments[n]) for n in NAMES])
    return hartmann(x - shift * level(s) * _DIRECTION) + OFFSET * level(s)


PARAMETERS: tuple[dict[str, Any], ...] = tuple(
    {"name": n, "type": "double", "bounds": {"min": 0.0, "max": 1.0}} for n in NAMES
)
