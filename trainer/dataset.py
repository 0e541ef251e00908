"""Training-set rows: user JSONL (ChatML or Alpaca), mixing with weights, dedupe, split, shuffle, writing.

Rows follow docs/architecture.md: inline rows `{"prompt", "completion", "kind", "source", "chunk"}` and chat rows
`{"messages": [{"role","content"}...], "kind", "source", "chunk"}` (`penwright.trainer.prompt_format`).
The split is by content hash (the row's `chunk` id), so a passage stays on the same
side across re-runs and all pairs made from one passage go to the same side.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable
from pathlib import Path

from penwright.trainer.curate.degrade import is_refusal
from penwright.trainer.curate.sources import Problem
from penwright.trainer.settings import ExtraDataset

ROLES = ("system", "user", "assistant")
SPLIT_SALT = "penwright-split-v1"  # never change: it would move passages between train and valid


def row_parts(row: dict) -> list[tuple[str, str]]:
    """(role, text) of each part of a row: its messages, or ("prompt", ...), ("completion", ...)."""
    if "messages" in row:
        return [(m["role"], m["content"]) for m in row["messages"]]
    return [("prompt", row["prompt"]), ("completion", row["completion"])]


def row_target(row: dict) -> str:
    """The author's own text a row trains on: the completion (inline rows) or the last message (chat rows)."""
    return row["messages"][-1]["content"] if "messages" in row else row["completion"]


def row_key(row: dict) -> str:
    """Content hash of a row's parts: equal rows dedupe (passages are already deduped whitespace-blind)."""
    h = hashlib.sha256()
    for role, content in row_parts(row):
        h.update(role.encode())
        h.update(b"\x1f")
        h.update(content.encode("utf-8", "surrogatepass"))
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def is_valid(chunk_id: str, fraction: float) -> bool:
    """Hash-based split: depends only on the passage, never on the run or the rest of the set."""
    h = int(hashlib.sha256(f"{SPLIT_SALT}:{chunk_id}".encode()).hexdigest()[:12], 16)
    return h / float(16**12) < fraction


