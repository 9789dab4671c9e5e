"""Files of training runs: upload (raw and multipart), list, download headers, limits, content
checks and tenant scoping, over SQLite and PostgreSQL with files on disk under the data dir."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

SERVICE = {"Authorization": "Bearer service-secret"}


def png(width: int = 4, height: int = 3) -> bytes:
    """A real (tiny, grey gradient) PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = b"".join(b"\x00" + bytes((x * 40) % 256 for x in range(width)) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture()
def run(client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]) -> str:
    eid = experiment["id"]
    sid = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json["id"]
    response = client.post(
        f"/v1/experiments/{eid}/training_runs", json={"suggestion": sid}, headers=auth
    )
    return str(response.json["id"])


def _artifacts_dir(app: Flask) -> Path:
    return Path(app.config["SETTINGS"].data_dir) / "artifacts"


def test_upload_list_and_download(
    app: Flask, client: FlaskClient, auth: dict[str, str], run: str
) -> None:
    image = png()
    raw = client.post(
        f"/v1/training_runs/{run}/files?name=loss.png",
        data=image,
        headers={**auth, "Content-Type": "image/png"},
    )
    assert raw.status_code == 200, raw.json
    meta = raw.json
    assert meta["object"] == "file" and meta["name"] == "loss.png" and meta["size"] == len(image)
    assert meta["content_type"] == "image/png" and meta["training_run"] == run
    assert meta["attempt"] == 1 and len(meta["sha256"]) == 64

    multipart = client.post(
        f"/v1/training_runs/{run}/files",
        headers=SERVICE,
        data={"file": (io.BytesIO(b"epoch,loss\n1,0.5\n"), "metrics.csv", "text/csv")},
    )
    assert multipart.status_code == 200, multipart.json
    assert multipart.json["name"] == "metrics.csv" and multipart.json["content_type"] == "text/csv"

    listed = client.get(f"/v1/training_runs/{run}/files", headers=auth).json
    assert listed["count"] == 2
    assert [f["name"] for f in listed["data"]] == ["metrics.csv", "loss.png"]  # newest first

    image_response = client.get(meta["url"], headers=auth)
    assert image_response.status_code == 200 and image_response.data == image
    assert image_response.mimetype == "image/png"
    assert image_response.headers["X-Content-Type-Options"] == "nosniff"
    assert image_response.headers["Content-Disposition"].startswith("inline")
    assert "sandbox" in image_response.headers["Content-Security-Policy"]
    text = client.get(multipart.json["url"], headers=auth)
    assert text.data == b"epoch,loss\n1,0.5\n"
    assert text.headers["Content-Disposition"].startswith("attachment")
    assert "metrics.csv" in text.headers["Content-Disposition"]
    stored = _artifacts_dir(app) / meta["experiment"] / run / meta["id"]
    assert stored.read_bytes() == image  # under <data dir>/artifacts, named by ids only

    described = client.get(f"/v1/files/{meta['id']}", headers=auth).json
    assert described["object"] == "file" and described["url"] == meta["url"]
    assert described["status"] == "ready" and described["sha256"] == meta["sha256"]
    assert described["download"]["url"].startswith("http://localhost/v1/files/")

    assert client.delete(f"/v1/files/{meta['id']}", headers=auth).status_code == 204
    assert not stored.exists()
    assert client.get(meta["url"], headers=auth).status_code == 404
    assert client.get(f"/v1/files/{meta['id']}", headers=auth).status_code == 404


def test_uploads_have_their_own_size_limit(
    app: Flask, client: FlaskClient, auth: dict[str, str], run: str
) -> None:
    body_limit = app.config["MAX_CONTENT_LENGTH"]
    big = b"x" * (body_limit + 50_000)  # larger than any other request may be
    accepted = client.post(
        f"/v1/training_runs/{run}/files?name=big.bin",
        data=big,
        headers={**auth, "Content-Type": "application/octet-stream"},
    )
    assert accepted.status_code == 200 and accepted.json["size"] == len(big)

    app.config["SETTINGS"] = dataclasses.replace(app.config["SETTINGS"], max_artifact_bytes=1000)
    for data, headers in (
        (b"y" * 1001, {"Content-Type": "application/octet-stream"}),
        ({"file": (io.BytesIO(b"y" * 1001), "y.bin", "application/octet-stream")}, {}),
        (b"y" * 200_000, {"Content-Type": "application/octet-stream"}),  # over the slack too
    ):
        refused = client.post(
            f"/v1/training_runs/{run}/files?name=y.bin", data=data, headers={**auth, **headers}
        )
        assert refused.status_code == 413, refused.json
        assert "1000 bytes" in refused.json["message"]
    assert client.get(f"/v1/training_runs/{run}/files", headers=auth).json["count"] == 1
    assert list((_artifacts_dir(app) / "tmp").iterdir()) == []  # nothing half-written is left


