"""FIM sentinel parsing/rendering/fitting, and prose-aware stop checks."""

from __future__ import annotations

import pytest

from penwright.server.engine.text import TextStream
from penwright.server.fim import fit_fim, model_fim_style, parse_fim, render_fim
from penwright.server.services.prose import stop_check


@pytest.mark.parametrize(
    "prompt,prefix,suffix,style",
    [
        ("<fim_prefix>She said<fim_suffix> softly.<fim_middle>", "She said", " softly.", "starcoder"),
        ("<|fim_prefix|>She said<|fim_suffix|> softly.<|fim_middle|>", "She said", " softly.", "qwen"),
        ("<PRE> She said <SUF> softly. <MID>", "She said", " softly.", "codellama"),
        ("# chapter-3.md\n<fim_prefix>A<fim_suffix><fim_middle>", "# chapter-3.md\nA", "", "starcoder"),
    ],
)
def test_parse_known_styles(prompt, prefix, suffix, style):
    parts = parse_fim(prompt)
    assert (parts.prefix, parts.suffix, parts.style) == (prefix, suffix, style)


def test_plain_prompts_are_not_fim():
    assert parse_fim("She said softly.") is None
    assert parse_fim("<fim_prefix>only a prefix") is None
    assert parse_fim("<fim_suffix>x<fim_prefix>y<fim_middle>") is None  # out of order


def test_render_round_trip_and_model_style():
    for style in ("qwen", "starcoder", "deepseek"):
        parts = parse_fim(render_fim("Once upon", " a time.", style))
        assert (parts.prefix, parts.suffix, parts.style) == ("Once upon", " a time.", style)
    assert model_fim_style(["a", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]) == "qwen"
    assert model_fim_style(["a", "<fim_prefix>", "<fim_suffix>"]) is None


def test_fit_keeps_text_nearest_the_cursor():
    count = lambda t: len(t.split())  # noqa: E731 - one token per word
    prefix = " ".join(f"p{i}" for i in range(100))
    suffix = " ".join(f"s{i}" for i in range(100))
    p, s = fit_fim(prefix, suffix, 40, count)
    assert count(p) + count(s) <= 40
    assert p.endswith("p99") and s.startswith("s0")
    assert count(s) <= 10 and count(p) >= 29
    assert fit_fim("a b", "c", 10, count) == ("a b", "c")
    assert fit_fim(prefix, suffix, 0, count) == ("", "")


def test_sentence_and_paragraph_stops():
    sentence = stop_check("sentence")
    assert sentence("He waited") is None
    assert sentence("He waited.") is None  # not yet known to be the end
    assert sentence("He waited. Then") == len("He waited.")
    assert sentence('"Go," she said. "Now!" He') == len('"Go," she said.')
    assert sentence("Dr. Crane") == 3  # abbreviations are not special-cased: a short stop is cheap to extend
    paragraph = stop_check("paragraph")
    assert paragraph("One line.\nTwo") is None
    assert paragraph("One line.\n\nNext") == len("One line.")
    assert stop_check(None) is None


def test_text_stream_holds_back_partial_stop_strings():
    vocab = {1: "The", 2: " end", 3: "\n", 4: "\n", 5: "ing"}
    s = TextStream(lambda ids: "".join(vocab[i] for i in ids), stop=("\n\n",))
    assert s.push(1) == ("The", False)
    assert s.push(2) == (" end", False)
    assert s.push(3) == ("", False)  # could be the start of "\n\n"
    assert s.push(4) == ("", True)
    assert s.text == "The end"
    s = TextStream(lambda ids: "".join(vocab[i] for i in ids), stop=("\n\n",))
    s.push(3)
    assert s.push(5) == ("\ning", False)  # it was not a stop after all
