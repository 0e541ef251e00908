"""From a manuscript folder to a training set: read, clean, chunk, pair, split, write.

Entry points (see docs/architecture.md, "Curation"):
- `curate(...) -> Manifest`: the whole set, incremental per file.
- `file_changed(...) -> FileChange` / `pending_changes(...) -> PendingChanges`: what the watcher
  calls; the number of new or changed words since a given manifest.
"""

from penwright.trainer.curate.incremental import FileChange, PendingChanges, file_changed, pending_changes
from penwright.trainer.curate.manifest import FileEntry, Manifest
from penwright.trainer.curate.pipeline import ModelTokenizer, curate
from penwright.trainer.curate.sources import Problem

__all__ = [
    "FileChange",
    "FileEntry",
    "Manifest",
    "ModelTokenizer",
    "PendingChanges",
    "Problem",
    "curate",
    "file_changed",
    "pending_changes",
]
