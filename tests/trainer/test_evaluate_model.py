"""Perplexity, generation, the gate and the report on the builtin:tiny model (real transformers, no mocks)."""

from __future__ import annotations

import json
import math

import pytest
from pwtest import example_texts

from penwright.trainer.evaluate import core, gate_metrics, report
from penwright.trainer.evaluate import model as lm
from penwright.trainer.evaluate.prompts import build_prompts, text_continuations
from penwright.trainer.evaluate.settings import EvalSettings

TEXTS = example_texts()


def _rows():
    rows = []
    for i, t in enumerate(TEXTS):
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Write in the author's voice."},
                    {"role": "user", "content": "Continue:\n\n" + t[:300]},
                    {"role": "assistant", "content": t[300:900]},
                ],
                "kind": "continuation",
                "source": f"{i}.md",
                "chunk": f"c{i}",
            }
        )
    return rows


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return lm.load_model(tiny_model_dir, device="cpu")


def test_text_perplexity_matches_transformers_own_loss(tiny):
    import torch

    model, tok = tiny
    text = TEXTS[0][:600]
    ours = lm.text_perplexity(model, tok, [text])
    ids = torch.tensor([tok(text).input_ids])
    with torch.no_grad():
        theirs = model(input_ids=ids, labels=ids).loss.item()
    assert ours["loss"] == pytest.approx(theirs, abs=1e-3)
    assert ours["perplexity"] == pytest.approx(math.exp(theirs), rel=1e-3)
    assert ours["tokens"] == ids.shape[1] - 1
    # a whole book is cut into windows; at most max_windows of them, spread out, are scored
    book = " ".join(TEXTS)
    n_ids = len(tok(book).input_ids)
    assert lm.text_perplexity(model, tok, [book], 64)["tokens"] > n_ids - n_ids // 64 - 2
    assert lm.text_perplexity(model, tok, [book], 64, max_windows=3)["tokens"] == 3 * 63


def test_rows_perplexity_scores_only_the_target(tiny):
    model, tok = tiny
    rows = _rows()[:1]
    full = lm.rows_perplexity(model, tok, rows)
    longer_prompt = [
        dict(
            rows[0], messages=[rows[0]["messages"][0], {"role": "user", "content": "x " * 200}, rows[0]["messages"][2]]
        )
    ]
    other = lm.rows_perplexity(model, tok, longer_prompt)
    # the same target is scored either way (its tokens plus <|im_end|> and the newline)
    target_tokens = len(tok(rows[0]["messages"][2]["content"] + "<|im_end|>\n", add_special_tokens=False).input_ids)
    assert full["tokens"] == other["tokens"] == target_tokens
    assert 100 < full["perplexity"] < 5000  # a random-init model with ~1000 tokens is about uniform


def test_prompts_are_deterministic_and_hold_the_real_continuation():
    cut = text_continuations(TEXTS, 3)
    assert len(cut) == 3 and cut == text_continuations(TEXTS, 3)
    for p in cut:
        assert p.kind == "continuation" and p.reference
        assert p.reference.split()[0] in " ".join(TEXTS)  # the author's real next words
    prompts = build_prompts(_rows(), TEXTS, n=8, persona_share=0.25)
    kinds = [p.kind for p in prompts]
    assert len(prompts) == 8 and kinds.count("persona") == 2 and kinds.count("chat") == 3
    assert prompts[-2].messages[-1]["content"] == "The Stock Market"


def test_generation_is_seeded_and_timed(tiny):
    model, tok = tiny
    prompts = build_prompts(None, TEXTS, n=2, persona_share=0.5)
    a = lm.generate(model, tok, prompts, max_new_tokens=8, seed=3)
    b = lm.generate(model, tok, prompts, max_new_tokens=8, seed=3)
    assert [g.text for g in a] == [g.text for g in b]
    assert all(0 < g.new_tokens <= 8 and g.seconds > 0 for g in a)
    assert lm.throughput(a) > 0


