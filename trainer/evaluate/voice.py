"""Voice measures an author would recognise, on the route the editor uses (raw text, the shared prompt format).

For one model (the base, or base + an adapter):
- **own perplexity**: the author's held-out passages, as plain text in one layout (paragraphs joined by a blank line);
- **control perplexity**: another writer's text in the same layout. An adapter that learned the voice lowers the
  first clearly more than the second (`compare`: `voice_margin` = control ratio - own ratio, both against the base);
- **Burrows' Delta** (`stylometry`) of generated continuations of the author's held-out text: distance to the
  author and margin to the nearest other writer;
- the **copy** guard (no verbatim run over `copy_words` words) and the **degeneration** guard.

Generation is batched and seeded: evaluating the same model twice gives the same figures.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from penwright.trainer.evaluate import guards, stylometry
from penwright.trainer.evaluate.model import Prompt, text_perplexity
from penwright.trainer.evaluate.prompts import text_continuations

log = logging.getLogger(__name__)
CONTROL_TEXT = Path(__file__).with_name("control.txt")
CACHE_VERSION = 2  # bump when a measure changes: cached base figures are then measured again
# Sampling as the editor serves it: the language server and Continue send temperature 0.8 and no top_p (the
# server's default, 1.0). Generations for Delta are sampled the same way, so the measure judges what the author sees.
SERVED_TEMPERATURE = 0.8
SERVED_TOP_P = 1.0


def unwrap(text: str) -> str:
    """One layout for every text: hard-wrapped lines joined, paragraphs separated by one blank line."""
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "\n\n".join(paras)


def default_control() -> list[str]:
    """The shipped public-domain control passages (another writer's prose), header line dropped."""
    return [unwrap(CONTROL_TEXT.read_text(encoding="utf-8")).split("\n\n", 1)[1]]


@dataclass
class VoiceInputs:
    heldout: list[str]  # the author's held-out passages
    control: list[str]  # another writer's text
    train_texts: list[str]  # what the adapter trained on (copy guard); [] skips it
    n_samples: int = 16
    max_new_tokens: int = 64
    ppl_tokens: int = 512
    ppl_windows: int = 12
    seed: int = 0
    copy_words: int = 12
    temperature: float = SERVED_TEMPERATURE
    top_p: float = SERVED_TOP_P
    exclude_authors: tuple[str, ...] = ()  # reference profiles to leave out (the author's own, in benchmarks)

    def fingerprint(self, model: str) -> str:
        """What a model's figures depend on besides its weights: a cache key for the base's figures."""
        import hashlib
        import json

        blob = json.dumps(
            [
                model,
                self.heldout,
                self.control,
                self.train_texts,
                self.n_samples,
                self.max_new_tokens,
                self.ppl_tokens,
                self.ppl_windows,
                self.seed,
                self.copy_words,
                self.temperature,
                self.top_p,
                sorted(self.exclude_authors),
                CACHE_VERSION,
            ]
        )
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:24]

    def __post_init__(self):
        self.heldout = [unwrap(t) for t in self.heldout if t.strip()]
        self.control = [unwrap(t) for t in self.control if t.strip()]
        self.prompts = text_continuations(self.heldout, self.n_samples)
        self.copy_index = guards.CopyIndex(self.train_texts) if self.train_texts else None


def generate_batch(
    model,
    tokenizer,
    prompts: list[Prompt],
    max_new_tokens: int,
    seed: int,
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_prompt_tokens: int = 384,
) -> list[str]:
    """Seeded, batched sampling of continuations (left padding); special tokens that ended a sample dropped."""
    import torch

    from penwright.trainer.evaluate.model import stop_token_ids

    if not prompts:
        return []
    stops = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    rows = [tokenizer(p.text, add_special_tokens=False).input_ids[-max_prompt_tokens:] for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=temperature,
            top_p=top_p,
            eos_token_id=stops,
            pad_token_id=pad,
        )
    texts = []
    for row in out[:, width:].tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=False))
    return texts


def voice_metrics(model, tokenizer, inputs: VoiceInputs) -> dict:
    """Every voice measure of one model, as a flat JSON-serialisable dict."""
    t0 = time.perf_counter()
    own = text_perplexity(model, tokenizer, inputs.heldout, inputs.ppl_tokens, inputs.ppl_windows)
    control = (
        text_perplexity(model, tokenizer, inputs.control, inputs.ppl_tokens, inputs.ppl_windows)
        if inputs.control
        else {}
    )
    t1 = time.perf_counter()
    texts = generate_batch(
        model,
        tokenizer,
        inputs.prompts,
        inputs.max_new_tokens,
        inputs.seed,
        temperature=inputs.temperature,
        top_p=inputs.top_p,
    )
    t2 = time.perf_counter()
    out = {
        "perplexity": own.get("perplexity"),
        "loss": own.get("loss"),
        "control_perplexity": control.get("perplexity"),
        "samples": len(texts),
        "seconds": {"perplexity": round(t1 - t0, 2), "generate": round(t2 - t1, 2)},
    }
    delta = stylometry.attribution("\n\n".join(texts), "\n\n".join(inputs.heldout), exclude=inputs.exclude_authors)
    out["delta"] = delta
    if inputs.copy_index is not None:
        out.update(guards.copy_metrics(texts, inputs.copy_index, inputs.copy_words))
    out.update(guards.degeneration_metrics(texts))
    out.update(guards.leak_metrics(texts))
    out["generations"] = texts
    return out


