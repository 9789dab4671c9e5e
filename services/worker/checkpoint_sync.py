"""The worker's side of checkpoints stored through the API (docs/checkpoints.md).

An objective sees a local checkpoint directory, ``<worker data dir>/runs/<run>``: a cache of the
run's checkpoint archive, which the API keeps. For each attempt the worker

* on claim (`CheckpointSync.restore`), before the objective starts: asks the API for the run's
  current archive (for a run that continues a cheaper one and has stored none of its own yet:
  the source run's archive, so the objective trains on from it); when the local directory was
  not last synced with exactly that archive, it streams the archive to a temporary file, checks
  its length and SHA-256, unpacks it into a new directory beside the old one (refusing any
  member that would land outside it, links included) and swaps it in;
* at each sync point (`CheckpointSync.save`: a built-in objective's ``context.report`` per
  epoch, after its checkpoint is written; for a script, whenever the directory changed, looked
  at every heartbeat interval, and once more when it stops early): packs the directory into a
  temporary tar, streaming, and uploads it with its length, SHA-256 and attempt. Nothing is sent
  when the directory is unchanged since the last sync, or changed while it was being packed (the
  next sync point sends it).

``<run>.synced`` beside the directory records the archive it was last synced with (its SHA-256)
and what the directory looked like then (names, sizes, modification times). A 409 means this
attempt was superseded (`AttemptSuperseded`); a refusal of the store (507 full or unwritable, 413
too large, ...) or an API that stays away is a `CheckpointStoreError`, and the run fails with its
message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from pathlib import PurePosixPath
from typing import IO
from typing import TypeVar

import requests

from shared.api_client import MAX_RETRY_WAIT_S
from shared.api_client import retry_after_s
from shared.checkpoint_archive import ATTEMPT_HEADER
from shared.checkpoint_archive import SHA256_HEADER
from shared.checkpoint_archive import ArchiveObjectError
from shared.checkpoint_archive import CheckpointArchive
from shared.checkpoint_archive import archive_path
from shared.checkpoint_archive import content_path

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
SYNCED_SUFFIX = ".synced"
T = TypeVar("T")


class CheckpointStoreError(RuntimeError):
    """The run's checkpoint could not be stored or fetched through the API; the run fails with
    this message."""


class UnsafeArchiveError(CheckpointStoreError):
    """An archive with a member that would land outside the checkpoint directory."""


class NotStoredError(CheckpointStoreError):
    """The API has no archive for the run (404)."""


class AttemptSuperseded(RuntimeError):
    """The API refused the upload (409): this attempt is no longer the run's."""


