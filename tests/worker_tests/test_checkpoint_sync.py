"""The worker's side of checkpoints stored through the API, against the real API (in-process,
over HTTP): packing and safe unpacking, `CheckpointSync` (upload when changed, fetch when the
local copy is not the stored one, fencing), and `runner.train` with workers whose data dirs are
separate: a run stopped on one resumes on the other from the fetched checkpoint, a script's
directory is stored while it runs and when it stops, a run that continues another starts from
that run's archive, and a store that cannot take the checkpoint fails the run with that
reason."""

from __future__ import annotations

import io
import os
import tarfile
import textwrap
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from services.worker import objectives
from services.worker import runner
from services.worker.advert import Advertiser
from services.worker.advert import make_advert
from services.worker.checkpoint_sync import ArchiveTransport
from services.worker.checkpoint_sync import AttemptSuperseded
from services.worker.checkpoint_sync import CheckpointStoreError
from services.worker.checkpoint_sync import CheckpointSync
from services.worker.checkpoint_sync import UnsafeArchiveError
from services.worker.checkpoint_sync import pack
from services.worker.checkpoint_sync import unpack
from services.worker.objectives import Catalog
from services.worker.objectives._base import Objective
from services.worker.objectives._base import ObjectiveResult
from services.worker.objectives._base import RunContext
from services.worker.objectives.scripts import ScriptObjective
from shared import api_objects
from shared.checkpoint_archive import content_path
from shared.settings import Settings
from shared.space import Task
from shared.states import ExperimentState
from tests.inprocess import SERVICE_TOKEN
from tests.inprocess import InProcessApi
from tests.services import wait_for
from tests.worker_tests.test_runner import Training
from tests.worker_tests.test_runner import Worker

EPOCHS = 4


class EpochObjective(Objective):
    """Writes ``epoch.txt`` then reports, each epoch; holds after epoch `hold_at` until asked to
    stop. Its value is the epoch it resumed from."""

    name = "test_epochs"
    hold_at: int | None = None

    def run(
        self,
        assignments: Mapping[str, Any],
        task: Task | None,
        config: Mapping[str, Any],
        context: RunContext,
    ) -> ObjectiveResult:
        state = context.checkpoint_dir / "epoch.txt"
        start = int(state.read_text()) if state.exists() else 0
        for epoch in range(start + 1, EPOCHS + 1):
            (context.checkpoint_dir / "weights").mkdir(exist_ok=True)
            (context.checkpoint_dir / "weights" / "layer.bin").write_bytes(bytes([epoch]) * 1000)
            state.write_text(str(epoch))
            context.report(epoch, {"value": float(epoch)})
            if epoch == self.hold_at:
                deadline = time.monotonic() + 30
                while not context.should_stop() and time.monotonic() < deadline:
                    time.sleep(0.01)
                return ObjectiveResult(value=-1.0)
        return ObjectiveResult(value=float(start))


CHECKPOINTS_THEN_WAITS = """
import os, pathlib, signal, sys, time
import sigopt
state = pathlib.Path(os.environ["MULTITUNE_CHECKPOINT_DIR"]) / "state.txt"
def stopped(*_):
    state.write_text("saved when asked to stop")
    sys.exit(0)
signal.signal(signal.SIGTERM, stopped)
state.write_text("epoch 1")
sigopt.log_checkpoint({"value": 1.0})
pathlib.Path("started").write_text("yes")
time.sleep(60)
"""