def split_rows(rows: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """(train, valid). When the hash puts no passage in valid (tiny sets), the lowest-hash passage goes there."""
    train = [r for r in rows if not is_valid(r["chunk"], fraction)]
    valid = [r for r in rows if is_valid(r["chunk"], fraction)]
    if fraction > 0 and not valid and len({r["chunk"] for r in rows}) >= 2:
        pick = min({r["chunk"] for r in rows}, key=lambda c: hashlib.sha256(f"{SPLIT_SALT}:{c}".encode()).hexdigest())
        valid = [r for r in rows if r["chunk"] == pick]
        train = [r for r in rows if r["chunk"] != pick]
    return train, valid


def dedupe(rows: Iterable[dict]) -> tuple[list[dict], int]:
    seen: set[str] = set()
    out: list[dict] = []
    dropped = 0
    for row in rows:
        key = row_key(row)
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        out.append(row)
    return out, dropped


def drop_refusals(rows: list[dict]) -> tuple[list[dict], int]:
    """Rows whose target (last message) is an assistant refusal are dropped."""
    kept = [r for r in rows if not is_refusal(row_target(r))]
    return kept, len(rows) - len(kept)


def shuffle(rows: list[dict], seed: int) -> list[dict]:
    out = list(rows)
    random.Random(seed).shuffle(out)
    return out


def write_jsonl(rows: list[dict], path: Path) -> None:
    """Atomic write: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _to_chat(obj: object, fmt: str) -> tuple[list[dict] | None, str]:
    """A user row as messages, or (None, what is wrong)."""
    if not isinstance(obj, dict):
        return None, "a row must be a JSON object"
    if fmt in ("chatml", "auto") and "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not msgs:
            return None, "'messages' must be a non-empty list"
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                return None, f"message {i} needs a role ({'/'.join(ROLES)}) and a string content"
        if msgs[-1]["role"] != "assistant":
            return None, "the last message must be the assistant's (the training target)"
        return [{"role": m["role"], "content": m["content"]} for m in msgs], ""
    if fmt in ("alpaca", "auto") and "instruction" in obj and "output" in obj:
        parts = [obj.get("instruction"), obj.get("input") or ""]
        if not all(isinstance(p, str) for p in parts) or not isinstance(obj["output"], str):
            return None, "instruction, input and output must be strings"
        user = parts[0] + ("\n\n" + parts[1] if parts[1].strip() else "")
        msgs = [{"role": "system", "content": obj["system"]}] if isinstance(obj.get("system"), str) else []
        return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": obj["output"]}], ""
    want = {"chatml": "'messages'", "alpaca": "'instruction' and 'output'"}.get(
        fmt, "'messages' (ChatML) or 'instruction'/'output' (Alpaca)"
    )
    return None, f"expected {want}"


def load_user_dataset(path: Path, fmt: str = "auto", name: str | None = None) -> tuple[list[dict], list[Problem]]:
    """Rows of a user JSONL file; every bad line becomes a Problem with its line number, the rest is kept."""
    name = name or str(path)
    problems: list[Problem] = []
    rows: list[dict] = []
    try:
        data = path.read_bytes()
    except OSError as err:
        return [], [
            Problem(name, f"cannot be read ({err.strerror or err})", "Check the path in curation.extra_datasets.")
        ]
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            problems.append(
                Problem(name, "is not valid UTF-8", "Re-save the file as UTF-8; the line was skipped.", lineno)
            )
            continue
        except json.JSONDecodeError as err:
            problems.append(
                Problem(
                    name,
                    f"is not valid JSON ({err.msg}, column {err.colno})",
                    "Fix or remove the line; the rest of the file was used.",
                    lineno,
                )
            )
            continue
        msgs, why = _to_chat(obj, fmt)
        if msgs is None:
            problems.append(Problem(name, why, "Fix or remove the line; the rest of the file was used.", lineno))
            continue
        chunk = hashlib.sha256(f"{name}:{row_key({'messages': msgs})}".encode()).hexdigest()[:16]
        rows.append({"messages": msgs, "kind": "user", "source": name, "chunk": chunk})
    return rows, problems


def weighted(rows: list[dict], weight: float, seed: int) -> list[dict]:
    """Repeat or subsample rows so they count `weight` times: 2.0 doubles, 0.5 keeps a seeded half."""
    whole, frac = int(weight), weight - int(weight)
    out = [r for _ in range(whole) for r in rows]
    if frac > 0 and rows:
        k = round(frac * len(rows))
        out += random.Random(seed).sample(rows, k)
    return out


def load_extra_datasets(extras: list[ExtraDataset], root: Path, seed: int) -> tuple[list[dict], list[Problem], dict]:
    """All user datasets, weighted. Returns (rows, problems, {name: {rows, weight, used}})."""
    rows: list[dict] = []
    problems: list[Problem] = []
    stats: dict = {}
    for extra in extras:
        path = Path(extra.path) if Path(extra.path).is_absolute() else root / extra.path
        got, probs = load_user_dataset(path, extra.format, extra.path)
        problems += probs
        n_read = len(got)
        got, dupes = dedupe(got)  # dedupe before weighting: a weight of 2 repeats on purpose
        used = weighted(got, extra.weight, seed)
        stats[extra.path] = {
            "rows": n_read,
            "weight": extra.weight,
            "used": len(used),
            "bad_lines": len(probs),
            "duplicates": dupes,
        }
        rows += used
    return rows, problems, stats


def dataset_hash(train: list[dict], valid: list[dict]) -> str:
    h = hashlib.sha256()
    for row in sorted(row_key(r) for r in train):
        h.update(row.encode())
    h.update(b"|")
    for row in sorted(row_key(r) for r in valid):
        h.update(row.encode())
    return h.hexdigest()[:16]
