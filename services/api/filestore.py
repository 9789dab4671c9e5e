"""The API's file store: where run files (`services.api.store.artifacts`) and checkpoint
archives (`services.api.store.checkpoint_archives`) keep their bytes.

One interface, `FileStore`, with two implementations chosen by ``MULTITUNE_FILE_STORE``:

* `LocalStore` (the default): a directory under the data dir, ``<data dir>/<namespace>``;
* `S3Store` (``s3://bucket/prefix``): any S3-compatible object store through boto3, at
  ``<prefix>/<namespace>/`` of the bucket (``MULTITUNE_S3_ENDPOINT_URL`` names a server other
  than AWS; credentials and region come from the usual AWS environment variables or files).

Keys are relative, ``/``-separated and made by the API (ids, never a client's file name).
Bytes stream both ways. A write goes through a `PendingObject`: the bytes go to a temporary (a
file in ``<root>/tmp``, or an S3 multipart upload, invisible until completed) and `commit`
publishes them under their key in one step, replacing what the key held; `abort`, an error or
a crash leaves the key as it was. A store that cannot take the bytes (disk full, read-only,
permission, a bucket refusing) raises `StoreFullError`, a 507 whose message says so; an object
store that does not answer raises `StoreUnavailableError`, a 503 that clients retry.
"""

from __future__ import annotations

import abc
import errno
import functools
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import urlsplit

from services.api.errors import ApiError
from shared.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

#: Bytes per read when streaming.
CHUNK = 1024 * 1024
#: Size of each part of an S3 multipart upload (S3: at least 5 MiB but the last, at most
#: 10,000 parts, so objects up to ~156 GiB); a smaller object is one PUT.
PART_BYTES = 16 * 1024 * 1024
#: The directory of a `LocalStore` where pending writes live (not a key).
TMP = "tmp"
#: A `LocalStore` removes temporaries older than this (left by a killed API process).
STALE_TMP_S = 24 * 3600


class StoreFullError(ApiError):
    """The store refused the bytes: full, read-only, not permitted. 507 Insufficient Storage."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            507, f"Insufficient storage: the file store is full or unwritable ({detail})"
        )


class StoreUnavailableError(ApiError):
    """The object store did not answer. 503: try again."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, f"The file store is unavailable ({detail})")


