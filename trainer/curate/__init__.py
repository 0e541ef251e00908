"""From a manuscript folder to a training set: read, clean, chunk, pair, split, write.

Entry point (see docs/architecture.md, "Curation"): `curate(...) -> Manifest`, the whole set, incremental per
file (unchanged files come from the per-file cache). What is new since an adapter's run is counted on the rows
(`penwright.trainer.increments`).
"""

from penwright.trainer.curate.manifest import FileEntry, Manifest
from penwright.trainer.curate.pipeline import ModelTokenizer, curate
from penwright.trainer.curate.sources import Problem

__all__ = ["FileEntry", "Manifest", "ModelTokenizer", "Problem", "curate"]
