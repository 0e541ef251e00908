"""What a run has seen and what is new since: the row bookkeeping behind pending words and warm retrains.

A run folder keeps `rows.json`, the keys (`dataset.row_key`) of every train row its adapter saw. Against the
live adapter's run:

- `pending_words` counts the author's words in rows it has not seen (per passage, its longest target), which is
  what the daemon's retrain policy waits on;
- `build_warm_dataset` writes a warm retrain's set: the new rows weighted up plus a replay share of old ones, so
  the voice does not drift toward the latest chapter only.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from penwright.trainer.dataset import read_jsonl, row_key, write_jsonl

ROWS_FILE = "rows.json"  # in a run folder: keys of every train row the adapter has seen
NEW_WEIGHT = 2  # new passages appear this many times in a warm retrain


def read_rows(path: Path) -> list[dict]:
    """The rows of a JSONL split, [] when it does not exist yet."""
    return read_jsonl(path) if path.is_file() else []


def seen_rows(run_dir: Path | None) -> set[str] | None:
    """Keys of the rows a run trained on; None when the run recorded none (or there is no run)."""
    if run_dir is None or not (run_dir / ROWS_FILE).is_file():
        return None
    return set(json.loads((run_dir / ROWS_FILE).read_text()))


def write_seen(run_dir: Path, current: Path) -> None:
    """Record the rows of the current set as seen by the run in `run_dir`."""
    keys = sorted({row_key(r) for r in read_rows(current / "train.jsonl")})
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ROWS_FILE).write_text(json.dumps(keys))


def target_words(row: dict) -> int:
    """Words of the author's passage a row stands for (its recorded size, else the completion or last message)."""
    if isinstance(row.get("words"), int):
        return row["words"]
    if isinstance(row.get("completion"), str):
        return len(row["completion"].split())
    msgs = row.get("messages") or []
    return len(msgs[-1].get("content", "").split()) if msgs else 0


def pending_words(rows: list[dict], seen: set[str] | None) -> int:
    """New or changed words since `seen` (all words when None): per new passage, its longest target."""
    per_chunk: dict[str, int] = {}
    for row in rows:
        key = row_key(row)
        if seen is not None and key in seen:
            continue
        chunk = str(row.get("chunk") or key)
        per_chunk[chunk] = max(per_chunk.get(chunk, 0), target_words(row))
    return sum(per_chunk.values())


def build_warm_dataset(current: Path, out: Path, seen: set[str] | None, replay_share: float, seed: int = 0) -> dict:
    """Write `out/train.jsonl` (new rows x NEW_WEIGHT + a replay sample of old ones) and `out/valid.jsonl` (as is).

    With no `seen` (a first adapter) or nothing new, the whole set. Returns the mix's counts."""
    rows = read_rows(current / "train.jsonl")
    if (current / "valid.jsonl").is_file():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(current / "valid.jsonl", out / "valid.jsonl")
    new = [r for r in rows if seen is None or row_key(r) not in seen]
    old = [r for r in rows if seen is not None and row_key(r) in seen]
    if seen is None or not new:
        mixed, n_replay = list(rows), len(old)
    else:
        weighted = new * NEW_WEIGHT
        n_replay = _replay_count(len(weighted), len(old), replay_share)
        mixed = weighted + random.Random(seed).sample(old, n_replay)
    random.Random(seed).shuffle(mixed)
    write_jsonl(mixed, out / "train.jsonl")
    return {"rows": len(mixed), "new_rows": len(new), "replay_rows": n_replay, "all_rows": len(rows)}


def _replay_count(weighted: int, old: int, share: float) -> int:
    """Old rows to replay so that old / (weighted + old) = share (all of them at share 1)."""
    if share >= 1:
        return old
    return min(old, round(weighted * share / max(1e-9, 1 - share)))
