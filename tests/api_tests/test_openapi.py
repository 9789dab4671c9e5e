from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

#: Methods OpenAPI cannot name, and the documented operation that says it accepts them too.
UNNAMED = {"MERGE": "PATCH"}


def test_document_lists_every_v1_route_with_its_request_schema(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    doc = client.get("/v1/openapi.json", headers=auth).json
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method in UNNAMED:
                operation = doc["paths"][path][UNNAMED[method].lower()]
                assert method in operation["description"], (path, method)
                continue
            assert (path, method) in documented, (path, method)
    create = doc["paths"]["/v1/experiments"]["post"]["requestBody"]["content"]["application/json"]
    schema = doc["components"]["schemas"][create["schema"]["$ref"].rsplit("/", 1)[1]]
    assert "parameters" in schema["required"] and schema["additionalProperties"] is False
    assert "tasks" in schema["properties"]
    ai = doc["paths"]["/v1/clients/{client}/projects/{project}/aiexperiments"]["post"]
    ai_schema = doc["components"]["schemas"][
        ai["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    ]
    assert {"budget", "tasks"} <= set(ai_schema["properties"])
    assert "observation_budget" not in ai_schema["properties"]
    assert {p["name"] for p in ai["parameters"]} == {"client", "project"}
