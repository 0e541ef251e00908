"""In headless Chromium (issue 14, items 2, 3, 6): a page on another origin cannot change anything in the daemon
(no body, text/plain, JSON, forms: every state-changing route), a DNS-rebinding name is refused, and the dashboard
works with server.api_key set. Real daemon app on uvicorn, a real second server for the foreign page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemon_fixtures import daemon_app
from pwtest import CHROMIUM
from serving_fixtures import LiveServer, adapters_for
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

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
REBIND = "attacker.example"

# Every way a web page can send a POST without the daemon's consent: fetch with no body, with text/plain, with
# JSON (a preflight the daemon does not grant), and HTML forms (urlencoded and text/plain).
ATTACK = """
<html><body><iframe name="sink"></iframe><script>
const targets = %(targets)s;
async function attack() {
  for (const url of targets) {
    const tries = [
      fetch(url, { method: "POST", mode: "no-cors" }),
      fetch(url, { method: "POST", mode: "no-cors", body: '{"accepted": true, "preset": "fast"}',
                   headers: { "Content-Type": "text/plain" } }),
      fetch(url, { method: "POST", body: '{"accepted": true}', headers: { "Content-Type": "application/json" } }),
    ];
    for (const t of tries) { try { await t; } catch (e) { /* refused by the browser: what we want */ } }
    for (const enctype of ["application/x-www-form-urlencoded", "text/plain"]) {
      const form = document.createElement("form");
      form.method = "POST"; form.action = url; form.target = "sink"; form.enctype = enctype;
      const field = document.createElement("input");
      field.name = '{"accepted": true, "x": "'; field.value = '"}';
      form.appendChild(field); document.body.appendChild(form); form.submit();
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  document.body.dataset.done = "1";
}
attack();
</script></body></html>
"""


def chromium(pw, *extra: str):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return pw.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra], headless=True)


@pytest.fixture(scope="module")
def daemon(tiny_model_dir, tmp_path_factory):
    ads = adapters_for(tiny_model_dir, tmp_path_factory.getbasetemp())
    with daemon_app(tiny_model_dir, tmp_path_factory.mktemp("browser")) as (d, server):
        v1 = d.registry.publish(ads["lighthouse"], base_model="builtin:tiny")
        v2 = d.registry.publish(ads["sailing"], base_model="builtin:tiny")
        d.registry.promote(v1.version)
        d.registry.promote(v2.version)
        d.services.sync_live()
        yield d, server


def state_changing(server) -> list[str]:
    import httpx

    schema = httpx.get(server.url + "/openapi.json").json()
    paths = [p for p, ops in schema["paths"].items() if set(ops) & {"post", "put", "patch", "delete"}]
    return [server.url + p.replace("{job_id}", "1").replace("{version}", "1") for p in paths]


def test_a_page_on_another_origin_changes_nothing(daemon):
    from playwright.sync_api import sync_playwright

    d, server = daemon
    queued = d.jobs.enqueue("manual")  # something a forged cancel could hit
    live, history = d.registry.live().version, len(d.registry.history())
    targets = state_changing(server)
    assert any(t.endswith("/rollback") for t in targets) and any(t.endswith("/api/train") for t in targets)
    page_html = ATTACK % {"targets": json.dumps(targets).replace("/1/cancel", f"/{queued.id}/cancel")}
    attacker = Starlette(routes=[Route("/", lambda request: HTMLResponse(page_html))])
    with LiveServer(attacker) as evil, sync_playwright() as pw:
        browser = chromium(pw)
        try:
            page = browser.new_page()
            page.goto(evil.url + "/")
            page.wait_for_selector("body[data-done='1']", timeout=120000)
            page.wait_for_timeout(500)
        finally:
            browser.close()
    assert d.registry.live().version == live and len(d.registry.history()) == history
    assert [j.id for j in d.jobs.list()] == [queued.id] and d.jobs.get(queued.id).status == "queued"
    assert not d.paths.feedback.exists()
    d.cancel(queued.id)


def test_a_rebinding_name_reads_nothing(daemon):
    """The page's origin is attacker.example:<daemon port>, resolved to 127.0.0.1: the daemon refuses the name."""
    from playwright.sync_api import sync_playwright

    _, server = daemon
    with sync_playwright() as pw:
        browser = chromium(pw, f"--host-resolver-rules=MAP {REBIND} 127.0.0.1")
        try:
            page = browser.new_page()
            first = page.goto(f"http://{REBIND}:{server.port}/api/lore/names")
            assert first.status == 421 and "Maren" not in page.content()
            status = page.evaluate("""async () => {
                const r = await fetch('/v1/completions', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                      body: JSON.stringify({prompt: 'Maren', max_tokens: 2})});
                return [r.status, await r.text()]; }""")
            assert status[0] == 421 and "choices" not in status[1]
        finally:
            browser.close()


def test_the_dashboard_works_with_an_api_key(tiny_model_dir, tmp_path):
    """It answered 401 for its own page and assets, and its script sent no key."""
    from playwright.sync_api import sync_playwright

    with daemon_app(tiny_model_dir, tmp_path, api_key="s3cret") as (d, server), sync_playwright() as pw:
        browser = chromium(pw)
        errors: list[str] = []
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda dialog: dialog.accept("s3cret"))  # the page asks for the key once
            page.goto(server.url + "/")
            page.wait_for_selector("body[data-ready='1']", timeout=60000)
            assert page.text_content("#live") == "base model"
            page.click("#retrain")
            page.wait_for_function("document.querySelectorAll('#jobs tbody tr[data-job]').length === 1", timeout=30000)
            again = browser.new_page()  # a link with the key in its fragment works without asking
            again.goto(server.url + "/#key=s3cret")
            again.wait_for_selector("body[data-ready='1']", timeout=60000)
            assert "#key" not in again.url
        finally:
            browser.close()
        assert errors == []
        assert [j.trigger for j in d.jobs.list()] == ["manual"]
        d.cancel(d.jobs.list()[0].id)
