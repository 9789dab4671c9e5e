from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from services.worker.training.data import DataError
from services.worker.training.data import load_datasets
from services.worker.training.data import make_loaders


def test_digits_split_is_fixed_and_sized() -> None:
    a = load_datasets("digits", None, 16)
    b = load_datasets("digits", None, 16)
    assert (len(a.train), len(a.val), a.num_classes) == (1438, 359, 10)
    image, label = a.train[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert 0 <= int(label) < 10
    assert torch.equal(a.val[:][0], b.val[:][0])
    assert torch.equal(image[0], image[2])


def test_loaders_drop_last_and_follow_the_generator() -> None:
    data = load_datasets("digits", None, 8)
    first = make_loaders(data, 100, torch.Generator().manual_seed(5))[0]
    second = make_loaders(data, 100, torch.Generator().manual_seed(5))[0]
    batches = list(first)
    assert len(batches) == 1438 // 100 and all(len(y) == 100 for _, y in batches)
    assert torch.equal(batches[0][1], next(iter(second))[1])
    with pytest.raises(DataError, match="batch_size"):
        make_loaders(data, 5000, torch.Generator())


@pytest.mark.parametrize("name", ["cifar10", "imagefolder"])
def test_missing_data_dir_is_a_clear_error(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data_dir"):
        load_datasets(name, None, None)
    with pytest.raises(DataError, match="not a directory"):
        load_datasets(name, str(tmp_path / "nope"), None)


def test_cifar10_never_downloads(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="CIFAR-10 not found"):
        load_datasets("cifar10", str(tmp_path), None)
    assert list(tmp_path.iterdir()) == []


def test_unknown_dataset() -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        load_datasets("mnist", None, None)


def test_imagefolder_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no train/"):
        load_datasets("imagefolder", str(tmp_path), 24)
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("ant", "bee"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    data = load_datasets("imagefolder", str(tmp_path), 24)
    assert data.num_classes == 2
    assert data.train[0][0].shape == (3, 24, 24)
    assert data.val[3][0].shape == (3, 24, 24) and data.val[3][1] == 1


def test_ranks_split_each_global_batch_and_the_val_set() -> None:
    data = load_datasets("digits", None, 8)
    one = make_loaders(data, 100, torch.Generator().manual_seed(5))
    two = [
        make_loaders(data, 100, torch.Generator().manual_seed(5), rank=r, world=2) for r in (0, 1)
    ]
    together = zip(two[0][0], two[1][0], strict=True)
    for (x, y), ((x0, y0), (x1, y1)) in zip(one[0], together, strict=True):
        assert len(y0) == len(y1) == 50
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    val = [y for _, y in one[1]]
    shards = [torch.cat([y for _, y in loaders[1]]) for loaders in two]
    assert sorted(map(len, shards)) == [179, 180] and len(two[0][1]) == 2  # batches of 100
    assert torch.equal(torch.cat(val)[0::2], shards[0]) and torch.equal(
        torch.cat(val)[1::2], shards[1]
    )
    with pytest.raises(DataError, match="split evenly"):
        make_loaders(data, 101, torch.Generator(), world=2)
