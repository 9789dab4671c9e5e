"""Datasets and loaders for the sparse ResNet objective; nothing is downloaded at run time.

* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), upscaled bilinearly
  to ``image_size``, replicated to 3 channels, standardised; a fixed train/val split (80/20,
  seed 0, independent of the run's seed so every run sees the same validation set). No
  augmentation. Held in memory: the default for CPU demos and tests.
* ``cifar10``: torchvision's CIFAR10 read from ``data_dir`` (``download=False``); train gets
  random crop (padding 4) and horizontal flip.
* ``imagefolder``: ImageNet / Imagenette layout, ``data_dir/train/<class>/*`` and
  ``data_dir/val/<class>/*``; train gets RandomResizedCrop + flip, val Resize (x 256/224) +
  CenterCrop.

Images come out as ``3 x image_size x image_size`` float tensors, labels as int64.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import BatchSampler
from torch.utils.data import DataLoader
from torch.utils.data import RandomSampler
from torch.utils.data import Sampler
from torch.utils.data import Subset
from torch.utils.data import TensorDataset
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

DATASETS = ("digits", "cifar10", "imagefolder")
DEFAULT_IMAGE_SIZE = {"digits": 32, "cifar10": 32, "imagefolder": 224}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
DIGITS_VAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


class DataError(ValueError):
    """The configured dataset cannot be loaded (unknown name, missing directory or files)."""


@dataclass(frozen=True)
class Datasets:
    """A train and a validation set of ``(3 x s x s image, label)`` pairs."""

    # In-memory tensors (digits) or a torchvision dataset read from disk (CIFAR10, ImageFolder).
    train: TensorDataset | tv_datasets.VisionDataset
    val: TensorDataset | tv_datasets.VisionDataset
    num_classes: int


def load_datasets(name: str, data_dir: str | None, image_size: int | None) -> Datasets:
    """Open a dataset by name (see the module docstring); raise :class:`DataError` if missing.

    Args:
        name: ``digits``, ``cifar10`` or ``imagefolder``.
        data_dir: Root directory (unused for ``digits``).
        image_size: Side of the square images; None takes the dataset's default (32/32/224).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    size = image_size or DEFAULT_IMAGE_SIZE[name]
    if name == "digits":
        return _digits(size)
    root = _existing_dir(name, data_dir)
    if name == "cifar10":
        return _cifar10(root, size)
    return _imagefolder(root, size)


def make_loaders(
    data: Datasets,
    batch_size: int,
    generator: torch.Generator,
    num_workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world: int = 1,
) -> tuple[DataLoader[tuple[torch.Tensor, int]], DataLoader[tuple[torch.Tensor, int]]]:
    """This rank's shuffled train loader (no partial batch) and its sequential val loader.

    Args:
        data: The datasets.
        batch_size: Global train batch size, split evenly over the ranks (val batches are twice
            a rank's share).
        generator: Drives the train order and the workers' seeds; save its state to resume.
            Workers are not persistent, so each epoch's workers are seeded from it afresh and
            a resumed run sees the same augmentations as an uninterrupted one.
        num_workers: DataLoader worker processes per rank (0 = load in this process).
        pin_memory: Pin host batches (set on CUDA).
        rank: This process's rank among ``world`` data-parallel processes.
        world: Number of data-parallel processes; ``batch_size`` must be a multiple of it.
    """
    if len(data.train) < batch_size:
        raise DataError(f"batch_size {batch_size} exceeds the {len(data.train)} train samples")
    if batch_size % world:
        raise DataError(f"batch_size {batch_size} does not split evenly over {world} processes")
    share = batch_size // world
    train = DataLoader(
        data.train,
        batch_sampler=RankBatches(
            RandomSampler(data.train, generator=generator), batch_size, rank, world
        ),
        generator=generator,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
    val = DataLoader(
        Subset(data.val, range(rank, len(data.val), world)),
        batch_size=2 * share,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
    return train, val


class RankBatches(Sampler[list[int]]):
    """Global batches of a shuffled order (the last partial one dropped), each cut into ``world``
    equal slices of which this rank takes slice ``rank``.

    Every rank draws the same order from a generator in the same state, so the ranks together
    see exactly the batches one process would (``world=1`` is that process), and the data order
    does not depend on the number of processes.
    """

    def __init__(self, order: Sampler[int], batch_size: int, rank: int, world: int) -> None:
        self.batches = BatchSampler(order, batch_size, drop_last=True)
        self.share = batch_size // world
        self.rank = rank

    def __iter__(self) -> Iterator[list[int]]:
        start = self.rank * self.share
        for batch in self.batches:
            yield batch[start : start + self.share]

    def __len__(self) -> int:
        return len(self.batches)


def _existing_dir(name: str, data_dir: str | None) -> Path:
    if not data_dir:
        raise DataError(f"dataset {name!r} needs objective config 'data_dir'")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data_dir {str(root)!r} for dataset {name!r} is not a directory")
    return root


def _digits(size: int) -> Datasets:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    n_val = round(DIGITS_VAL_FRACTION * len(labels))
    val_idx, train_idx = order[:n_val], order[n_val:]
    mean, std = images[train_idx].mean(), images[train_idx].std()
    images = ((images - mean) / std).expand(-1, 3, -1, -1).contiguous()
    return Datasets(
        train=TensorDataset(images[train_idx], labels[train_idx]),
        val=TensorDataset(images[val_idx], labels[val_idx]),
        num_classes=10,
    )


def _cifar10(root: Path, size: int) -> Datasets:
    resize = [T.Resize(size)] if size != 32 else []
    normalize = [T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    train_tf = T.Compose(
        [*resize, T.RandomCrop(size, padding=size // 8), T.RandomHorizontalFlip()]
    )
    try:
        train = tv_datasets.CIFAR10(
            str(root), train=True, transform=T.Compose([train_tf, *normalize]), download=False
        )
        val = tv_datasets.CIFAR10(
            str(root), train=False, transform=T.Compose([*resize, *normalize]), download=False
        )
    except RuntimeError as exc:
        raise DataError(
            f"CIFAR-10 not found under {str(root)!r} (expected cifar-10-batches-py/): {exc}"
        ) from exc
    return Datasets(train=train, val=val, num_classes=10)


def _imagefolder(root: Path, size: int) -> Datasets:
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"imagefolder data_dir {str(root)!r} has no {split}/ directory")
    normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *normalize])
    val_tf = T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), *normalize])
    train = tv_datasets.ImageFolder(str(root / "train"), transform=train_tf)
    val = tv_datasets.ImageFolder(str(root / "val"), transform=val_tf)
    if train.classes != val.classes:
        raise DataError(f"train/ and val/ under {str(root)!r} have different class folders")
    return Datasets(train=train, val=val, num_classes=len(train.classes))
