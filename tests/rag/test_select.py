"""Ranking, the token budget (measured with a real tokenizer) and the injection formats."""

from __future__ import annotations

from penwright.rag import inject
from penwright.rag.entries import parse_text
from penwright.rag.select import ALWAYS, NAMED, Candidate, Selection, approx_tokens, fit, rank, render


def entry(name: str, body: str, **meta):
    front = "".join(f"{k}: {v}\n" for k, v in meta.items())
    e, _ = parse_text(f"---\nname: {name}\n{front}---\n{body}", f"{name.lower()}.md")
    return e


def test_budget_is_respected_with_model_tokenizer(count_tokens):
    entries = [entry(f"Person {i}", f"Person {i} is a fisher. " * (5 + i)) for i in range(8)]
    cands = [Candidate(e.sections[0], 100 - i, "name") for i, e in enumerate(entries)]
    for budget in (0, 20, 60, 150, 10_000):
        sel = fit(rank(cands, None), budget, count_tokens)
        assert sel.tokens <= budget
        assert sel.tokens == (count_tokens(sel.text) if sel.entries else 0)
        assert sum(e.tokens for e in sel.entries) >= sel.tokens - 2 * len(sel.entries)
    everything = fit(rank(cands, None), 10_000, count_tokens)
    assert [e.name for e in everything.entries] == [f"Person {i}" for i in range(8)]
    small = fit(rank(cands, None), 60, count_tokens)
    assert 0 < len(small.entries) < 8
    assert small.entries[0].name == "Person 0"  # best ranked first


def test_smaller_lower_ranked_section_fills_leftover_budget():
    big = entry("Big", "word " * 100)
    tiny = entry("Tiny", "Short.")
    sel = fit(
        rank([Candidate(big.sections[0], 200, "name"), Candidate(tiny.sections[0], 100, "name")], None),
        20,
        approx_tokens,
    )
    assert [e.name for e in sel.entries] == ["Tiny"]


def test_chapter_filter_and_best_score_per_section():
    later = entry("Crane", "A false name.", from_chapter=3)
    gone = entry("Edwin", "Drowned.", until_chapter=1)
    always = entry("Style", "Past tense.", always="true")
    cands = [
        Candidate(later.sections[0], NAMED, "name"),
        Candidate(gone.sections[0], NAMED, "name"),
        Candidate(always.sections[0], ALWAYS, "always"),
        Candidate(later.sections[0], 40, "vector"),
    ]
    assert [c.section.entry.name for c in rank(cands, 2)] == ["Style"]
    ranked = rank(cands, 3)
    assert [(c.section.entry.name, c.reason) for c in ranked] == [("Style", "always"), ("Crane", "name")]
    assert {c.section.entry.name for c in rank(cands, None)} == {"Style", "Crane", "Edwin"}


def test_render_groups_sections_by_entry_in_file_order():
    e, _ = parse_text(
        "---\nname: Maren\ntype: character\n---\n# Maren\nKeeper.\n## Voice\nQuiet.\n## History\nA brother.\n", "m.md"
    )
    text = render([e.sections[2], e.sections[0]])
    assert text == "[Maren (character)]\nKeeper.\nHistory: A brother."


def test_injection_formats():
    sel = Selection(text="[Maren (character)]\nKeeper.", tokens=6)
    block = inject.system_block(sel)
    assert block.startswith(inject.SYSTEM_HEADER) and "<lore>\n[Maren (character)]\nKeeper.\n</lore>" in block
    msgs = [{"role": "system", "content": "You write in the author's voice."}, {"role": "user", "content": "Go on."}]
    out = inject.inject_chat(msgs, sel)
    assert out[0]["content"].startswith("You write in the author's voice.\n\nStory notes") and out[1] == msgs[1]
    assert msgs[0]["content"] == "You write in the author's voice."  # input untouched
    assert inject.inject_chat([{"role": "user", "content": "Hi"}], sel)[0] == {"role": "system", "content": block}
    assert (
        inject.inject_completion("She climbed", sel) == "<lore>\n[Maren (character)]\nKeeper.\n</lore>\n\nShe climbed"
    )
    fim = "<|fim_prefix|>She climbed<|fim_suffix|> the stair.<|fim_middle|>"
    assert inject.inject_completion(fim, sel).startswith("<|fim_prefix|><lore>\n[Maren")
    assert inject.inject_completion("x", Selection()) == "x" and inject.inject_chat(msgs, Selection()) == msgs