@pytest.mark.parametrize(
    ("query", "content_type", "data", "status", "field"),
    [
        ("name=page.html", "text/html", b"<script>alert(1)</script>", 415, "content_type"),
        ("name=x", None, b"abc", 415, "content_type"),
        ("name=fake.png", "image/png", b"GIF89a" + b"\x00" * 20, 400, "content_type"),
        ("name=fake.jpg", "image/jpeg", png(), 400, "content_type"),
        ("name=notes.txt", "text/plain", b"caf\xe9", 400, "content_type"),
        ("name=nul.txt", "text/plain", b"a\x00b", 400, "content_type"),
        ("name=data.json", "application/json", b"<html>", 400, "content_type"),
        ("", "image/png", png(), 400, "name"),
        ("name=../../etc/passwd", "text/plain", b"x", 400, "name"),
        ("name=a%0Ab.txt", "text/plain", b"x", 400, "name"),
        ("name=a.txt&attempt=0", "text/plain", b"x", 400, "attempt"),
        ("name=a.txt&attempt=2", "text/plain", b"x", 409, "attempt"),
    ],
)
def test_bad_uploads_are_refused_naming_the_field(
    client: FlaskClient,
    auth: dict[str, str],
    run: str,
    query: str,
    content_type: str | None,
    data: bytes,
    status: int,
    field: str,
) -> None:
    headers = {**auth, **({"Content-Type": content_type} if content_type else {})}
    response = client.post(f"/v1/training_runs/{run}/files?{query}", data=data, headers=headers)
    assert response.status_code == status, response.json
    assert field in response.json["message"]
    assert client.get(f"/v1/training_runs/{run}/files", headers=auth).json["count"] == 0


def test_multipart_needs_the_file_part(
    client: FlaskClient, auth: dict[str, str], run: str
) -> None:
    response = client.post(
        f"/v1/training_runs/{run}/files",
        headers=auth,
        data={"other": (io.BytesIO(b"x"), "x.txt", "text/plain")},
    )
    assert response.status_code == 400 and "file" in response.json["message"]
    named = client.post(
        f"/v1/training_runs/{run}/files",
        headers=auth,
        data={
            "file": (io.BytesIO(png()), "blob", "application/octet-stream"),
            "name": "plot.png",
            "content_type": "image/png",
        },
    )
    assert named.status_code == 200
    assert named.json["name"] == "plot.png" and named.json["content_type"] == "image/png"


def test_files_are_private_to_their_client(
    client: FlaskClient,
    auth: dict[str, str],
    make_token: Callable[[str], dict[str, str]],
    run: str,
) -> None:
    meta = client.post(
        f"/v1/training_runs/{run}/files?name=a.png",
        data=png(),
        headers={**auth, "Content-Type": "image/png"},
    ).json
    other = make_token("globex")
    assert client.get(meta["url"], headers=other).status_code == 404
    assert client.get(f"/v1/training_runs/{run}/files", headers=other).status_code == 404
    assert client.get(f"/v1/files/{meta['id']}", headers=other).status_code == 404
    assert client.delete(f"/v1/files/{meta['id']}", headers=other).status_code == 404
    upload = client.post(
        f"/v1/training_runs/{run}/files?name=b.png",
        data=png(),
        headers={**other, "Content-Type": "image/png"},
    )
    assert upload.status_code == 404
    assert client.get(meta["url"]).status_code == 401
    assert client.get(meta["url"], headers=SERVICE).status_code == 200
    assert client.get(meta["url"], headers=auth).data == png()
