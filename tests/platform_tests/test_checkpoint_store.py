"""Workers that share no file system: two workers with data dirs of their own train a
``sparse_resnet50`` run on the bundled digits; the one holding it mid-way is SIGKILLed and the
other resumes it from the checkpoint it fetches through the API, bit-exactly on CPU (every
epoch's metrics and the final weights equal those of an uninterrupted run of the same
assignments). Once with the API's file store on its data dir, once on an S3-compatible server
(moto's, started here)."""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
import torch

from services.worker.checkpoint_sync import unpack
from services.worker.objectives.sparse_resnet50 import SparseResNet50Objective
from services.worker.training.checkpoint import load_checkpoint
from shared.api_client import ApiClient
from shared.checkpoint_archive import SHA256_HEADER
from shared.checkpoint_archive import content_path
from tests.platform_tests.conftest import client_for
from tests.s3_server import CREDENTIALS
from tests.s3_server import S3Server
from tests.s3_server import s3_server
from tests.services import Platform
from tests.services import wait_for

pytestmark = pytest.mark.slow

MAX_EPOCHS = 8
#: The CPU demo's network, on digits at 32 px: under a second per epoch on one core.
CONFIG = {
    "dataset": "digits",
    "arch": "resnet18",
    "width": 0.25,
    "image_size": 32,
    "max_epochs": MAX_EPOCHS,
    "num_workers": 0,
    "seed": 0,
}
EXPERIMENT = {
    "name": "resumed through the API",
    "parameters": [
        {"name": "max_lr", "type": "double", "bounds": {"min": 0.3, "max": 1.0}},
        {"name": "momentum", "type": "double", "bounds": {"min": 0.5, "max": 0.9}},
        {"name": "batch_size", "type": "int", "bounds": {"min": 32, "max": 48}},
    ],
    "metrics": [{"name": "val_top1", "objective": "maximize"}],
    "observation_budget": 1,
    "parallel_bandwidth": 1,
    "objective": {"name": "sparse_resnet50", "config": CONFIG},
}
#: Metrics that depend on the computation alone (not ``images_per_second``).
EXACT = ("val_top1", "val_loss", "train_loss", "weight_sparsity", "activation_sparsity")


