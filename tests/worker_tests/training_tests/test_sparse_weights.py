from __future__ import annotations

import pytest
import torch
from torch import nn

from services.worker.training.sparse_weights import SparseConv2d
from services.worker.training.sparse_weights import SparseLinear
from services.worker.training.sparse_weights import random_mask
from services.worker.training.sparse_weights import rezero_weights
from services.worker.training.sparse_weights import sparse_like
from services.worker.training.sparse_weights import weight_sparsity


def _kept_per_unit(weight: torch.Tensor) -> torch.Tensor:
    return (weight.reshape(weight.shape[0], -1) != 0).sum(dim=1)


@pytest.mark.parametrize("density", [0.05, 0.25, 0.5, 0.9, 1.0])
def test_random_mask_keeps_exact_count_per_row(density: float) -> None:
    mask = random_mask(37, 300, density, torch.Generator().manual_seed(1))
    expected = max(1, round(density * 300))
    assert mask.dtype == torch.bool
    assert torch.equal(mask.sum(dim=1), torch.full((37,), expected))


def test_random_mask_is_seeded_and_differs_between_rows() -> None:
    a = random_mask(8, 64, 0.25, torch.Generator().manual_seed(3))
    b = random_mask(8, 64, 0.25, torch.Generator().manual_seed(3))
    c = random_mask(8, 64, 0.25, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a}) > 1


@pytest.mark.parametrize("density", [0.0, 1.5])
def test_random_mask_rejects_bad_density(density: float) -> None:
    with pytest.raises(ValueError, match="density"):
        random_mask(4, 4, density)


def test_conv_mask_counts_per_output_channel() -> None:
    conv = SparseConv2d(
        6, 10, 3, padding=1, density=0.3, generator=torch.Generator().manual_seed(0)
    )
    fan_in = 6 * 3 * 3
    expected = round(0.3 * fan_in)
    assert torch.equal(_kept_per_unit(conv.weight), torch.full((10,), expected))
    assert torch.equal(_kept_per_unit(conv.weight_mask), torch.full((10,), expected))


def test_grouped_conv_fan_in_counts_per_group() -> None:
    conv = SparseConv2d(8, 8, 3, groups=4, density=0.5, generator=torch.Generator().manual_seed(0))
    fan_in = 2 * 3 * 3
    assert torch.equal(_kept_per_unit(conv.weight), torch.full((8,), round(0.5 * fan_in)))


def test_counts_stay_exact_after_sgd_with_momentum_and_weight_decay() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    conv = SparseConv2d(3, 8, 3, padding=1, density=0.25, generator=gen)
    linear = SparseLinear(8 * 6 * 6, 5, density=0.1, generator=gen)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), linear)
    layers = (conv, linear)
    masks = [m.weight_mask.clone() for m in layers]
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(30):
        x = torch.randn(4, 3, 6, 6)
        loss = model(x).pow(2).mean() - model(x).mean()
        opt.zero_grad()
        loss.backward()
        for layer, mask in zip(layers, masks, strict=True):
            assert layer.weight.grad is not None
            assert torch.all(layer.weight.grad[mask == 0] == 0)  # the grad hook
        opt.step()
        for layer, mask in zip(layers, masks, strict=True):
            # even without rezero, momentum and decay cannot revive a pruned weight
            assert torch.all(layer.weight[mask == 0] == 0)
        rezero_weights(model)
    for layer, mask in zip(layers, masks, strict=True):
        assert torch.equal(layer.weight != 0, mask.bool())
        state = opt.state[layer.weight]["momentum_buffer"]
        assert torch.all(state[mask == 0] == 0)
    assert torch.equal(_kept_per_unit(conv.weight), torch.full((8,), round(0.25 * 27)))
    assert torch.equal(_kept_per_unit(linear.weight), torch.full((5,), round(0.1 * 288)))


def test_reset_parameters_reapplies_mask() -> None:
    layer = SparseLinear(50, 7, density=0.2, generator=torch.Generator().manual_seed(0))
    mask = layer.weight_mask.clone()
    layer.reset_parameters()
    assert torch.equal(layer.weight != 0, mask.bool())


def test_sparse_like_copies_weights_then_masks() -> None:
    dense = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
    sparse = sparse_like(dense, 0.5, torch.Generator().manual_seed(0))
    assert isinstance(sparse, SparseConv2d)
    assert (sparse.stride, sparse.padding, sparse.bias) == ((2, 2), (1, 1), None)
    assert torch.equal(sparse.weight, dense.weight * sparse.weight_mask)
    assert sparse_like(dense, 1.0) is dense
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(sparse(x), nn.functional.conv2d(x, sparse.weight, None, 2, 1))


def test_weight_sparsity_is_measured() -> None:
    gen = torch.Generator().manual_seed(0)
    sparse = SparseLinear(100, 10, bias=False, density=0.2, generator=gen)
    dense = nn.Linear(100, 10, bias=False)
    model = nn.Sequential(sparse, dense)
    assert weight_sparsity(model, sparse_only=True) == pytest.approx(0.8)
    assert weight_sparsity(model) == pytest.approx(0.4)
    assert weight_sparsity(nn.ReLU()) == 0.0
