"""The real daemon on the real 31M base: an author's saves retrain the adapter, and the gate promotes it on the
voice measures (served-format perplexity of held-out passages against another writer's, Burrows' Delta, the
copy and degeneration guards); the promoted version then serves ghost text. Slow: real training on the CPU."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_proc import DaemonProcess  # noqa: E402

pytestmark = pytest.mark.slow

SETTINGS = """title: Voice gate
model:
  base: {base}
training:
  preset: fast
  overrides: {{max_minutes: 1.5, save_every: 4}}
retrain:
  min_new_words: 4000
  idle_seconds: 1
  gate_samples: 8
watch:
  quiet_seconds: 0.5
"""


def chapters(corpora: Path, words: int) -> list[str]:
    """Doyle's prose in chapter-sized pieces (a real author, public domain)."""
    text = (corpora / "doyle" / "the_sign_of_the_four.txt").read_text(encoding="utf-8")
    paras = [p for p in re.split(r"\n\s*\n", text) if len(p.split()) > 20]
    out, current, n = [], [], 0
    for p in paras:
        current.append(p)
        n += len(p.split())
        if n >= words:
            out.append("\n\n".join(current))
            current, n = [], 0
    return out


def test_a_save_retrains_and_the_gate_promotes_on_the_voice(tmp_path, gutenberg_31m, corpora):
    project = tmp_path / "book"
    (project / "manuscript").mkdir(parents=True)
    (project / "lore").mkdir()
    (project / "penwright.yaml").write_text(SETTINGS.format(base=gutenberg_31m))
    parts = chapters(corpora, 2500)
    for i, text in enumerate(parts[:2]):
        (project / "manuscript" / f"ch{i + 1:02d}.md").write_text(text)
    daemon = DaemonProcess(project, tmp_path / "daemon.log").start()
    try:
        daemon.wait_event(lambda e: e["type"] == "daemon.ready", 180)
        mark = daemon.last_id
        (project / "manuscript" / "ch03.md").write_text(parts[2])  # the author saves a new chapter
        gate = daemon.wait_event(lambda e: e["type"] == "gate", 900, mark)
        assert gate["decision"] == "promote", gate["reason"]
        assert gate["reason"].startswith("promoted: first adapter") and "voice margin" in gate["reason"]
        voice = gate["candidate"]["voice"]
        assert voice["own_ratio"] < 1.0 and voice["voice_margin"] > 0  # learned this author more than prose
        assert gate["candidate"]["perplexity"] < gate["reference"]["perplexity"]
        assert (
            gate["candidate"]["control_perplexity"] > 0 and 0 < gate["candidate"]["samples"] <= 8
        )  # one per held-out paragraph long enough to cut
        assert gate["candidate"]["copy_share"] <= 0.125  # at most one of 8 continuations copies over 12 words
        promoted = daemon.wait_event(lambda e: e["type"] == "adapter.promoted", 60, gate["id"] - 1)
        daemon.wait_event(lambda e: e["type"] == "adapter.swapped" and e["version"] == promoted["version"], 60, mark)
        reply = daemon.api(
            "POST", "/v1/completions", json={"model": "penwright", "prompt": parts[3][:400], "max_tokens": 8}
        )
        assert reply.status_code == 200 and reply.json()["penwright"]["adapter"] == f"penwright@v{promoted['version']}"
    finally:
        assert daemon.stop() == 0, daemon.log_text()[-3000:]
