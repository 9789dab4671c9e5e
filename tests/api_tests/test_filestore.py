"""The file store's contract, run against both stores: `LocalStore` on a directory and
`S3Store` on a real S3-compatible server (moto's, a process started here). Bytes stream in a
pending object that publishes under its key in one step; an abort or an error leaves what the
key held; keys are checked; a store that cannot write says so (507)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.api.filestore import FileStore
from services.api.filestore import LocalStore
from services.api.filestore import S3Store
from services.api.filestore import StoreFullError
from services.api.filestore import StoreUnavailableError
from services.api.filestore import open_store
from services.api.filestore import parse_location
from shared.settings import Settings
from tests.s3_server import CREDENTIALS
from tests.s3_server import S3Server
from tests.s3_server import s3_server

#: S3's smallest part (but the last one): objects above it go up in several parts.
PART = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FileStore:
    if request.param == "local":
        return LocalStore(tmp_path / "files")
    server: S3Server = request.getfixturevalue("s3")
    return S3Store(server.client(), server.bucket, f"{tmp_path.name}/", part_bytes=PART)


def _leftovers(store: FileStore) -> list[str]:
    """Pending writes that were neither published nor discarded."""
    if isinstance(store, LocalStore):
        tmp = store.root / "tmp"
        return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
    assert isinstance(store, S3Store)
    answer = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    uploads = [u["Key"] for u in answer.get("Uploads", [])]
    temporaries = [k for k in store.keys("") if k.startswith("tmp/")]
    return sorted(uploads + temporaries + _raw_tmp_keys(store))


def _raw_tmp_keys(store: S3Store) -> list[str]:
    answer = store.client.list_objects_v2(Bucket=store.bucket, Prefix=f"{store.prefix}tmp/")
    return [item["Key"] for item in answer.get("Contents", [])]


def _blob(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ from one MiB to the next (a misplaced part shows)."""
    block = hashlib.sha256(str(seed).encode()).digest() * (1024 * 1024 // 32)
    return b"".join(bytes([i % 251]) + block[1:] for i in range(size // len(block) + 1))[:size]


def _write(store: FileStore, key: str | None, data: bytes, commit_as: str | None = None) -> None:
    with store.begin(key) as pending:
        for start in range(0, len(data), 1024 * 1024 - 7):  # chunks that do not align with parts
            pending.write(data[start : start + 1024 * 1024 - 7])
        assert pending.size == len(data)
        pending.commit(commit_as)


def _read(store: FileStore, key: str) -> bytes:
    with store.open(key) as stored:
        data = b"".join(stored.chunks())
        assert stored.size == len(data)
    return data


@pytest.mark.parametrize("size", [0, 1000, 2 * PART + 12345])
def test_bytes_stream_in_and_out(store: FileStore, size: int) -> None:
    data = _blob(size)
    _write(store, "7/3/11", data)
    assert _read(store, "7/3/11") == data
    assert store.keys("7/") == ["7/3/11"]
    assert _leftovers(store) == []


def test_nothing_is_visible_before_the_commit_and_an_abort_keeps_the_old_object(
    store: FileStore,
) -> None:
    _write(store, "runs/1/a", b"the good one")
    for size in (10, PART + 1):  # one PUT, and a multipart upload
        with store.begin("runs/1/a") as pending:
            pending.write(_blob(size, seed=size))
            assert _read(store, "runs/1/a") == b"the good one"
            pending.abort()
        assert _read(store, "runs/1/a") == b"the good one"
    assert _leftovers(store) == []


def test_an_error_in_the_block_discards_the_pending_bytes(store: FileStore) -> None:
    _write(store, "runs/2/a", b"kept")
    with pytest.raises(ConnectionResetError), store.begin("runs/2/a") as pending:
        pending.write(_blob(PART + 10))  # a part is already up
        assert len(_leftovers(store)) == 1  # the temporary file, or the multipart upload
        raise ConnectionResetError("the client went away")
    assert _read(store, "runs/2/a") == b"kept"
    assert _leftovers(store) == []


def test_a_commit_replaces_the_object_in_one_step(store: FileStore) -> None:
    _write(store, "3/x", b"old")
    new = _blob(PART + 99, seed=3)
    _write(store, "3/x", new)
    assert _read(store, "3/x") == new
    assert store.keys() == ["3/x"]


def test_an_object_named_on_commit_lands_there(store: FileStore) -> None:
    small, large = b"named later", _blob(PART + 5, seed=4)
    _write(store, None, small, commit_as="4/small")
    _write(store, None, large, commit_as="4/large")
    assert _read(store, "4/small") == small and _read(store, "4/large") == large
    assert store.keys() == ["4/large", "4/small"]
    assert _leftovers(store) == []


def test_missing_objects_and_deletes(store: FileStore) -> None:
    with pytest.raises(FileNotFoundError):
        store.open("5/none")
    store.delete("5/none")  # nothing to delete is no error
    store.write_bytes("5/a", b"x")
    assert store.read_bytes("5/a") == b"x"
    store.delete("5/a")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("5/a")
    assert store.keys() == []


@pytest.mark.parametrize("key", ["", "../x", "a/../../x", "/abs", "tmp/x", "a//b", "a\\b", "."])
def test_keys_that_are_not_plain_relative_paths_are_refused(store: FileStore, key: str) -> None:
    with pytest.raises(ValueError, match="not a file store key"):
        store.begin(key)
    with pytest.raises(ValueError, match="not a file store key"):
        store.open(key)
    with pytest.raises(ValueError, match="not a file store key"), store.begin() as pending:
        pending.write(b"x")
        pending.commit(key)
    assert _leftovers(store) == []


def test_a_local_store_that_cannot_write_says_so(tmp_path: Path) -> None:
    (tmp_path / "files").write_text("a file where the store's directory should be")
    store = LocalStore(tmp_path / "files")
    with pytest.raises(StoreFullError) as caught:
        store.write_bytes("1/a", b"x")
    assert caught.value.status == 507
    assert "full or unwritable" in caught.value.message
    assert str(tmp_path) not in caught.value.message  # no machine paths in answers


def test_a_bucket_that_refuses_writes_says_so(s3: S3Server) -> None:
    store = S3Store(s3.client(), "no-such-bucket-here", "", part_bytes=PART)
    for size in (10, PART + 1):
        with pytest.raises(StoreFullError, match="full or unwritable.*NoSuchBucket"):
            store.write_bytes("1/a", _blob(size))


def test_an_object_store_that_does_not_answer_is_unavailable(s3: S3Server) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.session.Session(
        aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1"
    ).client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    store = S3Store(client, s3.bucket)
    with pytest.raises(StoreUnavailableError) as caught:
        store.open("1/a")
    assert caught.value.status == 503


def _closed_port() -> int:
    from tests.services import free_port

    return free_port()  # bound and released: nothing listens there


def test_the_settings_choose_the_store(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    local = open_store(Settings.from_env(env={}, data_dir=tmp_path), "artifacts")
    assert isinstance(local, LocalStore) and local.root == tmp_path / "artifacts"
    settings = Settings.from_env(
        env={
            "MULTITUNE_FILE_STORE": f"s3://{s3.bucket}/team/multitune/",
            "MULTITUNE_S3_ENDPOINT_URL": s3.endpoint_url,
        },
        data_dir=tmp_path,
    )
    remote = open_store(settings, "checkpoints")
    assert isinstance(remote, S3Store) and remote.prefix == "team/multitune/checkpoints/"
    remote.write_bytes("9/current.json", b"{}")
    assert "team/multitune/checkpoints/9/current.json" in s3.keys("team/")
    assert open_store(settings, "checkpoints") is remote  # one per process


@pytest.mark.parametrize(
    ("location", "parsed"),
    [
        ("", None),
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket/a/b", ("bucket", "a/b/")),
    ],
)
def test_locations(location: str, parsed: tuple[str, str] | None) -> None:
    assert parse_location(location) == parsed


@pytest.mark.parametrize(
    "location", ["/var/lib/multitune", "gs://bucket/x", "s3:///x", "s3://b?x=1"]
)
def test_other_locations_are_refused_with_the_setting_named(location: str) -> None:
    with pytest.raises(ValueError, match="MULTITUNE_FILE_STORE"):
        parse_location(location)


def test_pending_temporaries_live_beside_the_objects(tmp_path: Path) -> None:
    """A local commit is a rename within one file system: the temporary is under the root."""
    store = LocalStore(tmp_path / "files")
    with store.begin("1/a") as pending:
        pending.write(b"x")
        (temporary,) = (store.root / "tmp").iterdir()
        assert os.stat(temporary).st_dev == os.stat(store.root).st_dev
        pending.commit()
    assert not temporary.exists() and (store.root / "1" / "a").read_bytes() == b"x"
