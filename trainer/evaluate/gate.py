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


def compare_candidates(candidate: dict, live: dict | None, margin: float, limits: GuardLimits | None = None) -> tuple[bool, str]:
    """Should `candidate` replace `live`? Returns (decision, a reason a writer can read).

    A candidate is rejected when it trips a guard (copies the manuscript, loops, leaks chat tags).
    Otherwise it wins when it is no worse than the live adapter by more than `margin` on both
    held-out perplexity (relative: 0.02 = 2% higher at most) and style score (0.02 = 2 points lower
    at most), i.e. the setting `retrain.gate_margin`. With no live adapter, passing the guards wins.
    """
    failures = guard_failures(candidate, limits or GuardLimits.default())
    if failures:
        return False, "rejected: " + "; ".join(failures)
    if not live:
        return True, f"first adapter: guards pass (perplexity {candidate.get('perplexity')}, style {candidate.get('style_score')})"
    c_ppl, l_ppl = candidate.get("perplexity"), live.get("perplexity")
    c_style, l_style = candidate.get("style_score", 0.0), live.get("style_score", 0.0)
    ppl_change = (c_ppl - l_ppl) / l_ppl if c_ppl and l_ppl else 0.0
    style_change = c_style - l_style
    figures = f"perplexity {l_ppl:.2f} -> {c_ppl:.2f} ({ppl_change:+.1%}), style {l_style:.1f} -> {c_style:.1f} ({style_change:+.1f})"
    if ppl_change > margin:
        return False, f"rejected: held-out perplexity got worse by more than {margin:.0%}: {figures}"
    if style_change < -100 * margin:
        return False, f"rejected: style score fell by more than {100 * margin:.0f} points: {figures}"
    better = ppl_change < 0 or style_change > 0
    return True, ("promoted: better than live: " if better else "promoted: within the margin of live: ") + figures
