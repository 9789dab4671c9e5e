from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient


def test_health_needs_no_token(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["database"] == "ok" and ready.json["redis"] == "ok"


def test_every_v1_route_needs_a_token(client: FlaskClient, experiment: dict[str, Any]) -> None:
    for path in (
        "/v1/experiments",
        f"/v1/experiments/{experiment['id']}",
        "/v1/openapi.json",
        f"/v1/experiments/{experiment['id']}/suggestions",
    ):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json["status"] == 401 and "token" in response.json["message"]


def test_basic_auth_username_is_accepted(client: FlaskClient, auth: dict[str, str]) -> None:
    import base64

    token = auth["Authorization"].removeprefix("Bearer ")
    basic = base64.b64encode(f"{token}:".encode()).decode()
    assert (
        client.get("/v1/experiments", headers={"Authorization": f"Basic {basic}"}).status_code
        == 200
    )
    bad = base64.b64encode(b"mt_nope:").decode()
    assert (
        client.get("/v1/experiments", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    )


def test_unknown_path_and_method(client: FlaskClient, auth: dict[str, str]) -> None:
    assert client.get("/v1/nothing", headers=auth).json == {"message": "Not found", "status": 404}
    response = client.patch("/v1/experiments", headers=auth)
    assert response.status_code == 405 and response.json["status"] == 405
