"""Bad input: each file gets a clear message naming it (and the line), the rest is curated, nothing is modified."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pwtest import tree_digest

from penwright.errors import DatasetError
from penwright.trainer.curate import curate
from penwright.trainer.settings import CurationSettings, ExtraDataset
from penwright.trainer.tiny import train_tokenizer

INCLUDE = ["**/*.md", "**/*.txt", "**/*.docx"]
GOOD = "\n\n".join(
    f"Paragraph {i}: the keeper climbed the stair at dusk and trimmed the wick, and the sea said nothing "
    "she could answer."
    for i in range(30)
)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([GOOD], 512)


@pytest.fixture()
def messy(tmp_path: Path) -> Path:
    """A project whose manuscript folder holds one good chapter and every kind of bad file."""
    root = tmp_path / "proj"
    ms = root / "manuscript"
    ms.mkdir(parents=True)
    (ms / "01-good.md").write_text("# Chapter 1\n\n" + GOOD)
    (ms / "binary.txt").write_bytes(b"\x00\x01\x02PK\x00binary junk" * 100)
    (ms / "latin1.txt").write_bytes("First line is fine.\nSecond line too.\nCaf\xe9 au lait.\n".encode("latin-1"))
    (ms / "empty.md").write_text("")
    (ms / "blank.txt").write_text("\n\n   \n")
    with open(ms / "huge.txt", "w") as fh:  # 50 MB on a single line
        chunk = "word " * 200_000
        for _ in range(50):
            fh.write(chunk)
    outside = tmp_path / "elsewhere.txt"
    outside.write_text(GOOD)
    os.symlink(outside, ms / "linked-out.txt")
    (tmp_path / "elsewhere-dir").mkdir()
    (tmp_path / "elsewhere-dir" / "x.md").write_text(GOOD)
    os.symlink(tmp_path / "elsewhere-dir", ms / "linked-dir")
    os.symlink(ms / "01-good.md", ms / "linked-in.txt")  # a link that stays inside is fine
    os.symlink(ms / "missing.txt", ms / "dangling.txt")  # unreadable: its target is gone
    (ms / "broken.docx").write_bytes(b"not a zip")
    (ms / "only-notes.md").write_text("TODO: write this chapter\n\n[[ideas]]\n")
    (root / "user.jsonl").write_text(
        json.dumps({"instruction": "Say hi", "output": "Hi."})
        + "\n"
        + "{not json\n"
        + json.dumps({"messages": [{"role": "user", "content": "x"}]})
        + "\n"
        + "\n"
        + json.dumps(
            {"messages": [{"role": "user", "content": "Write."}, {"role": "assistant", "content": "The sea."}]}
        )
        + "\n"
        + json.dumps({"instruction": "Refuse", "output": "I'm sorry, but I can't help with that request."})
        + "\n"
    )
    return root


def test_every_bad_input_is_reported_and_the_rest_curated(messy: Path, tokenizer):
    before = tree_digest(messy / "manuscript")
    settings = CurationSettings(
        target_tokens=64, max_tokens=128, min_tokens=8, extra_datasets=[ExtraDataset(path="user.jsonl")]
    )
    manifest = curate(
        [messy / "manuscript"],
        INCLUDE,
        [],
        None,
        settings,
        tokenizer,
        messy / ".penwright/datasets/current",
        root=messy,
        context_limit=512,
    )
    assert tree_digest(messy / "manuscript") == before, "nothing the author wrote is modified"
    problems = {(p["path"], p["line"]): p["problem"] for p in manifest.problems}
    by_file = {path: msg for (path, _), msg in problems.items()}
    assert "binary" in by_file["manuscript/binary.txt"]
    assert "not valid UTF-8" in by_file["manuscript/latin1.txt"]
    assert ("manuscript/latin1.txt", 3) in problems, "the line of the bad byte is named"
    assert "empty" in by_file["manuscript/empty.md"] and "empty" in by_file["manuscript/blank.txt"]
    assert "not prose" in by_file["manuscript/huge.txt"] and ("manuscript/huge.txt", 1) in problems
    assert "outside the project" in by_file["manuscript/linked-out.txt"]
    assert "outside the project" in by_file["manuscript/linked-dir"]
    assert "cannot be read" in by_file["manuscript/dangling.txt"]
    assert "Word document" in by_file["manuscript/broken.docx"]
    assert "no prose" in by_file["manuscript/only-notes.md"]
    assert "not valid JSON" in problems[("user.jsonl", 2)]
    assert "assistant" in problems[("user.jsonl", 3)]
    assert all(p["hint"] for p in manifest.problems), "every message says what to do"
    # the good chapter (and the link that stays inside) were curated; the user rows too, minus the refusal
    assert set(manifest.files) == {"manuscript/01-good.md", "manuscript/linked-in.txt", "manuscript/only-notes.md"}
    assert manifest.files["manuscript/01-good.md"].chunks > 0
    assert manifest.totals["duplicate_chunks"] == manifest.files["manuscript/linked-in.txt"].chunks > 0
    assert manifest.totals["user_rows"] == 2 and manifest.totals["refusals_dropped"] == 1
    assert manifest.totals["train"] + manifest.totals["valid"] == manifest.totals["rows"] > 0
    rows = [json.loads(x) for x in (messy / ".penwright/datasets/current/train.jsonl").read_text().splitlines()]
    rows += [json.loads(x) for x in (messy / ".penwright/datasets/current/valid.jsonl").read_text().splitlines()]
    assert not any("Caf" in json.dumps(r) or "binary junk" in json.dumps(r) for r in rows)


def test_problem_messages_name_the_file_and_line(messy: Path, tokenizer):
    from penwright.trainer.curate.sources import Problem

    p = Problem("manuscript/latin1.txt", "is not valid UTF-8", "Re-save it as UTF-8.", 3)
    assert str(p) == "manuscript/latin1.txt:3: is not valid UTF-8\n  -> Re-save it as UTF-8."


def test_nothing_usable_raises_a_clear_error(tmp_path: Path, tokenizer):
    ms = tmp_path / "manuscript"
    ms.mkdir()
    (ms / "empty.md").write_text("")
    with pytest.raises(DatasetError) as err:
        curate([ms], INCLUDE, [], None, CurationSettings(), tokenizer, tmp_path / "out", root=tmp_path)
    assert "no training rows" in str(err.value) and "empty.md" in str(err.value)
    with pytest.raises(DatasetError):
        curate([tmp_path / "nope"], INCLUDE, [], None, CurationSettings(), tokenizer, tmp_path / "out", root=tmp_path)
