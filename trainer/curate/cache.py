"""Per-file cache under `<dataset dir>/cache/`, keyed by the file's content hash.

- `clean/<file sha>.json`: cleaned scenes and paragraph hashes. Depends only on the
  bytes (and CLEAN_VERSION), so old versions stay useful as the base of the
  watcher's "how many words changed" count.
- `chunks/<file sha>-<fingerprint>.json`: chunks, pairs and their token counts for
  one tokenizer + settings fingerprint.

Re-curating after one file changed recomputes only that file's entries.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from penwright.trainer.curate.chunk import text_id
from penwright.trainer.curate.clean import CLEAN_VERSION, CleanText, clean


class FileCache:
    def __init__(self, out_dir: Path | None):
        self.root = Path(out_dir) / "cache" if out_dir is not None else None

    def _path(self, kind: str, key: str) -> Path | None:
        return None if self.root is None else self.root / kind / f"{key}.json"

    def _read(self, kind: str, key: str) -> dict | None:
        path = self._path(kind, key)
        if path is None or not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # a damaged cache entry is recomputed

    def _write(self, kind: str, key: str, data: dict) -> None:
        path = self._path(kind, key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    def cleaned(self, sha: str, text: str, markdown: bool) -> CleanText:
        """Cleaned text of a file version, from the cache or computed (and cached)."""
        data = self._read("clean", sha)
        if data and data.get("version") == CLEAN_VERSION:
            return CleanText(data["scenes"], Counter(data["removed"]))
        result = clean(text, markdown=markdown)
        self._write(
            "clean",
            sha,
            {
                "version": CLEAN_VERSION,
                "scenes": result.scenes,
                "removed": dict(result.removed),
                "paragraph_words": paragraph_words(result),
            },
        )
        return result

    def paragraph_words(self, sha: str) -> dict[str, int] | None:
        data = self._read("clean", sha)
        return data.get("paragraph_words") if data else None

    def chunks(self, sha: str, fingerprint: str) -> dict | None:
        return self._read("chunks", f"{sha}-{fingerprint}")

    def save_chunks(self, sha: str, fingerprint: str, data: dict) -> None:
        self._write("chunks", f"{sha}-{fingerprint}", data)

    def prune(self, keep_shas: set[str], fingerprint: str) -> int:
        """Remove chunk entries of other file versions or settings; clean entries stay for word diffs."""
        if self.root is None or not (self.root / "chunks").is_dir():
            return 0
        removed = 0
        for path in (self.root / "chunks").glob("*.json"):
            sha, _, fp = path.stem.partition("-")
            if sha not in keep_shas or fp != fingerprint:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def paragraph_words(cleaned: CleanText) -> dict[str, int]:
    """{paragraph hash: words}: what the watcher diffs to count new or changed words."""
    out: dict[str, int] = {}
    for p in cleaned.paragraphs:
        out[text_id(p)] = len(p.split())
    return out