# ---------------------------------------------------------------------- the directory
def fingerprint(directory: Path) -> str:
    """A digest of what ``directory`` holds: every entry's relative path, kind, size and
    modification time (a symlink's target), so that any write shows."""
    digest = hashlib.sha256()
    for path in sorted(_entries(directory)):
        line: list[object] = [path.relative_to(directory).as_posix()]
        try:
            info = path.lstat()
            line.append(stat.S_IFMT(info.st_mode))
            if stat.S_ISLNK(info.st_mode):
                line.append(os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                line += [info.st_size, info.st_mtime_ns]
        except FileNotFoundError:  # removed or renamed while listed: a change in progress
            line.append(f"gone {time.monotonic_ns()}")
        digest.update(json.dumps(line).encode() + b"\n")
    return digest.hexdigest()


def _entries(directory: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(directory):
        for name in (*dirs, *names):
            yield Path(root) / name


def pack(directory: Path, target: IO[bytes]) -> None:
    """Write ``directory``'s files, subdirectories and symlinks to ``target`` as a tar stream,
    in name order, with paths relative to the directory."""
    with tarfile.open(fileobj=target, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(_entries(directory)):
            tar.add(path, arcname=path.relative_to(directory).as_posix(), recursive=False)


def _inside(path: str) -> bool:
    """Whether the relative ``path`` stays inside the directory it is relative to."""
    parts = PurePosixPath(path).parts
    if not path or "\\" in path or PurePosixPath(path).is_absolute():
        return False
    depth = 0
    for part in parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return False
    return True


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse a member that is not a file, directory, symlink or hard link, or whose path or
    link target is absolute or climbs out of the directory."""
    name = member.name
    if not _inside(name) or ".." in PurePosixPath(name).parts:
        raise UnsafeArchiveError(f"archive member {name!r} escapes the checkpoint directory")
    if member.issym():
        target = str(PurePosixPath(name).parent / member.linkname)
    elif member.islnk():
        target = member.linkname
    elif member.isfile() or member.isdir():
        return
    else:
        raise UnsafeArchiveError(
            f"archive member {name!r} is not a file, directory or link (type {member.type!r})"
        )
    if not _inside(target):
        raise UnsafeArchiveError(
            f"archive member {name!r} links to {member.linkname!r}, outside the checkpoint "
            "directory"
        )


def unpack(archive: Path, directory: Path) -> None:
    """Extract the tar file ``archive`` into the empty ``directory``, after checking every
    member with `check_member` (and with tarfile's ``data`` filter on top)."""
    try:
        with tarfile.open(archive, mode="r:") as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member)
            tar.extractall(directory, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"unsafe checkpoint archive: {exc}") from exc
    except tarfile.TarError as exc:
        raise CheckpointStoreError(f"the checkpoint archive is not a tar file: {exc}") from exc


class _Hashing:
    """A writer that counts and hashes what goes through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.target.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)


# ---------------------------------------------------------------------- over HTTP
class ArchiveTransport:
    """The archive endpoints of the API. Connection errors, 429 and 5xx other than 507 are
    retried with backoff for ``retry_for_s``, waiting at least what ``Retry-After`` asks (as
    `shared.api_client.ApiClient` does)."""

    def __init__(
        self, api_url: str, token: str, retry_for_s: float = 300.0, timeout_s: float = 60.0
    ) -> None:
        self.base_url = api_url.rstrip("/") + "/v1"
        self.retry_for_s = retry_for_s
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self._session.close()

    def _call(
        self,
        what: str,
        send: Callable[[], requests.Response],
        read: Callable[[requests.Response], T],
    ) -> T:
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.2
        while True:
            problem: str
            wait = delay
            try:
                with send() as response:
                    if response.status_code < 400:
                        return read(response)
                    message = _message(response)
                    if response.status_code == 409:
                        raise AttemptSuperseded(message)
                    if response.status_code == 404:
                        raise NotStoredError(f"{what}: {message}")
                    retry = response.status_code == 429 or (
                        response.status_code >= 500 and response.status_code != 507
                    )
                    problem = f"the API answered {response.status_code}: {message}"
                    if not retry:
                        raise CheckpointStoreError(f"{what}: {problem}")
                    asked = retry_after_s(response)
                    if asked is not None:
                        wait = min(max(asked, delay), MAX_RETRY_WAIT_S)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:  # also a download cut off mid-way: it starts again
                problem = f"the API did not answer ({type(exc).__name__})"
            if time.monotonic() > deadline:
                raise CheckpointStoreError(f"{what}: {problem}")
            log.warning("%s: %s; retrying", what, problem)
            time.sleep(wait)
            delay = min(delay * 2, 5.0)

    def describe(self, run_id: int) -> CheckpointArchive | None:
        """The run's current archive, or None when none was stored."""
        url = self.base_url + archive_path(run_id)

        def read(response: requests.Response) -> CheckpointArchive:
            try:
                return CheckpointArchive.from_json(response.json())
            except (ValueError, ArchiveObjectError) as exc:
                raise CheckpointStoreError(f"the API's archive description: {exc}") from exc

        try:
            return self._call(
                f"reading the checkpoint of run {run_id}",
                lambda: self._session.get(url, timeout=self.timeout_s),
                read,
            )
        except NotStoredError:
            return None

    def download(self, run_id: int, target: IO[bytes]) -> tuple[str, int]:
        """Stream the current archive to ``target``; returns its SHA-256 as the API declared
        it and the attempt that stored it, after checking the bytes against both the digest
        and the length."""
        url = self.base_url + content_path(run_id)

        def read(response: requests.Response) -> tuple[str, int]:
            target.seek(0)
            target.truncate()
            hashing = _Hashing(target)
            for chunk in response.iter_content(CHUNK):
                hashing.write(chunk)
            declared = response.headers.get(SHA256_HEADER, "")
            length = response.headers.get("Content-Length")
            if length is not None and int(length) != hashing.size:
                raise CheckpointStoreError(
                    f"the checkpoint of run {run_id} arrived short: {hashing.size} of {length} "
                    "bytes"
                )
            if hashing.digest.hexdigest() != declared:
                raise CheckpointStoreError(
                    f"the checkpoint of run {run_id} does not match its SHA-256"
                )
            return declared, int(response.headers.get(ATTEMPT_HEADER, "0"))

        return self._call(
            f"fetching the checkpoint of run {run_id}",
            lambda: self._session.get(url, timeout=self.timeout_s, stream=True),
            read,
        )

    def upload(
        self, run_id: int, attempt: int, archive: Path, size: int, sha256: str
    ) -> CheckpointArchive:
        """PUT the tar file ``archive`` (``size`` bytes, ``sha256``) as the run's archive."""
        url = self.base_url + archive_path(run_id)

        def send() -> requests.Response:
            with archive.open("rb") as body:
                return self._session.put(
                    url,
                    params={"attempt": str(attempt), "sha256": sha256},
                    data=body,
                    headers={"Content-Length": str(size), "Content-Type": "application/x-tar"},
                    timeout=self.timeout_s,
                )

        return self._call(
            f"storing the checkpoint of run {run_id}",
            send,
            lambda response: CheckpointArchive.from_json(response.json()),
        )


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    message = body.get("message") if isinstance(body, dict) else None
    return str(message) if message else response.text[:500]


# ---------------------------------------------------------------------- one attempt
@dataclass(frozen=True)
class _Synced:
    """What the directory was last synced with: the archive's SHA-256 and the directory's
    `fingerprint` then."""

    sha256: str
    fingerprint: str


class CheckpointSync:
    """Keeps ``directory`` (the objective's checkpoint directory of one run) and the run's
    archive in the API in step, for one attempt. ``source``: the run this one continues, whose
    archive it starts from."""

    def __init__(
        self,
        transport: ArchiveTransport,
        run_id: int,
        attempt: int,
        directory: Path,
        source: int | None = None,
    ) -> None:
        self.transport = transport
        self.run_id = run_id
        self.attempt = attempt
        self.directory = directory
        self.source = source
        self._synced_path = directory.with_name(directory.name + SYNCED_SUFFIX)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the local record
    def _read_synced(self) -> _Synced | None:
        try:
            data = json.loads(self._synced_path.read_text())
            return _Synced(sha256=str(data["sha256"]), fingerprint=str(data["fingerprint"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_synced(self, synced: _Synced) -> None:
        temporary = self._synced_path.with_name(f".{self._synced_path.name}.{uuid.uuid4().hex}")
        temporary.write_text(
            json.dumps({"sha256": synced.sha256, "fingerprint": synced.fingerprint})
        )
        os.replace(temporary, self._synced_path)

    def _temporary(self, what: str, suffix: str = "") -> str:
        return f".{self.directory.name}-{what}-{uuid.uuid4().hex}{suffix}"

    # ------------------------------------------------------------------ on claim
    def restore(self) -> str:
        """Make the directory the run's stored checkpoint, or the source run's while the run
        has none of its own (see the module docstring); returns what was done, for the log."""
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            run_id = self.run_id
            stored = self.transport.describe(run_id)
            if stored is None and self.source is not None:
                run_id = self.source
                stored = self.transport.describe(run_id)
                if stored is None:
                    raise CheckpointStoreError(
                        f"run {self.run_id} continues run {run_id}, which has no checkpoint stored"
                    )
            if stored is None:
                return "no checkpoint stored"
            synced = self._read_synced()
            if synced is not None and synced.sha256 == stored.sha256:
                return f"the local checkpoint is current (attempt {stored.attempt})"
            parent = self.directory.parent
            download = parent / self._temporary("download", ".tar")
            staging = parent / self._temporary("restore")
            try:
                with download.open("w+b") as target:
                    sha256, attempt = self.transport.download(run_id, target)
                staging.mkdir()
                unpack(download, staging)
                self._swap_in(staging)
            finally:
                download.unlink(missing_ok=True)
                shutil.rmtree(staging, ignore_errors=True)
            self._write_synced(_Synced(sha256, fingerprint(self.directory)))
            done = f"fetched the checkpoint of attempt {attempt} ({stored.size} bytes)"
            return done if run_id == self.run_id else f"{done} of run {run_id}, which it continues"

    def _swap_in(self, staging: Path) -> None:
        old = self.directory.parent / self._temporary("old")
        os.replace(self.directory, old)
        os.replace(staging, self.directory)
        shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------------ at a sync point
    def save(self) -> bool:
        """Upload the directory when it changed since the last sync; returns whether it did.
        Raises `AttemptSuperseded` or `CheckpointStoreError`."""
        with self._lock:
            if not self.directory.is_dir():
                return False
            before = fingerprint(self.directory)
            synced = self._read_synced()
            if synced is None and not any(self.directory.iterdir()):
                return False  # nothing written yet, nothing stored before
            if synced is not None and synced.fingerprint == before:
                return False
            packed = self.directory.parent / self._temporary("upload", ".tar")
            try:
                with packed.open("wb") as target:
                    hashing = _Hashing(target)
                    pack(self.directory, hashing)  # type: ignore[arg-type]
                if fingerprint(self.directory) != before:
                    log.info(
                        "run %s: the checkpoint directory changed while packed; it is sent at "
                        "the next sync",
                        self.run_id,
                    )
                    return False
                sha256 = hashing.digest.hexdigest()
                self.transport.upload(self.run_id, self.attempt, packed, hashing.size, sha256)
            except FileNotFoundError:
                return False  # a file went away while packed: changed, sent next time
            finally:
                packed.unlink(missing_ok=True)
            self._write_synced(_Synced(sha256, before))
            log.debug("run %s: stored its checkpoint (%s bytes)", self.run_id, hashing.size)
            return True

    # ------------------------------------------------------------------ after the run
    def forget(self) -> None:
        """Remove the local copy (the run finished; the API keeps its last archive)."""
        with self._lock:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._synced_path.unlink(missing_ok=True)
