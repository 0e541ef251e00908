"""`LoreIndex`: the lore folder, indexed in chromadb, and hybrid selection over it.

    index = LoreIndex(lore_dir, index_dir, settings)   # nothing heavy happens yet
    index.sync()                                       # parse the folder, embed what changed
    sel = index.select(prefix, suffix, chapter=3, count_tokens=lambda s: len(tok(s).input_ids))
    sel.entries, sel.text, sel.tokens

State on disk (all under `index_dir`, i.e. `<project>/.penwright/lore/`): the
chromadb database in `chroma/` and `manifest.json` ({file: sha256 and the text
hash of each section id}), which makes updates incremental: a changed file
re-embeds only the sections whose text changed, a renamed file moves its
vectors, a deleted file drops its records. Record ids are `<file>::<section>`.

Damage is repaired, not reported and left: records missing from chroma, a
failed recall check (chroma-core/chroma#7758), a deleted or corrupted database
or a different embedding model all lead to a rebuild from the lore folder.
All public methods are thread-safe (one re-entrant lock).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from penwright.errors import LoreError
from penwright.rag.entries import LORE_SUFFIXES, LoreEntry, ParsedFile, Section, lint, parse_file
from penwright.rag.keys import KeyMatcher
from penwright.rag.select import (
    Candidate,
    Selection,
    TokenCounter,
    TokenMeter,
    always_candidates,
    approx_tokens,
    fit,
    named_candidates,
    query_text,
    rank,
)
from penwright.rag.settings import LoreSettings

log = logging.getLogger(__name__)
MANIFEST_VERSION = 1
_QUERY_CACHE = 256
_METERS = 4  # token counters remembered (one per tokenizer in use; the daemon has one)


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    embedded: int = 0  # sections embedded (the expensive part)
    rebuilt: str | None = None  # why the index was rebuilt, if it was
    unreachable: list[str] = field(default_factory=list)  # records a rebuilt index still misses by meaning
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _section_hash(s: Section) -> str:
    return hashlib.sha1(s.embed_text.encode("utf-8")).hexdigest()


class LoreIndex:
    def __init__(
        self, lore_dir: Path | str, index_dir: Path | str, settings: LoreSettings | None = None, embedder: Any = None
    ):
        self.lore_dir = Path(lore_dir).resolve()
        self.index_dir = Path(index_dir).resolve()
        self.settings = settings or LoreSettings()
        self._embedder = embedder
        self._lock = threading.RLock()
        self._store: Any = None
        self._files: dict[str, ParsedFile] = {}
        self._sections: dict[str, Section] = {}
        self._matcher = KeyMatcher(self.settings.min_key_length, self.settings.common_word_zipf)
        self._key_notes: dict[str, list[str]] = {}
        self._manifest: dict[str, Any] = {
            "version": MANIFEST_VERSION,
            "model": self.settings.embedding_model,
            "files": {},
        }
        self._qcache: OrderedDict[str, Any] = OrderedDict()  # meaning query -> vector
        self._meters: OrderedDict[TokenCounter, TokenMeter] = OrderedDict()  # counter -> its counts
        self._always_cands: list[Candidate] | None = None  # always entries' candidates, until a file changes
        self._loaded = False
        self._recovered: str | None = None  # set when opening failed and the database was started over
        self.rebuilds: list[str] = []  # reasons of every rebuild this instance did

    # -- plumbing ------------------------------------------------------------
    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from penwright.rag.embedding import PenwrightEmbeddings

            self._embedder = PenwrightEmbeddings(
                self.settings.embedding_model, precision=self.settings.embedding_precision
            )
        return self._embedder

    @property
    def manifest_path(self) -> Path:
        return self.index_dir / "manifest.json"

    def _open_store(self) -> Any:
        from penwright.rag.store import ChromaStore

        if self._store is None:
            self._store = ChromaStore(self.index_dir / "chroma", self.embedder)
        if not self._store.is_open:
            try:
                self._store.open()
            except Exception as err:  # unreadable database: start it over
                reason = f"the index database could not be opened ({err})"
                log.warning("lore index at %s: %s; rebuilding it", self.index_dir, reason)
                self.rebuilds.append(reason)
                self._recovered = reason
                self._store.wipe()
                self._manifest["files"] = {}
        return self._store

    def _read_manifest(self) -> None:
        try:
            data = json.loads(self.manifest_path.read_text())
            if data.get("version") == MANIFEST_VERSION and isinstance(data.get("files"), dict):
                self._manifest = data
                return
        except (OSError, ValueError):
            pass
        self._manifest = {"version": MANIFEST_VERSION, "model": self.settings.embedding_model, "files": {}}

    def _write_manifest(self) -> None:
        self.index_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._manifest, sort_keys=True))  # no indent: the C encoder, ~10x faster
        os.replace(tmp, self.manifest_path)

    def _manifest_ids(self) -> set[str]:
        return {i for f in self._manifest["files"].values() for i in f["sections"]}

    def _rel(self, path: Path | str) -> str:
        p = Path(path)
        p = (p if p.is_absolute() else self.lore_dir / p).resolve()
        try:
            return p.relative_to(self.lore_dir).as_posix()
        except ValueError:
            raise LoreError(
                f"{p} is not inside the lore folder {self.lore_dir}.", "Only files in the lore folder are indexed."
            ) from None

    def _scan(self) -> list[str]:
        if not self.lore_dir.is_dir():
            return []
        found = []
        for p in self.lore_dir.rglob("*"):
            rel = p.relative_to(self.lore_dir)
            if p.suffix.lower() in LORE_SUFFIXES and p.is_file() and not any(x.startswith(".") for x in rel.parts):
                found.append(rel.as_posix())
        return sorted(found)

    # -- in-memory view --------------------------------------------------------
    def _forget(self, rel: str) -> None:
        self._always_cands = None
        old = self._files.pop(rel, None)
        if old and old.entry:
            for s in old.entry.sections:
                self._sections.pop(s.id, None)
        self._matcher.remove(rel)
        self._key_notes.pop(rel, None)

    def _remember(self, parsed: ParsedFile) -> None:
        self._forget(parsed.file)  # also drops the always candidates
        self._files[parsed.file] = parsed
        e = parsed.entry
        if e is None:
            return
        for s in e.sections:
            self._sections[s.id] = s
        notes = self._matcher.add(e.id, [e.name, *e.aliases, *e.keys])
        if notes:
            self._key_notes[parsed.file] = [f"{parsed.file}: {n}" for n in notes]

    @property
    def entries(self) -> list[LoreEntry]:
        with self._lock:
            return [p.entry for p in self._files.values() if p.entry is not None]

    @property
    def problems(self) -> list[str]:
        """Every file problem, duplicate and dead key known now, one line each."""
        with self._lock:
            out = [
                str(p.message) + (f" ({p.hint})" if p.hint else "") for f in self._files.values() for p in f.problems
            ]
            out += lint(self.entries)
            out += [n for notes in self._key_notes.values() for n in notes]
            return out

    # -- writing records -------------------------------------------------------
    def _fresh(self, parsed: ParsedFile) -> list[Section]:
        """The sections of a parsed file whose text differs from what the index holds."""
        old = self._manifest["files"].get(parsed.file, {}).get("sections", {})
        return [s for s in (parsed.entry.sections if parsed.entry else []) if old.get(s.id) != _section_hash(s)]

    def _apply(
        self, parsed: ParsedFile, donors: dict[str, str] | None = None, vectors: dict[str, Any] | None = None
    ) -> tuple[list[str], int]:
        """Make chroma and the manifest match one parsed file; returns (section ids written, how many embedded here)."""
        self._open_store()
        old = self._manifest["files"].get(parsed.file, {}).get("sections", {})
        sections = parsed.entry.sections if parsed.entry else []
        new = {s.id: _section_hash(s) for s in sections}
        stale = [i for i, h in old.items() if new.get(i) != h]
        fresh = [s for s in sections if old.get(s.id) != new[s.id]]
        embedded = self._write_sections(fresh, donors or {}, stale, vectors or {})
        self._remember(parsed)
        if sections:
            self._manifest["files"][parsed.file] = {"sha": parsed.sha, "sections": new}
        else:
            self._manifest["files"].pop(parsed.file, None)
        return [s.id for s in fresh], embedded

    def _write_sections(
        self, fresh: list[Section], donors: dict[str, str], stale: list[str], given: dict[str, Any]
    ) -> int:
        """Delete `stale` ids, then add `fresh` sections. Vectors: `given` (id -> vector, embedded in a batch
        by the caller), else moved from `donors` (text hash -> old id), else embedded here."""
        store = self._store
        reuse = store.vectors([donors[_section_hash(s)] for s in fresh if _section_hash(s) in donors], lenient=True)
        store.delete(stale)  # delete then add: never upsert an existing id (chroma-core/chroma#7758)
        if not fresh:
            return 0
        import numpy as np

        have = {s.id: reuse[donors[_section_hash(s)]] for s in fresh if donors.get(_section_hash(s)) in reuse}
        have.update({s.id: given[s.id] for s in fresh if s.id in given})
        need = [s for s in fresh if s.id not in have]
        if need:
            have.update(zip((s.id for s in need), self.embedder.encode([s.embed_text for s in need])))
        vectors = np.stack([have[s.id] for s in fresh])
        metas = [
            {"file": s.entry.file, "name": s.entry.name, "type": s.entry.type, "heading": s.heading} for s in fresh
        ]
        store.add([s.id for s in fresh], vectors, [s.text for s in fresh], metas)
        return len(need)

    def _verify(self, ids: list[str] | None, report: SyncReport) -> None:
        """The recall check; rebuild once when it fails."""
        store = self._store
        expected = self._manifest_ids()
        if ids is None and (store.count() != len(expected) or set(store.ids()) != expected):
            self._rebuild(f"the index holds {store.count()} records where the lore has {len(expected)}", report)
            return
        missing = store.unreachable(ids if ids is not None else sorted(expected))
        if missing:
            self._rebuild(
                f"recall check: {len(missing)} record(s) unreachable by query, e.g. {missing[0]} "
                "(chroma-core/chroma#7758)",
                report,
            )

    def _rebuild(self, reason: str, report: SyncReport) -> None:
        log.warning("rebuilding the lore index: %s", reason)
        self.rebuilds.append(reason)
        report.rebuilt = reason
        store = self._open_store()
        store.wipe()
        self._qcache.clear()
        self._manifest = {"version": MANIFEST_VERSION, "model": self.settings.embedding_model, "files": {}}
        parsed = [parse_file(self.lore_dir / rel, self.lore_dir, self.settings.max_file_bytes) for rel in self._scan()]
        vectors = self._embed_batch([s for p in parsed for s in self._fresh(p)], {})
        report.embedded += len(vectors)
        for p in parsed:
            self._apply(p, None, vectors)
        for rel in [r for r in self._files if not (self.lore_dir / r).is_file()]:
            self._forget(rel)
        self._write_manifest()
        missing = store.unreachable()
        if missing:
            # A fresh collection can still miss a handful of records in a large index (approximate nearest-neighbour
            # search); rebuilding again would loop. Those entries still come in by name and key, so warn and go on.
            log.warning(
                "after a rebuild, %d of %d lore record(s) are not found by meaning (e.g. %s); they are still "
                "found by name and keys. If this persists, report the chromadb version.",
                len(missing),
                store.count(),
                missing[0],
            )
            report.unreachable = missing

    # -- public: keeping the index current -------------------------------------
    def sync(self) -> SyncReport:
        """Bring the index in line with the lore folder; cheap when nothing changed."""
        t0 = time.perf_counter()
        report = SyncReport()
        with self._lock:
            if not self._loaded:
                self._read_manifest()
            self._open_store()
            report.rebuilt, self._recovered = self._recovered, None
            if self._manifest.get("model") != self.settings.embedding_model:
                self._rebuild(f"embedding model changed to {self.settings.embedding_model}", report)
            else:
                self._sync_files(report)
                self._verify(None, report)
            self._write_manifest()
            self._loaded = True
            report.problems = self.problems
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def _sync_files(self, report: SyncReport) -> None:
        on_disk = self._scan()
        files = self._manifest["files"]
        parsed = {rel: parse_file(self.lore_dir / rel, self.lore_dir, self.settings.max_file_bytes) for rel in on_disk}
        gone = [rel for rel in set(files) | set(self._files) if rel not in parsed]
        donors = {h: i for rel in gone for i, h in files.get(rel, {}).get("sections", {}).items()}
        by_sha = {files[rel]["sha"]: rel for rel in gone if rel in files}
        todo = {rel: p for rel, p in parsed.items() if not self._unchanged(rel, p)}
        vectors = self._embed_batch([s for p in todo.values() for s in self._fresh(p)], donors)
        report.embedded += len(vectors)
        for rel, p in todo.items():
            known = files.get(rel)
            self._apply(p, donors, vectors)
            if known is None and p.sha in by_sha:
                report.renamed.append((by_sha[p.sha], rel))
            elif known is None:
                if p.entry is not None:
                    report.added.append(rel)
            elif known["sha"] != p.sha:
                report.updated.append(rel)
        for rel in gone:
            self._drop(rel)
            if rel not in {old for old, _ in report.renamed}:
                report.removed.append(rel)

    def _unchanged(self, rel: str, p: ParsedFile) -> bool:
        """Same bytes as indexed (or as already reported unusable) and already in memory."""
        seen = self._files.get(rel)
        if seen is None or seen.sha != p.sha:
            return False
        known = self._manifest["files"].get(rel)
        return known["sha"] == p.sha if known else p.entry is None

    def _embed_batch(self, sections: list[Section], donors: dict[str, str]) -> dict[str, Any]:
        """Embed, in one batch, the sections whose vectors cannot be moved from a donor."""
        need = [s for s in sections if _section_hash(s) not in donors]
        if not need:
            return {}
        return dict(zip((s.id for s in need), self.embedder.encode([s.embed_text for s in need])))

    def _drop(self, rel: str) -> None:
        old = self._manifest["files"].pop(rel, None)
        if old:
            self._open_store().delete(list(old["sections"]))
        self._forget(rel)

    def _ensure(self) -> None:
        if not self._loaded:
            self.sync()
        elif not self._store.intact():
            with self._lock:
                self._store.close()
                self._rebuild(f"the index database in {self.index_dir} was deleted", SyncReport())

    @staticmethod
    def is_lore_file(rel: str) -> bool:
        """Whether a path (relative to the lore folder) is one the index reads: .md/.txt, not hidden."""
        parts = Path(rel).parts
        return bool(parts) and Path(rel).suffix.lower() in LORE_SUFFIXES and not any(x.startswith(".") for x in parts)

    def _moved_from(self, sha: str) -> str | None:
        """The indexed file, no longer on disk, that a new file with this content was renamed from."""
        for rel, known in self._manifest["files"].items():
            if known["sha"] == sha and not (self.lore_dir / rel).is_file():
                return rel
        return None

    def update_file(self, path: Path | str) -> SyncReport:
        """Re-index one lore file after it was created or changed (a missing file is removed; other files ignored)."""
        t0 = time.perf_counter()
        report = SyncReport()
        with self._lock:
            self._ensure()
            rel = self._rel(path)
            if not (self.lore_dir / rel).exists():
                return self.remove_file(path)
            if not self.is_lore_file(rel) or not (self.lore_dir / rel).is_file():
                return report
            p = parse_file(self.lore_dir / rel, self.lore_dir, self.settings.max_file_bytes)
            (report.updated if rel in self._manifest["files"] else report.added).append(rel)
            old = self._moved_from(p.sha) if rel not in self._manifest["files"] else None
            if old is not None:  # a rename seen as "new file": move the vectors, drop the old records now
                return self.rename_file(self.lore_dir / old, self.lore_dir / rel)
            written, report.embedded = self._apply(p)
            self._verify(written, report)
            self._write_manifest()
            report.problems = [str(e) for e in p.problems]
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def rename_file(self, old: Path | str, new: Path | str) -> SyncReport:
        """A lore file moved: its records move under new ids without re-embedding unchanged sections."""
        report = SyncReport()
        with self._lock:
            self._ensure()
            old_rel, new_rel = self._rel(old), self._rel(new)
            donors = {h: i for i, h in self._manifest["files"].get(old_rel, {}).get("sections", {}).items()}
            p = parse_file(self.lore_dir / new_rel, self.lore_dir, self.settings.max_file_bytes)
            written, report.embedded = self._apply(p, donors)
            self._drop(old_rel)
            self._verify(written, report)
            self._write_manifest()
            report.renamed.append((old_rel, new_rel))
        return report

    def remove_file(self, path: Path | str) -> SyncReport:
        """Drop a deleted lore file's records (a deleted folder: every file that was in it)."""
        report = SyncReport()
        with self._lock:
            self._ensure()
            rel = self._rel(path)
            known = set(self._manifest["files"]) | set(self._files)
            for gone in sorted(r for r in known if r == rel or r.startswith(rel.rstrip("/") + "/") or rel == "."):
                self._drop(gone)
                report.removed.append(gone)
            self._write_manifest()
        return report

    def rebuild(self) -> SyncReport:
        """Drop the collection and index the whole lore folder again."""
        t0 = time.perf_counter()
        report = SyncReport()
        with self._lock:
            if not self._loaded:
                self._read_manifest()
            self._rebuild("requested", report)
            self._loaded = True
            report.problems = self.problems
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def check(self) -> dict[str, Any]:
        """Problems in the lore, plus a full recall check of the index."""
        with self._lock:
            self._ensure()
            unreachable = self._store.unreachable()
            return {"problems": self.problems, "records": self._store.count(), "unreachable": unreachable}

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
            self._loaded = False

    # -- public: reading -------------------------------------------------------
    def names(self) -> list[dict[str, Any]]:
        with self._lock:
            self._ensure()
            return sorted((e.summary() for e in self.entries), key=lambda d: d["name"].casefold())

    def lookup(self, name: str) -> dict[str, Any] | None:
        """An entry by name or alias (case-insensitive), with its text and sections."""
        want = name.strip().casefold()
        with self._lock:
            self._ensure()
            for e in sorted(self.entries, key=lambda e: (e.name.casefold() != want, e.file)):
                if want == e.name.casefold() or want in (a.casefold() for a in e.aliases):
                    return {
                        **e.summary(),
                        "text": e.text,
                        "sections": [{"id": s.id, "heading": s.heading, "text": s.text} for s in e.sections],
                    }
        return None

    def search(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        """Sections for a free-text query: entries it names first, then by meaning."""
        with self._lock:
            self._ensure()
            scored: dict[str, float] = {}
            for hit in self._matcher.find(query).values():
                for s in self._entry_sections(hit.entry_id)[:1]:
                    scored[s.id] = 2.0
            for sid, sim in self._vector(query, k + len(scored)):
                scored[sid] = max(scored.get(sid, -1.0), sim)
            best = sorted(scored.items(), key=lambda kv: -kv[1])[:k]
            return [self._hit(self._sections[sid], score) for sid, score in best if sid in self._sections]

    def _hit(self, s: Section, score: float) -> dict[str, Any]:
        return {
            "id": s.id,
            "name": s.entry.name,
            "type": s.entry.type,
            "file": s.entry.file,
            "heading": s.heading,
            "text": s.text,
            "score": round(float(score), 4),
        }

    def _entry_sections(self, rel: str) -> list[Section]:
        p = self._files.get(rel)
        return p.entry.sections if p and p.entry else []

    def _vector(self, text: str, n: int) -> list[tuple[str, float]]:
        if not text.strip() or n <= 0:
            return []
        vec = self._qcache.get(text)
        if vec is None:
            vec = self.embedder.encode([text])[0]
            self._qcache[text] = vec
            if len(self._qcache) > _QUERY_CACHE:
                self._qcache.popitem(last=False)
        else:
            self._qcache.move_to_end(text)
        try:
            return self._store.query(vec, n)
        except Exception as err:  # a damaged collection: rebuild and ask again
            self._store.close()
            self._rebuild(f"query failed ({type(err).__name__}: {err})", SyncReport())
            return self._store.query(vec, n)

    def select(
        self,
        prefix: str,
        suffix: str = "",
        chapter: int | None = None,
        budget_tokens: int | None = None,
        count_tokens: TokenCounter | None = None,
    ) -> Selection:
        """The lore for the passage around the cursor, ranked and cut to the token budget."""
        if not self.settings.enabled:
            return Selection()
        budget = self.settings.budget_tokens if budget_tokens is None else budget_tokens
        with self._lock:
            self._ensure()
            cands = self._always() + self._named(prefix, suffix) + self._recalled(prefix, suffix, chapter)
            meter = self._meter(count_tokens or approx_tokens)
            return fit(rank(cands, chapter), budget, meter, meter.at_least)

    def _meter(self, count: TokenCounter) -> TokenMeter:
        """`count` with memory (see `TokenMeter`), one per counter: the same sections come back keystroke after
        keystroke."""
        meter = self._meters.get(count)
        if meter is None:
            meter = self._meters[count] = TokenMeter(count)
            if len(self._meters) > _METERS:
                self._meters.popitem(last=False)
        else:
            self._meters.move_to_end(count)
        return meter

    def _always(self) -> list[Candidate]:
        if self._always_cands is None:
            self._always_cands = always_candidates(self.entries)
        return list(self._always_cands)

    def _named(self, prefix: str, suffix: str) -> list[Candidate]:
        return named_candidates(self._matcher, self._entry_sections, prefix, suffix, self.settings.scan_chars)

    def _recalled(self, prefix: str, suffix: str, chapter: int | None) -> list[Candidate]:
        top_k = self.settings.vector_top_k
        if top_k <= 0 or not self._sections:
            return []
        out = []
        for sid, sim in self._vector(query_text(prefix, suffix, self.settings.query_chars), top_k * 3):
            s = self._sections.get(sid)
            if s is None or sim < self.settings.min_similarity or not s.entry.holds_at(chapter):
                continue
            out.append(Candidate(s, 100 * sim, "vector"))
            if len(out) >= top_k:
                break
        return out
