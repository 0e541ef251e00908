"""What the daemon's promotion gate calls: a small, fast sample of the same metrics as `penwright eval`.

    metrics = gate_metrics(model, tokenizer, valid_rows, reference_texts, train_texts=train_texts)
    ok, reason = compare_candidates(metrics, live_metrics, margin=settings.retrain.gate_margin)

`metrics` is a flat, JSON-serialisable dict (store it in the registry's `metrics`); the `live`
dict is whatever gate_metrics returned for the live adapter (or None when there is none yet).
"""

from __future__ import annotations

from penwright.trainer.evaluate.core import evaluate_model, make_context
from penwright.trainer.evaluate.guards import GuardLimits, guard_failures
from penwright.trainer.evaluate.settings import EvalSettings

GATE_KEYS = (
    "perplexity",
    "loss",
    "style_score",
    "style_parts",
    "copy_longest",
    "copy_share",
    "repetition",
    "distinct_2",
    "leak_share",
    "leaked",
    "tokens_per_s",
    "guard_failures",
)


def gate_metrics(
    model,
    tokenizer,
    valid_rows: list[dict],
    reference_texts: list[str] | None = None,
    n_samples: int = 4,
    max_new_tokens: int = 48,
    train_texts: list[str] | None = None,
    settings: EvalSettings | None = None,
    max_heldout: int = 16,
) -> dict:
    """Held-out perplexity, style score and the guards for one loaded model, on a small sample.

    valid_rows: held-out rows (`valid.jsonl`); reference_texts: the author's held-out prose (default:
    the rows' targets); train_texts: the training text, for the copy guard (None skips it).
    Deterministic for a given model and inputs (seeded sampling).
    """
    base = settings or EvalSettings()
    s = base.model_copy(update={"n_samples": n_samples, "max_new_tokens": max_new_tokens, "max_heldout": max_heldout})
    ctx = make_context(valid_rows, reference_texts, train_texts, s)
    result = evaluate_model(model, tokenizer, ctx, label="gate", samples=False)
    return {k: result[k] for k in GATE_KEYS if k in result}


DELTA_TOLERANCE = 0.1  # Burrows' Delta of ~1,000 generated words moves by about this much between seeds


def gate_voice_metrics(model, tokenizer, inputs) -> dict:
    """The daemon gate's measures of one model (`voice.voice_metrics`), generations dropped."""
    from penwright.trainer.evaluate.voice import voice_metrics

    metrics = voice_metrics(model, tokenizer, inputs)
    metrics.pop("generations", None)
    return metrics


def voice_decision(candidate: dict, reference: dict, margin: float) -> tuple[bool, str]:
    """Promote on the voice measures (both dicts from `gate_voice_metrics`, each with `voice` = its change from
    the base, `voice.compare`). The candidate must lower the author's held-out perplexity (first adapter: below
    the base; later: no worse than live by more than `margin`), improve its author more than the control writer
    (its voice margin above 0, and no lower than live's by more than `margin`), and not move its generations
    further from the author's function-word profile (Burrows' Delta) than `DELTA_TOLERANCE`."""
    v, rv = candidate.get("voice") or {}, reference.get("voice") or {}
    first = not rv or rv.get("own_ratio") == 1.0
    own, vm, ref_vm = v.get("own_ratio"), v.get("voice_margin"), rv.get("voice_margin") or 0.0
    c_ppl, r_ppl = candidate.get("perplexity"), reference.get("perplexity")
    figures = (
        f"own perplexity {r_ppl} -> {c_ppl} (x{own} of the base), control x{v.get('control_ratio')}, "
        f"voice margin {ref_vm:+.3f} -> {vm:+.3f}"
        if own is not None and vm is not None
        else ""
    )
    if own is None or c_ppl is None or r_ppl is None:
        return False, "rejected: no held-out perplexity (nothing held out, or the model diverged)"
    if first and own >= 1.0:
        return False, f"rejected: it does not lower the perplexity of your held-out passages: {figures}"
    if (c_ppl - r_ppl) / r_ppl > margin:
        return False, f"rejected: held-out perplexity got worse by more than {margin:.0%}: {figures}"
    if candidate.get("demo_base"):  # a random-init demo model knows no prose: any text teaches it "prose"
        return True, "promoted: demo base (builtin:tiny), the voice margin is not judged: " + figures
    if vm is not None and (vm <= 0 if first else vm < ref_vm - margin):
        return (
            False,
            f"rejected: it improves another writer's prose as much as yours (learned prose, not your voice): {figures}",
        )
    d, rd = (candidate.get("delta") or {}).get("delta_author"), (reference.get("delta") or {}).get("delta_author")
    if d is not None and rd is not None and d > rd + DELTA_TOLERANCE:
        return (
            False,
            f"rejected: its continuations moved away from your function-word profile (Delta {rd} -> {d}): {figures}",
        )
    better = "promoted: " + (
        "first adapter: " if first else ("better than live: " if c_ppl < r_ppl else "within the margin of live: ")
    )
    return True, better + figures + (f", Delta to you {rd} -> {d}" if d is not None and rd is not None else "")


def compare_candidates(
    candidate: dict, live: dict | None, margin: float, limits: GuardLimits | None = None
) -> tuple[bool, str]:
    """Should `candidate` replace `live`? Returns (decision, a reason a writer can read).

    A candidate is rejected when it trips a guard (copies the manuscript, loops, leaks chat tags).
    Otherwise it wins when it is no worse than the live adapter by more than `margin` on both
    held-out perplexity (relative: 0.02 = 2% higher at most) and style score (0.02 = 2 points lower
    at most), i.e. the setting `retrain.gate_margin`. With no live adapter, passing the guards wins.
    """
    failures = guard_failures(candidate, limits or GuardLimits.default())
    if failures:
        return False, "rejected: " + "; ".join(failures)
    if "voice" in candidate:
        return voice_decision(candidate, live or {}, margin)
    if not live:
        return (
            True,
            f"first adapter: guards pass (perplexity {candidate.get('perplexity')}, style "
            f"{candidate.get('style_score')})",
        )
    c_ppl, l_ppl = candidate.get("perplexity"), live.get("perplexity")
    c_style, l_style = candidate.get("style_score", 0.0), live.get("style_score", 0.0)
    ppl_change = (c_ppl - l_ppl) / l_ppl if c_ppl and l_ppl else 0.0
    style_change = c_style - l_style
    figures = (
        f"perplexity {l_ppl:.2f} -> {c_ppl:.2f} ({ppl_change:+.1%}), "
        f"style {l_style:.1f} -> {c_style:.1f} ({style_change:+.1f})"
    )
    if ppl_change > margin:
        return False, f"rejected: held-out perplexity got worse by more than {margin:.0%}: {figures}"
    if style_change < -100 * margin:
        return False, f"rejected: style score fell by more than {100 * margin:.0f} points: {figures}"
    better = ppl_change < 0 or style_change > 0
    return True, ("promoted: better than live: " if better else "promoted: within the margin of live: ") + figures
