from __future__ import annotations

import pytest
import torch
from torch import nn

from services.worker.training.optim import build_onecycle
from services.worker.training.optim import build_sgd


def test_no_weight_decay_on_batchnorm_and_biases() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    opt = build_sgd(model, lr=0.1, momentum=0.0, weight_decay=1e-4)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 1e-4 and plain["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert len(plain["params"]) == 4  # conv bias, bn gamma/beta, linear bias


def test_onecycle_covers_the_whole_shortened_run() -> None:
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    steps = 40
    sched = build_onecycle(opt, 6.0, steps, 0.25, div_factor=6.0, final_div_factor=4000.0)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1.0)
    assert max(lrs) == pytest.approx(6.0) and lrs.index(max(lrs)) == round(0.25 * steps) - 1
    assert lrs[-1] == pytest.approx(2.5e-4)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
