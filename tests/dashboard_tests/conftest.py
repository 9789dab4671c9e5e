"""Browser fixtures: Debian's chromium through Playwright, one live platform per package, and
tabs that record console errors and leave a screenshot behind when their test fails."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser
from playwright.sync_api import Page
from playwright.sync_api import sync_playwright

from tests.dashboard_tests.site import CHROMIUM
from tests.dashboard_tests.site import VIEWPORT
from tests.dashboard_tests.site import Site
from tests.dashboard_tests.site import launch
from tests.dashboard_tests.site import start_site
from tests.services import Platform


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/services.sh)")
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Site]:
    """The live platform (API, suggester, one worker) with both experiments created."""
    redis.Redis.from_url(redis_url).flushdb()
    platform = Platform(
        tmp_path_factory.mktemp("dashboard"),
        redis_url,
        run_lease_s="10",
        heartbeat_s="1",
        max_attempts="3",
    )
    try:
        yield start_site(platform)
    finally:
        platform.stop_all()


@dataclass
class Tab:
    page: Page
    errors: list[str] = field(default_factory=list)


@pytest.fixture()
def tab(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[[], Tab]]:
    """``tab()`` opens a page in a fresh context (its own cookies). Console errors and page
    errors are collected in ``Tab.errors``; when the test fails each page is screenshotted."""
    opened: list[Tab] = []

    def open_tab() -> Tab:
        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        page = context.new_page()
        page.set_default_timeout(20_000)
        t = Tab(page)
        page.on(
            "console",
            lambda m: t.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: t.errors.append(f"pageerror: {e}"))
        opened.append(t)
        return t

    yield open_tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        directory = Path(tempfile.mkdtemp(prefix="multitune-dashboard-"))
        for i, t in enumerate(opened):
            path = directory / f"{request.node.name}-{i}.png"
            try:
                t.page.screenshot(path=str(path), full_page=True)
                print(f"screenshot of {t.page.url}: {path}")
            except Exception as exc:  # noqa: BLE001 - the test already failed; report and go on
                print(f"no screenshot of {t.page.url}: {exc}")
    for t in opened:
        t.page.context.close()
