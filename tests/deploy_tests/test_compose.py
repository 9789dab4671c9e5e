"""compose.yaml and the Dockerfile cannot run here (no Docker engine): check that compose.yaml
parses, has the services the deployment needs, runs only real ``multitune`` command lines and
builds each service from its role's Dockerfile target, and that each target installs only its
role's extra (the API's and Flower's without torch)."""

from __future__ import annotations

import re
import tomllib
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
    four = services["gpu-worker-4x"]
    assert four["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 4
    command = four["command"]
    assert command[command.index("--gpus") + 1] == "0,1,2,3"
    assert four["profiles"] == ["gpu4"] and four["stop_grace_period"] == "10m"
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
    assert checked == 6
    broken = runner.invoke(main, ["worker", "--no-such-flag", "--help"])
    assert broken.exit_code != 0  # the check above would notice a wrong flag


def test_every_service_restarts_and_has_a_health_check_the_cli_runs() -> None:
    runner = CliRunner()
    services = _compose()["services"]
    checked = 0
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always"), name
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), name
        if test[1] != "multitune":
            continue
        result = runner.invoke(main, [*test[2:], "--help"])
        assert result.exit_code == 0, (name, result.output)
        checked += 1
    assert checked == 5  # suggester, the three workers, flower: `multitune health ROLE`
    for worker in ("gpu-worker-0", "gpu-worker-4x", "cpu-worker"):  # each pings its own node
        command, test = services[worker]["command"], services[worker]["healthcheck"]["test"]
        assert command[command.index("--name") + 1] == test[test.index("--name") + 1]


def test_only_the_api_mounts_the_data_volume() -> None:
    """Workers share no file system with the API or each other: checkpoints go through it."""
    compose = _compose()
    services = compose["services"]
    mounts = {name: service.get("volumes", []) for name, service in services.items()}
    assert mounts["api"] == ["data:/data"]
    for name in ("suggester", "gpu-worker-0", "gpu-worker-4x", "cpu-worker", "flower"):
        assert mounts[name] == [], name
    assert "data" in compose["volumes"]
    api_env = services["api"]["environment"]
    assert {"MULTITUNE_FILE_STORE", "MULTITUNE_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"} <= set(
        api_env
    )
    assert api_env["MULTITUNE_DATA_DIR"] == "/data"  # the API's environment still has the rest
    assert "AWS_SECRET_ACCESS_KEY" not in services["gpu-worker-0"]["environment"]


#: The Dockerfile target and image each multitune service runs.
ROLES = {
    "api": "api",
    "suggester": "suggester",
    "gpu-worker-0": "worker",
    "gpu-worker-4x": "worker",
    "cpu-worker": "worker",
    "flower": "flower",
}


def _stages() -> dict[str, tuple[str, list[str]]]:
    """The Dockerfile's stages: name -> (the image or stage it starts FROM, its instructions),
    with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.replace("\\\n", " ").splitlines() if line.strip()]
    stages: dict[str, tuple[str, list[str]]] = {}
    current: list[str] = []
    for line in (" ".join(line.split()) for line in lines if not line.lstrip().startswith("#")):
        words = line.split(" ")
        if words[0].upper() == "FROM":
            assert len(words) == 4 and words[2].upper() == "AS", line  # every stage is named
            current = []
            stages[words[3]] = (words[1], current)
        else:
            current.append(line)
    return stages


def _pip_installs(target: str) -> list[str]:
    """Every ``pip install`` argument list run to build ``target``, base stages first."""
    stages = _stages()
    chain = []
    while target in stages:
        chain.append(target)
        target = stages[target][0]
    installs = []
    for stage in reversed(chain):
        for instruction in stages[stage][1]:
            command = instruction.partition(" ")[2]
            if instruction.startswith("RUN ") and "pip install" in command:
                installs.append(command.partition("pip install")[2].strip())
    return installs


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["optional-dependencies"]


def _pin(requirement: str, role: str) -> str:
    return next(r for r in _extras()[role] if r.startswith(requirement + "=="))


def test_each_service_builds_its_roles_target_and_image() -> None:
    services = _compose()["services"]
    stages = _stages()
    for name, target in ROLES.items():
        assert services[name]["build"] == {"context": ".", "target": target}, name
        assert services[name]["image"] == f"multitune-{target}:latest", name
        assert target in stages, target
    assert "build" not in services["redis"] and "build" not in services["postgres"]


def test_api_target_installs_the_api_extra_only() -> None:
    assert _pip_installs("api") == ['-e ".[api]"']


def test_flower_target_installs_the_flower_extra_only() -> None:
    assert _pip_installs("flower") == ['-e ".[flower]"']


def test_torch_targets_install_the_pinned_torch_then_their_extra() -> None:
    torch = _pin("torch", "worker")
    assert torch == _pin("torch", "suggester") == "torch==2.14.1"
    assert _pin("torchvision", "worker") == "torchvision==0.29.1"
    for target in ("suggester", "worker"):
        assert _pip_installs(target) == [torch, f'-e ".[{target}]"'], target


def test_api_and_flower_extras_pull_no_torch() -> None:
    extras = _extras()
    heavy = {"torch", "torchvision", "botorch", "gpytorch", "linear_operator", "flower"}
    for role in ("api", "flower"):
        names = {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() for r in extras[role]}
        assert not names & (heavy - {role}), role
        assert not any(r.startswith("multitune[") for r in extras[role]), role
    assert "celery" not in {r.split("[")[0] for r in extras["api"]}
    assert set(extras["all"]) >= {"multitune[api,suggester,worker,flower]"}
