"""Style profile and score, pinned on small hand-checked texts and on real Austen/Doyle passages."""

from __future__ import annotations

import pytest

from penwright.trainer.evaluate import style


def test_sentences_words_and_paragraphs_hand_counted():
    p = style.profile("One two three. Four five! Six?\n\nMr. Darcy came in; he left -- quickly.")
    assert p.words == 13
    assert p.sentence_lengths == [3, 2, 1, 7]  # "Mr." does not end a sentence
    assert p.paragraph_lengths == [6, 7]
    assert p.sentence_mean == pytest.approx(13 / 4)
    assert p.punctuation["exclamation"] == pytest.approx(100 / 13)
    assert p.punctuation["semicolon"] == pytest.approx(100 / 13)
    assert p.punctuation["dash"] == pytest.approx(100 / 13)
    assert p.punctuation["question"] == pytest.approx(100 / 13)
    assert p.punctuation["ellipsis"] == 0


def test_hard_wrapped_lines_join_into_one_paragraph():
    p = style.profile("It was a\nquiet evening\nin the village.\n\nShe smiled.")
    assert p.paragraph_lengths == [8, 2]
    assert p.sentence_lengths == [8, 2]


def test_dialogue_ratio_counts_words_inside_quotes():
    p = style.profile('"Come here," she said. "Now."')
    assert p.words == 5
    assert p.dialogue_ratio == pytest.approx(3 / 5)  # Come, here, Now
    curly = style.profile("\u201cCome here,\u201d she said. \u201cNow.\u201d")
    assert curly.dialogue_ratio == pytest.approx(3 / 5)
    # a quote left open closes at the paragraph's end (Gutenberg's multi-paragraph speeches)
    assert style.profile('"One two\n\nthree four').dialogue_ratio == pytest.approx(2 / 4)


def test_pacing_markers_and_histogram():
    p = style.profile("He seized the rope. However, she ran. Suddenly it fell.")
    assert p.action_verbs == pytest.approx(3 * 100 / 10)  # seized, ran, fell
    assert p.transitions == pytest.approx(2 * 100 / 10)  # however, suddenly
    hist = style.sentence_histogram([1, 5, 6, 100])
    assert hist[0] == 0.5 and hist[1] == 0.25 and hist[-1] == 0.25 and sum(hist) == pytest.approx(1)


def test_characteristic_words_skip_names_and_function_words():
    text = ("Elinor was surprized at the civility of her acquaintance. " * 5) + "The cat sat on the mat."
    words = style.characteristic_words(style.profile(text))
    assert "surprized" in words and "civility" in words
    assert "elinor" not in words  # a name: mostly written capitalised
    assert "the" not in words and "her" not in words  # function words have their own part
    assert "cat" not in words  # fewer than 3 uses


def test_a_text_compared_with_itself_scores_100():
    text = 'She walked to the window; the rain had stopped. "Will he come?" she asked. Nobody answered.\n\nIt was late.'
    p = style.profile(text)
    result = style.style_score(p, p)
    assert result["score"] == 100.0
    assert set(result["parts"]) == set(style.WEIGHTS)
    assert all(v == pytest.approx(1.0) for v in result["parts"].values())


def test_each_part_moves_the_way_a_reader_expects():
    author = style.profile("I wished it; she knew it; we all felt it; and so it was, indeed, quite settled. " * 6)
    semicolons = style.profile("I wished it; she knew it; we all felt it; and so it was, indeed, quite settled.")
    plain = style.profile("I wished it. She knew it. We all felt it. And so it was. It was settled.")
    a, b = style.style_score(semicolons, author), style.style_score(plain, author)
    assert a["parts"]["punctuation"] > b["parts"]["punctuation"]
    assert a["parts"]["sentence_rhythm"] > b["parts"]["sentence_rhythm"]
    assert a["score"] > b["score"]
    assert 0 <= b["score"] < 100


def _passages(path, n, size=6000):
    text = path.read_text(encoding="utf-8")
    step = (len(text) - 20000) // n
    out = []
    for i in range(n):
        start = text.index("\n\n", 10000 + i * step) + 2
        out.append(text[start : start + size])
    return out


def test_austen_passage_scores_closer_to_austen_than_a_doyle_passage(corpora):
    """Reference: Austen's Emma. Austen's Persuasion (never in the reference) must beat Doyle's Hound."""
    austen = style.profile((corpora / "austen" / "emma.txt").read_text(encoding="utf-8")[:250_000])
    vocab = style.characteristic_words(austen)
    pers = _passages(corpora / "austen" / "persuasion.txt", 4)
    hound = _passages(corpora / "doyle" / "the_hound_of_the_baskervilles.txt", 4)
    a_scores = [style.style_score(style.profile(t), austen, vocab)["score"] for t in pers]
    d_scores = [style.style_score(style.profile(t), austen, vocab)["score"] for t in hound]
    for a, d in zip(a_scores, d_scores):
        assert a > d, (a_scores, d_scores)
    assert sum(a_scores) / 4 - sum(d_scores) / 4 > 5  # a clear margin, not a coin flip
    # and the other way round: against Doyle, the Hound passage wins
    doyle = style.profile((corpora / "doyle" / "the_sign_of_the_four.txt").read_text(encoding="utf-8")[:250_000])
    assert (
        style.style_score(style.profile(hound[0]), doyle)["score"]
        > style.style_score(style.profile(pers[0]), doyle)["score"]
    )


def test_empty_text_scores_low_without_crashing():
    author = style.profile('She smiled; he bowed. "Indeed," said she.')
    result = style.style_score(style.profile(""), author)
    assert 0 <= result["score"] < 60