@pytest.fixture()
def worker(
    inprocess_api: InProcessApi, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> Worker:
    monkeypatch.setitem(objectives.REGISTRY, EpochObjective.name, f"{__name__}:EpochObjective")
    monkeypatch.setattr(EpochObjective, "hold_at", None)
    return Worker(inprocess_api, redis_client)


def _settings(worker: Worker, tmp_path: Path, name: str) -> Settings:
    """A worker's settings with a data dir of its own (no file shared with the API's)."""
    return replace(worker.server.settings, data_dir=tmp_path / name)


def _sync(worker: Worker, run: api_objects.TrainingRun, directory: Path) -> CheckpointSync:
    transport = ArchiveTransport(worker.server.url, SERVICE_TOKEN, retry_for_s=5)
    return CheckpointSync(transport, run.id, run.attempt, directory)


def _claim(worker: Worker, run: api_objects.TrainingRun) -> None:
    claim = {"state": "running", "attempt": run.attempt, "worker": "w1", "heartbeat": True}
    api_objects.update_training_run(worker.api, run.id, claim)


def _stored(worker: Worker, run_id: int, directory: Path) -> dict[str, bytes]:
    """The files of the run's stored archive, fetched as any client would."""
    response = requests.get(
        f"{worker.server.url}/v1{content_path(run_id)}",
        headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    archive = directory.with_suffix(".tar")
    archive.write_bytes(response.content)
    directory.mkdir(parents=True)
    unpack(archive, directory)
    return _files(directory)


def _files(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------- packing
def test_a_directory_packs_and_unpacks_as_it_was(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "nested" / "deeper").mkdir(parents=True)
    (source / "checkpoint.pt").write_bytes(os.urandom(300_000))
    (source / "nested" / "deeper" / "opt.bin").write_bytes(b"\x00" * 10)
    (source / "empty").mkdir()
    (source / "latest").symlink_to("checkpoint.pt")
    archive = tmp_path / "a.tar"
    with archive.open("wb") as target:
        pack(source, target)
    restored = tmp_path / "restored"
    restored.mkdir()
    unpack(archive, restored)
    assert _files(restored) == _files(source)
    assert (restored / "empty").is_dir()
    assert os.readlink(restored / "latest") == "checkpoint.pt"


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        ok = tarfile.TarInfo("ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return out.getvalue()


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = target
    return member


def _device(name: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = tarfile.CHRTYPE
    return member


@pytest.mark.parametrize(
    "member",
    [
        tarfile.TarInfo("../escaped.txt"),
        tarfile.TarInfo("a/../../escaped.txt"),
        tarfile.TarInfo("/tmp/escaped.txt"),
        _link("link", "/etc/passwd"),
        _link("a/link", "../../escaped.txt"),
        _link("hard", "../escaped.txt", tarfile.LNKTYPE),
        _device("null"),
    ],
    ids=["parent", "climbs", "absolute", "abs-symlink", "climbing-symlink", "hardlink", "device"],
)
def test_a_member_that_would_land_outside_is_refused(
    tmp_path: Path, member: tarfile.TarInfo
) -> None:
    archive = tmp_path / "evil.tar"
    archive.write_bytes(_tar_with(member, b"pwned"))
    target = tmp_path / "deep" / "er" / "dir"
    target.mkdir(parents=True)
    with pytest.raises(UnsafeArchiveError, match="escapes|outside|not a file"):
        unpack(archive, target)
    assert list(target.iterdir()) == []  # checked before anything is written
    assert not list(tmp_path.rglob("escaped.txt"))


def test_an_unsafe_archive_from_the_api_fails_the_fetch_and_keeps_the_local_copy(
    worker: Worker, tmp_path: Path
) -> None:
    run = worker.new_run()
    _claim(worker, run)
    evil = _tar_with(tarfile.TarInfo("../../escaped.txt"), b"pwned")
    import hashlib

    put = requests.put(
        f"{worker.server.url}/v1/training_runs/{run.id}/checkpoint_archive",
        params={"attempt": "1", "sha256": hashlib.sha256(evil).hexdigest()},
        data=evil,
        headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
        timeout=30,
    )
    assert put.status_code == 200, put.text
    directory = tmp_path / "worker" / "runs" / str(run.id)
    directory.mkdir(parents=True)
    (directory / "mine.txt").write_text("local")
    with pytest.raises(UnsafeArchiveError, match="escapes"):
        _sync(worker, run, directory).restore()
    assert _files(directory) == {"mine.txt": b"local"}
    assert not list(tmp_path.rglob("escaped.txt"))
    assert sorted(p.name for p in directory.parent.iterdir()) == [str(run.id)]  # no leftovers


# ---------------------------------------------------------------------- one attempt's sync
def test_a_directory_is_uploaded_when_it_changed_and_fetched_where_it_is_not_current(
    worker: Worker, tmp_path: Path
) -> None:
    run = worker.new_run()
    _claim(worker, run)
    here = tmp_path / "a" / "runs" / str(run.id)
    here.mkdir(parents=True)
    sync = _sync(worker, run, here)
    assert sync.restore() == "no checkpoint stored"
    assert not sync.save()  # nothing written, nothing stored before
    (here / "checkpoint.pt").write_bytes(b"epoch 1")
    assert sync.save()
    assert not sync.save()  # unchanged
    time.sleep(0.01)
    (here / "checkpoint.pt").write_bytes(b"epoch 2")
    assert sync.save()
    assert _stored(worker, run.id, tmp_path / "fetched") == {"checkpoint.pt": b"epoch 2"}

    there = tmp_path / "b" / "runs" / str(run.id)
    other = _sync(worker, run, there)
    assert other.restore().startswith("fetched the checkpoint of attempt 1")
    assert _files(there) == {"checkpoint.pt": b"epoch 2"}
    assert other.restore().startswith("the local checkpoint is current")
    (there / "checkpoint.pt").write_bytes(b"epoch 3, not stored yet")
    other.restore()  # the stored archive is the one this copy grew from: kept
    assert _files(there) == {"checkpoint.pt": b"epoch 3, not stored yet"}
    assert sync.restore().startswith("the local checkpoint is current")
    assert sorted(p.name for p in there.parent.iterdir()) == [str(run.id), f"{run.id}.synced"]


def test_a_superseded_attempt_cannot_replace_the_stored_checkpoint(
    worker: Worker, tmp_path: Path
) -> None:
    run = worker.new_run()
    _claim(worker, run)
    directory = tmp_path / "a" / "runs" / str(run.id)
    directory.mkdir(parents=True)
    sync = _sync(worker, run, directory)
    (directory / "state").write_text("attempt 1")
    assert sync.save()
    worker.supersede(run)
    (directory / "state").write_text("attempt 1, later")
    with pytest.raises(AttemptSuperseded, match="superseded"):
        sync.save()
    assert _stored(worker, run.id, tmp_path / "fetched") == {"state": b"attempt 1"}


def test_a_store_that_cannot_take_the_checkpoint_is_a_clear_error(
    worker: Worker, tmp_path: Path
) -> None:
    (worker.server.settings.data_dir / "checkpoints").write_text("not a directory")
    run = worker.new_run()
    _claim(worker, run)
    directory = tmp_path / "a" / "runs" / str(run.id)
    directory.mkdir(parents=True)
    (directory / "state").write_text("x")
    with pytest.raises(CheckpointStoreError, match="507.*full or unwritable"):
        _sync(worker, run, directory).save()


# ---------------------------------------------------------------------- runner.train
def test_a_run_stopped_on_one_worker_resumes_on_another_with_its_own_data_dir(
    worker: Worker, tmp_path: Path
) -> None:
    EpochObjective.hold_at = 2
    run = worker.new_run()
    first, second = _settings(worker, tmp_path, "a"), _settings(worker, tmp_path, "b")
    request = worker.request(run, EpochObjective.name)
    training = Training(lambda: runner.train(request, first, worker.api, worker.redis, "w1"))
    wait_for(lambda: len(worker.checkpoints(run.id)) == 2, 30, "two epochs of attempt 1")
    worker.supersede(worker.run(run.id))  # its lease ran out: the suggester starts attempt 2
    assert training.result() is None
    EpochObjective.hold_at = None

    retried = worker.request(worker.run(run.id), EpochObjective.name)
    assert not (second.data_dir / "runs" / str(run.id)).exists()
    result = runner.train(retried, second, worker.api, worker.redis, "w2")
    assert result is not None and not result.failed, result
    assert result.values == [{"name": "value", "value": 2.0}]  # resumed after epoch 2
    by_attempt = sorted((c["attempt"], c["epoch"]) for c in worker.checkpoints(run.id))
    assert by_attempt == [(1, 1), (1, 2), (2, 3), (2, 4)]
    assert not (second.data_dir / "runs" / str(run.id)).exists()  # finished: cache dropped
    assert (first.data_dir / "runs" / str(run.id) / "epoch.txt").read_text() == "2"
    stored = _stored(worker, run.id, tmp_path / "fetched")
    assert stored == {"epoch.txt": b"4", "weights/layer.bin": bytes([4]) * 1000}


def test_a_run_that_continues_another_starts_from_that_runs_archive(
    worker: Worker, tmp_path: Path
) -> None:
    source = worker.new_run(task="cheap")  # 1 of 4 epochs (cost 0.25)
    catalog = Catalog.discover()  # the live worker's advert: its objectives can continue
    assert Advertiser(
        worker.redis, make_advert("w1", catalog.names(), catalog.continuable())
    ).publish()
    first, second = _settings(worker, tmp_path, "a"), _settings(worker, tmp_path, "b")
    done = runner.train(worker.request(source), first, worker.api, worker.redis, "w1")
    assert done is not None and not done.failed, done
    body = {"attempt": 1, "state": "completed", "values": done.values}
    api_objects.record_result(worker.api, source.id, body)
    run = api_objects.create_training_run(
        worker.api,
        worker.experiment_id,
        {"assignments": source.assignments, "task": "full"},
        continues=source.id,
    )
    assert run.continues == source.id

    request = worker.request(run, continues=source.id)
    result = runner.train(request, second, worker.api, worker.redis, "w2")
    assert result is not None and not result.failed, result
    assert sorted(c["epoch"] for c in worker.checkpoints(run.id)) == [2, 3, 4]  # not from 1
    assert _stored(worker, run.id, tmp_path / "run") == {"progress.json": b'{"epoch": 4}'}
    assert _stored(worker, source.id, tmp_path / "source") == {"progress.json": b'{"epoch": 1}'}

    # A retry restores the run's own archive; a source without an archive is an error.
    again = tmp_path / "c" / "runs" / str(run.id)
    transport = ArchiveTransport(worker.server.url, SERVICE_TOKEN, retry_for_s=5)
    restored = CheckpointSync(transport, run.id, 2, again, source=source.id).restore()
    assert (
        restored.startswith("fetched the checkpoint of attempt 1") and "continues" not in restored
    )
    assert _files(again) == {"progress.json": b'{"epoch": 4}'}
    bare, other = worker.new_run(x1=3.0), worker.new_run(x1=4.0)
    with pytest.raises(CheckpointStoreError, match="which has no checkpoint stored"):
        CheckpointSync(transport, other.id, 1, tmp_path / "d", source=bare.id).restore()
    transport.close()


def test_a_store_that_refuses_checkpoints_fails_the_run_with_that_reason(
    worker: Worker, tmp_path: Path
) -> None:
    (worker.server.settings.data_dir / "checkpoints").write_text("not a directory")
    run = worker.new_run()
    settings = _settings(worker, tmp_path, "a")
    result = runner.train(worker.request(run), settings, worker.api, worker.redis, "w1")
    assert result is not None and result.failed
    assert result.reason is not None
    assert result.reason.startswith("CheckpointStoreError: storing the checkpoint of run")
    assert "507" in result.reason and "full or unwritable" in result.reason
    assert worker.checkpoints(run.id) == []  # no epoch is logged without its checkpoint
    assert worker.published() == [result]


def test_a_scripts_directory_is_stored_while_it_runs_and_when_it_stops(
    worker: Worker, tmp_path: Path
) -> None:
    folder = tmp_path / "script"
    folder.mkdir()
    (folder / "main.py").write_text(textwrap.dedent(CHECKPOINTS_THEN_WAITS))
    catalog = Catalog(
        scripts={
            "saves": ScriptObjective(
                name="saves", command=("python", "main.py"), cwd=folder, stop_grace_s=5
            )
        }
    )
    run = worker.new_run()
    request = worker.request(run, "saves", config={})
    settings = _settings(worker, tmp_path, "a")
    outcome: list[Any] = []
    thread = threading.Thread(
        target=lambda: outcome.append(
            runner.train(request, settings, worker.api, worker.redis, "w1", catalog)
        )
    )
    thread.start()
    wait_for((folder / "started").exists, 30, "the script to start")

    def stored_state() -> bytes | None:
        fetched = tmp_path / f"fetched-{time.monotonic_ns()}"
        try:
            return _stored(worker, run.id, fetched).get("state.txt")
        except AssertionError:
            return None

    wait_for(lambda: stored_state() == b"epoch 1", 30, "the script's checkpoint to be stored")
    worker.server.user.put(
        f"/experiments/{worker.experiment_id}", {"state": ExperimentState.PAUSED}
    )
    thread.join(30)
    assert outcome and outcome[0] is not None and outcome[0].stopped
    assert stored_state() == b"saved when asked to stop"
