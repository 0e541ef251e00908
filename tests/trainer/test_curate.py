"""Curation end to end on real text: chunk budgets, pair types, split stability, manifest, incremental runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pwtest import tree_digest

from penwright.trainer import prompt_format as pf
from penwright.trainer.curate import Manifest, curate
from penwright.trainer.curate.chunk import chunk_scenes, count_tokens
from penwright.trainer.curate.clean import clean
from penwright.trainer.curate.pairs import fim_tokens
from penwright.trainer.dataset import read_jsonl
from penwright.trainer.settings import CurationSettings

INCLUDE = ["**/*.md", "**/*.txt", "**/*.docx"]


@pytest.fixture(scope="session")
def tokenizer(gutenberg_31m):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gutenberg_31m)


def _excerpt(corpora: Path, name: str, start: int, n: int) -> str:
    """`n` lines of a novel from line `start` (hard-wrapped, chapter headings included)."""
    lines = (corpora / name).read_text(encoding="utf-8").splitlines()
    return "\n".join(lines[start : start + n]) + "\n"


@pytest.fixture()
def project(tmp_path: Path, corpora: Path) -> Path:
    """A small project: three excerpts of Austen and Doyle, as an author's manuscript folder."""
    ms = tmp_path / "proj" / "manuscript"
    ms.mkdir(parents=True)
    (ms / "01-emma.txt").write_text(_excerpt(corpora, "austen/emma.txt", 0, 500))
    (ms / "02-persuasion.txt").write_text(_excerpt(corpora, "austen/persuasion.txt", 0, 450))
    (ms / "part2").mkdir()
    (ms / "part2" / "03-hound.md").write_text(
        "# Chapter 1\n\n" + _excerpt(corpora, "doyle/the_hound_of_the_baskervilles.txt", 40, 300)
    )
    return tmp_path / "proj"


def _run(project: Path, tokenizer, settings: CurationSettings | None = None, **kw) -> Manifest:
    return curate(
        [project / "manuscript"],
        INCLUDE,
        [],
        project / ".penwrightignore",
        settings or CurationSettings(target_tokens=300, max_tokens=500, min_tokens=40),
        tokenizer,
        project / ".penwright" / "datasets" / "current",
        root=project,
        context_limit=1024,
        **kw,
    )


def _rows(project: Path) -> tuple[list[dict], list[dict]]:
    out = project / ".penwright" / "datasets" / "current"
    return read_jsonl(out / "train.jsonl"), read_jsonl(out / "valid.jsonl")


