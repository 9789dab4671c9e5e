"""A dashboard worth looking at, built through the real platform: a managed multitask
experiment trained by real workers, a client-driven one fed through the live API, and files
uploaded to a run. Shared by the browser tests and ``scripts/screenshots.py``."""

from __future__ import annotations

import math
import random
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import requests
from playwright.sync_api import Browser
from playwright.sync_api import Page
from playwright.sync_api import Playwright

from shared.api_client import ApiClient
from tests.services import HARTMANN
from tests.services import Platform

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}

MANAGED = {
    **HARTMANN,
    "observation_budget": 2,
    "parallel_bandwidth": 2,
    "objective": {
        "name": "augmented_hartmann",
        "config": {"sleep_per_cost": 0.5, "max_epochs": 8},
    },
}

SYNTHETIC = {
    "name": "synthetic importance",
    "parameters": [
        {"name": "dominant", "type": "double", "bounds": {"min": 0, "max": 1}},
        {
            "name": "minor",
            "type": "double",
            "bounds": {"min": 0.001, "max": 1},
            "transformation": "log",
        },
        {"name": "irrelevant", "type": "categorical", "categorical_values": ["a", "b", "c"]},
    ],
    "metrics": [{"name": "loss", "objective": "minimize"}],
    "tasks": [{"name": "cheap", "cost": 0.25}, {"name": "full", "cost": 1.0}],
    "observation_budget": 30,
}


def launch(playwright: Playwright) -> Browser:
    """Debian's chromium (never a downloaded one)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def synthetic_observations(n: int = 40, shared: int = 10, seed: int = 3) -> list[dict[str, Any]]:
    """``dominant`` drives the loss, ``minor`` a little, ``irrelevant`` not at all; the first
    ``shared`` configurations are observed at both tasks (the cheap one ranks them alike)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        dominant, minor = rng.random(), 10 ** rng.uniform(-3, 0)
        a = {"dominant": dominant, "minor": minor, "irrelevant": rng.choice("abc")}
        loss = 4 * (dominant - 0.3) ** 2 + 0.3 * math.log10(minor) / -3
        tasks = ["cheap", "full"] if i < shared else [("cheap", "full")[i % 2]]
        for task in tasks:
            out.append(
                {"assignments": a, "task": task, "value": loss + (0.2 if task == "cheap" else 0.0)}
            )
    return out


def png_plot(values: list[float], width: int = 320, height: int = 180) -> bytes:
    """A real PNG: ``values`` drawn as a blue curve on white (RGB, no libraries)."""
    pixels = bytearray(b"\xff" * (width * height * 3))
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0

    def put(x: int, y: int) -> None:
        if 0 <= x < width and 0 <= y < height:
            pixels[(y * width + x) * 3 : (y * width + x) * 3 + 3] = b"\x2f\x6f\xb0"

    for x in range(width):
        t = x / (width - 1) * (len(values) - 1)
        i = min(int(t), len(values) - 2) if len(values) > 1 else 0
        v = values[i] + (values[min(i + 1, len(values) - 1)] - values[i]) * (t - i)
        y = int((1 - (v - lo) / span) * (height - 20)) + 10
        for dy in (-1, 0, 1):
            put(x, y + dy)
    rows = b"".join(
        b"\x00" + bytes(pixels[r * width * 3 : (r + 1) * width * 3]) for r in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


@dataclass
class Site:
    """The live platform and what was created on it."""

    platform: Platform
    token: str
    other_token: str
    managed: str
    synthetic: str

    @property
    def url(self) -> str:
        return self.platform.api_url

    def api(self, token: str | None = None) -> ApiClient:
        return ApiClient(self.url, token or self.token, retry_for_s=30)

    def upload(self, run_id: str, name: str, content_type: str, data: bytes) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}/v1/training_runs/{run_id}/files",
            params={"name": name},
            data=data,
            timeout=30,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {self.token}"},
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def start_site(platform: Platform, workers: int = 1, budget: float | None = None) -> Site:
    """Start API, suggester and workers; create both experiments (the managed one trains in the
    background, with ``budget`` instead of MANAGED's) and return at once."""
    platform.start_api()
    platform.start("suggester", "suggester")
    for i in range(1, workers + 1):
        platform.start(f"w{i}", "worker", "--name", f"w{i}")
    token, other = platform.token("acme"), platform.token("globex")
    api = ApiClient(platform.api_url, token, retry_for_s=30)
    definition = {**MANAGED, **({"observation_budget": budget} if budget else {})}
    managed = str(api.post("/experiments", definition)["id"])
    synthetic = str(api.post("/experiments", SYNTHETIC)["id"])
    api.post(
        f"/experiments/{synthetic}/observations/batch", {"observations": synthetic_observations()}
    )
    api.put(f"/experiments/{synthetic}", {"state": "completed"})
    return Site(
        platform=platform, token=token, other_token=other, managed=managed, synthetic=synthetic
    )


def finished(site: Site) -> bool:
    """The managed experiment completed and every run of it finished."""
    api = site.api()
    if api.get(f"/experiments/{site.managed}")["state"] != "completed":
        return False
    return all(r["finished"] for r in api.iterate(f"/experiments/{site.managed}/training_runs"))


def sign_in(page: Page, site: Site, token: str | None = None, path: str = "/experiments") -> None:
    page.goto(f"{site.url}/login?next={path}")
    page.fill("#token", token or site.token)
    page.click("form button[type=submit]")
    page.wait_for_url(f"**{path}")
