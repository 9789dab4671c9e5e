"""The dashboard in Debian's chromium over a live platform (gunicorn API, suggester, Celery
worker): every page of a real managed experiment and of a client-driven one, chart contents
counted against the API, no console errors, and another client's pages are 404."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_tests.conftest import Tab
from tests.dashboard_tests.site import Site
from tests.dashboard_tests.site import finished
from tests.dashboard_tests.site import png_plot
from tests.dashboard_tests.site import sign_in
from tests.services import wait_for

pytestmark = pytest.mark.slow

RUN_STATES = {
    "open",
    "queued",
    "running",
    "completed",
    "failed",
    "lost",
    "stopped",
    "observed",
    "deleted",
}


@pytest.fixture()
def done(site: Site) -> Site:
    """The site once the managed experiment has completed and its runs finished."""
    wait_for(lambda: finished(site), 300, "the managed experiment to finish", site.platform)
    return site


def _count(tab: Tab, selector: str) -> int:
    return int(tab.page.locator(selector).count())


def _until(tab: Tab, expression: str, timeout_s: float = 30.0) -> None:
    """Poll a JS expression until it is truthy (``page.wait_for_function`` would need
    ``unsafe-eval``, which the pages' CSP rightly refuses)."""
    deadline = time.monotonic() + timeout_s
    while not tab.page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        tab.page.wait_for_timeout(200)


def _history(site: Site, eid: str) -> dict[str, Any]:
    result: dict[str, Any] = site.api().get(f"/experiments/{eid}/analytics/history")
    return result


def test_experiment_page_refreshes_while_the_experiment_runs(
    site: Site, tab: Callable[[], Tab]
) -> None:
    t = tab()
    sign_in(t.page, site, path=f"/experiments/{site.managed}")
    t.page.wait_for_selector("#history[data-state=ready]")
    assert t.page.get_attribute("main", "data-state") == "active"
    first = int(t.page.text_content("#observation-count") or 0)
    drawn = int(t.page.get_attribute("#history", "data-count") or 0)
    wait_for(lambda: finished(site), 300, "the managed experiment to finish", site.platform)
    # No reload: the page polls the summary and redraws when observations arrive.
    _until(
        t,
        f"Number(document.getElementById('observation-count').textContent) > {first}"
        f" && Number(document.getElementById('history').dataset.count) > {drawn}",
    )
    _until(t, "document.querySelector('main').dataset.state === 'completed'")
    assert t.page.text_content("#state") == "completed"
    assert t.errors == []


def test_experiment_page_draws_every_observation(
    done: Site, tab: Callable[[], Tab], tmp_path: Path
) -> None:
    site = done
    history = _history(site, site.managed)
    valued = [e for e in history["data"] if e["value"] is not None]
    api = site.api()
    full = api.get(f"/experiments/{site.managed}/analytics/importance", task="full")
    across = api.get(f"/experiments/{site.managed}/analytics/importance", task="all")
    suggestions = api.get(f"/experiments/{site.managed}/analytics/suggestions")
    t = tab()
    sign_in(t.page, site, path=f"/experiments/{site.managed}")
    t.page.wait_for_selector("#suggestions tbody tr")
    t.page.wait_for_selector("#slices[data-state=ready]")

    assert _count(t, "#history svg circle.obs") == len(valued) > 0
    assert _count(t, "#history svg circle.obs.full") == sum(e["full_cost"] for e in valued)
    has_best = any(e["best_full_cost"] is not None for e in history["data"])
    assert _count(t, "#history svg polyline.best") == int(has_best)
    assert _count(t, "#parallel svg polyline.pc-line") == len(valued)
    assert t.page.get_attribute("#parallel svg", "data-selected") == str(len(valued))
    assert _count(t, "#parallel .brush-area") == 6 + 2  # parameters, task, metric
    assert _count(t, "#slices .slice") == 6
    for slice_ in t.page.locator("#slices .slice").all():
        assert slice_.locator("circle.pt").count() == len(valued)
    assert _count(t, "#importance svg rect.bar") == len(full["data"]) + len(across["data"]) > 0
    assert _count(t, "#tasks tbody tr") == 4
    assert _count(t, "#correlation-table tbody tr") == 3  # one row per cheap task
    rows = t.page.locator("#suggestions tbody tr")
    assert rows.count() == suggestions["count"] == len(suggestions["data"])
    states = [rows.nth(i).get_attribute("data-state") for i in range(rows.count())]
    assert set(states) <= RUN_STATES and "completed" in states
    assert t.page.text_content("#observation-count") == str(history["count"])

    with t.page.expect_download() as download:
        t.page.click("text=Download observations (CSV)")
    saved = tmp_path / "observations.csv"
    download.value.save_as(saved)
    assert len(saved.read_text().strip().splitlines()) == history["count"] + 1
    assert t.errors == []


def test_importance_correlation_and_brushing(site: Site, tab: Callable[[], Tab]) -> None:
    history = _history(site, site.synthetic)
    values = [e["value"] for e in history["data"] if e["value"] is not None]
    t = tab()
    sign_in(t.page, site, path=f"/experiments/{site.synthetic}")
    t.page.wait_for_selector("#parallel[data-state=ready]")
    t.page.wait_for_selector("#importance[data-state=ready]")

    labels = t.page.locator("#importance svg rect.bar").evaluate_all(
        "bars => bars.map(b => b.dataset.label)"
    )
    assert labels == ["dominant", "dominant", "minor", "minor", "irrelevant", "irrelevant"]
    assert "ExtraTreesRegressor" in (t.page.text_content("#importance-method") or "")
    assert _count(t, "#correlation-table tbody tr") == 1
    assert t.page.text_content("#correlation-table tbody td:last-child") == "1.000"
    assert _count(t, "#correlation svg circle.pt") == 10  # configurations seen at both tasks

    axis = t.page.locator("#parallel .brush-area[data-dim=loss]")
    axis.scroll_into_view_if_needed()
    area = axis.bounding_box()
    assert area is not None
    x = area["x"] + area["width"] / 2
    t.page.mouse.move(x, area["y"] + area["height"] * 0.1)
    t.page.mouse.down()
    t.page.mouse.move(x, area["y"] + area["height"] * 0.3, steps=4)
    t.page.mouse.move(x, area["y"] + area["height"] * 0.6, steps=4)
    t.page.mouse.up()
    brush = t.page.locator("#parallel rect.brush[data-dim=loss]")
    lo = float(brush.get_attribute("data-lo") or "nan")
    hi = float(brush.get_attribute("data-hi") or "nan")
    expected = sum(lo <= v <= hi for v in values)
    assert 0 < expected < len(values)
    assert t.page.get_attribute("#parallel svg", "data-selected") == str(expected)
    assert _count(t, "#parallel polyline.pc-line:not(.dim)") == expected
    assert f"{expected} of {len(values)}" in (t.page.text_content("#parallel-selected") or "")
    t.page.mouse.click(x, area["y"] + area["height"] * 0.5)  # a click clears the brush
    assert t.page.get_attribute("#parallel svg", "data-selected") == str(len(values))
    assert t.errors == []


def test_run_page_shows_curves_files_and_heartbeat(done: Site, tab: Callable[[], Tab]) -> None:
    site = done
    api = site.api()
    runs = list(api.iterate(f"/experiments/{site.managed}/training_runs"))
    run = max(runs, key=lambda r: r["checkpoint_count"])
    curves = api.get(f"/training_runs/{run['id']}/analytics/curves")
    image = site.upload(
        run["id"],
        "value.png",
        "image/png",
        png_plot([c["values"]["value"] for c in curves["data"]]),
    )
    table = site.upload(run["id"], "curve.csv", "text/csv", b"epoch,value\n1,0.5\n")
    t = tab()
    sign_in(t.page, site, path=f"/runs/{run['id']}")
    t.page.wait_for_selector("#curves[data-state=ready]")

    attempts = {c["attempt"] for c in curves["data"]}
    assert _count(t, "#curves svg polyline.curve") == len(attempts) >= 1
    assert _count(t, "#curves svg circle.pt") == len(curves["data"]) == run["checkpoint_count"]
    options = t.page.locator("#metric option").evaluate_all("o => o.map(x => x.value)")
    assert options == curves["metrics"] == ["value"]
    assert t.page.text_content("#state") == "completed"
    assert t.page.text_content("#attempt") == str(run["attempt"])
    assert "s ago" in (t.page.text_content("#heartbeat") or "")
    assert _count(t, "#assignments tbody tr") == 6

    _until(
        t,
        "document.querySelector('#files img').complete"
        " && document.querySelector('#files img').naturalWidth > 0",
    )
    assert t.page.evaluate("document.querySelector('#files img').naturalWidth") == 320
    link = t.page.locator(f"#files li[data-file='{table['id']}'] a")
    assert link.get_attribute("download") is not None
    fetched = t.page.request.get(f"{site.url}{table['url']}")  # with the session cookie
    assert fetched.status == 200
    assert fetched.headers["content-disposition"].startswith("attachment")
    assert fetched.headers["x-content-type-options"] == "nosniff"
    assert image["content_type"] == "image/png"
    assert t.errors == []


def test_list_and_compare_pages(done: Site, tab: Callable[[], Tab]) -> None:
    site = done
    api = site.api()
    managed = api.get(f"/experiments/{site.managed}")
    runs = list(api.iterate(f"/experiments/{site.managed}/training_runs"))
    t = tab()
    sign_in(t.page, site)
    assert _count(t, "#experiments tbody tr[data-id]") == 2
    row = t.page.locator(f"#experiments tr[data-id='{site.managed}']")
    assert row.locator("progress").get_attribute("value") == "1.0000"  # budget all consumed
    consumed = managed["progress"]["observation_budget_consumed"]
    assert consumed >= 2 and f"{consumed:.4g} / 2" in row.locator(".progress-cell").inner_text()
    assert row.locator("td").nth(7).inner_text() == "acme"
    t.page.fill("input[name=q]", "synthetic")
    t.page.click("text=Filter")
    t.page.wait_for_url("**q=synthetic**")
    assert _count(t, "#experiments tbody tr[data-id]") == 1
    t.page.goto(f"{site.url}/experiments?state=active")
    assert _count(t, "#experiments tbody tr[data-id]") == 0

    ids = ",".join(r["id"] for r in runs[:50])
    t.page.goto(f"{site.url}/compare?runs={ids}")
    t.page.wait_for_selector("#compare[data-state=ready]")
    with_curves = sum(r["checkpoint_count"] > 0 for r in runs[:50])
    assert _count(t, "#compare svg polyline.series") == with_curves > 0
    assert _count(t, "#compared tbody tr") == min(len(runs), 50)

    t.page.goto(f"{site.url}/experiments")
    t.page.check(f"input[value='{site.managed}']")
    t.page.check(f"input[value='{site.synthetic}']")
    t.page.click("text=Compare selected")
    t.page.wait_for_selector("#compare[data-state=ready]")
    expected = sum(bool(_history(site, e)["best_vs_cost"]) for e in (site.managed, site.synthetic))
    assert _count(t, "#compared tbody tr") == 2
    assert _count(t, "#compare svg polyline.series") == expected >= 1
    assert t.errors == []


def test_another_clients_pages_are_not_found(done: Site, tab: Callable[[], Tab]) -> None:
    site = done
    api = site.api()
    run = next(iter(api.iterate(f"/experiments/{site.managed}/training_runs")))
    upload = site.upload(run["id"], "secret.txt", "text/plain", b"acme only")
    t = tab()
    sign_in(t.page, site, token=site.other_token)
    assert _count(t, "#experiments tbody tr[data-id]") == 0
    for path in (
        f"/experiments/{site.managed}",
        f"/runs/{run['id']}",
        f"/compare?runs={run['id']}",
        f"/compare?experiments={site.synthetic}",
        upload["url"],
        f"/v1/experiments/{site.managed}/analytics/history",
    ):
        response = t.page.goto(f"{site.url}{path}")
        assert response is not None and response.status == 404, path
        assert "acme only" not in t.page.content()


def test_sign_in_and_out(site: Site, tab: Callable[[], Tab]) -> None:
    t = tab()
    t.page.goto(f"{site.url}/experiments/{site.synthetic}")
    assert "/login" in t.page.url
    t.page.fill("#token", "mt_not-a-token")
    t.page.click("form button[type=submit]")
    assert "Invalid value for token" in (t.page.text_content(".error") or "")
    t.page.fill("#token", site.token)
    t.page.click("form button[type=submit]")
    t.page.wait_for_url(f"**/experiments/{site.synthetic}")
    assert t.page.text_content("header .who") == "acme"
    t.page.click("text=Log out")
    t.page.wait_for_url("**/login")
    t.page.goto(f"{site.url}/experiments")
    assert "/login" in t.page.url


def test_cli_show_prints_importance_and_best_vs_cost(site: Site) -> None:
    out = site.platform.cli("experiments", "show", site.synthetic, token=site.token)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("importance (full-cost"))
    assert lines[start + 1].split()[0] == "dominant"
    assert any(line.startswith("importance (all tasks") for line in lines)
    table = next(i for i, line in enumerate(lines) if "vs cumulative cost" in line)
    assert lines[table + 1].split() == ["cost", "observations", "best"]
    assert len(lines) > table + 2 and "(now)" in lines[-1]
