"""Checkpoint archives through the API: stored for an attempt (fenced: a superseded attempt or a
finished run gets 409, checked again when the archive would become current), described and
streamed back, checked against their declared length and SHA-256, and never replaced by an
upload that did not complete. Only the service token and the run's own token may use them.

The first tests use the app's test client over SQLite and PostgreSQL; the others send real HTTP
(a connection cut mid-body) to the app served in-process, over the local store and an S3 store
on a real S3-compatible server."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient

from services.api.filestore import FileStore
from services.api.filestore import LocalStore
from services.api.filestore import S3Store
from services.api.filestore import open_store
from shared import api_objects
from shared.checkpoint_archive import SHA256_HEADER
from shared.checkpoint_archive import CheckpointArchive
from tests.inprocess import BRANIN
from tests.inprocess import SERVICE_TOKEN
from tests.inprocess import InProcessApi
from tests.inprocess import serve_api
from tests.s3_server import CREDENTIALS
from tests.s3_server import S3Server
from tests.s3_server import s3_server
from tests.services import wait_for

SERVICE = {"Authorization": "Bearer service-secret"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _put(
    client: FlaskClient,
    run: str,
    data: bytes,
    attempt: int = 1,
    headers: dict[str, str] = SERVICE,
    sha256: str | None = None,
) -> Any:
    return client.put(
        f"/v1/training_runs/{run}/checkpoint_archive",
        query_string={"attempt": attempt, "sha256": sha256 or _sha(data)},
        data=data,
        headers={**headers, "Content-Type": "application/x-tar"},
    )


@pytest.fixture()
def run(client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]) -> str:
    """A run of an experiment of client acme, claimed by a worker (attempt 1)."""
    eid = experiment["id"]
    sid = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json["id"]
    created = client.post(
        f"/v1/experiments/{eid}/training_runs", json={"suggestion": sid}, headers=auth
    )
    run_id = str(created.json["id"])
    claimed = client.put(
        f"/v1/training_runs/{run_id}",
        json={"state": "running", "attempt": 1, "worker": "w1", "heartbeat": True},
        headers=SERVICE,
    )
    assert claimed.status_code == 200, claimed.json
    return run_id


def _store(app: Flask) -> FileStore:
    return open_store(app.config["SETTINGS"], "checkpoints")


def test_an_archive_is_stored_described_and_streamed_back(
    app: Flask, client: FlaskClient, run: str
) -> None:
    path = f"/v1/training_runs/{run}/checkpoint_archive"
    assert client.get(path, headers=SERVICE).status_code == 404
    assert client.get(f"{path}/content", headers=SERVICE).status_code == 404

    first = b"first archive" * 1000
    stored = _put(client, run, first)
    assert stored.status_code == 200, stored.json
    described = CheckpointArchive.from_json(client.get(path, headers=SERVICE).json)
    assert CheckpointArchive.from_json(stored.json) == described
    assert (described.training_run, described.attempt) == (int(run), 1)
    assert (described.size, described.sha256) == (len(first), _sha(first))

    content = client.get(f"{path}/content", headers=SERVICE)
    assert content.status_code == 200 and content.data == first
    assert content.headers[SHA256_HEADER] == _sha(first)
    assert content.headers["Content-Length"] == str(len(first))
    assert content.headers["Content-Type"] == "application/x-tar"
    unchanged = client.get(
        f"{path}/content", headers={**SERVICE, "If-None-Match": f'"{_sha(first)}"'}
    )
    assert unchanged.status_code == 304 and unchanged.data == b""

    second = b"second"
    assert _put(client, run, second).status_code == 200
    assert client.get(f"{path}/content", headers=SERVICE).data == second
    keys = _store(app).keys(f"{run}/")
    assert len(keys) == 2 and f"{run}/current.json" in keys  # the first archive was deleted


def test_uploads_are_fenced_by_attempt_and_state(
    app: Flask, client: FlaskClient, run: str
) -> None:
    path = f"/v1/training_runs/{run}"
    future = _put(client, run, b"from the future", attempt=2)
    assert future.status_code == 409 and "attempt" in future.json["message"]
    assert _store(app).keys(f"{run}/") == []
    assert _put(client, run, b"attempt 1").status_code == 200

    client.put(path, json={"new_attempt": True, "attempt": 1}, headers=SERVICE)
    late = _put(client, run, b"late write of attempt 1")
    assert late.status_code == 409 and "superseded" in late.json["message"]
    assert client.get(f"{path}/checkpoint_archive/content", headers=SERVICE).data == b"attempt 1"
    assert _put(client, run, b"attempt 2", attempt=2).status_code == 200

    result = {"attempt": 2, "state": "completed", "values": [{"name": "accuracy", "value": 0.5}]}
    assert client.post(f"{path}/result", json=result, headers=SERVICE).status_code == 200
    finished = _put(client, run, b"after the end", attempt=2)
    assert finished.status_code == 409 and "completed" in finished.json["message"]
    assert client.get(f"{path}/checkpoint_archive/content", headers=SERVICE).data == b"attempt 2"
    assert len(_store(app).keys(f"{run}/")) == 2  # refused uploads leave nothing behind


def test_bytes_that_differ_from_the_declaration_are_refused(
    app: Flask, client: FlaskClient, run: str
) -> None:
    assert _put(client, run, b"good").status_code == 200
    wrong = _put(client, run, b"tampered", sha256=_sha(b"something else"))
    assert wrong.status_code == 400 and "sha256" in wrong.json["message"]
    for sha256 in ("abc", "G" * 64, _sha(b"x").upper()):
        bad = _put(client, run, b"x", sha256=sha256)
        assert bad.status_code == 400 and "sha256" in bad.json["message"], sha256
    for query in ({"sha256": _sha(b"x")}, {"attempt": 0, "sha256": _sha(b"x")}):
        bad = client.put(
            f"/v1/training_runs/{run}/checkpoint_archive",
            query_string=query,
            data=b"x",
            headers=SERVICE,
        )
        assert bad.status_code == 400 and "attempt" in bad.json["message"], query
    unsized = client.put(
        f"/v1/training_runs/{run}/checkpoint_archive",
        query_string={"attempt": 1, "sha256": _sha(b"x")},
        input_stream=io.BytesIO(b"x"),
        headers={**SERVICE, "Transfer-Encoding": "chunked"},
    )
    assert unsized.status_code == 411 and "Content-Length" in unsized.json["message"]
    assert (
        client.get(f"/v1/training_runs/{run}/checkpoint_archive/content", headers=SERVICE).data
        == b"good"
    )
    assert len(_store(app).keys(f"{run}/")) == 2
    assert list((app.config["SETTINGS"].data_dir / "checkpoints" / "tmp").iterdir()) == []


def test_an_archive_over_the_limit_is_refused(app: Flask, client: FlaskClient, run: str) -> None:
    app.config["SETTINGS"] = replace(app.config["SETTINGS"], max_checkpoint_bytes=1000)
    assert _put(client, run, b"x" * 1000).status_code == 200  # the body limit does not apply
    refused = _put(client, run, b"x" * 1001)
    assert refused.status_code == 413 and "1000 bytes" in refused.json["message"]


def test_only_the_workers_and_the_runs_own_token_use_archives(
    client: FlaskClient,
    auth: dict[str, str],
    make_token: Callable[[str], dict[str, str]],
    experiment: dict[str, Any],
    run: str,
) -> None:
    path = f"/v1/training_runs/{run}/checkpoint_archive"
    owner = _put(client, run, b"from the owner", headers=auth)
    assert owner.status_code == 403 and "service token" in owner.json["message"]
    assert client.get(path, headers=auth).status_code == 403
    assert client.get(f"{path}/content", headers=auth).status_code == 403
    other = make_token("globex")
    for response in (
        _put(client, run, b"x", headers=other),
        client.get(path, headers=other),
        client.get(f"{path}/content", headers=other),
    ):
        assert response.status_code == 404  # another client's run does not exist for it
    assert client.get(path).status_code == 401

    minted = client.post(f"/v1/training_runs/{run}/tokens", json={"attempt": 1}, headers=SERVICE)
    own = {"Authorization": f"Bearer {minted.json['token']}"}
    assert _put(client, run, b"from the script", headers=own).status_code == 200
    assert client.get(f"{path}/content", headers=own).data == b"from the script"
    eid = experiment["id"]
    sid = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json["id"]
    sibling = client.post(
        f"/v1/experiments/{eid}/training_runs", json={"suggestion": sid}, headers=auth
    ).json["id"]
    assert _put(client, str(sibling), b"x", headers=own).status_code == 404


def test_archives_are_in_the_openapi_document(client: FlaskClient, auth: dict[str, str]) -> None:
    paths = client.get("/v1/openapi.json", headers=auth).json["paths"]
    archive = paths["/v1/training_runs/{run_id}/checkpoint_archive"]
    assert set(archive) == {"put", "get"}
    names = {p["name"] for p in archive["put"]["parameters"]}
    assert {"run_id", "attempt", "sha256"} <= names
    assert "get" in paths["/v1/training_runs/{run_id}/checkpoint_archive/content"]


# ---------------------------------------------------------------------- over real HTTP
@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def served(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[InProcessApi]:
    settings: dict[str, Any] = {}
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3")
        for name, value in CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        settings = {
            "file_store": f"s3://{server.bucket}/{tmp_path.name}",
            "s3_endpoint_url": server.endpoint_url,
        }
    with serve_api(tmp_path, redis_url, **settings) as api:
        yield api


def _claimed_run(api: InProcessApi) -> int:
    experiment = int(api.user.post("/experiments", BRANIN)["id"])
    run = api_objects.create_training_run(
        api.service, experiment, {"assignments": {"x1": 1.0, "x2": 2.0}, "task": "full"}
    )
    claim = {"state": "running", "attempt": 1, "worker": "w1", "heartbeat": True}
    api_objects.update_training_run(api.service, run.id, claim)
    return run.id


def _upload(api: InProcessApi, run_id: int, data: bytes, attempt: int = 1) -> requests.Response:
    return requests.put(
        f"{api.url}/v1/training_runs/{run_id}/checkpoint_archive",
        params={"attempt": str(attempt), "sha256": _sha(data)},
        data=data,
        headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
        timeout=60,
    )


def _current(api: InProcessApi, run_id: int) -> bytes:
    response = requests.get(
        f"{api.url}/v1/training_runs/{run_id}/checkpoint_archive/content",
        headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.content


def _begin_upload(api: InProcessApi, run_id: int, length: int, sha256: str) -> socket.socket:
    """A raw HTTP PUT of ``length`` declared bytes, headers sent, body not yet."""
    host, port = api.url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    connection.sendall(
        (
            f"PUT /v1/training_runs/{run_id}/checkpoint_archive?attempt=1&sha256={sha256} "
            f"HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SERVICE_TOKEN}\r\n"
            f"Content-Type: application/x-tar\r\nContent-Length: {length}\r\n\r\n"
        ).encode()
    )
    return connection


def _answer(connection: socket.socket, until: str) -> str:
    """What the server answers on ``connection``, read until it holds ``until`` (or 30 s)."""
    connection.settimeout(1)
    received = b""
    deadline = time.monotonic() + 30
    while until.encode() not in received and time.monotonic() < deadline:
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        received += chunk
    connection.close()
    return received.decode(errors="replace")


def _store_of(api: InProcessApi) -> FileStore:
    return open_store(api.settings, "checkpoints")


def _pending_writes(store: FileStore) -> list[str]:
    if isinstance(store, LocalStore):
        tmp = store.root / "tmp"
        return [p.name for p in tmp.iterdir()] if tmp.exists() else []
    assert isinstance(store, S3Store)
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    return [u["Key"] for u in uploads.get("Uploads", [])]


def test_an_upload_cut_off_mid_way_leaves_the_previous_archive(served: InProcessApi) -> None:
    run_id = _claimed_run(served)
    good = b"a good checkpoint" * 100
    assert _upload(served, run_id, good).status_code == 200
    store = _store_of(served)
    before = store.keys(f"{run_id}/")

    big = bytes(range(256)) * (4 * 40 * 1024)  # 40 MiB declared: S3 parts go up before the cut
    connection = _begin_upload(served, run_id, len(big), _sha(big))
    connection.sendall(big[: 20 * 1024 * 1024])
    wait_for(lambda: _pending_writes(store), 30, "the upload to be under way")
    connection.close()
    wait_for(lambda: not _pending_writes(store), 30, "the broken upload to be discarded")

    assert _current(served, run_id) == good
    assert store.keys(f"{run_id}/") == before
    description = json.loads(store.read_bytes(f"{run_id}/current.json"))
    assert description["archive"]["sha256"] == _sha(good)


def test_an_attempt_superseded_while_it_uploads_does_not_replace_the_archive(
    served: InProcessApi,
) -> None:
    """The fence is checked when the archive would become current, not only when it starts."""
    run_id = _claimed_run(served)
    assert _upload(served, run_id, b"attempt 1, epoch 1").status_code == 200
    late = b"attempt 1, epoch 2" * (1024 * 1024)  # over one S3 part: its upload is under way
    cut = 16 * 1024 * 1024 + 100
    connection = _begin_upload(served, run_id, len(late), _sha(late))
    connection.sendall(late[:cut])
    wait_for(lambda: _pending_writes(_store_of(served)), 30, "the upload to be under way")
    api_objects.update_training_run(served.service, run_id, {"new_attempt": True, "attempt": 1})
    connection.sendall(late[cut:])
    answer = _answer(connection, "superseded")
    assert answer.startswith("HTTP/1.1 409") and "superseded" in answer
    assert _current(served, run_id) == b"attempt 1, epoch 1"
    assert len(_store_of(served).keys(f"{run_id}/")) == 2  # its archive was removed
    assert _upload(served, run_id, b"attempt 2", attempt=2).status_code == 200
    assert _current(served, run_id) == b"attempt 2"
