"""The dashboard in headless Chromium against the real daemon: it loads, the chart renders, Retrain now adds a job
whose loss curve then appears. No network beyond 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from daemon_proc import DaemonProcess, configure

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture()
def daemon(example_project, tmp_path):
    configure(example_project, min_new_words=100000)  # nothing trains until the button is pressed
    d = DaemonProcess(example_project, tmp_path / "daemon.log").start()
    d.wait_event(lambda e: e["type"] == "daemon.ready", 180)
    yield d
    d.stop()


def test_dashboard_loads_draws_the_chart_and_retrains(daemon):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    off_host: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: off_host.append(r.url) if not r.url.startswith(daemon.url) else None)
        try:
            page.goto(daemon.url + "/")
            page.wait_for_selector("body[data-ready='1']", timeout=30000)
            assert page.text_content("#live") == "base model"
            assert "/ 100000 words" in page.text_content("#pending")
            # the chart canvas is drawn (axes and a placeholder before any run)
            assert page.eval_on_selector("#chart", "c => c.dataset.points") == "0"
            drawn = page.eval_on_selector(
                "#chart", "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data).some(v => v)")
            assert drawn
            assert page.locator("#jobs tbody tr").count() == 0
            page.click("#retrain")
            page.wait_for_selector("#jobs tbody tr[data-job]", timeout=30000)
            assert page.text_content("#jobs tbody tr td:nth-child(3)") == "manual"
            # the job trains: progress, then the loss chart of its run has points, then it is promoted
            page.wait_for_function("document.querySelector('#chart').dataset.train > 0", timeout=240000)
            page.wait_for_function("document.querySelector('#live').textContent.startsWith('penwright@v')",
                                   timeout=240000)
            assert "succeeded" in page.text_content("#jobs tbody")
            assert page.locator("#events li").count() > 3
            assert int(page.eval_on_selector("#chart", "c => c.dataset.eval")) >= 1  # eval loss plotted too
        except Exception:
            page.screenshot(path=str(daemon.log_path.with_name("dashboard-failure.png")))
            raise
        finally:
            browser.close()
    assert errors == [], errors
    assert off_host == [], off_host
