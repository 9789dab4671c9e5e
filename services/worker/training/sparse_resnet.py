"""Numenta-style sparse ResNets built on torchvision's ``ResNet`` and its blocks.

The network is torchvision's ResNet v1.5 (``Bottleneck`` for resnet50, ``BasicBlock`` for
resnet18/34; stride on the 3x3 conv; convs without bias), with:

* sparse weights (:mod:`services.worker.training.sparse_weights`) on every conv and on the fc,
  the density of each conv given by a rule of its fan-in (default: Numenta's published table,
  :func:`numenta_density`) or a single number; the 7x7 stem gets ``stem_density`` (0.5, or
  dense) and the fc ``fc_density`` (0.25). BatchNorm is never sparse;
* local 2-D k-winners replacing the ReLU after the 3x3 conv of each bottleneck (for basic
  blocks: after the second conv, i.e. the block output) in stages 2, 3 and 4;
* zero-gamma on each block's last BatchNorm, Kaiming (fan-out) conv init, fc ~ N(0, 0.01);
* ``width``: every channel count (stem, each stage's planes, hence the fc input) is scaled by
  ``width`` and rounded (at least 1), i.e. the network is rebuilt with scaled planes. ``width=1``
  has exactly torchvision's ``resnet50`` parameter names and shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.models.resnet import Bottleneck
from torchvision.models.resnet import ResNet

from services.worker.training.kwinners import KWinners2d
from services.worker.training.sparse_weights import sparse_like

#: Numenta's per-layer density by fan-in (k*k*in_channels): (upper bound, density), ascending.
NUMENTA_DENSITY_TABLE: tuple[tuple[int, float], ...] = (
    (100, 0.70),
    (200, 0.50),
    (500, 0.40),
    (1000, 0.30),
    (4000, 0.20),
)
NUMENTA_DENSITY_FLOOR = 0.15  # fan-in >= 4000


def numenta_density(fan_in: int) -> float:
    """Density of a conv with this fan-in in Numenta's sparse ResNet-50 (77.5% sparse overall)."""
    for bound, density in NUMENTA_DENSITY_TABLE:
        if fan_in < bound:
            return density
    return NUMENTA_DENSITY_FLOOR


class KWBottleneck(Bottleneck):
    """torchvision's ``Bottleneck`` whose activation after the 3x3 conv is the module ``act2``."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.act2: nn.Module = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: ``n x c_in x h x w``. Returns: ``n x 4*planes x h' x w'``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: Tensor = self.relu(out + identity)
        return result


class KWBasicBlock(BasicBlock):
    """torchvision's ``BasicBlock`` whose activation after the second conv is ``act2``."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.act2: nn.Module = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: ``n x c_in x h x w``. Returns: ``n x planes x h' x w'``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: Tensor = self.act2(out + identity)
        return result


ARCHS: dict[str, tuple[type[KWBasicBlock | KWBottleneck], list[int]]] = {
    "resnet18": (KWBasicBlock, [2, 2, 2, 2]),
    "resnet34": (KWBasicBlock, [3, 4, 6, 3]),
    "resnet50": (KWBottleneck, [3, 4, 6, 3]),
}


class ScaledResNet(ResNet):
    """torchvision's ``ResNet`` (its ``_make_layer`` and ``forward``) with scaled channel widths.

    Args:
        arch: ``resnet18``, ``resnet34`` or ``resnet50``.
        width: Multiplier of every channel count (1.0 = torchvision's network).
        num_classes: Outputs of the fc layer.
    """

    def __init__(self, arch: str, width: float = 1.0, num_classes: int = 1000) -> None:
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(ARCHS)}")
        nn.Module.__init__(self)
        block, layers = ARCHS[arch]

        def scaled(channels: int) -> int:
            return max(1, round(channels * width))

        self._norm_layer = nn.BatchNorm2d
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.inplanes = scaled(64)
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, scaled(64), layers[0])
        self.layer2 = self._make_layer(block, scaled(128), layers[1], stride=2)
        self.layer3 = self._make_layer(block, scaled(256), layers[2], stride=2)
        self.layer4 = self._make_layer(block, scaled(512), layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, KWBottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, KWBasicBlock):
                nn.init.zeros_(m.bn2.weight)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)


@dataclass(frozen=True)
class SparseResNetSpec:
    """What :func:`build_sparse_resnet` builds.

    ``weight_density`` None means Numenta's table by fan-in; a number is one density for every
    conv but the stem. ``stem_density`` None keeps the stem dense. ``percent_on`` None keeps
    every activation a ReLU. Densities >= 1 give plain dense layers, so ``weight_density=1,
    stem_density=None, fc_density=1, percent_on=None`` is the dense baseline.
    """

    arch: str = "resnet50"
    num_classes: int = 1000
    width: float = 1.0
    weight_density: float | None = None
    stem_density: float | None = 0.5
    fc_density: float = 0.25
    percent_on: float | None = 0.3
    local: bool = True
    boost_strength: float = 1.0
    boost_strength_factor: float = 0.9
    k_inference_factor: float = 1.0
    seed: int = 0

    def conv_density(self, fan_in: int) -> float:
        """Density of a non-stem conv with this fan-in."""
        return numenta_density(fan_in) if self.weight_density is None else self.weight_density


def build_sparse_resnet(spec: SparseResNetSpec) -> ScaledResNet:
    """Build a sparse ResNet; masks come from a generator seeded with ``spec.seed``.

    The dense init draws from torch's global RNG (seed it for reproducible weights); the masks
    are drawn in module order from their own generator.

    Returns:
        A ``ScaledResNet`` mapping ``n x 3 x h x w`` images to ``n x num_classes`` logits.
    """
    model = ScaledResNet(spec.arch, spec.width, spec.num_classes)
    generator = torch.Generator().manual_seed(spec.seed)
    if spec.stem_density is not None:
        model.conv1 = sparse_like(model.conv1, spec.stem_density, generator)
    stages = nn.ModuleList([model.layer1, model.layer2, model.layer3, model.layer4])
    for parent in list(stages.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d):
                fan_in = child.weight[0].numel()
                setattr(parent, name, sparse_like(child, spec.conv_density(fan_in), generator))
    model.fc = sparse_like(model.fc, spec.fc_density, generator)
    if spec.percent_on is not None:
        for stage in (model.layer2, model.layer3, model.layer4):
            for block in stage:
                assert isinstance(block, KWBottleneck | KWBasicBlock)
                channels = block.bn2.num_features
                block.act2 = KWinners2d(
                    channels,
                    spec.percent_on,
                    local=spec.local,
                    k_inference_factor=spec.k_inference_factor,
                    boost_strength=spec.boost_strength,
                    boost_strength_factor=spec.boost_strength_factor,
                    inplace=True,
                )
    return model
