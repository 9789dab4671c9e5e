from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from services.worker.training.kwinners import KWinners2d
from services.worker.training.kwinners import decay_boost
from services.worker.training.kwinners import kwinners


def _tie_free_positive(*shape: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    return (torch.randperm(n, generator=gen).float() + 1.0).reshape(shape) / n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_local_2d_keeps_exactly_k_per_position(dtype: torch.dtype) -> None:
    kw = KWinners2d(20, percent_on=0.3, boost_strength=0.0)
    x = _tie_free_positive(3, 20, 5, 4).to(dtype)
    out = kw(x)
    assert out.dtype == dtype
    assert torch.equal((out != 0).sum(dim=1), torch.full((3, 5, 4), 6))
    top = x.topk(6, dim=1).values
    assert torch.equal(out.sort(dim=1, descending=True).values[:, :6], top)  # unboosted pass


def test_global_2d_keeps_exactly_k_per_sample() -> None:
    kw = KWinners2d(8, percent_on=0.1, local=False, boost_strength=0.0)
    x = _tie_free_positive(2, 8, 5, 5)
    out = kw(x)
    k = round(8 * 25 * 0.1)
    assert torch.equal((out != 0).flatten(1).sum(dim=1), torch.tensor([k, k]))
    winners = torch.zeros(2, 200, dtype=torch.bool)
    winners.scatter_(1, x.flatten(1).topk(k, dim=1).indices, True)
    assert torch.equal(out.flatten(1) != 0, winners)


def test_function_keeps_exactly_k_per_row() -> None:
    x = _tie_free_positive(7, 10)
    out = kwinners(x, x, 3, dim=1)
    winners = torch.zeros(7, 10, dtype=torch.bool).scatter_(1, x.topk(3, dim=1).indices, True)
    assert torch.equal(out != 0, winners)
    assert torch.equal(out[winners], x[winners])


def _ranked_on_itself(x: torch.Tensor) -> torch.Tensor:
    return kwinners(x, x.detach(), 3, dim=1)


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (_ranked_on_itself, (4, 6)),
        (KWinners2d(6, 0.5), (4, 6, 3, 3)),
        (KWinners2d(6, 0.5, local=False), (4, 6, 3, 3)),
    ],
)
def test_gradient_flows_only_to_winners(
    module: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...]
) -> None:
    x = (_tie_free_positive(*shape) - 0.3).requires_grad_(True)
    out = module(x)
    weights = torch.randn(shape)
    (out * weights).sum().backward()
    assert x.grad is not None
    winners = out != 0
    assert winners.any() and (~winners).any()
    assert torch.equal(x.grad, torch.where(winners, weights, torch.zeros(())))


def test_inplace_gradient_matches_out_of_place() -> None:
    x = _tie_free_positive(2, 8, 3, 3) - 0.5
    grads = []
    for inplace in (False, True):
        leaf = x.clone().requires_grad_(True)
        out = KWinners2d(8, 0.5, inplace=inplace)(leaf * 1.0)
        out.pow(2).sum().backward()
        assert leaf.grad is not None
        grads.append(leaf.grad)
    assert torch.equal(grads[0], grads[1])


def test_negatives_never_win() -> None:
    kw = KWinners2d(4, percent_on=0.75, boost_strength=0.0)
    x = torch.tensor([-3.0, -1.0, 2.0, -2.0]).view(1, 4, 1, 1)
    assert torch.equal(kw(x).flatten(), torch.tensor([0.0, 0.0, 2.0, 0.0]))
    everywhere = KWinners2d(5, 0.6, local=False)
    assert torch.equal(everywhere(-torch.rand(3, 5, 2, 2) - 0.1), torch.zeros(3, 5, 2, 2))


def test_boosting_ranks_by_boosted_score_and_passes_unboosted_value() -> None:
    kw = KWinners2d(2, percent_on=0.5, boost_strength=2.0)
    kw.duty_cycles.copy_(torch.tensor([0.5, 0.0]))  # channel 0 has been busy
    x = torch.tensor([1.0, 0.5]).view(1, 2, 1, 1)  # boosted: 1*exp(-1) = 0.37 < 0.5
    kw.eval()
    assert torch.equal(kw(x).flatten(), torch.tensor([0.0, 0.5]))
    kw.boost_strength = 0.0
    assert torch.equal(kw(x).flatten(), torch.tensor([1.0, 0.0]))


