"""`curate()`: manuscript folders in, `train.jsonl` + `valid.jsonl` + `manifest.json` out.

read -> clean (cached per file content) -> tokenizer (builtin:tiny is trained on
the cleaned text) -> chunk + pairs (cached per file content and settings) ->
dedupe across files -> refusal filter -> user datasets -> split by content hash
-> seeded shuffle -> write. Only files whose bytes changed are re-chunked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from penwright.trainer.curate.cache import FileCache
from penwright.trainer.curate.chunk import Chunk, chunk_scenes, count_tokens
from penwright.trainer.curate.clean import CLEAN_VERSION, CleanText
from penwright.trainer.curate.degrade import Degrader, RuleDegrader
from penwright.trainer.curate.manifest import Manifest
from penwright.trainer.curate.pairs import build_pairs, fim_tokens, is_instruct, resolve_pair_types
from penwright.trainer.curate.sources import Problem, SkipFile, SourceFile, discover, file_sha, read_source
from penwright.trainer.settings import CurationSettings

log = logging.getLogger(__name__)
PAIRS_VERSION = 10  # bump when chunking or pair building changes: invalidates cached chunks
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class ModelTokenizer:
    """A tokenizer to load once the text is known: builtin:tiny trains its tokenizer on the manuscript."""

    def __init__(self, spec: str, models_dir: Path, build: bool = True):
        self.spec, self.models_dir, self.build = spec, Path(models_dir), build
        self.path: str | None = None  # the resolved model, once loaded

    def load(self, texts: list[str]) -> Any:
        from penwright.trainer.models import BUILTIN_TINY, resolve_model

        if self.spec == BUILTIN_TINY and not self.build:  # dry runs: same tokenizer, nothing written
            from penwright.trainer.tiny import FALLBACK_TEXT, TinySpec, train_tokenizer

            return train_tokenizer([t for t in texts if t.strip()] or [FALLBACK_TEXT], TinySpec().vocab_size)
        from transformers import AutoTokenizer

        self.path = resolve_model(self.spec, self.models_dir, texts=lambda: texts)
        return AutoTokenizer.from_pretrained(self.path)


@dataclass
class _Read:
    src: SourceFile
    sha: str
    size: int
    cleaned: CleanText


@dataclass
class _Built:
    chunks: list[Chunk]
    rows: list[dict]
    tokens: list[int]  # per row: tokens of the rendered sample
    recomputed: bool = True
    extra: dict = field(default_factory=dict)


def _noop(stage: str, done: int, total: int) -> None:
    return None


def read_sources(files: list[SourceFile], cache: FileCache, progress: Progress) -> tuple[list[_Read], list[Problem]]:
    out: list[_Read] = []
    problems: list[Problem] = []
    for i, src in enumerate(files):
        progress("read", i, len(files))
        try:
            data, text = read_source(src)
        except SkipFile as skip:
            problems.append(skip.problem)
            continue
        sha = file_sha(data)
        cleaned = cache.cleaned(sha, text, markdown=src.path.suffix.lower() in (".md", ".markdown", ".docx"))
        if not cleaned.paragraphs:
            problems.append(
                Problem(
                    src.rel,
                    "has no prose left after cleaning (only headings, notes or markup?)",
                    "Nothing from it is used.",
                )
            )
        out.append(_Read(src, sha, len(data), cleaned))
    progress("read", len(files), len(files))
    return out, problems


def tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    blob += str(getattr(tokenizer, "chat_template", ""))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def settings_fingerprint(
    settings: CurationSettings, tokenizer: Any, context_limit: int, degrader: Degrader, lore_context
) -> str:
    relevant = settings.model_dump(exclude={"valid_fraction", "seed", "extra_datasets"})
    relevant["instruct"] = is_instruct(tokenizer)  # `auto` pair types depend on it
    lore = getattr(lore_context, "fingerprint", "lore") if lore_context else ""
    key = json.dumps(
        [relevant, tokenizer_fingerprint(tokenizer), context_limit, degrader.name, lore, CLEAN_VERSION, PAIRS_VERSION],
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def sample_tokens(tokenizer: Any, rows: list[dict], memo: dict[str, int] | None = None) -> list[int]:
    """Tokens of each row as trained: inline rows prompt + completion (+ end-of-text), chat rows the chat
    template's rendering + end-of-text.

    Counted per text and summed (with the template's own tokens for chat rows): texts repeated across rows
    (system prompt, targets) are tokenized once.
    """
    from penwright.trainer.dataset import row_parts
    from penwright.trainer.prompt_format import chat_prompt

    memo = {} if memo is None else memo
    contents = {text for r in rows for _, text in row_parts(r)} - memo.keys()
    memo.update(zip(contents, count_tokens(tokenizer, list(contents))))
    overhead: dict[tuple, int] = {}
    out = []
    for row in rows:
        parts = row_parts(row)
        if "messages" not in row:
            out.append(sum(memo[t] for _, t in parts) + int(bool(row.get("eos"))))
            continue
        roles = tuple(r for r, _ in parts)
        if roles not in overhead:
            empty = chat_prompt(tokenizer, [{"role": r, "content": ""} for r in roles], add_generation_prompt=False)
            overhead[roles] = count_tokens(tokenizer, [empty])[0]
        out.append(overhead[roles] + sum(memo[t] for _, t in parts) + 1)
    return out


def build_file(read: _Read, settings: CurationSettings, tokenizer: Any, ctx: dict) -> _Built:
    """Chunks, pairs and sample sizes of one file (the expensive, cached part)."""
    cached = ctx["cache"].chunks(read.sha, ctx["fingerprint"])
    if cached is not None:
        return _Built([Chunk(**c) for c in cached["chunks"]], cached["rows"], cached["tokens"], recomputed=False)
    chunks = chunk_scenes(read.cleaned.scenes, read.src.rel, settings, tokenizer)
    rows = build_pairs(
        chunks, settings, ctx["degrader"], ctx["fim"], ctx["context_chars"], ctx["lore_context"], kinds=ctx["kinds"]
    )
    tokens = sample_tokens(tokenizer, rows)
    if not ctx["dry_run"]:
        ctx["cache"].save_chunks(
            read.sha,
            ctx["fingerprint"],
            {
                "chunks": [c.as_dict() for c in chunks],
                "rows": rows,
                "tokens": tokens,
            },
        )
    return _Built(chunks, rows, tokens)


def _context_chars(settings: CurationSettings, tokenizer: Any, context_limit: int, sample: str) -> int:
    """How much previous text a continuation prompt carries: `context_tokens`, within the model's context."""
    system = count_tokens(tokenizer, [settings.system_prompt])[0]
    room = max(64, min(settings.context_tokens, context_limit - settings.max_tokens - system - 48))
    n = count_tokens(tokenizer, [sample])[0] if sample else 0
    chars_per_token = len(sample) / n if n else 4.0
    return int(room * chars_per_token)


def curate(
    sources: list[Path],
    include: list[str],
    exclude: list[str],
    ignore_file: Path | None,
    settings: CurationSettings,
    tokenizer: Any,
    out_dir: Path | None,
    lore_context: Callable[[str], str] | None = None,
    progress: Progress | None = None,
    *,
    root: Path | None = None,
    context_limit: int = 2048,
    degrader: Degrader | None = None,
    dry_run: bool = False,
) -> Manifest:
    """Curate manuscript folders into `out_dir/{train,valid}.jsonl` and `out_dir/manifest.json`.

    `tokenizer` is a loaded tokenizer or a `ModelTokenizer` (loaded after reading, for builtin:tiny).
    `root` bounds symlinks and resolves extra dataset paths (the project folder). With `dry_run`
    nothing is written (the cache is read, not written) and the manifest says what would be.
    Bad files become `manifest.problems`; only an empty result raises DatasetError.
    """
    started = time.perf_counter()
    progress = progress or _noop
    out_dir = Path(out_dir) if out_dir is not None else None
    cache = FileCache(out_dir) if out_dir is None or not dry_run else _ReadOnlyCache(out_dir)
    files, problems = discover([Path(s) for s in sources], include, exclude, ignore_file, root)
    reads, read_problems = read_sources(files, cache, progress)
    problems += read_problems
    texts = [r.cleaned.text() for r in reads]
    if isinstance(tokenizer, ModelTokenizer):
        tokenizer = tokenizer.load(texts)
    degrader = degrader or RuleDegrader()
    fingerprint = settings_fingerprint(settings, tokenizer, context_limit, degrader, lore_context)
    sample = next((t[:20000] for t in texts if t), "")
    kinds, notes = resolve_pair_types(settings, tokenizer)
    ctx = {
        "cache": cache,
        "fingerprint": fingerprint,
        "degrader": degrader,
        "fim": fim_tokens(tokenizer),
        "kinds": kinds,
        "context_chars": _context_chars(settings, tokenizer, context_limit, sample),
        "lore_context": lore_context,
        "dry_run": dry_run,
    }
    built: dict[str, _Built] = {}
    for i, read in enumerate(reads):
        progress("chunk", i, len(reads))
        built[read.src.rel] = build_file(read, settings, tokenizer, ctx)
    progress("chunk", len(reads), len(reads))
    from penwright.trainer.curate.assemble import assemble

    manifest = assemble(reads, built, problems, settings, tokenizer, out_dir, root, context_limit, dry_run)
    manifest.fingerprint = fingerprint
    manifest.notes = notes
    for note in notes:
        log.warning("curation: %s", note)
    manifest.wall_seconds = round(time.perf_counter() - started, 2)
    manifest.created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if out_dir is not None and not dry_run:
        manifest.save(out_dir / "manifest.json")
        cache.prune({r.sha for r in reads}, fingerprint)
    return manifest


class _ReadOnlyCache(FileCache):
    """Dry runs use what is cached but write nothing."""

    def _write(self, kind: str, key: str, data: dict) -> None:
        return None