def test_chunks_respect_budget_and_scene_breaks(corpora, tokenizer):
    settings = CurationSettings(target_tokens=300, max_tokens=450, min_tokens=40)
    cleaned = clean((corpora / "austen/pride_and_prejudice.txt").read_text(encoding="utf-8"), markdown=False)
    cleaned.scenes = cleaned.scenes[:20]
    chunks = chunk_scenes(cleaned.scenes, "pp.txt", settings, tokenizer)
    exact = count_tokens(tokenizer, [c.text for c in chunks])
    assert [c.tokens for c in chunks] == exact
    assert max(exact) <= settings.max_tokens
    assert min(exact) >= settings.min_tokens
    # most chunks are near the target; they only run short at the end of a scene
    near = sum(1 for n in exact if n >= settings.target_tokens // 2)
    assert near >= 0.8 * len(chunks)
    scene_texts = ["\n\n".join(s) for s in cleaned.scenes]
    for c in chunks:
        assert c.text in scene_texts[c.scene], "a chunk never crosses a scene break"
        first = c.text.split("\n\n")[0]
        # chunks start at a paragraph, or at a sentence when a paragraph is longer than max_tokens
        assert first in cleaned.scenes[c.scene] or any(
            p.startswith(first) or ". " + first in p for p in cleaned.scenes[c.scene]
        )
    assert len({c.scene for c in chunks}) == 20


def test_overlap_long_paragraphs_and_min_words(tokenizer):
    para = " ".join(f"Sentence number {i} walks along the quiet lane toward the sea." for i in range(120))
    scenes = [
        [para, "Short one.", "Another paragraph with a handful of words in it, enough to count for something here."] * 3
    ]
    settings = CurationSettings(
        target_tokens=200, max_tokens=260, min_tokens=10, overlap_tokens=60, min_paragraph_words=5
    )
    chunks = chunk_scenes(scenes, "x.md", settings, tokenizer)
    assert max(c.tokens for c in chunks) <= 260
    assert all("Short one." not in c.text for c in chunks)
    # the long paragraph was cut at sentence ends
    assert all(c.text.rstrip().endswith(".") for c in chunks)
    overlapping = sum(1 for a, b in zip(chunks, chunks[1:]) if a.text.endswith(b.text.split("\n\n")[0]))
    assert overlapping >= 1


def test_pairs_of_every_kind(project, tokenizer):
    lore_calls = []

    def lore_context(text: str) -> str:
        lore_calls.append(text)
        return "Maren Vell: keeper of the light." if "Emma" in text else ""

    settings = CurationSettings(
        target_tokens=300,
        max_tokens=500,
        min_tokens=40,
        pair_types=["continuation", "fim", "neutral", "info_dropout", "abstract", "lore"],
        seed=3,
    )
    manifest = _run(project, tokenizer, settings, lore_context=lore_context)
    train, valid = _rows(project)
    rows = train + valid
    kinds = {r["kind"] for r in rows}
    assert kinds == {"continuation", "fim", "neutral", "info_dropout", "abstract", "lore"}
    assert manifest.pairs == {k: sum(1 for r in rows if r["kind"] == k) for k in sorted(kinds)}
    chunk_texts = {}
    for r in rows:
        if r["kind"] in ("continuation", "fim", "lore"):  # inline rows: the prompt as the server renders it
            assert set(r) - {"eos", "words", "learn_prompt"} == {"prompt", "completion", "kind", "source", "chunk"}
            assert not r.get("learn_prompt") or r["kind"] == "continuation"
            assert r.get("eos", False) == (r["kind"] == "fim")
            continue
        msgs = r["messages"]
        assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
        assert msgs[0]["content"].startswith(settings.system_prompt)
        assert set(r) == {"messages", "kind", "source", "chunk"}
        chunk_texts[r["chunk"]] = msgs[2]["content"]
    fim = pf.FIM_STYLES[fim_tokens(tokenizer)]
    learned_prompts = 0
    assert fim == ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
    for r in rows:
        if r["kind"] == "fim" and r["chunk"] in chunk_texts:
            pre, rest = r["prompt"][len(fim[0]) :].split(fim[1])
            suf = rest[: -len(fim[2])]
            assert pre + r["completion"] + suf in chunk_texts[r["chunk"]], "prefix + middle + suffix is in the passage"
        if r["kind"] == "continuation" and r["chunk"] in chunk_texts:
            assert r["completion"].strip() in chunk_texts[r["chunk"]] and not r["prompt"].startswith("<")
            # the prompt is learned only where it is the passage's own start (a file's first passage), so no word
            # of the manuscript is learned twice; elsewhere it is the passage before, context only
            own_start = (r["prompt"] + r["completion"]).split() == chunk_texts[r["chunk"]].split()
            assert r.get("learn_prompt", False) == own_start
            learned_prompts += own_start
        if r["kind"] == "abstract":
            user = r["messages"][1]["content"]
            assert "[THING1]" in user or "[NAME1]" in user
        if r["kind"] == "info_dropout":
            user, target = r["messages"][1]["content"], r["messages"][2]["content"]
            assert len(user.split()) < len(target.split()) + 20
            assert user != target
        if r["kind"] == "lore":
            assert r["prompt"].startswith("<lore>\nMaren Vell: keeper of the light.\n</lore>\n\n")
    assert lore_calls, "lore_context was consulted"
    assert 0 < learned_prompts < sum(1 for r in rows if r["kind"] == "continuation")
    # persona pairs map several degraded inputs to the same original
    some = next(iter(chunk_texts))
    assert (
        sum(
            1
            for r in rows
            if r["chunk"] == some and "messages" in r and r["messages"][2]["content"] == chunk_texts[some]
        )
        >= 3
    )


def test_default_rows_are_the_inline_routes_of_a_base_model(project, tokenizer):
    """`auto` on a pretrained base (the 31M model: a ChatML template but no instruct name): inline rows only."""
    manifest = _run(project, tokenizer)
    assert set(manifest.pairs) == {"continuation", "fim"}
    assert manifest.notes == []


def test_a_model_without_fim_tokens_or_chat_format_still_curates(project):
    """No FIM sentinels and no chat format: the manifest says what fell back, and inline rows remain."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    texts = [p.read_text() for p in (project / "manuscript").rglob("*.*")]
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    settings = CurationSettings(target_tokens=300, max_tokens=500, min_tokens=40, pair_types=["auto", "chat"])
    manifest = _run(project, tok, settings)
    assert set(manifest.pairs) == {"continuation"}
    assert any("no fill-in-the-middle tokens" in n for n in manifest.notes)
    assert any("no chat template" in n and "chat" in n for n in manifest.notes)


def test_manifest_figures(project, tokenizer):
    before = tree_digest(project / "manuscript")
    manifest = _run(project, tokenizer)
    assert tree_digest(project / "manuscript") == before, "the manuscript is never modified"
    train, valid = _rows(project)
    on_disk = Manifest.load(project / ".penwright/datasets/current/manifest.json")
    assert on_disk.to_dict() == manifest.to_dict()
    assert set(manifest.files) == {
        "manuscript/01-emma.txt",
        "manuscript/02-persuasion.txt",
        "manuscript/part2/03-hound.md",
    }
    for name, entry in manifest.files.items():
        assert entry.sha256 == hashlib.sha256((project / name).read_bytes()).hexdigest()
        assert entry.train == sum(1 for r in train if r["source"] == name)
        assert entry.valid == sum(1 for r in valid if r["source"] == name)
        assert entry.chunks > 0 and entry.words > 1000
    assert manifest.totals["train"] == len(train) and manifest.totals["valid"] == len(valid) > 0
    assert manifest.totals["chunks"] == sum(f.chunks for f in manifest.files.values())
    sample = manifest.tokens["sample"]
    assert sample["count"] == len(train) + len(valid)
    rows = train + valid  # each part tokenized as the server and the trainer tokenize it
    parts = zip(
        count_tokens(tokenizer, [r["prompt"] for r in rows]), count_tokens(tokenizer, [r["completion"] for r in rows])
    )
    eos = [p + c + int(bool(r.get("eos"))) for (p, c), r in zip(parts, rows)]
    sizes = sorted(eos)
    assert sample["max"] == sizes[-1] and sample["median"] == sizes[len(sizes) // 2]
    assert sample["share_over_limit"] == round(sum(1 for n in sizes if n > 1024) / len(sizes), 4)
    assert manifest.tokens["chunk"]["max"] <= 500


def test_split_is_stable_and_rerun_touches_only_the_changed_file(project, tokenizer):
    first = _run(project, tokenizer)
    train1, valid1 = _rows(project)
    side1 = {r["chunk"]: "train" for r in train1} | {r["chunk"]: "valid" for r in valid1}
    again = _run(project, tokenizer)
    assert again.recomputed == [] and again.dataset_hash == first.dataset_hash
    assert _rows(project) == (train1, valid1), "same input, same seed: byte-identical rows and order"

    changed = project / "manuscript" / "02-persuasion.txt"
    text = changed.read_text()
    changed.write_text(
        text.replace("Sir Walter Elliot", "Sir Walter Elyot", 1) + "\nA brand new closing paragraph, "
        "written today, in which the author adds a good many words to the end of the chapter.\n"
    )
    second = _run(project, tokenizer)
    assert second.recomputed == ["manuscript/02-persuasion.txt"]
    assert second.files["manuscript/01-emma.txt"].sha256 == first.files["manuscript/01-emma.txt"].sha256
    train2, valid2 = _rows(project)
    side2 = {r["chunk"]: "train" for r in train2} | {r["chunk"]: "valid" for r in valid2}
    common = set(side1) & set(side2)
    assert len(common) >= 0.8 * len(side1)
    assert all(side1[c] == side2[c] for c in common), "a passage stays on its side across re-runs"
    for name in ("manuscript/01-emma.txt", "manuscript/part2/03-hound.md"):
        old = sorted(json.dumps(r) for r in train1 + valid1 if r["source"] == name)
        new = sorted(json.dumps(r) for r in train2 + valid2 if r["source"] == name)
        assert old == new


def test_ignore_file_and_globs(project, tokenizer):
    (project / ".penwrightignore").write_text("part2/\n# drafts\n*-draft.txt\n")
    (project / "manuscript" / "05-draft.txt").write_text("Not to be used. " * 50)
    manifest = _run(project, tokenizer)
    assert set(manifest.files) == {"manuscript/01-emma.txt", "manuscript/02-persuasion.txt"}
    manifest = curate(
        [project / "manuscript"],
        ["**/*.md"],
        [],
        None,
        CurationSettings(target_tokens=300, max_tokens=500),
        tokenizer,
        project / ".penwright/datasets/current",
        root=project,
    )
    assert set(manifest.files) == {"manuscript/part2/03-hound.md"}


def test_dry_run_writes_nothing(project, tokenizer):
    manifest = _run(project, tokenizer, dry_run=True)
    assert manifest.dry_run and manifest.totals["rows"] > 0 and manifest.totals["chunks"] > 0
    assert not (project / ".penwright").exists()


def test_rows_load_with_datasets(project, tokenizer):
    from datasets import load_dataset

    _run(project, tokenizer)
    out = project / ".penwright/datasets/current"
    data = load_dataset("json", data_files={"train": str(out / "train.jsonl"), "valid": str(out / "valid.jsonl")})
    assert data["train"].num_rows == len(_rows(project)[0])
    assert data["train"][0]["completion"] and data["train"][0]["kind"] in ("continuation", "fim")
