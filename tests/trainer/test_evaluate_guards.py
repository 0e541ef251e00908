"""Copying, degeneration and leak guards, and the gate's decision, on hand-checked texts."""

from __future__ import annotations

import pytest

from penwright.trainer.evaluate import compare_candidates, guards

TRAIN = ["The quick brown fox jumps over the lazy dog.", "It was a dark and stormy night; the rain fell in torrents."]


def test_longest_copied_span_is_found_verbatim_ignoring_case_and_punctuation():
    index = guards.CopyIndex(TRAIN)
    n, span = index.longest_span("I saw THE QUICK, brown fox jump.")
    assert (n, span) == (4, "the quick brown fox")
    assert index.longest_span("Nothing here matches at all, zebra")[0] == 0
    # a span cannot bridge the end of one training text and the start of the next
    assert index.longest_span("over the lazy dog it was a dark")[0] == 4
    # a whole word must match: "fo" is not "fox"
    assert index.longest_span("brown fo")[0] == 1


def test_copy_share_counts_samples_over_the_limit():
    index = guards.CopyIndex(TRAIN)
    gens = ["It was a dark and stormy night, the rain fell", "Something new entirely.", "the lazy dog slept"]
    m = guards.copy_metrics(gens, index, copy_words=5)
    assert m["copy_longest"] == 10
    assert m["copy_share"] == pytest.approx(1 / 3, abs=1e-3)
    assert m["copy_example"] == "it was a dark and stormy night the rain fell"


def test_repetition_and_distinct_n_hand_counted():
    # 3-grams: abc bca cab abc bca cab abc -> 7 grams, 4 seen before
    assert guards.repetition_rate("a b c a b c a b c") == pytest.approx(4 / 7)
    assert guards.repetition_rate("one two three four five") == 0.0
    assert guards.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # ab ba ab
    assert guards.distinct_n(["a b c", "d d d"], 1) == pytest.approx((1 + 1 / 3) / 2)
    m = guards.degeneration_metrics(["and the door " * 8, "A fresh sentence with no loops."])
    assert m["repetition_max"] > 0.8 and m["repetition"] > 0.4


def test_leaks_are_found_case_insensitively():
    assert guards.find_leaks("He said <|im_start|>user hello") == ["<|im_start|>"]
    assert guards.find_leaks("human: what now?") == ["Human:"]
    assert guards.find_leaks("As an AI I cannot") == ["as an AI"]
    assert guards.find_leaks("The human heart is an AI-free zone.") == []
    m = guards.leak_metrics(["clean prose", "oops <|im_end|>", "Zorblax!"], tuple(guards.DEFAULT_BANNED) + ("Zorblax",))
    assert m["leak_share"] == pytest.approx(2 / 3, abs=1e-3) and m["leaked"] == ["<|im_end|>", "Zorblax"]


def test_guard_failures_say_what_is_wrong():
    limits = guards.GuardLimits(copy_words=12, max_copy_share=0.25, max_repetition=0.3, min_distinct_2=0.5)
    assert guards.GuardLimits.default() == limits  # the defaults come from EvalSettings
    assert (
        guards.guard_failures({"copy_share": 0.0, "repetition": 0.1, "distinct_2": 0.9, "leak_share": 0.0}, limits)
        == []
    )
    problems = guards.guard_failures(
        {"copy_share": 0.5, "repetition": 0.6, "distinct_2": 0.2, "leak_share": 0.25, "leaked": ["Human:"]}, limits
    )
    assert len(problems) == 4
    assert "copies the training text: 50%" in problems[0] and "12 words" in problems[0]
    assert "Human:" in problems[3]


GOOD = {
    "perplexity": 20.0,
    "style_score": 70.0,
    "copy_share": 0.0,
    "repetition": 0.05,
    "distinct_2": 0.95,
    "leak_share": 0.0,
}


def test_compare_candidates_decisions():
    ok, reason = compare_candidates(GOOD, None, margin=0.02)
    assert ok and "first adapter" in reason
    ok, reason = compare_candidates(dict(GOOD, perplexity=18.0), GOOD, margin=0.02)
    assert ok and "better than live" in reason and "-10.0%" in reason
    ok, reason = compare_candidates(dict(GOOD, perplexity=20.3), GOOD, margin=0.02)
    assert ok and "within the margin" in reason  # 1.5% worse: inside a 2% margin
    ok, reason = compare_candidates(dict(GOOD, perplexity=21.0), GOOD, margin=0.02)
    assert not ok and "perplexity got worse" in reason
    ok, reason = compare_candidates(dict(GOOD, style_score=60.0), GOOD, margin=0.02)
    assert not ok and "style score fell" in reason
    ok, reason = compare_candidates(dict(GOOD, perplexity=10.0, copy_share=0.5), GOOD, margin=0.02)
    assert not ok and "copies the training text" in reason  # a guard beats any perplexity gain
