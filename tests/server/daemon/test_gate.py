"""The gate's decision: not worse than the reference (live adapter, or base) by more than the margin."""

from __future__ import annotations

import math

from penwright.server.daemon.gate import decide

GOOD = {
    "perplexity": 20.0,
    "loss": math.log(20),
    "style_score": 70.0,
    "repetition": 0.05,
    "distinct_2": 0.9,
    "copy_share": 0.0,
    "leak_share": 0.0,
}


def m(**kw):
    return {**GOOD, **kw}


def test_promotes_better_and_slightly_worse_within_margin():
    assert decide(m(perplexity=18.0), m(), 0.02, "penwright@v1").promote
    d = decide(m(perplexity=20.3), m(), 0.02, "penwright@v1")
    assert d.promote and "penwright@v1" in d.reason


def test_rejects_worse_than_margin_with_reason():
    d = decide(m(perplexity=25.0), m(), 0.02, "base")
    assert not d.promote
    assert "perplexity" in d.reason and "20.00 -> 25.00" in d.reason and "base" in d.reason


def test_rejects_diverged_and_style_collapse():
    assert not decide(m(perplexity=math.nan, loss=math.nan), m(), 0.02).promote
    d = decide(m(style_score=40.0), m(), 0.02)
    assert not d.promote and "style score" in d.reason


def test_guards_are_relative_to_the_reference():
    # the reference (a random demo base) already loops: a candidate that loops no worse may pass
    loopy = m(repetition=0.6, distinct_2=0.3)
    assert decide(m(repetition=0.55, distinct_2=0.35), loopy, 0.02).promote
    # but a candidate that starts looping when the reference did not is rejected
    d = decide(m(repetition=0.6), m(), 0.02)
    assert not d.promote and "loops" in d.reason


def test_share_guards_allow_one_sample_of_noise_only():
    four = m(gate_samples=4)
    assert decide({**four, "leak_share": 0.25}, m(leak_share=0.0), 0.02).promote  # one leaking sample of four
    d = decide({**four, "leak_share": 0.5, "leaked": ["<|im_start|>"]}, m(leak_share=0.0), 0.02)
    assert not d.promote and "leaks" in d.reason
