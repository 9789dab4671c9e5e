from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from services.worker.training.kwinners import KWinners2d
from services.worker.training.sparse_resnet import KWBasicBlock
from services.worker.training.sparse_resnet import KWBottleneck
from services.worker.training.sparse_resnet import SparseResNetSpec
from services.worker.training.sparse_resnet import build_sparse_resnet
from services.worker.training.sparse_resnet import numenta_density
from services.worker.training.sparse_weights import SparseConv2d
from services.worker.training.sparse_weights import SparseLinear
from services.worker.training.sparse_weights import sparse_modules
from services.worker.training.sparse_weights import weight_sparsity


def test_numenta_density_table() -> None:
    cases = {27: 0.7, 64: 0.7, 147: 0.5, 256: 0.4, 576: 0.3, 1024: 0.2, 2304: 0.2, 4608: 0.15}
    assert {f: numenta_density(f) for f in cases} == cases


def test_default_resnet50_matches_published_sparsity() -> None:
    """Full width, 1000 classes: the exact network whose counts Numenta published."""
    model = build_sparse_resnet(SparseResNetSpec())
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    total = sum(w.numel() for w in weights)
    nonzero = sum(int((w != 0).sum()) for w in weights)
    assert total == 25_502_912  # torchvision resnet50's conv+fc weights
    assert round(nonzero / 1e6, 2) == 5.73
    assert weight_sparsity(model) >= 0.75
    assert weight_sparsity(model) == pytest.approx(0.775, abs=0.001)
    assert isinstance(model.conv1, SparseConv2d) and model.conv1.density == 0.5
    assert isinstance(model.fc, SparseLinear) and model.fc.density == 0.25
    assert len(sparse_modules(model)) == 54  # 53 convs + fc


def test_resnet50_shapes_match_torchvision() -> None:
    ours = build_sparse_resnet(SparseResNetSpec(num_classes=10))
    theirs = torchvision.models.resnet50(num_classes=10)
    skip = ("weight_mask", "duty_cycles", "_extra_state")
    shapes = {k: v.shape for k, v in ours.state_dict().items() if not k.endswith(skip)}
    assert shapes == {k: v.shape for k, v in theirs.state_dict().items()}


def test_resnet50_kwinners_placement_and_zero_gamma() -> None:
    model = build_sparse_resnet(SparseResNetSpec(width=0.25, num_classes=10))
    kws = [m for m in model.modules() if isinstance(m, KWinners2d)]
    assert len(kws) == 13
    for m in model.layer1:
        assert isinstance(m, KWBottleneck) and isinstance(m.act2, nn.ReLU)
    for stage in (model.layer2, model.layer3, model.layer4):
        for m in stage:
            assert isinstance(m.act2, KWinners2d) and m.act2.local and m.act2.percent_on == 0.3
            assert m.act2.channels == m.conv2.out_channels
            assert torch.all(m.bn3.weight == 0)
    assert model.fc.weight[model.fc.weight != 0].std().item() == pytest.approx(0.01, rel=0.2)


@pytest.mark.parametrize(("arch", "n_kw"), [("resnet18", 6), ("resnet34", 13)])
def test_basic_block_variants(arch: str, n_kw: int) -> None:
    model = build_sparse_resnet(SparseResNetSpec(arch=arch, width=0.25, num_classes=7))
    assert sum(isinstance(m, KWinners2d) for m in model.modules()) == n_kw
    assert all(isinstance(b, KWBasicBlock) for b in model.layer4)
    assert model.fc.in_features == 128
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_width_scales_every_stage() -> None:
    model = build_sparse_resnet(SparseResNetSpec(width=0.5, num_classes=3))
    assert model.conv1.out_channels == 32
    assert model.layer1[0].conv1.out_channels == 32
    assert model.layer4[0].conv2.out_channels == 256
    assert model.fc.in_features == 1024
    model.eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_global_density_dense_stem_and_seeded_masks() -> None:
    spec = SparseResNetSpec(arch="resnet18", width=0.25, weight_density=0.1, stem_density=None)
    model = build_sparse_resnet(spec)
    assert type(model.conv1) is nn.Conv2d
    body = [m for m in sparse_modules(model) if m is not model.fc]
    assert body and all(m.density == 0.1 for m in body)
    again = build_sparse_resnet(spec)
    other = build_sparse_resnet(SparseResNetSpec(arch="resnet18", width=0.25, seed=1))
    masks = {k: v for k, v in model.state_dict().items() if k.endswith("weight_mask")}
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in masks.items())
    assert not torch.equal(model.layer1[0].conv1.weight_mask, other.layer1[0].conv1.weight_mask)


def test_dense_baseline_has_no_sparse_layers() -> None:
    spec = SparseResNetSpec(
        arch="resnet18",
        width=0.25,
        weight_density=1.0,
        stem_density=None,
        fc_density=1.0,
        percent_on=None,
    )
    model = build_sparse_resnet(spec)
    assert sparse_modules(model) == []
    assert not any(isinstance(m, KWinners2d) for m in model.modules())
    assert weight_sparsity(model) == 0.0


def test_unknown_arch() -> None:
    with pytest.raises(ValueError, match="unknown arch"):
        build_sparse_resnet(SparseResNetSpec(arch="resnet101"))
