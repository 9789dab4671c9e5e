from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient


def test_document_lists_every_v1_route_with_its_request_schema(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    doc = client.get("/v1/openapi.json", headers=auth).json
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1"):
            continue
        path = rule.rule.replace("<id:", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)
    create = doc["paths"]["/v1/experiments"]["post"]["requestBody"]["content"]["application/json"]
    schema = doc["components"]["schemas"][create["schema"]["$ref"].rsplit("/", 1)[1]]
    assert "parameters" in schema["required"] and schema["additionalProperties"] is False
    assert "tasks" in schema["properties"]