def _ratio(a, b) -> float | None:
    return round(a / b, 4) if a and b else None


def compare(side: dict, base: dict) -> dict:
    """The change base -> side an author would notice: perplexity ratios, the voice margin, Delta changes."""
    own, ctl = (
        _ratio(side.get("perplexity"), base.get("perplexity")),
        _ratio(side.get("control_perplexity"), base.get("control_perplexity")),
    )
    out = {"own_ratio": own, "control_ratio": ctl, "voice_margin": round(ctl - own, 4) if own and ctl else None}
    d, bd = side.get("delta") or {}, base.get("delta") or {}
    if "delta_author" in d and "delta_author" in bd:
        out["delta_author_change"] = round(d["delta_author"] - bd["delta_author"], 4)
    if "margin" in d and "margin" in bd:
        out["delta_margin_change"] = round(d["margin"] - bd["margin"], 4)
    return out


def passages(rows: list[dict]) -> list[str]:
    """The author's passages in dataset rows (continuation targets), each once, in order."""
    from penwright.trainer.dataset import row_target

    seen, out = set(), []
    for r in rows:
        if r.get("kind") in ("continuation", "chat", "user") and r.get("chunk") not in seen:
            seen.add(r.get("chunk"))
            out.append(row_target(r).strip())
    return [t for t in out if t]


def inputs_from_dataset(dataset_dir: Path, control: list[str] | None = None, **kwargs) -> tuple[VoiceInputs, list[str]]:
    """(VoiceInputs, notes) from a curated dataset: held-out passages from valid.jsonl, training passages for the
    copy guard, the shipped control unless `control` is given. A set too small to hold anything out is measured on
    its training passages, and the notes say so."""
    from penwright.trainer.data import read_rows

    dataset_dir = Path(dataset_dir)
    train = passages(read_rows(dataset_dir / "train.jsonl"))
    valid_path = dataset_dir / "valid.jsonl"
    heldout = passages(read_rows(valid_path)) if valid_path.is_file() else []
    notes = []
    if not heldout:
        heldout = train[-8:]
        notes.append(
            "the manuscript is too small to hold out a validation set: the voice is measured on training "
            "passages, which flatters the adapter; write more for a fair measure"
        )
    return VoiceInputs(heldout, default_control() if control is None else control, train, **kwargs), notes


def flat(metrics: dict, change: dict) -> dict:
    """The figures of one side for reports and tables (served-format perplexities, ratios, Delta, guards)."""
    d = metrics.get("delta") or {}
    return {
        "served_perplexity": metrics.get("perplexity"),
        "control_perplexity": metrics.get("control_perplexity"),
        "own_ratio": change.get("own_ratio"),
        "control_ratio": change.get("control_ratio"),
        "voice_margin": change.get("voice_margin"),
        "delta_author": d.get("delta_author"),
        "delta_nearest_other": d.get("delta_nearest_other"),
        "nearest_other": d.get("nearest_other"),
        "delta_margin": d.get("margin"),
        "delta_note": d.get("note"),
        "copy_share_voice": metrics.get("copy_share"),
        "copy_longest_voice": metrics.get("copy_longest"),
        "repetition_voice": metrics.get("repetition"),
    }


def evaluate_sides(
    base: str, sides: list[tuple[str, str | None]], inputs: VoiceInputs, device: str | None = None
) -> list[dict]:
    """Voice figures of each side [(label, PEFT adapter folder or None for the base)], each compared with the base
    (measured once); the base model is loaded once and adapters are switched on it."""
    from penwright.trainer.evaluate.model import each_side, load_model

    model, tokenizer = load_model(base, None, device)
    base_metrics = voice_metrics(model, tokenizer, inputs)
    out = []
    for label, side in each_side(model, sides):
        metrics = base_metrics if side is model else voice_metrics(side, tokenizer, inputs)
        out.append(
            {"label": label, **flat(metrics, compare(metrics, base_metrics)), "generations": metrics["generations"]}
        )
    return out


TABLE = [
    ("served_perplexity", "own perplexity"),
    ("own_ratio", "  x base"),
    ("control_perplexity", "control perplexity"),
    ("control_ratio", "  x base"),
    ("voice_margin", "voice margin"),
    ("delta_author", "Delta to author"),
    ("nearest_other", "nearest other writer"),
    ("delta_nearest_other", "Delta to them"),
    ("delta_margin", "Delta margin"),
    ("copy_share_voice", "copies >12 words"),
    ("repetition_voice", "repetition"),
]


def table(sides: list[dict]) -> str:
    """Voice figures side by side, as plain text."""
    rows = [["", *(s["label"] for s in sides)]]
    for key, label in TABLE:
        rows.append(
            [
                label,
                *(
                    "-" if s.get(key) is None else (f"{s[key]:.3f}" if isinstance(s[key], float) else str(s[key]))
                    for s in sides
                ),
            ]
        )
    notes = sorted({s["delta_note"] for s in sides if s.get("delta_note")})
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    return text + "".join(f"\nnote: {n}" for n in notes)
