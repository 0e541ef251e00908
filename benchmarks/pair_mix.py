"""Which training rows teach the voice on the route the editor uses? The default mix, chosen by this table.

    .venv/bin/python benchmarks/pair_mix.py [--author austen] [--words 100000] [--steps 30]

One manuscript (`--words` of the author's books, as benchmarks/quality.py builds it), curated with each mix of
`curation.pair_types`, trained with the default preset for the same number of steps (same tokens per step), then
measured as the editor serves it: perplexity of the held-out book and of the other author's held-out book as raw
text, each against the base (`voice margin` = control ratio - own ratio; above 0 = it learned this voice).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from quality import BASE, CONTROL, HELD_OUT, SHARED, manuscript  # noqa: E402

MIXES = {
    "inline (default, base model)": ["auto"],
    "inline + a chat row for every passage": ["continuation", "fim", "chat"],
    "wave 1 default (chat + persona pairs)": ["chat", "fim", "neutral", "info_dropout", "abstract"],
    "chat continuation only": ["chat"],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--author", default="austen")
    ap.add_argument("--words", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument(
        "--only", type=int, nargs="*", default=[], help="run only these mixes (1-based, in the table's order)"
    )
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    from penwright.trainer.curate import curate
    from penwright.trainer.evaluate.model import load_model, text_perplexity
    from penwright.trainer.evaluate.voice import unwrap
    from penwright.trainer.presets import load_training_settings
    from penwright.trainer.settings import CurationSettings
    from penwright.trainer.train import run_training

    root = Path(tempfile.mkdtemp(prefix="pw-mix-"))
    (root / "ms").mkdir()
    manuscript(args.author, args.words, root / "ms")
    own = unwrap((SHARED / "corpora" / args.author / HELD_OUT[args.author]).read_text(encoding="utf-8"))
    other = CONTROL[args.author]
    ctl = unwrap((SHARED / "corpora" / other / HELD_OUT[other]).read_text(encoding="utf-8"))

    def ppl(model, tok) -> tuple[float, float]:
        return tuple(text_perplexity(model, tok, [t], 512, 16)["perplexity"] for t in (own, ctl))

    model, tok = load_model(BASE, None, "cpu")
    base = ppl(model, tok)
    tokenizer = AutoTokenizer.from_pretrained(str(BASE))
    settings = load_training_settings("fast", {"max_minutes": None, "max_steps": args.steps})
    print(
        f"{args.author}, {args.words:,} words, {args.steps} steps of the fast preset; base perplexity own "
        f"{base[0]:.2f}, "
        f"control ({other}) {base[1]:.2f}\n"
    )
    print("| rows (curation.pair_types) | rows by kind | own x base | control x base | voice margin |")
    print("| --- | --- | --- | --- | --- |")
    picked = [m for i, m in enumerate(MIXES.items()) if not args.only or i + 1 in args.only]
    for i, (name, kinds) in enumerate(picked):
        out = root / f"mix{i}"
        manifest = curate(
            [root / "ms"], ["**/*.txt"], [], None, CurationSettings(pair_types=kinds), tokenizer, out / "data"
        )
        result = run_training(out / "data", settings, str(BASE), out / "run")
        model, tok = load_model(BASE, result.adapter_dir, "cpu")
        o, c = ppl(model, tok)
        ro, rc = o / base[0], c / base[1]
        print(f"| {name}: `{kinds}` | {manifest.pairs} | {ro:.3f} | {rc:.3f} | {rc - ro:+.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
