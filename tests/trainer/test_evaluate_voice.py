"""The voice measures: Burrows' Delta on real public-domain prose, the gate's voice decision, and seeded,
repeatable figures for one model (real transformers on the builtin:tiny model, no mocks)."""

from __future__ import annotations

import json
import re

import pytest
from pwtest import example_texts

from penwright.trainer.evaluate import stylometry, voice
from penwright.trainer.evaluate.gate import compare_candidates, voice_decision
from penwright.trainer.evaluate.model import load_model


def _book(corpora, author: str, name: str) -> list[str]:
    return voice.unwrap((corpora / author / name).read_text(encoding="utf-8")).split()


def test_delta_tells_austen_from_doyle_on_held_out_books(corpora):
    """A 2,000-word stretch of Persuasion is closer to other Persuasion text than a stretch of the Hound is, and
    the Hound's nearest reference writer is Doyle (the references never saw either held-out book)."""
    persuasion = _book(corpora, "austen", "persuasion.txt")
    hound = _book(corpora, "doyle", "the_hound_of_the_baskervilles.txt")
    author = " ".join(persuasion[30000:50000])
    austen_like = stylometry.attribution(" ".join(persuasion[5000:7000]), author, exclude=("austen",))
    doyle_like = stylometry.attribution(" ".join(hound[5000:7000]), author, exclude=("austen",))
    assert austen_like["delta_author"] < doyle_like["delta_author"] - 0.1
    assert austen_like["margin"] > doyle_like["margin"]
    assert stylometry.attribution(" ".join(hound[5000:7000]), author)["nearest_other"] == "doyle"


def test_delta_says_why_it_cannot_measure():
    english = " ".join(example_texts())
    short = stylometry.attribution("Only a few words here.", english)
    assert "only 5 words" in short["note"] and "not measured" in short["note"]
    french = " ".join(["Le vent soufflait sur la lande grise pendant que nous marchions vers le manoir."] * 40)
    assert "does not look like English" in stylometry.attribution(french, english)["note"]


def test_references_ship_profiles_not_books():
    data = json.loads(stylometry.REFERENCES.read_text())
    assert set(data["authors"]) == {"austen", "doyle"} and data["words"] == stylometry.FUNCTION_WORDS
    assert stylometry.REFERENCES.stat().st_size < 20_000
    assert len(voice.default_control()[0].split()) < 6000  # a short public-domain control, not a book


def _side(ppl, ctl, own_ratio, ctl_ratio, delta=None):
    return {
        "perplexity": ppl,
        "control_perplexity": ctl,
        "delta": {"delta_author": delta} if delta else {},
        "voice": {"own_ratio": own_ratio, "control_ratio": ctl_ratio, "voice_margin": round(ctl_ratio - own_ratio, 4)},
    }


BASE = _side(60.0, 50.0, 1.0, 1.0, delta=0.9)


def test_first_adapter_must_learn_this_voice_not_prose():
    ok, reason = voice_decision(_side(51.0, 48.0, 0.85, 0.96, delta=0.8), BASE, 0.02)
    assert ok and reason.startswith("promoted: first adapter") and "voice margin +0.000 -> +0.110" in reason
    ok, reason = voice_decision(_side(57.0, 47.5, 0.95, 0.95), BASE, 0.02)
    assert not ok and "another writer's prose as much as yours" in reason
    ok, reason = voice_decision(_side(61.0, 50.0, 1.02, 1.0), BASE, 0.02)
    assert not ok and "does not lower the perplexity" in reason
    ok, reason = voice_decision(_side(51.0, 48.0, 0.85, 0.96, delta=1.2), BASE, 0.02)
    assert not ok and "Delta 0.9 -> 1.2" in reason


def test_a_retrain_is_judged_against_the_live_adapter():
    live = _side(51.0, 48.0, 0.85, 0.96, delta=0.8)
    ok, reason = voice_decision(_side(51.5, 48.0, 0.858, 0.96, delta=0.82), live, 0.02)
    assert ok and "within the margin of live" in reason
    ok, reason = voice_decision(_side(55.0, 48.0, 0.92, 0.96), live, 0.02)
    assert not ok and "worse by more than 2%" in reason
    # the voice decision is the gate's whenever the candidate carries voice figures; guards still come first
    ok, reason = compare_candidates({**_side(50.0, 48.0, 0.83, 0.96), "repetition": 0.9}, live, 0.02)
    assert not ok and "repetition" in reason


def test_too_small_to_hold_out_falls_back_with_a_note(tmp_path):
    texts = example_texts()
    rows = [
        {"prompt": t[:200], "completion": t[200:], "kind": "continuation", "source": "a.md", "chunk": f"c{i}"}
        for i, t in enumerate(texts)
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    inputs, notes = voice.inputs_from_dataset(tmp_path)
    assert inputs.heldout and "too small to hold out" in notes[0]
    assert inputs.control and re.search(r"\bthe\b", inputs.control[0])


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(tiny_model_dir, device="cpu")


def test_voice_metrics_are_repeatable(tiny):
    """The same model measured twice gives the same figures: the gate's decision is stable."""
    model, tok = tiny
    texts = example_texts()

    def make():
        return voice.VoiceInputs(
            texts[:2],
            voice.default_control(),
            texts,
            n_samples=4,
            max_new_tokens=24,  # noqa: E731
            ppl_tokens=128,
            ppl_windows=4,
        )

    first, second = voice.voice_metrics(model, tok, make()), voice.voice_metrics(model, tok, make())
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    assert first["samples"] == 4 and len(first["generations"]) == 4
    assert first["perplexity"] > 1 and first["control_perplexity"] > 1
    change = voice.compare(first, first)
    assert change["own_ratio"] == 1.0 and change["voice_margin"] == 0.0