class _Recorder:
    """The RunContext of the uninterrupted reference run."""

    def __init__(self, directory: Path) -> None:
        self.checkpoint_dir = directory
        self.device = "cpu"
        self.devices = ["cpu"]

    def report(self, epoch: int, values: Mapping[str, float]) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def _uninterrupted(assignments: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Train the same assignments in one go, on one thread as the workers do; returns the final
    checkpoint."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        SparseResNet50Objective().run(assignments, None, CONFIG, _Recorder(directory))
    finally:
        torch.set_num_threads(threads)
    state = load_checkpoint(directory)
    assert state is not None
    return state


def _fetch_archive(platform: Platform, run_id: int, directory: Path) -> dict[str, Any]:
    """The run's stored checkpoint, fetched over HTTP as a worker fetches it."""
    response = requests.get(
        f"{platform.api_url}/v1{content_path(run_id)}",
        headers={"Authorization": "Bearer test-service-token"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert hashlib.sha256(response.content).hexdigest() == response.headers[SHA256_HEADER]
    archive = directory.with_suffix(".tar")
    archive.write_bytes(response.content)
    directory.mkdir()
    unpack(archive, directory)
    state = load_checkpoint(directory)
    assert state is not None
    return state


def _kill_mid_way_and_resume(platform: Platform, tmp_path: Path) -> tuple[ApiClient, dict, str]:
    """Start the services and two workers with data dirs of their own, SIGKILL the worker that
    holds the run after two epochs, and wait for the experiment to complete. Returns the API
    client, the run and the survivor's name."""
    platform.start_api()
    platform.start("suggester", "suggester")
    for name in ("w1", "w2"):
        platform.start(
            name,
            "worker",
            "--name",
            name,
            "--threads",
            "1",
            extra_env={"MULTITUNE_DATA_DIR": str(tmp_path / name)},
        )
    api = client_for(platform)
    eid = api.post("/experiments", EXPERIMENT)["id"]

    def mid_way() -> dict[str, Any] | None:
        for run in api.iterate(f"/experiments/{eid}/training_runs", state="running"):
            if run["worker"] and 2 <= run["checkpoint_count"] <= MAX_EPOCHS - 3:
                return run
        return None

    victim = wait_for(mid_way, 180, "the run to be mid-way", platform)
    killed = victim["worker"].split("@")[0]
    survivor = {"w1": "w2", "w2": "w1"}[killed]
    platform.kill(killed, signal.SIGKILL)
    assert not (tmp_path / survivor / "runs" / str(victim["id"])).exists()
    wait_for(
        lambda: api.get(f"/experiments/{eid}")["state"] == "completed",
        300,
        "the experiment to complete",
        platform,
    )
    experiment = api.get(f"/experiments/{eid}")
    observations = list(api.iterate(f"/experiments/{eid}/observations"))
    assert len(observations) == 1 and not observations[0]["failed"]
    assert experiment["progress"]["observation_budget_consumed"] == pytest.approx(1.0)
    run = api.get(f"/training_runs/{victim['id']}")
    assert run["state"] == "completed" and run["worker"].startswith(f"{survivor}@")
    assert observations[0]["value"] == run["values"]["val_top1"]["value"]
    return api, run, survivor


def _check_resumed_bit_exactly(
    platform: Platform, api: ApiClient, run: dict[str, Any], survivor: str, tmp_path: Path
) -> None:
    run_id = int(run["id"])
    checkpoints = sorted(
        api.iterate(f"/training_runs/{run_id}/checkpoints"), key=lambda c: c["epoch"]
    )
    epochs = [c["epoch"] for c in checkpoints]
    assert len(epochs) == len(set(epochs))  # no epoch trained twice
    first = [c["epoch"] for c in checkpoints if c["attempt"] == 1]
    second = [c["epoch"] for c in checkpoints if c["attempt"] == 2]
    assert len(first) >= 2 and second and min(second) > 2 and max(second) == MAX_EPOCHS
    assert f"run {run_id} attempt 2: fetched the checkpoint of attempt 1" in platform.log(survivor)
    # The survivor dropped its copy once the run finished; the killed worker's stays behind.
    assert not (tmp_path / survivor / "runs" / str(run_id)).exists()
    killed = {"w1": "w2", "w2": "w1"}[survivor]
    assert (tmp_path / killed / "runs" / str(run_id) / "checkpoint.pt").is_file()

    stored = _fetch_archive(platform, run_id, tmp_path / "stored")
    expected = _uninterrupted(run["assignments"], tmp_path / "uninterrupted")
    assert stored["epoch"] == expected["epoch"] == MAX_EPOCHS
    for epoch, (got, want) in enumerate(
        zip(stored["history"], expected["history"], strict=True), 1
    ):
        assert {k: got[k] for k in EXACT} == {k: want[k] for k in EXACT}, epoch
    for checkpoint in checkpoints:  # what the workers logged through the API, epoch by epoch
        values = {v["name"]: v["value"] for v in checkpoint["values"]}
        want = expected["history"][checkpoint["epoch"] - 1]
        assert {k: values[k] for k in EXACT} == {k: want[k] for k in EXACT}, checkpoint
    assert stored["model"].keys() == expected["model"].keys()
    for key, value in expected["model"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(stored["model"][key], value), key
        else:
            assert stored["model"][key] == value, key
    assert run["values"]["val_top1"]["value"] == expected["history"][-1]["val_top1"]


def test_a_run_resumes_on_another_worker_from_the_checkpoint_in_the_api(
    make_platform: Any, tmp_path: Path
) -> None:
    platform = make_platform(run_lease_s="4", heartbeat_s="0.5", max_attempts="3")
    api, run, survivor = _kill_mid_way_and_resume(platform, tmp_path)
    _check_resumed_bit_exactly(platform, api, run, survivor, tmp_path)
    stored = sorted(p.name for p in (tmp_path / "data" / "checkpoints" / str(run["id"])).iterdir())
    assert len(stored) == 2 and "current.json" in stored  # the last archive and its pointer


@pytest.fixture()
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def test_the_same_with_the_file_store_on_an_s3_server(
    make_platform: Any, tmp_path: Path, s3: S3Server
) -> None:
    platform = make_platform(
        run_lease_s="4",
        heartbeat_s="0.5",
        max_attempts="3",
        file_store=f"s3://{s3.bucket}/multitune",
        s3_endpoint_url=s3.endpoint_url,
    )
    platform.env.update(CREDENTIALS)
    api, run, survivor = _kill_mid_way_and_resume(platform, tmp_path)
    _check_resumed_bit_exactly(platform, api, run, survivor, tmp_path)
    keys = s3.keys(f"multitune/checkpoints/{run['id']}/")
    assert len(keys) == 2 and f"multitune/checkpoints/{run['id']}/current.json" in keys
    assert s3.multipart_uploads() == []
    assert not (tmp_path / "data" / "checkpoints").exists()  # nothing on the API's disk
