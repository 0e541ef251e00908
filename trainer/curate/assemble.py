"""The cheap, whole-set half of curation: dedupe, refusals, user datasets, split, shuffle, write, manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from penwright.errors import DatasetError
from penwright.trainer import dataset as ds
from penwright.trainer.curate.manifest import FileEntry, Manifest, budget
from penwright.trainer.curate.sources import Problem
from penwright.trainer.settings import CurationSettings


def _dedupe_chunks(reads: list, built: dict) -> tuple[list[dict], list[int], int]:
    """Rows of all files in order, dropping rows of a passage already seen in an earlier file."""
    seen: set[str] = set()
    rows: list[dict] = []
    tokens: list[int] = []
    dupes = 0
    for read in reads:
        b = built[read.src.rel]
        first_here = {c.id for c in b.chunks if c.id not in seen}
        dupes += len(b.chunks) - len(first_here)
        for row, n in zip(b.rows, b.tokens):
            if row["chunk"] in first_here:
                rows.append(row)
                tokens.append(n)
        seen |= first_here
    return rows, tokens, dupes


def assemble(
    reads: list,
    built: dict,
    problems: list[Problem],
    settings: CurationSettings,
    tokenizer: Any,
    out_dir: Path | None,
    root: Path | None,
    context_limit: int,
    dry_run: bool,
) -> Manifest:
    rows, tokens, dup_chunks = _dedupe_chunks(reads, built)
    size = {ds.row_key(r): n for r, n in zip(rows, tokens)}
    rows, dup_rows = ds.dedupe(rows)
    rows, refusals = ds.drop_refusals(rows)
    extra_rows, extra_problems, extra_stats = ds.load_extra_datasets(
        settings.extra_datasets, root or Path.cwd(), settings.seed
    )
    problems = problems + extra_problems
    extra_rows, extra_refusals = ds.drop_refusals(extra_rows)
    if extra_rows:
        from penwright.trainer.curate.pipeline import sample_tokens

        for r, n in zip(extra_rows, sample_tokens(tokenizer, extra_rows)):
            size[ds.row_key(r)] = n
    train, valid = ds.split_rows(rows + extra_rows, settings.valid_fraction)
    train, valid = ds.shuffle(train, settings.seed), ds.shuffle(valid, settings.seed + 1)
    if not train and not dry_run:
        raise DatasetError(
            "Curation produced no training rows"
            + (f" ({len(problems)} problem(s): {problems[0]})" if problems else ""),
            "Add manuscript files (.txt, .md, .docx) with prose, or lower curation.min_tokens / min_paragraph_words.",
        )
    if out_dir is not None and not dry_run:
        ds.write_jsonl(train, out_dir / "train.jsonl")
        ds.write_jsonl(valid, out_dir / "valid.jsonl")
    manifest = Manifest(
        problems=[p.as_dict() for p in problems],
        settings=settings.model_dump(),
        context_limit=context_limit,
        tokenizer=str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__),
        dry_run=dry_run,
    )
    _file_entries(manifest, reads, built, train, valid)
    samples = [size[ds.row_key(r)] for r in train + valid]
    chunks = [c.tokens for b in built.values() for c in b.chunks]
    manifest.tokens = {"chunk": budget(chunks), "sample": budget(samples, context_limit)}
    manifest.pairs = dict(sorted(Counter(r["kind"] for r in train + valid).items()))
    manifest.extra_datasets = extra_stats
    manifest.totals = {
        "files": len(reads),
        "skipped_files": len({p.path for p in problems if p.line is None}),
        "words": sum(r.cleaned.words for r in reads),
        "chunks": sum(len(b.chunks) for b in built.values()),
        "duplicate_chunks": dup_chunks,
        "duplicate_rows": dup_rows,
        "refusals_dropped": refusals + extra_refusals,
        "user_rows": len(extra_rows),
        "rows": len(train) + len(valid),
        "train": len(train),
        "valid": len(valid),
        "recomputed_files": sum(1 for b in built.values() if b.recomputed),
    }
    manifest.dataset_hash = ds.dataset_hash(train, valid)
    return manifest


def _file_entries(manifest: Manifest, reads: list, built: dict, train: list[dict], valid: list[dict]) -> None:
    per_train = Counter(r["source"] for r in train)
    per_valid = Counter(r["source"] for r in valid)
    for read in reads:
        name, b = read.src.rel, built[read.src.rel]
        manifest.files[name] = FileEntry(
            sha256=read.sha,
            bytes=read.size,
            words=read.cleaned.words,
            paragraphs=len(read.cleaned.paragraphs),
            scenes=len(read.cleaned.scenes),
            chunks=len(b.chunks),
            pairs=len(b.rows),
            train=per_train[name],
            valid=per_valid[name],
            removed=dict(read.cleaned.removed),
            recomputed=b.recomputed,
        )
