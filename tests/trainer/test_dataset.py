"""User datasets (ChatML, Alpaca), weights, dedupe, shuffle, split by content hash, refusal filter."""

from __future__ import annotations

import json
from pathlib import Path

from penwright.trainer import dataset as ds
from penwright.trainer.settings import ExtraDataset


def _chat(user: str, target: str, chunk: str = "") -> dict:
    msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": target}]
    return {
        "messages": msgs,
        "kind": "continuation",
        "source": "a.md",
        "chunk": chunk or ds.row_key({"messages": msgs}),
    }


def test_alpaca_and_chatml_rows(tmp_path: Path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"instruction": "Describe the sea", "input": "at dusk", "output": "It lay flat as pewter."}),
                json.dumps({"instruction": "Name a ship", "output": "The Gannet.", "system": "Be brief."}),
                json.dumps(
                    {
                        "messages": [
                            {"role": "system", "content": "S"},
                            {"role": "user", "content": "U"},
                            {"role": "assistant", "content": "A"},
                        ]
                    }
                ),
                json.dumps(["not", "an", "object"]),
                json.dumps({"messages": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}]}),
                '{"instruction": "unterminated',
            ]
        )
        + "\n"
    )
    rows, problems = ds.load_user_dataset(path, "auto", "mine.jsonl")
    assert [r["messages"] for r in rows] == [
        [
            {"role": "user", "content": "Describe the sea\n\nat dusk"},
            {"role": "assistant", "content": "It lay flat as pewter."},
        ],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a ship"},
            {"role": "assistant", "content": "The Gannet."},
        ],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}],
    ]
    assert all(r["kind"] == "user" and r["source"] == "mine.jsonl" for r in rows)
    assert [(p.line, p.path) for p in problems] == [(4, "mine.jsonl"), (5, "mine.jsonl"), (6, "mine.jsonl")]
    assert "not valid JSON" in problems[2].problem and "mine.jsonl:6" in str(problems[2])
    chatml_only, problems = ds.load_user_dataset(path, "chatml", "mine.jsonl")
    assert len(chatml_only) == 1 and "'messages'" in problems[0].problem


def test_weights_dedupe_and_seeded_shuffle(tmp_path: Path):
    rows = [_chat(f"u{i}", f"t{i}") for i in range(10)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows + rows[:3]))
    got, problems, stats = ds.load_extra_datasets([ExtraDataset(path="a.jsonl", weight=2.5)], tmp_path, seed=1)
    assert not problems
    assert stats["a.jsonl"] == {"rows": 13, "weight": 2.5, "used": 25, "bad_lines": 0, "duplicates": 3}
    assert len({ds.row_key(r) for r in got}) == 10
    again, _, _ = ds.load_extra_datasets([ExtraDataset(path="a.jsonl", weight=2.5)], tmp_path, seed=1)
    assert again == got
    half = ds.weighted(rows, 0.5, seed=7)
    assert len(half) == 5 and half == ds.weighted(rows, 0.5, seed=7) and half != ds.weighted(rows, 0.5, seed=8)
    deduped, dropped = ds.dedupe(rows + [_chat("u1", "t1"), _chat("u1", "t1 ")])
    assert dropped == 1 and len(deduped) == 11  # exact rows; passages are deduped whitespace-blind by chunk id
    assert ds.shuffle(rows, 3) == ds.shuffle(rows, 3) != rows
    assert sorted(map(ds.row_key, ds.shuffle(rows, 3))) == sorted(map(ds.row_key, rows))


def test_split_by_content_hash_is_stable():
    rows = [_chat(f"u{i}", f"t{i}", chunk=f"chunk{i // 5}") for i in range(1000)]
    train, valid = ds.split_rows(rows, 0.1)
    assert 0.05 < len(valid) / len(rows) < 0.15
    side = {r["chunk"]: "valid" for r in valid} | {r["chunk"]: "train" for r in train}
    assert len(side) == 200, "all rows of one passage are on one side"
    # the split of a passage does not depend on what else is in the set
    sub_train, sub_valid = ds.split_rows(rows[::3], 0.1)
    assert all(side[r["chunk"]] == "valid" for r in sub_valid) and all(side[r["chunk"]] == "train" for r in sub_train)
    # a tiny set still gets a validation passage
    tiny_train, tiny_valid = ds.split_rows(rows[:10], 0.1)
    assert len(tiny_valid) == 5 and len(tiny_train) == 5


def test_refusals_are_dropped_but_prose_is_kept():
    rows = [
        _chat("a", "As an AI language model, I cannot write fiction."),
        _chat("b", "I'm sorry, but I can't help with that."),
        _chat("c", "“I cannot help thinking,” said Emma, “that he is very much in love.”"),
        _chat("d", "She said she could not assist him with the letter."),
    ]
    kept, dropped = ds.drop_refusals(rows)
    assert dropped == 2 and [r["messages"][0]["content"] for r in kept] == ["c", "d"]


def test_write_jsonl_roundtrip(tmp_path: Path):
    rows = [_chat("u", "Tŷ Newydd — “quoted”")]
    ds.write_jsonl(rows, tmp_path / "x" / "train.jsonl")
    assert ds.read_jsonl(tmp_path / "x" / "train.jsonl") == rows
    assert "Tŷ Newydd" in (tmp_path / "x" / "train.jsonl").read_text(encoding="utf-8")
