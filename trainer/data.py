"""Dataset rows -> token samples -> (packed) batches.

Rows are the curated lines in the shared prompt format (`penwright.trainer.prompt_format`):
inline rows `{"prompt", "completion"}` (the prompt exactly as the server renders it, then the
author's text) and chat rows `{"messages": [...]}` (the last message is the assistant target). A sample keeps its
labels ALREADY SHIFTED (labels[t] is the token that should follow input_ids[t]), so
samples can be concatenated into packed rows without the last token of one sample
learning to predict the first token of the next.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from penwright.errors import DatasetError

log = logging.getLogger(__name__)
IGNORE = -100
MIN_TRAIN_SAMPLES = 1


@dataclass
class Sample:
    input_ids: list[int]
    labels: list[int]  # shifted: labels[t] = target after input_ids[t], IGNORE where masked

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_targets(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


@dataclass
class Row:
    """One packed (or single-sample) training row."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    lengths: list[int] = field(default_factory=list)


@dataclass
class SplitStats:
    rows: int = 0
    samples: int = 0
    truncated: int = 0
    dropped: int = 0
    tokens: int = 0
    target_tokens: int = 0


def read_rows(path: Path) -> list[dict]:
    """Read and check a JSONL split; every bad line is reported at once with its line number."""
    if not path.is_file():
        raise DatasetError(f"{path} does not exist.", "Run `penwright curate` first to build the training set.")
    rows, problems = [], []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                problems.append(f"{path}:{n}: not JSON ({err.msg})")
                continue
            problem = row_problem(row)
            if problem:
                problems.append(f"{path}:{n}: {problem}")
                continue
            rows.append(row)
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise DatasetError(f"{len(problems)} bad row(s):\n  {shown}", "Rebuild the set with `penwright curate`.")
    return rows