def test_gate_metrics_on_a_small_sample(tiny):
    model, tok = tiny
    m = gate_metrics(model, tok, _rows(), n_samples=2, max_new_tokens=12, train_texts=TEXTS)
    assert m["perplexity"] > 1 and 0 <= m["style_score"] <= 100
    assert set(m["style_parts"]) == {
        "vocabulary",
        "sentence_rhythm",
        "paragraph_length",
        "dialogue",
        "punctuation",
        "pacing",
        "function_words",
    }
    assert m["copy_longest"] >= 0 and 0 <= m["repetition"] <= 1 and m["leak_share"] == 0
    assert isinstance(m["guard_failures"], list)
    json.dumps(m)  # storable in the registry as is


def test_evaluate_two_sides_and_write_the_report(tiny, tmp_path):
    model, tok = tiny
    ctx = core.make_context(_rows(), None, TEXTS, EvalSettings(n_samples=2, max_new_tokens=10, max_heldout=2))
    side = core.evaluate_model(model, tok, ctx, "base")
    log = [
        {"step": s, "loss": 7 - s / 10, **({"valid_loss": 7.2 - s / 12} if s % 5 == 0 else {})} for s in range(1, 21)
    ]
    rep = report.build_report(
        core.author_summary(ctx), [side, dict(side, label="v1")], {"run-1": log}, {"project": "novel"}
    )
    json_path, html_path = report.write_report(rep, tmp_path)
    data = json.loads(json_path.read_text())
    assert [s["label"] for s in data["sides"]] == ["base", "v1"]
    assert len(data["loss"]["run-1"]["train"]) == 20 and len(data["loss"]["run-1"]["valid"]) == 4
    assert len(data["sides"][0]["samples"]) == 2 and data["sides"][0]["samples"][0]["reference"]
    page = html_path.read_text()
    assert page.count("<svg") == 3 and "<script" not in page and "http" not in page
    assert "Held-out perplexity" in page and "the author wrote" in page


def test_nothing_held_out_is_a_user_error():
    from penwright.errors import DatasetError

    with pytest.raises(DatasetError, match="Nothing held out"):
        core.make_context([], [], None)


@pytest.mark.slow
def test_real_31m_perplexity_matches_its_model_card_and_unwrapping_matters(gutenberg_31m, corpora):
    """The model card gives 3.76 nats/token on Persuasion (paragraphs unwrapped, as manuscripts are)."""
    from penwright.trainer.evaluate.style import unwrap

    model, tok = lm.load_model(gutenberg_31m, device="cpu")
    raw = (corpora / "austen" / "persuasion.txt").read_text(encoding="utf-8")[30000:45000]
    unwrapped = lm.text_perplexity(model, tok, [unwrap(raw)], 1024)
    wrapped = lm.text_perplexity(model, tok, [raw], 1024)
    assert 3.4 < unwrapped["loss"] < 4.1, unwrapped
    assert wrapped["loss"] > unwrapped["loss"] + 0.3  # Gutenberg's hard wraps are out of distribution


def test_served_loss_equals_the_trainers_eval_loss(tiny_model_dir, tmp_path):
    """Cross-check with the training engine: the adapter it saves, loaded as evaluation (and serving) load it,
    gives the eval loss the trainer reported on the same held-out rows. A gap means training saw something
    inference does not (an attention or masking mismatch)."""
    from penwright.trainer.presets import load_training_settings
    from penwright.trainer.train import run_training

    rows = _rows()
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 4))
    (ds / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    settings = load_training_settings("fast", {"max_steps": 4, "eval_every": 2, "save_every": 2, "warmup_steps": 0})
    result = run_training(ds, settings, tiny_model_dir, tmp_path / "run")
    model, tok = lm.load_model(tiny_model_dir, result.adapter_dir, device="cpu")
    served = lm.rows_perplexity(model, tok, rows[:2], 2048)["loss"]
    assert any(abs(served - x) < 2e-3 for x in (result.eval_loss, result.best_eval_loss) if x is not None), (
        served,
        result,
    )
