"""compose.yaml cannot run here (no Docker engine): check it parses, has the services the
deployment needs, and that every command it runs is a real ``multitune`` command line."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from services.cli import main

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def test_compose_has_every_service_with_health_and_gpu_settings() -> None:
    services = _compose()["services"]
    assert {
        "redis",
        "postgres",
        "api",
        "suggester",
        "gpu-worker-0",
        "cpu-worker",
        "flower",
    } <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    assert "healthcheck" in services["redis"] and "healthcheck" in services["postgres"]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    device = services["gpu-worker-0"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["device_ids"] == ["0"] and device["capabilities"] == ["gpu"]
    assert services["gpu-worker-0"]["stop_grace_period"] == "10m"
    assert services["cpu-worker"]["profiles"] == ["cpu"]
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]


def test_every_service_command_exists_in_the_cli() -> None:
    runner = CliRunner()
    checked = 0
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if not command or command[0] != "multitune":
            continue
        result = runner.invoke(main, [*command[1:], "--help"])
        assert result.exit_code == 0, (name, result.output)
        checked += 1
    assert checked == 5
    broken = runner.invoke(main, ["worker", "--no-such-flag", "--help"])
    assert broken.exit_code != 0  # the check above would notice a wrong flag


def test_dockerfile_installs_the_pinned_torch_and_the_package() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "torch==2.14.1 torchvision==0.29.1" in text and "pip install -e ." in text