def row_problem(row) -> str | None:
    """What is wrong with one dataset row, or None."""
    if isinstance(row, dict) and isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str):
        return None
    msgs = row.get("messages") if isinstance(row, dict) else None
    if (
        not isinstance(msgs, list)
        or len(msgs) < 1
        or not all(isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") for m in msgs)
    ):
        return 'needs "prompt" and "completion" strings, or "messages": [{role, content}, ...]'
    if msgs[-1]["role"] != "assistant":
        return "the last message must be the assistant's (the target)"
    return None


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the vocabulary, stored by curation in manifest.json to catch a mismatched tokenizer."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


def check_tokenizer(dataset_dir: Path, tokenizer) -> None:
    """Refuse a tokenizer that differs from the one the dataset was curated with."""
    manifest = dataset_dir / "manifest.json"
    if not manifest.is_file():
        return
    try:
        data = json.loads(manifest.read_text(encoding="utf-8") or "{}")
    except json.JSONDecodeError:
        return
    recorded = data.get("tokenizer") if isinstance(data, dict) else None
    want = _curated_fingerprint(recorded, tokenizer)
    if want and want != tokenizer_fingerprint(tokenizer):
        if _both_builtin_tiny(recorded, tokenizer):  # the demo model is rebuilt as the manuscript grows
            log.warning("%s: curated with another build of builtin:tiny; training re-tokenizes the text", manifest)
            return
        raise DatasetError(
            f"{manifest}: the dataset was curated with a different tokenizer than the base model's.",
            "Curate again (`penwright curate`) after changing model.base, so chunk sizes match the model.",
        )


def _both_builtin_tiny(recorded, tokenizer) -> bool:
    names = [Path(str(recorded)).name, Path(getattr(tokenizer, "name_or_path", "") or ".").name]
    return all(n.startswith("tiny-") for n in names)


def _curated_fingerprint(recorded, tokenizer) -> str | None:
    """The vocabulary fingerprint of the tokenizer curation used: stored, or loaded from its recorded folder."""
    if isinstance(recorded, dict):
        return recorded.get("fingerprint")
    if not isinstance(recorded, str) or not recorded:
        return None
    folder = Path(recorded)
    ours = Path(getattr(tokenizer, "name_or_path", "") or ".")
    if not (folder / "tokenizer_config.json").is_file() or folder.resolve() == ours.resolve():
        return None
    from transformers import AutoTokenizer

    return tokenizer_fingerprint(AutoTokenizer.from_pretrained(str(folder)))


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    from penwright.trainer.prompt_format import chat_prompt

    return chat_prompt(tokenizer, messages, add_generation_prompt)


def _chat_parts(tokenizer, msgs: list[dict]) -> tuple[list[int], list[int]]:
    from penwright.trainer.prompt_format import chatml, has_chat_format

    if not has_chat_format(tokenizer):
        raise DatasetError(
            "The dataset has chat rows but the base model has no chat template and no ChatML tokens.",
            "Curate again with this base model (`penwright curate`): it builds inline rows only.",
        )
    prompt = render(tokenizer, msgs[:-1], add_generation_prompt=True)
    full = render(tokenizer, msgs)
    if not full.startswith(prompt):  # template puts something odd between turns: fall back to plain ChatML
        prompt, full = chatml(msgs[:-1], True), chatml(msgs)
    return _ids(tokenizer, prompt), _ids(tokenizer, full[len(prompt) :])


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def row_token_parts(tokenizer, row: dict) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids) of one row. Inline rows: the prompt as the server tokenizes it, then the
    completion (+ end-of-text when `eos`); chat rows: through the chat template."""
    if "messages" in row:
        return _chat_parts(tokenizer, row["messages"])
    target = _ids(tokenizer, row["completion"])
    if row.get("eos") and tokenizer.eos_token_id is not None:
        target = target + [tokenizer.eos_token_id]
    return _ids(tokenizer, row["prompt"]), target


def encode_row(tokenizer, row: dict, max_len: int, completion_only: bool = True) -> tuple[Sample, bool]:
    """Tokenize one row; returns (sample, truncated). Prompt tokens are masked under completion_only, except in rows
    whose prompt is the author's own unframed text (`"learn_prompt": true`, inline continuations)."""
    p_ids, t_ids = row_token_parts(tokenizer, row)
    truncated = len(p_ids) + len(t_ids) > max_len
    if truncated:  # keep the target's start and as much of the prompt's END as fits
        keep_t = min(len(t_ids), max_len - min(len(p_ids), max_len // 4))
        t_ids = t_ids[:keep_t]
        p_ids = p_ids[len(p_ids) - (max_len - keep_t) :] if max_len - keep_t > 0 else []
    ids = p_ids + t_ids
    mask = completion_only and not row.get("learn_prompt")  # a continuation's prompt is the author's text too
    targets = ([IGNORE] * len(p_ids) if mask else list(p_ids)) + list(t_ids)
    labels = targets[1:] + [IGNORE]  # shift: position t predicts t+1
    return Sample(ids, labels), truncated


def encode_split(
    path: Path, tokenizer, max_len: int, completion_only: bool = True, limit: int | None = None
) -> tuple[list[Sample], SplitStats]:
    rows = read_rows(path)
    if limit is not None:
        rows = rows[:limit]
    stats = SplitStats(rows=len(rows))
    samples = []
    for row in rows:
        sample, truncated = encode_row(tokenizer, row, max_len, completion_only)
        stats.truncated += truncated
        if sample.n_targets == 0:
            stats.dropped += 1
            continue
        samples.append(sample)
        stats.tokens += len(sample)
        stats.target_tokens += sample.n_targets
    stats.samples = len(samples)
    if stats.truncated:
        log.warning("%s: %d row(s) longer than %d tokens were truncated", path, stats.truncated, max_len)
    return samples, stats


def pack(samples: list[Sample], max_len: int) -> list[Row]:
    """Best-fit-decreasing packing into rows of at most max_len tokens; position ids restart per sample."""
    order = sorted(range(len(samples)), key=lambda i: -len(samples[i]))
    bins: list[list[int]] = []
    space: list[int] = []
    for i in order:
        n = len(samples[i])
        best = min((b for b in range(len(bins)) if space[b] >= n), key=lambda b: space[b], default=None)
        if best is None:
            bins.append([i])
            space.append(max_len - n)
        else:
            bins[best].append(i)
            space[best] -= n
    return [_concat([samples[i] for i in b]) for b in bins]


def _concat(parts: list[Sample]) -> Row:
    row = Row([], [], [], [])
    for s in parts:
        row.input_ids += s.input_ids
        row.labels += s.labels
        row.position_ids += list(range(len(s)))
        row.lengths.append(len(s))
    return row


def single_rows(samples: list[Sample]) -> list[Row]:
    return [_concat([s]) for s in samples]


def make_rows(samples: list[Sample], max_len: int, packing: bool) -> list[Row]:
    return pack(samples, max_len) if packing else single_rows(samples)


def epoch_batches(rows: list[Row], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Row indices per micro-batch for one epoch: a fixed shuffle per (seed, epoch), so a resume sees the same order."""
    idx = list(range(len(rows)))
    random.Random(seed * 1_000_003 + epoch).shuffle(idx)
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]


def collate(rows: list[Row], pad_id: int, packed: bool, causal: bool = False) -> dict:
    """Right-pad to the longest row. Packed rows carry position_ids and NO attention mask: transformers then
    builds a block-diagonal causal mask from the restarting positions, or, with `causal`, positions run on
    through the row and attention is plain causal (samples see the ones before them, as in pretraining on
    concatenated text; the fast path of CPU attention). Unpacked rows carry an attention mask. Right padding
    never needs a mask under causal attention: real tokens come first."""
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, :n] = torch.tensor(r.input_ids)
        labels[i, :n] = torch.tensor(r.labels)
        pos[i, :n] = torch.arange(n) if causal else torch.tensor(r.position_ids)
        pos[i, n:] = torch.arange(n, width) if causal else torch.arange(width - n)  # padding: its own "sample"
        mask[i, :n] = 1
    batch = {"input_ids": ids, "labels": labels, "position_ids": pos}
    if not packed:
        batch["attention_mask"] = mask
    return batch
