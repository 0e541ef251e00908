"""The dashboard in headless Chromium against the real daemon: it loads, the chart renders, Retrain now adds a job
whose loss curve then appears. No network beyond 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from pwtest import CHROMIUM

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_dashboard_loads_draws_the_chart_and_retrains(shared_daemon):
    """Runs on the daemon the e2e tests share (with or without a live adapter yet)."""
    daemon = shared_daemon
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    jobs_before = daemon.api("GET", "/api/jobs").json()["jobs"]
    live = daemon.api("GET", "/api/adapters").json()["live"]
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
            assert page.text_content("#live") == (f"penwright@v{live}" if live else "base model")
            assert "/ 1200 words" in page.text_content("#pending")
            # the chart canvas is drawn: axes (and the last run's curve, if there was one)
            drawn = page.eval_on_selector(
                "#chart", "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data).some(v => v)"
            )
            assert drawn
            assert page.locator("#jobs tbody tr").count() == len(jobs_before)
            page.click("#retrain")
            before = max((j["id"] for j in jobs_before), default=0)
            handle = page.wait_for_function(
                """before => { const r = [...document.querySelectorAll('#jobs tbody tr[data-job]')]
                     .find(r => +r.dataset.job > before && r.children[2].textContent === 'manual');
                     return r ? r.dataset.job : null; }""",
                arg=before,
                timeout=30000,
            )
            new_row = f"#jobs tbody tr[data-job='{handle.json_value()}']"
            # the job trains: its run's loss curve gets points, and it ends (promoted or rejected by the gate)
            page.wait_for_function("document.querySelector('#chart').dataset.train > 0", timeout=240000)
            page.wait_for_function(
                f"document.querySelector(\"{new_row} td:nth-child(2)\").textContent === 'succeeded'", timeout=240000
            )
            assert page.text_content("#live").startswith("penwright@v")
            assert page.locator("#adapters tbody tr").count() >= 1
            assert page.locator("#events li").count() > 3
            assert int(page.eval_on_selector("#chart", "c => c.dataset.eval")) >= 1  # eval loss plotted too
        except Exception:
            page.screenshot(path=str(daemon.log_path.with_name("dashboard-failure.png")))
            raise
        finally:
            browser.close()
    assert errors == [], errors
    assert off_host == [], off_host
