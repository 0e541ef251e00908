"""The composition root: `penwright curate` and the daemon's re-curation are one curation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pwtest import copy_example

from penwright.project import load_project
from penwright.workspace import Workspace

SPLITS = ("train.jsonl", "valid.jsonl")


def _project(root: Path, base: Path) -> Path:
    # lore pairs need the lore context and `neutral` pairs the degrader: the daemon used to pass neither
    copy_example(root, "curation:\n  pair_types: [continuation, fim, lore, neutral]\n")
    settings = root / "penwright.yaml"
    settings.write_text(settings.read_text().replace("base: builtin:tiny", f"base: {base}"))
    return root


def _cli_curate(root: Path):
    from penwright.cli import main

    assert main(["curate", "-p", str(root), "--no-progress"]) == 0
    return Workspace(load_project(root)).dataset_dir


def _daemon_curate(root: Path) -> tuple[list, Path]:
    from penwright.server.daemon.keeper import DatasetKeeper

    ws = Workspace(load_project(root))
    events: list[tuple[str, dict]] = []
    DatasetKeeper(ws, ws.registry, lambda kind, **fields: events.append((kind, fields))).initial_sync()
    return events, ws.dataset_dir


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in SPLITS}


def _recomputed(folder: Path) -> list[str]:
    from penwright.trainer.curate import Manifest

    return Manifest.load(folder / "manifest.json").recomputed


@pytest.mark.parametrize("first", ["cli", "daemon"])
def test_cli_and_daemon_write_the_same_dataset_and_never_rechunk_when_switching(tmp_path, gutenberg_31m, first):
    root = _project(tmp_path / "novel", gutenberg_31m)
    steps = [_cli_curate, lambda r: _daemon_curate(r)[1]]
    if first == "daemon":
        steps.reverse()
    folder = steps[0](root)
    before = _snapshot(folder)
    assert _recomputed(folder)  # the first curation chunks every file
    kinds = {json.loads(line)["kind"] for line in before["train.jsonl"].decode().splitlines()}
    assert {"continuation", "fim", "lore", "neutral"} <= kinds, kinds
    for step in (steps[1], steps[0], steps[1]):
        assert step(root) == folder
        assert _snapshot(folder) == before  # byte-identical, whichever side curated last
        assert _recomputed(folder) == []  # and nothing was chunked again


def test_an_adapter_is_merged_and_evaluated_on_the_base_it_recorded(tmp_path, gutenberg_31m, tiny_model_dir):
    ws = Workspace(load_project(_project(tmp_path / "novel", gutenberg_31m)))
    assert ws.base_model() == str(gutenberg_31m.resolve())
    assert ws.adapter_base(str(tiny_model_dir)) == str(tiny_model_dir)  # recorded and present: honoured
    assert ws.adapter_base("") == ws.base_model()  # nothing recorded: the project's
    assert ws.adapter_base(str(tmp_path / "gone")) == ws.base_model()  # recorded but deleted since