def test_duty_cycles_follow_the_definition() -> None:
    kw = KWinners2d(4, percent_on=0.5, boost_strength=0.0, duty_cycle_period=3)
    kw.train()
    # x1: n=2, c=4, h=1, w=2; winners (k=2) marked by hand below.
    x1 = torch.tensor(
        [
            [[[4.0, 1.0]], [[3.0, 2.0]], [[2.0, 3.0]], [[1.0, 4.0]]],  # ch0,1 | ch2,3
            [[[5.0, -1.0]], [[-1.0, -2.0]], [[6.0, -3.0]], [[-2.0, 0.5]]],  # ch0,2 | ch3 only
        ]
    )
    kw(x1)
    active1 = torch.tensor([2.0, 1.0, 2.0, 2.0]) / 2  # count over (n, h, w) / (h*w)
    period1 = min(3, 2)
    expected = (torch.zeros(4) * (period1 - 2) + active1) / period1
    assert kw.samples_seen == 2
    assert torch.allclose(kw.duty_cycles, expected)

    x2 = torch.tensor([[[[1.0, 2.0]], [[4.0, 3.0]], [[3.0, 4.0]], [[2.0, 1.0]]]])  # ch1,2 | ch2,1
    kw(x2)
    active2 = torch.tensor([0.0, 2.0, 2.0, 0.0]) / 2
    period2 = min(3, 3)
    expected = (expected * (period2 - 1) + active2) / period2
    assert torch.allclose(kw.duty_cycles, expected)

    kw(x2)  # samples seen 4 > period 3: the period is capped
    expected = (expected * (3 - 1) + active2) / 3
    assert torch.allclose(kw.duty_cycles, expected)

    kw.eval()
    kw(x1)
    assert torch.allclose(kw.duty_cycles, expected) and kw.samples_seen == 4


def test_duty_cycles_on_1x1_maps() -> None:
    kw = KWinners2d(3, percent_on=1 / 3, boost_strength=0.0)
    kw(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [0.0, 5.0, 1.0]]).view(3, 3, 1, 1))
    assert torch.allclose(kw.duty_cycles, torch.tensor([1.0, 1.0, 1.0]) / 3)


def test_boost_decay_and_state_round_trip() -> None:
    first = KWinners2d(4, 0.5, boost_strength=1.5, boost_strength_factor=0.9)
    second = KWinners2d(4, 0.5, local=False, boost_strength=1.0, boost_strength_factor=0.5)
    model = nn.Sequential(first, nn.Sequential(nn.Identity(), second))  # found when nested too
    for _ in range(3):
        decay_boost(model)
    assert first.boost_strength == pytest.approx(1.5 * 0.9**3)
    assert second.boost_strength == pytest.approx(0.125)
    assert isinstance(first.boost_strength, float)
    first(torch.rand(5, 4, 2, 2))
    clone_first, clone_second = KWinners2d(4, 0.5), KWinners2d(4, 0.5, local=False)
    clone = nn.Sequential(clone_first, nn.Sequential(nn.Identity(), clone_second))
    clone.load_state_dict(model.state_dict())
    assert clone_first.boost_strength == first.boost_strength
    assert clone_second.boost_strength == second.boost_strength
    assert clone_first.samples_seen == 5
    assert torch.equal(clone_first.duty_cycles, first.duty_cycles)


def test_k_inference_factor_applies_in_eval_only() -> None:
    kw = KWinners2d(10, percent_on=0.2, k_inference_factor=1.5, boost_strength=0.0)
    x = _tie_free_positive(2, 10, 1, 1)
    assert torch.equal((kw(x) != 0).sum(dim=1).flatten(), torch.tensor([2, 2]))
    kw.eval()
    assert torch.equal((kw(x) != 0).sum(dim=1).flatten(), torch.tensor([3, 3]))
