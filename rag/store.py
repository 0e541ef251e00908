"""The chromadb side of the lore index: one persistent collection of section vectors.

Vectors are computed by the caller (so a renamed file can move its vectors
without re-embedding) and written with delete-then-add, never upsert of an
existing id: chroma-core/chroma#7758 makes some records unreachable by
`query()` after upserts of existing ids. `unreachable()` is the recall check
for that bug: every record, queried by its own vector, must come back.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

COLLECTION = "penwright-lore"
DB_FILE = "chroma.sqlite3"


class ChromaStore:
    def __init__(self, path: Path, embedder: Any):
        self.path = Path(path)
        self.embedder = embedder
        self._client: Any = None
        self._col: Any = None

    # -- lifecycle -------------------------------------------------------
    def open(self) -> ChromaStore:
        import chromadb

        self.path.mkdir(parents=True, exist_ok=True)
        self._client = chromadb.PersistentClient(
            path=str(self.path), settings=chromadb.Settings(anonymized_telemetry=False, allow_reset=True)
        )
        self._col = self._client.get_or_create_collection(
            COLLECTION,
            embedding_function=self.embedder,
            configuration={"hnsw": {"space": "cosine", "ef_construction": 200, "ef_search": 200}},
        )
        return self

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception as err:  # a damaged database may fail to close; we drop it anyway
                log.debug("closing chroma at %s: %s", self.path, err)
        self._client = self._col = None

    @property
    def is_open(self) -> bool:
        return self._col is not None

    def intact(self) -> bool:
        """False when the database file was deleted behind our back."""
        return self.is_open and (self.path / DB_FILE).is_file()

    def wipe(self) -> None:
        """Delete everything on disk and start an empty collection."""
        self.close()
        self._forget_system()
        shutil.rmtree(self.path, ignore_errors=True)
        self.open()

    def _forget_system(self) -> None:
        """Drop chromadb's process-wide cached system for this path.

        A client that failed to start (e.g. on a corrupted database) leaves a broken
        system in chromadb's cache, and every later client for the same path gets it.
        """
        from chromadb.api.shared_system_client import SharedSystemClient

        for key in (str(self.path), str(self.path.resolve())):
            SharedSystemClient._identifier_to_system.pop(key, None)
            SharedSystemClient._identifier_to_refcount.pop(key, None)

    # -- records ---------------------------------------------------------
    def count(self) -> int:
        return int(self._col.count())

    def ids(self) -> list[str]:
        return list(self._col.get(include=[])["ids"])

    def add(self, ids: list[str], vectors: np.ndarray, documents: list[str], metadatas: list[dict]) -> None:
        step = max(1, int(self._client.get_max_batch_size()))
        for i in range(0, len(ids), step):
            self._col.add(
                ids=ids[i : i + step],
                embeddings=vectors[i : i + step],
                documents=documents[i : i + step],
                metadatas=metadatas[i : i + step],
            )

    def delete(self, ids: list[str]) -> None:
        if ids:
            self._col.delete(ids=list(ids))

    def vectors(self, ids: list[str], lenient: bool = False) -> dict[str, np.ndarray]:
        """{id: vector} of the ids found. `lenient`: a record whose vector cannot be read is left out."""
        if not ids:
            return {}
        try:
            got = self._col.get(ids=list(ids), include=["embeddings"])
        except Exception:
            if not lenient:
                raise
            if len(ids) == 1:
                return {}
            half = len(ids) // 2  # find the unreadable ones by halving
            return {**self.vectors(ids[:half], True), **self.vectors(ids[half:], True)}
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(got["ids"], got["embeddings"])}

    def query(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """[(id, cosine similarity)], best first (fewer than n when the collection is smaller)."""
        if n <= 0:
            return []
        res = self._col.query(query_embeddings=[vector], n_results=n, include=["distances"])
        return [(i, 1.0 - float(d)) for i, d in zip(res["ids"][0], res["distances"][0])]

    def unreachable(self, ids: list[str] | None = None, batch: int = 256) -> list[str]:
        """Records that a query by their own vector does not return (chroma-core/chroma#7758)."""
        ids = self.ids() if ids is None else list(ids)
        total = self.count()
        if not ids or total == 0:
            return list(ids)
        missing: list[str] = []
        n = min(10, total)
        for start in range(0, len(ids), batch):
            part = ids[start : start + batch]
            vecs = self.vectors(part, lenient=True)
            missing += [i for i in part if i not in vecs]
            asked = [i for i in part if i in vecs]
            if not asked:
                continue
            res = self._col.query(
                query_embeddings=np.stack([vecs[i] for i in asked]), n_results=n, include=["distances"]
            )
            for i, got, dist in zip(asked, res["ids"], res["distances"]):
                # an exact duplicate (distance ~0 under another id) is as good as the record itself
                if i not in got and not (dist and float(dist[0]) < 1e-4):
                    missing.append(i)
        return missing
