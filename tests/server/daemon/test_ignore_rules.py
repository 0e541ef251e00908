"""The watcher and curation read the same files: one matcher (gitignore rules) for both."""

from __future__ import annotations

from pathlib import Path

import pytest

from penwright.server.daemon.watcher import Watcher, WatchRoot
from penwright.trainer.curate.sources import discover

FILES = [
    "01-dawn.md",
    "keep.secret.md",
    "notes.secret.md",
    "drafts/02-storm.md",
    "part1/drafts/03-wreck.md",
    "part1/04-keeper.md",
    "todo.md",
    "part1/todo.md",
    "part1/05-tide.txt",
    "chapter.docx",
]
INCLUDE = ["**/*.md", "**/*.txt", "**/*.docx"]

# (ignore file, files NOT read): each line is one of the cases the two matchers used to disagree on
CASES = {
    "negation": ("*.secret.md\n!keep.secret.md\n", {"notes.secret.md"}),
    "bare folder name": ("drafts\n", {"drafts/02-storm.md", "part1/drafts/03-wreck.md"}),
    "folder with slash": ("drafts/\n", {"drafts/02-storm.md", "part1/drafts/03-wreck.md"}),
    "leading slash anchors": ("/todo.md\n", {"todo.md"}),
    "bare file name anywhere": ("todo.md\n", {"todo.md", "part1/todo.md"}),
    "double star": ("part1/**/*.txt\n", {"part1/05-tide.txt"}),
    "comments and blanks": ("# a comment\n\n*.docx\n", {"chapter.docx"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_watcher_and_curation_agree(tmp_path: Path, case: str):
    ignore_text, skipped = CASES[case]
    manuscript = tmp_path / "manuscript"
    for rel in FILES:
        (manuscript / rel).parent.mkdir(parents=True, exist_ok=True)
        (manuscript / rel).write_text("The lamp was lit at dusk.\n")
    ignore = tmp_path / ".penwrightignore"
    ignore.write_text(ignore_text)
    files, _ = discover([manuscript], INCLUDE, [], ignore, tmp_path)
    curated = {f.path.relative_to(manuscript).as_posix() for f in files}
    watcher = Watcher(
        [WatchRoot("manuscript", manuscript, INCLUDE, [])], lambda b: None, ignore_file=ignore, project_root=tmp_path
    )
    watched = {rel for rel in FILES if watcher.wanted((manuscript / rel).resolve()) is not None}
    assert curated == set(FILES) - skipped
    assert watched == curated


def test_an_edited_ignore_file_applies_at_once(tmp_path: Path):
    manuscript = tmp_path / "manuscript"
    manuscript.mkdir()
    (manuscript / "a.md").write_text("text\n")
    ignore = tmp_path / ".penwrightignore"
    watcher = Watcher(
        [WatchRoot("manuscript", manuscript, INCLUDE, [])], lambda b: None, ignore_file=ignore, project_root=tmp_path
    )
    assert watcher.wanted((manuscript / "a.md").resolve()) is not None
    ignore.write_text("a.md\n")
    assert watcher.wanted((manuscript / "a.md").resolve()) is None
    assert discover([manuscript], INCLUDE, [], ignore, tmp_path)[0] == []
