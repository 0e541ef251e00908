"""`penwright curate` / `penwright dataset` on the example project, in-process through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

from pwtest import tree_digest

from penwright.cli import main


def test_dry_run_then_curate_then_dataset(example_project: Path, capsys):
    before = tree_digest(example_project / "manuscript") | tree_digest(example_project / "lore")
    assert main(["dataset", "--project", str(example_project), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "Would curate 3 file(s)" in dry and "continuation" in dry
    assert not (example_project / ".penwright" / "datasets").exists(), "--dry-run writes nothing"
    assert main(["dataset", "--project", str(example_project)]) == 2
    assert "penwright curate" in capsys.readouterr().err

    assert main(["curate", "--project", str(example_project), "--no-progress"]) == 0
    out = capsys.readouterr().out
    current = example_project / ".penwright" / "datasets" / "current"
    manifest = json.loads((current / "manifest.json").read_text())
    assert f"Curated 3 file(s), {manifest['totals']['words']:,} words" in out
    assert "3 of 3 file(s) re-chunked" in out
    lines = (current / "train.jsonl").read_text().splitlines() + (current / "valid.jsonl").read_text().splitlines()
    assert len(lines) == manifest["totals"]["rows"]
    assert manifest["tokenizer"].startswith(str(example_project / ".penwright" / "models" / "tiny-"))
    # the dry run counted exactly what curate then made
    assert f"-> {manifest['totals']['rows']:,} rows" in dry

    assert main(["dataset", "--project", str(example_project), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset_hash"] == manifest["dataset_hash"]
    assert main(["curate", "--project", str(example_project), "--no-progress"]) == 0
    assert "0 of 3 file(s) re-chunked" in capsys.readouterr().out
    assert tree_digest(example_project / "manuscript") | tree_digest(example_project / "lore") == before


def test_upstream_degrader_needs_an_upstream(example_project: Path, capsys):
    settings = example_project / "penwright.yaml"
    settings.write_text(settings.read_text() + "curation:\n  degrade_with: upstream\n")
    assert main(["curate", "--project", str(example_project), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "degrade_with is 'upstream'" in err and "penwright.yaml" in err
    assert not (example_project / ".penwright" / "datasets" / "current" / "train.jsonl").exists()
