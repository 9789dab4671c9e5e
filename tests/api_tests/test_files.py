"""Files as the sigopt client uploads them: a JSON declaration answered with a signed,
expiring, single-use upload URL served by multitune itself, a PUT of exactly the declared bytes
without a token, then ``GET /v1/files/{id}`` with a signed download URL. Over SQLite and
PostgreSQL; the unmodified client's ``log_image`` over real HTTP."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sigopt import Connection
from sigopt.objects import TrainingRun as SigoptTrainingRun
from sigopt.run_context import RunContext

from services.api.auth import create_token
from services.api.db import get_session
from services.api.models import Artifact
from services.api.store import artifacts as store
from tests.api_tests.test_artifacts import png
from tests.api_tests.test_hostile_inputs import _check
from tests.api_tests.test_hostile_inputs import _mutations
from tests.inprocess import InProcessApi


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def declaration(data: bytes, **overrides: Any) -> dict[str, Any]:
    """What ``run.log_image`` sends for ``data``."""
    return {
        "content_length": len(data),
        "content_md5": md5_b64(data),
        "content_type": "image/png",
        "name": "loss curve",
        "filename": "loss.png",
        **overrides,
    }


@pytest.fixture()
def run(client: FlaskClient, auth: dict[str, str], experiment: dict[str, Any]) -> str:
    eid = experiment["id"]
    sid = client.post(f"/v1/experiments/{eid}/suggestions", headers=auth).json["id"]
    response = client.post(
        f"/v1/experiments/{eid}/training_runs", json={"suggestion": sid}, headers=auth
    )
    return str(response.json["id"])


def declare(client: FlaskClient, auth: dict[str, str], run: str, data: bytes) -> dict[str, Any]:
    response = client.post(f"/v1/training_runs/{run}/files", json=declaration(data), headers=auth)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def put(client: FlaskClient, upload: dict[str, Any], data: bytes, **headers: str) -> Any:
    """PUT as the client does: exactly ``upload.headers`` (overridable), no token."""
    return client.put(upload["url"], data=data, headers={**upload["headers"], **headers})


def test_declare_put_and_download_the_same_bytes(
    client: FlaskClient, auth: dict[str, str], run: str
) -> None:
    image = png(9, 7)
    declared = declare(client, auth, run, image)
    upload = declared["upload"]
    assert declared["object"] == "file" and declared["status"] == "pending"
    assert declared["name"] == "loss curve" and declared["filename"] == "loss.png"
    assert declared["download"] is None
    assert upload["method"] == "PUT"
    assert upload["url"].startswith(f"http://localhost/v1/files/{declared['id']}/upload?")
    assert set(parse_qs(urlsplit(upload["url"]).query)) == {"expires", "signature"}
    assert upload["headers"] == {
        "Content-Length": str(len(image)),
        "Content-MD5": md5_b64(image),
        "Content-Type": "image/png",
    }
    # Declared but not uploaded: not listed, not on the run, no bytes to serve.
    assert client.get(f"/v1/training_runs/{run}/files", headers=auth).json["count"] == 0
    assert client.get(f"/v1/training_runs/{run}", headers=auth).json["files"] == []
    assert client.get(declared["url"], headers=auth).status_code == 404

    stored = put(client, upload, image)
    assert stored.status_code == 200, stored.json
    assert stored.json["status"] == "ready"
    assert stored.json["sha256"] == hashlib.sha256(image).hexdigest()

    described = client.get(f"/v1/files/{declared['id']}", headers=auth).json
    assert described["status"] == "ready" and "upload" not in described
    download = described["download"]["url"]
    assert download.startswith(f"http://localhost/v1/files/{declared['id']}/content?")
    fetched = client.get(download)  # a signed URL needs no token
    assert fetched.status_code == 200 and fetched.data == image
    assert fetched.mimetype == "image/png"
    assert fetched.headers["X-Content-Type-Options"] == "nosniff"
    assert "loss.png" in fetched.headers["Content-Disposition"]
    assert client.get(described["url"], headers=auth).data == image  # the token's way
    assert client.get(f"/v1/training_runs/{run}", headers=auth).json["files"] == [declared["id"]]
    listed = client.get(f"/v1/training_runs/{run}/files", headers=auth).json["data"]
    assert [f["id"] for f in listed] == [declared["id"]]


def test_an_upload_url_is_single_use(client: FlaskClient, auth: dict[str, str], run: str) -> None:
    image = png()
    declared = declare(client, auth, run, image)
    assert put(client, declared["upload"], image).status_code == 200
    again = put(client, declared["upload"], image)
    assert again.status_code == 409 and "single use" in again.json["message"]


@pytest.mark.parametrize(
    ("data", "headers", "field"),
    [
        (png(), {"Content-MD5": md5_b64(b"other")}, "Content-MD5"),
        (png()[:-1] + b"\x00", {}, "Content-MD5"),  # as long as declared, other bytes
        (png() + b"\x00", {"Content-Length": str(len(png()) + 1)}, "Content-Length"),
        (png()[:-1], {}, "Content-Length"),  # the body ends before the declared length
        (png(), {"Content-Type": "image/gif"}, "Content-Type"),
    ],
    ids=["md5-header", "other-bytes", "longer", "shorter", "type-header"],
)
def test_a_mismatch_is_a_400_naming_the_header_and_the_file_stays_unusable(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    run: str,
    data: bytes,
    headers: dict[str, str],
    field: str,
) -> None:
    image = png()
    declared = declare(client, auth, run, image)
    refused = put(client, declared["upload"], data, **headers)
    assert refused.status_code == 400, refused.json
    assert field in refused.json["message"]
    described = client.get(f"/v1/files/{declared['id']}", headers=auth).json
    assert described["status"] == "pending" and described["download"] is None
    assert client.get(declared["url"], headers=auth).status_code == 404
    assert client.get(f"/v1/training_runs/{run}", headers=auth).json["files"] == []
    temporary = Path(app.config["SETTINGS"].data_dir) / "artifacts" / "tmp"
    assert not temporary.exists() or list(temporary.iterdir()) == []  # nothing half-written
    # The URL was not spent: the declared bytes are still accepted.
    assert put(client, declared["upload"], image).status_code == 200


def test_signatures_are_checked(
    app: Flask, client: FlaskClient, auth: dict[str, str], run: str
) -> None:
    image = png()
    first = declare(client, auth, run, image)
    second = declare(client, auth, run, image)
    url = first["upload"]["url"]
    query = parse_qs(urlsplit(url).query)
    tampered = url.replace(query["signature"][0], query["signature"][0][::-1])
    response = client.put(tampered, data=image, headers=first["upload"]["headers"])
    assert response.status_code == 403 and "signature" in response.json["message"]
    other_file = url.replace(f"/files/{first['id']}/", f"/files/{second['id']}/")
    response = client.put(other_file, data=image, headers=first["upload"]["headers"])
    assert response.status_code == 403 and "signature" in response.json["message"]
    unsigned = url.split("?")[0]
    response = client.put(unsigned, data=image, headers=first["upload"]["headers"])
    assert response.status_code == 403 and "expires" in response.json["message"]

    # Past its expiry (signed with the app's own key), the URL is refused.
    with app.app_context():
        artifact = get_session().get(Artifact, int(first["id"]))
        assert artifact is not None
        past = int(time.time()) - 1
        key = str(app.secret_key)
        signature = store.sign(key, store.UrlPurpose.UPLOAD, artifact, past)
    expired = f"{unsigned}?expires={past}&signature={signature}"
    response = client.put(expired, data=image, headers=first["upload"]["headers"])
    assert response.status_code == 403 and "expired" in response.json["message"]

    assert put(client, first["upload"], image).status_code == 200
    # An upload signature is not a download signature, and the reverse.
    as_download = url.replace("/upload?", "/content?")
    response = client.get(as_download)
    assert response.status_code == 403 and "signature" in response.json["message"]
    download = client.get(f"/v1/files/{first['id']}", headers=auth).json["download"]["url"]
    response = client.put(download.replace("/content?", "/upload?"), data=image)
    assert response.status_code == 403
    assert client.get(download.split("?")[0]).status_code == 401  # no signature, no token


@pytest.mark.parametrize(
    ("overrides", "status", "field"),
    [
        ({"content_md5": "not base64!"}, 400, "content_md5"),
        ({"content_md5": base64.b64encode(b"short").decode()}, 400, "content_md5"),
        ({"content_length": -1}, 400, "content_length"),
        ({"content_length": "12"}, 400, "content_length"),
        ({"content_length": 10**12}, 413, "content_length"),
        ({"content_type": "text/html"}, 415, "content_type"),
        ({"name": None, "filename": None}, 400, "name"),
        ({"name": "a/b"}, 400, "name"),
        ({"filename": "x" * 1001}, 400, "filename"),
        ({"extra": 1}, 400, "extra"),
    ],
)
def test_bad_declarations_are_refused_naming_the_field(
    client: FlaskClient,
    auth: dict[str, str],
    run: str,
    overrides: dict[str, Any],
    status: int,
    field: str,
) -> None:
    body = declaration(png(), **overrides)
    response = client.post(f"/v1/training_runs/{run}/files", json=body, headers=auth)
    assert response.status_code == status, response.json
    assert field in response.json["message"]


def test_declarations_keep_the_base_name_and_accept_what_the_client_sends(
    client: FlaskClient, auth: dict[str, str], run: str
) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
    response = client.post(
        f"/v1/training_runs/{run}/files",
        json=declaration(svg, content_type="image/svg+xml", name=None, filename="/a/b/fig.svg"),
        headers=auth,
    )
    assert response.status_code == 200, response.json
    assert response.json["filename"] == "fig.svg" and response.json["name"] == "fig.svg"
    assert put(client, response.json["upload"], svg).status_code == 200
    served = client.get(response.json["url"], headers=auth)
    assert served.data == svg
    assert served.headers["Content-Disposition"].startswith("attachment")  # never inline
    assert "sandbox" in served.headers["Content-Security-Policy"]

    # A raw upload of a JSON file (?name= given) is still a raw upload, not a declaration.
    raw = client.post(
        f"/v1/training_runs/{run}/files?name=metrics.json",
        data=b'{"loss": 0.5}',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert raw.status_code == 200 and raw.json["status"] == "ready"
    assert client.get(raw.json["url"], headers=auth).data == b'{"loss": 0.5}'


def test_declared_uploads_stream_past_the_body_limit_up_to_the_file_limit(
    app: Flask, client: FlaskClient, auth: dict[str, str], run: str
) -> None:
    big = png() + b"\x00" * (app.config["MAX_CONTENT_LENGTH"] + 100_000)
    declared = declare(client, auth, run, big)
    assert put(client, declared["upload"], big).status_code == 200
    assert client.get(declared["url"], headers=auth).data == big
    app.config["SETTINGS"] = dataclasses.replace(app.config["SETTINGS"], max_artifact_bytes=1000)
    response = client.post(
        f"/v1/training_runs/{run}/files", json=declaration(png() * 100), headers=auth
    )
    assert response.status_code == 413 and "1000 bytes" in response.json["message"]


def test_malformed_declarations_never_cause_a_5xx(
    client: FlaskClient, auth: dict[str, str], run: str
) -> None:
    path = f"/v1/training_runs/{run}/files"
    sent = 0
    for description, mutated in _mutations(declaration(png())):
        _check(client.post(path, json=mutated, headers=auth), f"POST {path} {description}")
        sent += 1
    assert sent > 50


def test_log_image_of_the_unmodified_client_then_download_of_the_same_bytes(
    inprocess_api: InProcessApi, tmp_path: Path
) -> None:
    with inprocess_api.app.app_context():
        token = create_token(get_session(), "acme", "images")
    api = inprocess_api.client(token)
    experiment = api.post(
        "/experiments",
        {
            "name": "images",
            "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
            "observation_budget": 3,
        },
    )
    suggestion = api.post(f"/experiments/{experiment['id']}/suggestions", {})
    run = api.post(
        f"/experiments/{experiment['id']}/training_runs", {"suggestion": suggestion["id"]}
    )
    connection = Connection(client_token=token)
    connection.set_api_url(inprocess_api.url)
    context = RunContext(connection, SigoptTrainingRun(run))
    image = png(16, 16)
    path = tmp_path / "curve.png"
    path.write_bytes(image)
    context.log_image(str(path), name="curve")

    files = api.get(f"/training_runs/{run['id']}")["files"]
    assert len(files) == 1
    described = api.get(f"/files/{files[0]}")
    assert described["name"] == "curve" and described["filename"] == "curve.png"
    downloaded = requests.get(described["download"]["url"], timeout=30)
    assert downloaded.status_code == 200 and downloaded.content == image
    api.close()
