"""What a run has seen and what is new since: pending words and the warm-retrain mix."""

from __future__ import annotations

import json

from penwright.trainer.dataset import row_key, write_jsonl
from penwright.trainer.increments import NEW_WEIGHT, build_warm_dataset, pending_words, seen_rows, write_seen


def _row(chunk: str, words: int, kind: str = "continuation") -> dict:
    text = " ".join(f"w{chunk}{i}" for i in range(words))
    return {"prompt": f"before {chunk} {kind}", "completion": text, "kind": kind, "chunk": chunk, "words": words}


def test_pending_words_count_each_new_passage_once_by_its_longest_row():
    old = [_row("a", 100), _row("a", 100, "fim")]
    new = [_row("b", 40), _row("b", 30, "fim"), _row("c", 7)]
    seen = {row_key(r) for r in old}
    assert pending_words(old + new, seen) == 47  # b counted once (its longest target), plus c
    assert pending_words(old + new, None) == 147  # no run yet: every passage


def test_a_run_records_what_it_saw_and_the_warm_mix_weights_new_rows(tmp_path):
    current, run = tmp_path / "current", tmp_path / "runs" / "r1"
    old = [_row(c, 10) for c in "abcdefghij"]
    write_jsonl(old, current / "train.jsonl")
    write_jsonl([_row("v", 5)], current / "valid.jsonl")
    write_seen(run, current)
    seen = seen_rows(run)
    assert seen == {row_key(r) for r in old}
    write_jsonl([*old, _row("k", 12)], current / "train.jsonl")  # the author wrote one more passage
    mix = build_warm_dataset(current, tmp_path / "warm", seen, replay_share=0.5)
    rows = [json.loads(x) for x in (tmp_path / "warm" / "train.jsonl").read_text().splitlines()]
    assert mix == {"rows": 4, "new_rows": 1, "replay_rows": 2, "all_rows": 11}
    assert sum(r["chunk"] == "k" for r in rows) == NEW_WEIGHT and len(rows) == 4  # half new (weighted), half replay
    assert (tmp_path / "warm" / "valid.jsonl").read_text() == (current / "valid.jsonl").read_text()


def test_a_first_adapter_trains_on_the_whole_set(tmp_path):
    current = tmp_path / "current"
    rows = [_row(c, 10) for c in "abc"]
    write_jsonl(rows, current / "train.jsonl")
    mix = build_warm_dataset(current, tmp_path / "out", None, replay_share=0.5)
    assert mix["rows"] == 3 and mix["new_rows"] == 3
    assert seen_rows(tmp_path / "no-run") is None
