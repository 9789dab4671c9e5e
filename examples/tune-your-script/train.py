"""Train a small CNN on scikit-learn's bundled 8x8 digits and report its validation accuracy.

An ordinary PyTorch script that talks to SigOpt only through the ``sigopt`` module: it reads
its hyperparameters from ``sigopt.params`` and reports with ``sigopt.log_checkpoint`` (every
epoch) and ``sigopt.log_metric`` (at the end). So it runs unchanged

* on its own: ``python train.py`` (the defaults below, nothing reported);
* under the SigOpt CLI against multitune: ``sigopt run python train.py``, or
  ``sigopt optimize -e sigopt-experiment.yml python train.py``;
* as a multitune script objective (``objectives.yaml``), trained by the platform's workers for
  ``experiment.yaml``. The worker also sets ``MULTITUNE_EPOCHS`` (this task's length) and
  ``MULTITUNE_CHECKPOINT_DIR`` (a directory that survives a retried attempt): the script then
  checkpoints every epoch there and a retry resumes where the lost attempt stopped.

CPU only: an epoch takes well under a second on one core.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import sigopt
import torch
from sklearn.datasets import load_digits
from torch import nn

sigopt.params.setdefaults(
    {"lr": 0.05, "momentum": 0.9, "channels": 16, "dropout": 0.1, "batch_size": 64}
)
EPOCHS = int(os.environ.get("MULTITUNE_EPOCHS", "8"))
CHECKPOINT_DIR = os.environ.get("MULTITUNE_CHECKPOINT_DIR")


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 1,797 digits as 1x8x8 images in [0, 1]: a fixed 80/20 train/validation split."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(labels))
    train, val = order[:cut], order[cut:]
    return images[train], labels[train], images[val], labels[val]


def model(channels: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(2 * channels * 4 * 4, 10),
    )


def main() -> None:
    torch.manual_seed(0)
    params = sigopt.params
    x_train, y_train, x_val, y_val = data()
    net = model(int(params.channels), float(params.dropout))
    optimizer = torch.optim.SGD(net.parameters(), lr=params.lr, momentum=params.momentum)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(1)

    # Resume from the checkpoint of a lost attempt of the same run, if there is one.
    path = Path(CHECKPOINT_DIR) / "checkpoint.pt" if CHECKPOINT_DIR else None
    fingerprint = {"params": dict(params), "epochs": EPOCHS}
    start, accuracy, loss = 0, 0.0, 0.0
    if path is not None and path.exists():
        state = torch.load(path, weights_only=False)
        if state["fingerprint"] == fingerprint:
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            order.set_state(state["order"])
            start, accuracy, loss = state["epoch"], state["accuracy"], state["loss"]
            print(f"resumed from epoch {start}", flush=True)
            sigopt.log_metadata("resumed_from_epoch", start)

    for epoch in range(start, EPOCHS):
        began = time.perf_counter()
        net.train()
        for batch in torch.randperm(len(y_train), generator=order).split(int(params.batch_size)):
            optimizer.zero_grad()
            loss_fn(net(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        schedule.step()
        net.eval()
        with torch.no_grad():
            logits = net(x_val)
            loss = float(loss_fn(logits, y_val))
            accuracy = float((logits.argmax(1) == y_val).float().mean())
        if path is not None:
            state = {
                "fingerprint": fingerprint,
                "epoch": epoch + 1,
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "order": order.get_state(),
                "accuracy": accuracy,
                "loss": loss,
            }
            torch.save(state, path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)
        sigopt.log_checkpoint({"val_accuracy": accuracy, "val_loss": loss})
        print(
            f"epoch {epoch + 1}/{EPOCHS}: val_accuracy {accuracy:.4f} val_loss {loss:.4f} "
            f"({time.perf_counter() - began:.2f}s)",
            flush=True,
        )
    sigopt.log_metric("val_accuracy", accuracy)
    sigopt.log_metric("val_loss", loss)


if __name__ == "__main__":
    main()