def check_key(key: str) -> str:
    """``key`` if it is a relative ``a/b/c`` path of plain names (not under ``tmp/``)."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts) or parts[0] == TMP or "\\" in key:
        raise ValueError(f"not a file store key: {key!r}")
    return key


@dataclass
class StoredObject:
    """An object opened for reading: ``stream`` (read it, then close it) of ``size`` bytes."""

    stream: IO[bytes]
    size: int

    def __enter__(self) -> StoredObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.stream.read(CHUNK):
            yield chunk


class PendingObject(abc.ABC):
    """Bytes being written: nothing is visible under any key until `commit`. As a context
    manager, it is aborted when the block ends without a commit."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.size = 0
        self.done = False

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Append ``data``."""

    @abc.abstractmethod
    def _publish(self, key: str) -> None: ...

    @abc.abstractmethod
    def _discard(self) -> None: ...

    def commit(self, key: str | None = None) -> None:
        """Publish the bytes under ``key`` (default: the key given to `FileStore.begin`),
        replacing what it held, in one step."""
        target = check_key(key or self.key or "")
        if self.done:
            raise RuntimeError("a pending object is committed or aborted once")
        self._publish(target)
        self.done = True

    def abort(self) -> None:
        """Drop the bytes (nothing was published); safe to call more than once."""
        if not self.done:
            self.done = True
            self._discard()

    def __enter__(self) -> PendingObject:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


class FileStore(abc.ABC):
    """Where the API keeps bytes, by key."""

    @abc.abstractmethod
    def begin(self, key: str | None = None) -> PendingObject:
        """Start writing an object; give ``key`` when it is known now (an object store then
        uploads straight to it), else name it on `PendingObject.commit`."""

    @abc.abstractmethod
    def open(self, key: str) -> StoredObject:
        """Open an object to stream it; FileNotFoundError when there is none."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; nothing happens when there is none."""

    @abc.abstractmethod
    def keys(self, prefix: str = "") -> list[str]:
        """The keys that start with ``prefix``, sorted."""

    def read_bytes(self, key: str) -> bytes:
        """A small object's bytes (a pointer, a description); FileNotFoundError when none."""
        with self.open(key) as stored:
            return b"".join(stored.chunks())

    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace a small object in one step."""
        with self.begin(key) as pending:
            pending.write(data)
            pending.commit()


# ---------------------------------------------------------------------- a local directory
def _os_detail(exc: OSError) -> str:
    """What went wrong, without the path (no machine paths in answers)."""
    return exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)


class _LocalPending(PendingObject):
    def __init__(self, store: LocalStore, key: str | None) -> None:
        super().__init__(key)
        self._store = store
        directory = store.root / TMP
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
        except OSError as exc:
            raise StoreFullError(_os_detail(exc)) from exc
        self.temporary = Path(name)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise StoreFullError(_os_detail(exc)) from exc
        self.size += len(data)

    def _publish(self, key: str) -> None:
        final = self._store.path(key)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.temporary, final)
        except OSError as exc:
            self._discard()
            raise StoreFullError(_os_detail(exc)) from exc

    def _discard(self) -> None:
        self._file.close()
        self.temporary.unlink(missing_ok=True)


class LocalStore(FileStore):
    """A directory: ``<root>/<key>``, pending writes in ``<root>/tmp`` (the same file system,
    so a commit is an atomic rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._swept = 0.0

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def begin(self, key: str | None = None) -> PendingObject:
        if key is not None:
            check_key(key)
        self._sweep()
        return _LocalPending(self, key)

    def _sweep(self) -> None:
        """At most once an hour, remove temporaries older than `STALE_TMP_S`."""
        now = time.time()
        if now - self._swept < 3600:
            return
        self._swept = now
        try:
            entries = list((self.root / TMP).iterdir())
        except OSError:
            return
        for entry in entries:
            try:
                if now - entry.stat().st_mtime > STALE_TMP_S:
                    entry.unlink()
            except OSError:
                continue

    def open(self, key: str) -> StoredObject:
        path = self.path(key)
        try:
            stream = path.open("rb")
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(key) from None
        except OSError as exc:
            raise StoreUnavailableError(_os_detail(exc)) from exc
        return StoredObject(stream, os.fstat(stream.fileno()).st_size)

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink(missing_ok=True)
        except NotADirectoryError:
            pass

    def keys(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and not key.startswith(f"{TMP}/") and key.startswith(prefix):
                found.append(key)
        return sorted(found)


# ---------------------------------------------------------------------- an S3 bucket
@contextmanager
def _s3_errors(writing: bool, key: str) -> Iterator[None]:
    """botocore's errors as the store's: a missing object is FileNotFoundError, a refused write
    `StoreFullError`, no answer `StoreUnavailableError`."""
    from botocore.exceptions import BotoCoreError
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        if code in ("NoSuchKey", "404", "NotFound"):
            raise FileNotFoundError(key) from exc
        detail = f"{code}: {error.get('Message', '')}".rstrip(": ")
        if writing:
            raise StoreFullError(detail) from exc
        raise StoreUnavailableError(detail) from exc
    except BotoCoreError as exc:
        raise StoreUnavailableError(type(exc).__name__) from exc


class _S3Pending(PendingObject):
    """Buffers up to one part; the first full part starts a multipart upload (to the key when
    known, else a temporary key copied over on commit). A smaller object is one PUT."""

    def __init__(self, store: S3Store, key: str | None) -> None:
        super().__init__(key)
        self._store = store
        self._buffer = bytearray()
        self._upload_key = key if key is not None else f"{TMP}/{uuid.uuid4().hex}"
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        part = self._store.part_bytes
        while len(self._buffer) >= part:
            self._send_part(bytes(self._buffer[:part]))
            del self._buffer[:part]

    def _send_part(self, data: bytes) -> None:
        store = self._store
        name = store.name(self._upload_key, pending=True)
        with _s3_errors(True, self._upload_key):
            if self._upload_id is None:
                started = store.client.create_multipart_upload(Bucket=store.bucket, Key=name)
                self._upload_id = started["UploadId"]
            number = len(self._parts) + 1
            sent = store.client.upload_part(
                Bucket=store.bucket,
                Key=name,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
            )
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})

    def _publish(self, key: str) -> None:
        store = self._store
        try:
            if self._upload_id is None:
                with _s3_errors(True, key):
                    store.client.put_object(
                        Bucket=store.bucket, Key=store.name(key), Body=bytes(self._buffer)
                    )
                return
            if self._buffer or not self._parts:
                self._send_part(bytes(self._buffer))
            source = store.name(self._upload_key, pending=True)
            with _s3_errors(True, key):
                store.client.complete_multipart_upload(
                    Bucket=store.bucket,
                    Key=source,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
                )
            self._upload_id = None
            if source != store.name(key):
                with _s3_errors(True, key):
                    store.client.copy(
                        {"Bucket": store.bucket, "Key": source}, store.bucket, store.name(key)
                    )
                    store.client.delete_object(Bucket=store.bucket, Key=source)
        except BaseException:
            self._discard()
            raise
        finally:
            self._buffer = bytearray()

    def _discard(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is None:
            return
        store = self._store
        try:
            store.client.abort_multipart_upload(
                Bucket=store.bucket,
                Key=store.name(self._upload_key, pending=True),
                UploadId=self._upload_id,
            )
        except Exception as exc:  # noqa: BLE001 - the bucket's lifecycle rule ends it later
            log.warning("could not abort a multipart upload: %s", exc)
        self._upload_id = None


class S3Store(FileStore):
    """Objects ``<prefix><key>`` of ``bucket``."""

    def __init__(
        self, client: S3Client, bucket: str, prefix: str = "", part_bytes: int = PART_BYTES
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.part_bytes = part_bytes

    def name(self, key: str, pending: bool = False) -> str:
        """The object name of ``key`` (``pending``: also a temporary key under ``tmp/``)."""
        if not (pending and key.startswith(f"{TMP}/")):
            check_key(key)
        return self.prefix + key

    def begin(self, key: str | None = None) -> PendingObject:
        if key is not None:
            check_key(key)
        return _S3Pending(self, key)

    def open(self, key: str) -> StoredObject:
        with _s3_errors(False, key):
            answer = self.client.get_object(Bucket=self.bucket, Key=self.name(key))
        return StoredObject(answer["Body"], int(answer["ContentLength"]))  # type: ignore[arg-type]

    def delete(self, key: str) -> None:
        with _s3_errors(True, key):
            self.client.delete_object(Bucket=self.bucket, Key=self.name(key))

    def keys(self, prefix: str = "") -> list[str]:
        found = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        with _s3_errors(False, prefix):
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    if not key.startswith(f"{TMP}/"):
                        found.append(key)
        return sorted(found)


# ---------------------------------------------------------------------- from the settings
def parse_location(location: str) -> tuple[str, str] | None:
    """``MULTITUNE_FILE_STORE``: None for the data dir (empty), else ``(bucket, prefix)`` of
    ``s3://bucket/prefix`` (the prefix empty or ending with ``/``)."""
    if not location:
        return None
    parts = urlsplit(location)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            f"MULTITUNE_FILE_STORE must be empty (the data dir) or s3://bucket/prefix, "
            f"not {location!r}"
        )
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


_lock = threading.Lock()


@functools.cache
def _s3_client(endpoint_url: str | None) -> S3Client:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        # Servers other than AWS are reached by path (http://host/bucket/key), and S3-compatible
        # servers do not all take the checksums boto3 adds by default since 1.36.
        s3={"addressing_style": "path"} if endpoint_url else {},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


@functools.cache
def _store(data_dir: Path, location: str, endpoint_url: str | None, namespace: str) -> FileStore:
    bucket_prefix = parse_location(location)
    if bucket_prefix is None:
        return LocalStore(data_dir / namespace)
    bucket, prefix = bucket_prefix
    with _lock:  # boto3 sessions are not thread-safe; the client is
        client = _s3_client(endpoint_url)
    return S3Store(client, bucket, f"{prefix}{namespace}/")


def open_store(settings: Settings, namespace: str) -> FileStore:
    """The store of ``namespace`` (``artifacts``, ``checkpoints``) under these settings; one
    per process."""
    return _store(settings.data_dir, settings.file_store, settings.s3_endpoint_url, namespace)
