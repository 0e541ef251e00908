"""The dashboard in headless Chromium against the real daemon: it loads, the chart renders, Retrain now adds a job
whose loss curve then appears; while a job trains, the Training card, the job's row and the waiting message agree
at every moment, and again after it ends. No network beyond 127.0.0.1."""

from __future__ import annotations

import time
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


# The page's own account of the training state, read in one synchronous step (so from one state of the page).
PROBE = """() => {
  const rows = [...document.querySelectorAll('#jobs tbody tr[data-job]')].map(tr => ({
    id: +tr.dataset.job, phase: tr.dataset.phase, status: tr.children[1].textContent,
    step: tr.children[3].textContent }));
  const card = document.querySelector('#progress-text');
  return { rows, card: card.textContent, card_job: card.dataset.job, card_phase: card.dataset.phase,
           waiting: document.querySelector('#waiting').textContent,
           cancel: !document.querySelector('#cancel').disabled };
}"""


def disagreements(seen: dict) -> list[str]:
    """Where the Training card, the Jobs table and the waiting message contradict each other."""
    rows = seen["rows"]
    running = [r for r in rows if r["status"] == "running"]
    queued = sorted((r for r in rows if r["status"] == "queued"), key=lambda r: r["id"])
    current = running[0] if running else (queued[0] if queued else None)
    problems = ["more than one running row"] if len(running) > 1 else []
    if current is None:
        if seen["card"] != "idle" or seen["card_phase"] != "idle":
            problems.append("the card is not idle while no job is queued or running")
        if seen["waiting"].startswith("training") or seen["cancel"]:
            problems.append("the message or the cancel button says a job runs while none does")
        return problems
    if not seen["card"].startswith(f"job {current['id']}: ") or seen["card_job"] != str(current["id"]):
        problems.append(f"the card does not name job {current['id']}")
    if seen["card_phase"] != current["phase"]:
        problems.append("the card and the row are in different phases")
    if current["phase"] in ("training", "paused") and not current["step"].endswith("/0"):
        if f"step {current['step']}" not in seen["card"]:
            problems.append("the card's step is not the row's")
    expected = f"training: job {current['id']}" if running else f"job {current['id']} queued"
    if seen["waiting"] != expected:
        problems.append(f"the message is not {expected!r}")
    if not seen["cancel"]:
        problems.append("cancel is disabled beside an active job")
    return problems


def test_card_jobs_row_and_message_agree_while_a_job_trains_and_after(shared_daemon):
    """A job of 12 steps runs while the page is read every 0.1 s: at every moment the Training card, the job's
    row and the waiting message tell one story; a page opened mid-run shows the run at once; when the event stream
    drops mid-run the page reconnects and fetches the state again; after the job ends they agree again, with the
    daemon's own record, and the loss chart's y axis fits the losses."""
    daemon = shared_daemon
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        calls: list[str] = []
        page.on("request", lambda r: calls.append(r.url.removeprefix(daemon.url)))
        try:
            page.goto(daemon.url + "/")
            page.wait_for_selector("body[data-ready='1']", timeout=30000)
            resp = daemon.api("POST", "/api/train", json={"overrides": {"max_steps": 12}})
            assert resp.status_code == 200, resp.text
            job_id = resp.json()["job"]["id"]
            samples, late_page = [], None
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                seen = page.evaluate(PROBE)
                samples.append(seen)
                assert disagreements(seen) == [], seen
                row = next((r for r in seen["rows"] if r["id"] == job_id), None)
                if row and row["status"] in ("succeeded", "failed", "cancelled"):
                    break
                if late_page is None and row and row["phase"] == "training" and not row["step"].startswith("0/"):
                    late_page = _open_late(browser, daemon.url, job_id, errors)
                    reconnected = _drop_the_stream(page, calls)
                time.sleep(0.1)
            mine = [next(r for r in s["rows"] if r["id"] == job_id) for s in samples if _has(s, job_id)]
            assert mine[-1]["status"] == "succeeded", samples[-1]
            training = [r for r in mine if r["status"] == "running" and r["phase"] == "training"]
            assert len(training) >= 3 and len({r["step"] for r in training}) >= 2, mine
            assert late_page is not None, "the job never showed a training step on the page"
            assert reconnected, f"the page did not connect again and fetch the state: {calls}"
            # after the end: the page agrees with itself and with the daemon's record
            server = daemon.api("GET", "/api/dashboard").json()
            record = next(j for j in server["jobs"] if j["id"] == job_id)
            assert record["status"] == "succeeded" and record["phase"] == "done"
            page.wait_for_function(
                "running => (document.querySelector('#progress-text').dataset.job || null) == running",
                arg=server["status"]["running_job"],
                timeout=10000,
            )
            final = page.evaluate(PROBE)
            assert disagreements(final) == [], final
            if server["status"]["running_job"] is None and not any(j["status"] == "queued" for j in server["jobs"]):
                assert final["card"] == "idle" and "training" not in final["waiting"]
            page.wait_for_function(f"document.querySelector('#chart').dataset.points >= {record['step']}")
            chart = page.eval_on_selector("#chart", "c => ({...c.dataset})")
            losses = [r["loss"] for r in daemon.api("GET", f"/api/runs/{record['run_id']}/log").json()["log"]]
            assert 0 < float(chart["yMin"]) <= min(losses) and max(losses) <= float(chart["yMax"]), (chart, losses)
            assert float(chart["yMax"]) - float(chart["yMin"]) < 2 * (max(losses) - min(losses)) + 0.2, chart
            assert len(chart["yTicks"].split(",")) >= 3 and chart["xTicks"], chart
        except Exception:
            page.screenshot(path=str(daemon.log_path.with_name("dashboard-agree-failure.png")))
            raise
        finally:
            browser.close()
    assert errors == [], errors


def _has(seen: dict, job_id: int) -> bool:
    return any(r["id"] == job_id for r in seen["rows"])


def _open_late(browser, url: str, job_id: int, errors: list[str]):
    """A page opened while the job trains shows it at once (not "idle" until the next progress event)."""
    late = browser.new_page()
    late.on("pageerror", lambda e: errors.append(str(e)))
    late.goto(url + "/")
    late.wait_for_selector("body[data-ready='1']", timeout=30000)
    seen = late.evaluate(PROBE)
    row = next((r for r in seen["rows"] if r["id"] == job_id), None)
    assert row is not None and disagreements(seen) == [], seen
    if row["status"] == "running":
        assert seen["card"].startswith(f"job {job_id}: ") and seen["waiting"] == f"training: job {job_id}", seen
    late.close()
    return seen


def _drop_the_stream(page, calls: list[str]) -> bool:
    """The event stream closes mid-run (as when the daemon restarts): the page opens a new one and fetches the
    state again, so what it missed meanwhile is not lost."""
    mark = len(calls)
    page.evaluate("source.close()")
    for _ in range(100):
        page.wait_for_timeout(100)  # (also lets Playwright deliver the request events)
        after = calls[mark:]
        if "/api/events" in after and "/api/dashboard" in after[after.index("/api/events") :]:
            return True
    return False
