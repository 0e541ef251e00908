"""Name/alias/key triggers: case and word boundaries, and the guard against short or common keys."""

from __future__ import annotations

from penwright.rag.keys import KeyMatcher


def hits(matcher: KeyMatcher, text: str) -> set[str]:
    return set(matcher.find(text))


def test_aliases_case_insensitive_and_word_bounded():
    m = KeyMatcher()
    m.add("tobias", ["Tobias Ashe", "Tobias", "the harbourmaster", "Ashe"])
    assert hits(m, "TOBIAS came in.") == {"tobias"}
    assert hits(m, "She waited for the Harbourmaster.") == {"tobias"}
    assert hits(m, "Ashe's pipe had gone out.") == {"tobias"}  # possessive
    assert hits(m, "The ashes of the fire; Tobiasson's boat.") == set()  # no partial words


def test_markup_between_words_still_matches():
    m = KeyMatcher()
    m.add("gannet", ["The Gannet"])
    m.add("teeth", ["The Widow's Teeth"])
    assert hits(m, "past the *Gannet*'s bow, near the widow's  teeth") == {"gannet", "teeth"}


def test_short_keys_never_trigger():
    m = KeyMatcher(min_key_length=3)
    notes = m.add("al", ["Al", "Alasdair"])
    assert any("'Al' is shorter" in n for n in notes)
    assert hits(m, "Al said nothing.") == set()
    assert hits(m, "Alasdair said nothing.") == {"al"}


def test_common_word_names_need_capital_and_mid_sentence():
    m = KeyMatcher(common_zipf=4.0)
    assert m.add("rose", ["Rose"]) == []
    assert hits(m, "She wore a red rose. The sun rose.") == set()
    assert hits(m, "Rose was tired.") == set()  # sentence-initial: every word is capitalised there
    assert hits(m, '"Rose?" he called.') == set()
    assert hits(m, "He turned to Rose and smiled.") == {"rose"}
    assert hits(m, "He turned: then old Rose laughed.") == {"rose"}


def test_common_lowercase_keys_are_refused_but_phrases_work():
    m = KeyMatcher()
    notes = m.add("lamp", ["light", "the lamp room"])
    assert any("'light' is a common word" in n for n in notes)
    assert hits(m, "By first light she climbed.") == set()
    assert hits(m, "She climbed to the lamp room.") == {"lamp"}


def test_regex_keys_and_recency():
    m = KeyMatcher()
    assert m.add("wreck", ["/wreck(er)?s?\\b/i", "/[/"]) and True
    m.add("maren", ["Maren"])
    found = m.find("Maren saw the WRECKERS. Later, Maren slept.")
    assert set(found) == {"wreck", "maren"}
    assert found["maren"].end > found["wreck"].end  # the nearest mention to the cursor is kept
    notes = KeyMatcher().add("x", ["/[/"])
    assert "not a valid regular expression" in notes[0]


def test_remove_entry():
    m = KeyMatcher()
    m.add("a", ["Carrow"])
    m.add("b", ["Carrow town", "/lisk/i"])
    m.remove("b")
    assert hits(m, "Carrow town and Lisk") == {"a"}
    assert len(m) == 1
