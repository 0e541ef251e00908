"""Evaluate one model (a "side": the base, or base + an adapter) on a fixed held-out context.

`EvalContext` holds what every side is measured against (the prompts, the author's style profile,
the copy index of the training text, the held-out rows); `evaluate_model` measures one side and
returns a flat dict of metrics plus the samples. Everything here takes plain data and a loaded
model, so the CLI, the daemon's gate and the benchmark share it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from penwright.trainer.evaluate import guards, style
from penwright.trainer.evaluate import model as lm
from penwright.trainer.evaluate.prompts import build_prompts
from penwright.trainer.evaluate.settings import EvalSettings

log = logging.getLogger(__name__)


@dataclass
class EvalContext:
    prompts: list[lm.Prompt]
    author: style.StyleProfile
    vocabulary: list[str]
    copy_index: guards.CopyIndex | None
    valid_rows: list[dict]
    heldout_texts: list[str]
    settings: EvalSettings


def row_targets(rows: list[dict]) -> list[str]:
    """The author's own text in dataset rows (the last message), each once, in order."""
    seen, out = set(), []
    from penwright.trainer.dataset import row_target

    for r in rows:
        t = row_target(r).strip()
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def make_context(
    valid_rows: list[dict] | None = None,
    reference_texts: list[str] | None = None,
    train_texts: list[str] | None = None,
    settings: EvalSettings | None = None,
    heldout_texts: list[str] | None = None,
) -> EvalContext:
    """Build the shared context.

    valid_rows: held-out dataset rows (`valid.jsonl`); reference_texts: the author's held-out prose
    (default: the rows' targets); train_texts: what the adapter saw (for the copy guard; None skips
    it); heldout_texts: plain passages for text perplexity (default: reference_texts when there are
    no rows).
    """
    settings = settings or EvalSettings()
    rows = list(valid_rows or [])
    refs = list(reference_texts) if reference_texts else row_targets(rows)
    if not refs:
        from penwright.errors import DatasetError

        raise DatasetError(
            "Nothing held out to evaluate against: no held-out rows and no reference text.",
            "Curate the manuscript first (`penwright curate`), or pass --reference FILE with the author's text.",
        )
    author = style.profile("\n\n".join(refs))
    return EvalContext(
        prompts=build_prompts(rows, refs, settings.n_samples, settings.persona_share, settings.persona_prompts),
        author=author,
        vocabulary=style.characteristic_words(author),
        copy_index=guards.CopyIndex(train_texts) if train_texts else None,
        valid_rows=rows[: settings.max_heldout],
        heldout_texts=list(heldout_texts if heldout_texts is not None else ([] if rows else refs))[
            : settings.max_heldout
        ],
        settings=settings,
    )


def perplexities(model, tokenizer, ctx: EvalContext) -> dict:
    """Held-out perplexity: on the rows' targets when there are rows, on plain passages otherwise (both if both)."""
    detail = {}
    if ctx.valid_rows:
        detail["rows"] = lm.rows_perplexity(model, tokenizer, ctx.valid_rows, ctx.settings.perplexity_max_tokens * 2)
    if ctx.heldout_texts:
        detail["text"] = lm.text_perplexity(
            model, tokenizer, ctx.heldout_texts, ctx.settings.perplexity_max_tokens, ctx.settings.max_heldout
        )
    primary = detail.get("rows") or detail.get("text") or {}
    return {"perplexity": primary.get("perplexity"), "loss": primary.get("loss"), "perplexity_detail": detail}


def generation_metrics(texts: list[str], ctx: EvalContext) -> dict:
    """Style, copying, degeneration and leak metrics of generated `texts`."""
    s = ctx.settings
    gen_profile = style.profile("\n\n".join(t.strip() for t in texts if t.strip()))
    scored = style.style_score(gen_profile, ctx.author, ctx.vocabulary)
    out = {"style_score": scored["score"], "style_parts": scored["parts"], "profile": gen_profile.summary()}
    if ctx.copy_index is not None:
        out.update(guards.copy_metrics(texts, ctx.copy_index, s.copy_words))
    out.update(guards.degeneration_metrics(texts))
    out.update(guards.leak_metrics(texts, tuple(guards.DEFAULT_BANNED) + tuple(s.banned)))
    return out


def evaluate_model(model, tokenizer, ctx: EvalContext, label: str = "model", samples: bool = True) -> dict:
    """All metrics of one side. `guard_failures` lists, in plain words, any guard it trips."""
    s = ctx.settings
    result: dict = {"label": label}
    result.update(perplexities(model, tokenizer, ctx))
    gens = lm.generate(model, tokenizer, ctx.prompts, s.max_new_tokens, s.temperature, s.top_p, s.seed)
    result.update(generation_metrics([g.text for g in gens], ctx))
    result["tokens_per_s"] = lm.throughput(gens)
    result["guard_failures"] = guards.guard_failures(result, s.limits())
    if samples:
        result["samples"] = [
            {
                "id": g.prompt.id,
                "kind": g.prompt.kind,
                "prompt": g.prompt.text if g.prompt.messages is None else g.prompt.messages[-1]["content"],
                "reference": g.prompt.reference,
                "text": g.text,
            }
            for g in gens
        ]
    log.info("%s: perplexity %s, style %.1f", label, result["perplexity"], result["style_score"])
    return result


def author_summary(ctx: EvalContext) -> dict:
    """The author's own figures (what every side is compared with)."""
    return {
        "label": "author (held-out)",
        "style_score": 100.0,
        "profile": ctx.author.summary(),
        "characteristic_words": ctx.vocabulary[:40],
    }


def evaluate_sides(
    base: str, adapters: list[tuple[str, str | None]], ctx: EvalContext, device: str | None = None
) -> list[dict]:
    """Evaluate the base model and each adapter on one context; the base is loaded once.

    `adapters` is [(label, adapter folder or None for the bare base)], in the order to report them.
    PEFT adapters are loaded side by side onto the one base model and switched between.
    """
    model, tokenizer = lm.load_model(base, None, device)
    return [evaluate_model(side, tokenizer, ctx, label) for label, side in lm.each_side(model, adapters)]
