"""report.html renders in headless Chromium with no console errors, no network, and shows its charts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pwtest import CHROMIUM, example_texts

from penwright.trainer.evaluate import core, report
from penwright.trainer.evaluate import model as lm
from penwright.trainer.evaluate.settings import EvalSettings

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


@pytest.fixture(scope="module")
def report_file(tiny_model_dir, tmp_path_factory) -> Path:
    texts = example_texts()
    model, tok = lm.load_model(tiny_model_dir, device="cpu")
    ctx = core.make_context(None, texts, texts, EvalSettings(n_samples=3, max_new_tokens=12, max_heldout=2))
    side = core.evaluate_model(model, tok, ctx, "base")
    adapter_like = dict(side, label="v1 <b>not bold</b>")  # labels are escaped
    log = [{"step": s, "loss": 6 - s / 8, "valid_loss": 6.1 - s / 9} for s in range(1, 31)]
    rep = report.build_report(core.author_summary(ctx), [side, adapter_like], {"run-1": log}, {"project": "novel"})
    return report.write_report(rep, tmp_path_factory.mktemp("report"))[1]


def test_report_renders_its_charts_without_errors(report_file):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `apt-get install -y chromium` (scripts/test.sh does it)")
    errors, requests = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report_file.as_uri())
        page.wait_for_load_state("load")
        assert page.title() == "Penwright evaluation"
        charts = page.locator("svg.chart")
        assert charts.count() == 3
        # every chart has visible marks with a real size
        for cls, mark in (("scorebars", "rect.bar"), ("sentences", "polyline.series"), ("loss", "polyline.series")):
            marks = page.locator(f"svg.{cls} {mark}")
            assert marks.count() >= 2, cls
            box = marks.first.bounding_box()
            assert box and box["width"] > 1, cls
        names = page.locator("svg.sentences polyline.series").evaluate_all("els => els.map(e => e.dataset.name)")
        assert names == ["author (held-out)", "base", "v1 <b>not bold</b>"]
        assert page.locator("svg.chart").first.bounding_box()["width"] > 300
        body = page.inner_text("body")
        assert "Style score" in body and "Held-out perplexity" in body and "the author wrote" in body
        assert page.locator("table.samples tr").count() == 1 + 3
        assert page.locator("b").count() == 0
        browser.close()
    assert errors == []
    assert all(u.startswith("file://") for u in requests), requests