def test_meaning_query_is_stable_while_a_sentence_is_typed():
    from penwright.rag.select import query_text

    done = "The tide went out. " * 40 + "She saw the light."
    typing = [done + " Then", done + " Then the", done + " Then the boat"]
    assert len({query_text(t, "", 600) for t in typing}) == 1  # one embedding serves every keystroke
    q = query_text(done + " Then the boat", "", 600)
    assert q.endswith("She saw the light.") and len(q) <= 600 and not q.startswith("he ")
    assert query_text(done + " Then", "", 600) != query_text(done + " Then it sank.", "", 600)
    assert query_text("no sentence end yet", " and after.", 600) == "no sentence end yet and after."


def test_token_meter_counts_each_text_once_and_bounds_from_below(count_tokens):
    from penwright.rag.select import TokenMeter

    calls = []
    meter = TokenMeter(lambda s: calls.append(s) or count_tokens(s), size=3)
    prose = [
        entry(f"Keeper {i}", "The keeper climbed the stair at dusk, trimmed the wick and watched the reef. " * (i + 1))
        for i in range(4)
    ]
    texts = [render([e.sections[0]]) for e in prose]
    assert meter.at_least(texts[3]) == 0  # nothing counted yet: no bound
    assert [meter(t) for t in texts[:2]] == [count_tokens(t) for t in texts[:2]] and len(calls) == 2
    assert meter(texts[0]) == count_tokens(texts[0]) and len(calls) == 2  # remembered
    for t in texts:  # the bound never exceeds the real count
        assert 0 < meter.at_least(t) <= count_tokens(t)
    assert meter.at_least(texts[3]) > meter.at_least(texts[0])  # it grows with the text
    for t in texts:
        meter(t)
    meter(texts[0])  # dropped (least recently used, size 3): counted again
    assert len(calls) == 5


def test_lower_bound_skips_counting_but_not_what_fits(count_tokens):
    """fit with the meter's bound picks exactly what counting every candidate picks, with fewer counts."""
    from penwright.rag.select import TokenMeter

    entries = [
        entry(
            f"Place {i}", f"Place {i} stands on the cliff above the harbour, grey and wind-beaten. " * (3 + 2 * (i % 4))
        )
        for i in range(12)
    ]
    entries.append(entry("Tiny", "Short."))  # ranked last, and the only one that still fits at the end
    cands = rank([Candidate(e.sections[0], 100 - i, "name") for i, e in enumerate(entries)], None)
    filled_by_tiny = 0
    for budget in (0, 40, 150, 300, 320, 700, 5000):
        plain_calls, bound_calls = [], []
        plain = fit(cands, budget, lambda s: plain_calls.append(s) or count_tokens(s))
        meter = TokenMeter(lambda s: bound_calls.append(s) or count_tokens(s))
        fit(cands[:1], 10_000, meter)  # the meter has counted something: it has a bound
        bound_calls.clear()
        bounded = fit(cands, budget, meter, meter.at_least)
        assert [e.id for e in bounded.entries] == [e.id for e in plain.entries], budget
        assert (bounded.text, bounded.tokens) == (plain.text, plain.tokens) and bounded.tokens <= budget
        if 40 <= budget <= 700:
            assert len(bound_calls) < len(plain_calls), budget  # sections that cannot fit were not counted
        filled_by_tiny += "Tiny" in bounded.names and len(bounded.entries) > 1
    assert filled_by_tiny  # the small last one still fills leftover budget behind skipped big ones
