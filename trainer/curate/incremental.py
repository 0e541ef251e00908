"""What the watcher calls when manuscript files change: how many words are new or changed.

Compared against the manifest of the last curated set, paragraph by paragraph: a
paragraph whose text is unchanged counts nothing, a new or edited paragraph
counts its words. Cleaning results are cached by file content, so the next
`curate()` re-reads nothing it has already seen and re-chunks only changed files.
These functions need no tokenizer and no model: they are cheap enough to run on
every save.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from penwright.trainer.curate.cache import FileCache, paragraph_words
from penwright.trainer.curate.manifest import Manifest
from penwright.trainer.curate.sources import Problem, SkipFile, SourceFile, discover, file_sha, read_source

Status = Literal["added", "changed", "unchanged", "removed", "skipped", "ignored"]


@dataclass
class FileChange:
    path: str  # the name the manifest uses (relative to the project when `root` is given)
    status: Status
    words: int = 0  # new or changed words since the previous manifest
    problem: Problem | None = None


@dataclass
class PendingChanges:
    words: int = 0
    files: list[FileChange] = field(default_factory=list)

    @property
    def changed(self) -> list[FileChange]:
        return [f for f in self.files if f.status in ("added", "changed", "removed")]


def _diff_words(cache: FileCache, src: SourceFile, previous: Manifest | None) -> FileChange:
    try:
        data, text = read_source(src)
    except SkipFile as skip:
        return FileChange(src.rel, "skipped", 0, skip.problem)
    sha = file_sha(data)
    old = previous.files.get(src.rel) if previous else None
    if old is not None and old.sha256 == sha:
        return FileChange(src.rel, "unchanged")
    cleaned = cache.cleaned(sha, text, markdown=src.path.suffix.lower() in (".md", ".markdown", ".docx"))
    new_paras = paragraph_words(cleaned)
    old_paras = cache.paragraph_words(old.sha256) if old is not None else None
    if old_paras is None:
        old_paras = {}  # no record of the old text: everything counts as new
    words = sum(n for h, n in new_paras.items() if h not in old_paras)
    return FileChange(src.rel, "added" if old is None else "changed", words)


def file_changed(
    path: Path,
    sources: list[Path],
    previous: Manifest | None,
    out_dir: Path,
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    ignore_file: Path | None = None,
    root: Path | None = None,
) -> FileChange:
    """One file was created, modified or deleted: its new or changed words since `previous`.

    `path` may no longer exist (deleted: status "removed"). Files outside `sources`, or
    excluded by the globs or `.penwrightignore`, are "ignored". Writes only the clean cache.
    """
    path = Path(path).absolute()
    resolved_parent = path.parent.resolve()
    files, problems = discover([Path(s) for s in sources], include or ["**/*"], exclude or [], ignore_file, root)
    match = next((f for f in files if f.path.parent.resolve() == resolved_parent and f.path.name == path.name), None)
    if match is None:
        bad = next((p for p in problems if Path(p.path).name == path.name), None)
        name = _name_of(resolved_parent / path.name, sources, root)
        if bad is not None:
            return FileChange(bad.path, "skipped", 0, bad)
        if name is not None and previous is not None and name in previous.files and not path.exists():
            return FileChange(name, "removed")
        return FileChange(name or str(path), "ignored")
    return _diff_words(FileCache(out_dir), match, previous)


def _name_of(path: Path, sources: list[Path], root: Path | None) -> str | None:
    for folder in sources:
        folder = Path(folder).resolve()
        if path.is_relative_to(folder):
            rel = path.relative_to(folder).as_posix()
            if root is not None and folder.is_relative_to(Path(root).resolve()):
                return f"{folder.relative_to(Path(root).resolve()).as_posix()}/{rel}"
            return rel
    return None


def pending_changes(
    sources: list[Path],
    include: list[str],
    exclude: list[str],
    ignore_file: Path | None,
    previous: Manifest | None,
    out_dir: Path,
    root: Path | None = None,
) -> PendingChanges:
    """Every file's change since `previous` (a full scan: daemon start-up, or after many events)."""
    files, problems = discover([Path(s) for s in sources], include, exclude, ignore_file, root)
    cache = FileCache(out_dir)
    out = PendingChanges()
    seen: set[str] = set()
    for src in files:
        change = _diff_words(cache, src, previous)
        seen.add(src.rel)
        out.files.append(change)
    out.files += [FileChange(p.path, "skipped", 0, p) for p in problems]
    if previous is not None:
        out.files += [FileChange(name, "removed") for name in previous.files if name not in seen]
    out.words = sum(f.words for f in out.files)
    return out
