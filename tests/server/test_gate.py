"""The gate's decision: not worse than the reference by more than the margin."""

from __future__ import annotations

import math

from penwright.server.gate import decide


def test_promotes_better_and_slightly_worse_within_margin():
    assert decide({"eval_loss": 2.0}, {"eval_loss": 2.5}, 0.02, "penwright@v1").promote
    d = decide({"eval_loss": 2.04}, {"eval_loss": 2.0}, 0.02, "penwright@v1")
    assert d.promote and "penwright@v1" in d.reason


def test_rejects_worse_than_margin_with_reason():
    d = decide({"eval_loss": 2.1}, {"eval_loss": 2.0}, 0.02, "base")
    assert not d.promote
    assert "2.1000" in d.reason and "2.0000" in d.reason and "2% margin" in d.reason


def test_rejects_diverged_and_style_collapse():
    assert not decide({"eval_loss": math.nan}, {"eval_loss": 2.0}, 0.02).promote
    assert not decide({}, {"eval_loss": 2.0}, 0.02).promote
    d = decide({"eval_loss": 1.9, "style_score": 40}, {"eval_loss": 2.0, "style_score": 70}, 0.02)
    assert not d.promote and "style score" in d.reason
    assert decide({"eval_loss": 1.9, "style_score": 65}, {"eval_loss": 2.0, "style_score": 70}, 0.02).promote


def test_first_adapter_without_reference_loss_is_promoted():
    d = decide({"eval_loss": 3.0}, {}, 0.02)
    assert d.promote and "nothing to compare" in d.reason
