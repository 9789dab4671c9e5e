"""Data-parallel training of one run over several devices: one process (rank) per device.

:func:`run_ranks` is called in the worker process that runs the objective (the parent). It
starts one spawned process per device; rank ``r`` trains on ``devices[r]``. The ranks join a
process group (NCCL on CUDA, gloo on CPU) through a file store in a private temporary directory,
with a :data:`COLLECTIVE_TIMEOUT` on every collective.

Rank 0 is the only one that talks to the run context, which lives in the parent (its heartbeat
thread and API client): its :class:`EpochReporter` forwards ``report`` and ``should_stop`` to
the parent over a pair of queues and waits for the answer, so a reported epoch's checkpoint is
stored before training goes on. The other ranks get rank 0's stop decision by broadcast.

Failure handling: the parent watches the ranks; a rank that raises or dies (killed, out of
memory) makes it terminate the others and raise :class:`RankFailed`, so the attempt fails and is
retried from the last checkpoint. A rank whose parent dies exits at once instead of holding its
device.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import signal
import tempfile
import threading
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from typing import Protocol

import torch
from torch import Tensor
from torch import distributed as dist
from torch import multiprocessing as torch_mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from services.worker.training.kwinners import KWinnersBase

#: Longest a rank waits in one collective (e.g. for rank 0 while the parent uploads a checkpoint).
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
#: How often the parent looks at the ranks and at rank 0's requests.
POLL_S = 0.2


class EpochReporter(Protocol):
    """The part of the run context a training rank uses (``RunContext`` satisfies it)."""

    def report(self, epoch: int, values: Mapping[str, float]) -> None: ...

    def should_stop(self) -> bool: ...


class RankFailed(RuntimeError):
    """A rank raised or died. The message gives every rank's exit (a rank that died shows its
    signal; the others fail in a collective or are ended) and the first failure the parent saw,
    with its traceback when the rank raised."""


class ReplicaMismatch(RuntimeError):
    """State that must be identical on every rank (masks, duty cycles, k-WTA state) is not."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in a run: ``rank`` of ``world`` (1 = no process group)."""

    rank: int = 0
    world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def parallel(self, net: nn.Module, device: torch.device) -> nn.Module:
        """``net`` wrapped for data-parallel training (``net`` itself in a single process).

        The wrapper broadcasts rank 0's parameters and buffers once; afterwards it all-reduces
        gradients only (masked first: the masks' gradient hooks run before DDP copies a gradient
        into its bucket). Buffers are kept equal by :func:`count_over_ranks` (duty cycles) and
        :meth:`average_batchnorm` (BatchNorm statistics); masks never change.
        """
        if not self.distributed:
            return net
        return DistributedDataParallel(
            net,
            device_ids=[device] if device.type == "cuda" else None,
            forward_sync_buffers=False,
            gradient_as_bucket_view=True,
        )

    def sum(self, values: Tensor) -> Tensor:
        """``values`` summed element-wise over the ranks, in place."""
        if self.distributed:
            dist.all_reduce(values)
        return values

    def broadcast(self, flag: bool, device: torch.device) -> bool:
        """Rank 0's ``flag`` on every rank."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], device=device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    @torch.no_grad()
    def average_batchnorm(self, model: nn.Module) -> None:
        """Replace each BatchNorm's running mean and variance by their mean over the ranks.

        DDP runs without buffer broadcasts (they would resend every weight mask each step), so
        each rank's running statistics follow its own batches; averaging them once per epoch,
        before evaluation and the checkpoint, gives every rank the same eval-mode network.
        """
        if not self.distributed:
            return
        stats = [
            buffer
            for module in model.modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)
            for buffer in (module.running_mean, module.running_var)
            if buffer is not None
        ]
        if stats:
            flat = torch.cat([s.flatten() for s in stats])
            dist.all_reduce(flat)
            flat /= self.world
            for stat, mean in zip(stats, flat.split([s.numel() for s in stats]), strict=True):
                stat.copy_(mean.view_as(stat))

    def check_replicas(self, model: nn.Module) -> None:
        """Raise :class:`ReplicaMismatch` unless every rank holds the same weight masks, duty
        cycles and k-WTA extra state (compared by digest, once per epoch)."""
        if not self.distributed:
            return
        digests: list[str | None] = [None] * self.world
        dist.all_gather_object(digests, replicated_digest(model))
        if len(set(digests)) != 1:
            raise ReplicaMismatch(f"replicated state differs between ranks: {digests}")


#: A run in this process alone.
ONE_PROCESS = Ranks()


def replicated_digest(model: nn.Module) -> str:
    """SHA-256 of the state DDP does not average: weight masks, duty cycles, k-WTA extra state."""
    digest = hashlib.sha256()
    for name, buffer in model.named_buffers():
        if name.endswith(("weight_mask", "duty_cycles")):
            digest.update(name.encode())
            digest.update(buffer.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    for module in model.modules():
        if isinstance(module, KWinnersBase):
            digest.update(repr(sorted(module.get_extra_state().items())).encode())
    return digest.hexdigest()


#: ``target(ranks, device, reporter, *args)``: one rank's training (``reporter`` None off rank 0).
RankTarget = Callable[..., None]


def run_ranks(
    target: RankTarget, args: tuple[Any, ...], devices: Sequence[str], reporter: EpochReporter
) -> None:
    """Train with one spawned process per device; return when every rank has returned.

    Args:
        target: A module-level function (it is pickled by name), called in each rank as
            ``target(Ranks(rank, world), device, reporter_or_None, *args)``.
        args: Picklable arguments passed on to ``target``.
        devices: One device per rank, e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu", "cpu"]``.
        reporter: Receives rank 0's ``report`` and ``should_stop`` calls, in this process.

    Raises:
        RankFailed: a rank raised or died; every rank has been ended.
    """
    spawn = multiprocessing.get_context("spawn")
    requests: multiprocessing.Queue[tuple[str, tuple[Any, ...]]] = spawn.Queue()
    replies: multiprocessing.Queue[Any] = spawn.Queue()
    threads = max(1, torch.get_num_threads() // len(devices))
    with tempfile.TemporaryDirectory(prefix="multitune-ddp-") as rendezvous:
        store = str(Path(rendezvous) / "store")
        ranks = torch_mp.start_processes(
            _rank_main,
            args=(target, args, list(devices), store, threads, requests, replies),
            nprocs=len(devices),
            join=False,
            start_method="spawn",
        )
        try:
            while not ranks.join(timeout=POLL_S):
                _answer(requests, replies, reporter)
        except (torch_mp.ProcessRaisedException, torch_mp.ProcessExitedException) as exc:
            exits = ", ".join(
                f"rank {rank}: {_exit(process.exitcode)}"
                for rank, process in enumerate(ranks.processes)
            )
            raise RankFailed(f"data-parallel training failed ({exits}): {exc}") from exc
        finally:
            for process in ranks.processes:
                if process.is_alive():
                    process.terminate()
                process.join()


def _exit(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _answer(
    requests: multiprocessing.Queue[tuple[str, tuple[Any, ...]]],
    replies: multiprocessing.Queue[Any],
    reporter: EpochReporter,
) -> None:
    """Serve rank 0's pending calls of ``report`` / ``should_stop``."""
    while True:
        try:
            name, call_args = requests.get_nowait()
        except queue.Empty:
            return
        if name == "report":
            reporter.report(*call_args)
            replies.put(None)
        elif name == "should_stop":
            replies.put(reporter.should_stop())
        else:
            raise ValueError(f"unknown request {name!r} from rank 0")


