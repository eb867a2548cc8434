"""The HTML pages in a real browser: Debian's Chromium, driven by Playwright (no browser download).
Renders the run page and the bench page, takes screenshots, checks the figures and the table are
there and work (sort, filter), that the page asks the network for nothing, and that a candidate
written as HTML shows as text and runs no script. ``.ci/run`` installs Chromium; where it cannot
be installed the test says so and skips."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptgym.cli import main
from promptgym.report.html import write_run_report

from support import write_reviews
from test_html import HOSTILE, make_run

CHROMIUM = os.environ.get("PROMPTGYM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run does it)", allow_module_level=True)

# The flags a closed network needs (else Chromium's own background connections are refused at start).
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, path: Path):
    """A page on the file, every request logged; anything but the file itself is refused."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    def route(r):
        requests.append(r.request.url)
        r.continue_() if r.request.url == path.as_uri() else r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, requests, dialogs


def test_run_page_in_chromium(browser, tmp_path):
    store, run_id = make_run(tmp_path)
    html = write_run_report(store, run_id, tmp_path / "report.html")
    page, requests, dialogs = _open(browser, html)
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000

    assert requests == [html.as_uri()]  # nothing fetched but the page itself
    for figure in ("#plot-trajectory svg", "#plot-lineage svg"):
        box = page.locator(figure).bounding_box()
        assert box and box["width"] > 300 and box["height"] > 150, figure
    rows = page.locator("#candidate-table tbody tr")
    assert rows.count() == len(store.candidates(run_id))

    # the candidate a model could have written: shown as text, never run, never loaded
    hostile = page.locator("#candidate-table tbody tr[data-operation='test:hostile'] td.text")
    assert hostile.inner_text() == HOSTILE
    assert page.evaluate("window.__pwned") is None and dialogs == []
    assert page.locator("#candidate-table img").count() == 0

    # sort by the train column (numbers by value, unscored last), both ways
    header = page.locator("#candidate-table thead th", has_text="train")
    for descending in (False, True):
        header.click()
        values = page.eval_on_selector_all("#candidate-table tbody tr td:nth-child(8)",
                                           "cells => cells.map(c => c.getAttribute('data-value'))")
        scored = [float(v) for v in values if v]
        assert scored == sorted(scored, reverse=descending)
        assert all(v for v in values[:len(scored)])  # unscored rows at the end
    # filter by operation, then by text
    page.select_option("[data-filter-for='candidate-table'] select[data-field='operation']", "test:hostile")
    assert page.locator("#candidate-table tbody tr:visible").count() == 1
    page.select_option("[data-filter-for='candidate-table'] select[data-field='operation']", "")
    page.fill("[data-filter-for='candidate-table'] input", "__pwned")
    assert page.locator("#candidate-table tbody tr:visible").count() == 1
    assert "verdict" in page.locator("#verdict").get_attribute("class")
    page.close()


def test_bench_page_in_chromium(browser, tmp_path):
    data = write_reviews(tmp_path, 80)
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", "--methods", "ape,grips", "--datasets", data, "--seeds", "0",
                                       "--budget", "60", "--train-size", "8", "--dev-size", "10", "--test-size", "20",
                                       "--task-model", "scripted", "--optimizer-model", "scripted", "--out", str(out)])
    assert result.exit_code == 0, result.stderr + result.stdout
    page, requests, dialogs = _open(browser, out / "results.html")
    page.screenshot(path=str(tmp_path / "bench.png"), full_page=True)
    assert requests == [(out / "results.html").as_uri()]
    assert page.locator("table.sortable tbody tr").count() == 2
    for figure in ("#plot-test-delta svg", "#plot-train-curve svg"):
        assert page.locator(figure).bounding_box()["width"] > 200, figure
    page.close()