class _ParentReporter:
    """Rank 0's :class:`EpochReporter`: each call runs in the parent and waits for its result."""

    def __init__(
        self,
        requests: multiprocessing.Queue[tuple[str, tuple[Any, ...]]],
        replies: multiprocessing.Queue[Any],
    ) -> None:
        self._requests = requests
        self._replies = replies

    def report(self, epoch: int, values: Mapping[str, float]) -> None:
        self._call("report", epoch, dict(values))

    def should_stop(self) -> bool:
        return bool(self._call("should_stop"))

    def _call(self, name: str, *args: Any) -> Any:
        self._requests.put((name, args))
        return self._replies.get()


def _rank_main(
    rank: int,
    target: RankTarget,
    args: tuple[Any, ...],
    devices: list[str],
    store: str,
    threads: int,
    requests: multiprocessing.Queue[tuple[str, tuple[Any, ...]]],
    replies: multiprocessing.Queue[Any],
) -> None:
    """One rank: join the process group, train, leave the group."""
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    device = torch.device(devices[rank])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(threads)
    world = len(devices)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        store=dist.FileStore(store, world),
        rank=rank,
        world_size=world,
        timeout=COLLECTIVE_TIMEOUT,
    )
    try:
        reporter = _ParentReporter(requests, replies) if rank == 0 else None
        target(Ranks(rank, world), device, reporter, *args)
    finally:
        dist.destroy_process_group()


def _exit_with_parent() -> None:
    """Exit this rank as soon as the parent process is gone (no orphan holds a GPU)."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()
        os._exit(1)
