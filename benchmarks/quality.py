"""Quality benchmark: does the default adapter write more like its author, and only its author?

    .venv/bin/python benchmarks/quality.py [--words 100000] [--authors austen,doyle] [--out DIR]

End to end through the CLI with every default, on the real 31M base (`../shared/models/gutenberg-qwen2-31m`;
Austen and Doyle were held out of its pretraining), for each author:

1. `penwright init` a project on that base; the manuscript is `--words` words of the author's books, an equal
   share of each, as chapter files (Persuasion / The Hound of the Baskervilles left out);
2. `penwright curate`, then `penwright train` (the default preset, nothing overridden); wall time of each;
3. `penwright eval --voice-only` with the held-out book as the author's held-out text and the OTHER author's
   held-out book as the control, the author's own reference profile excluded from "nearest other writer",
   32 continuations of 128 tokens (~3,000 words) for Burrows' Delta.

Prints base vs adapter side by side per author, then the issue's targets table: own perplexity ratio, the
control's ratio and the voice margin, Delta to the author and the margin to the nearest other writer
(base -> adapter), verbatim copying, and the wall time from data to first adapter.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BASE = SHARED / "models" / "gutenberg-qwen2-31m"
HELD_OUT = {"austen": "persuasion.txt", "doyle": "the_hound_of_the_baskervilles.txt"}
CONTROL = {"austen": "doyle", "doyle": "austen"}
PENWRIGHT = [sys.executable, "-m", "penwright"]
SAMPLES = 32  # x 128 tokens: ~3,000 generated words, enough for a Delta that does not move with the seed


def cli(*args: str, cwd: Path | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [*PENWRIGHT, *args], capture_output=True, text=True, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    if out.returncode != 0:
        raise SystemExit(f"penwright {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0, out.stdout


TYPOGRAPHY = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u2014": "--", "_": None})


def typeset(text: str) -> str:
    """One typography for every book: straight quotes and apostrophes, "--" for a dash, no _italic_ marks.

    The Gutenberg editions were typed by different transcribers (Emma, Mansfield Park, Northanger Abbey and Pride
    and Prejudice have curly quotes and _italics_, Persuasion and Sense and Sensibility straight ones; Doyle's
    Sign of the Four and Valley of Fear differ from his other books the same way). An author's own manuscript and
    their unseen chapters share one typography, so, as with line breaks, every text is measured in one: otherwise
    an adapter is judged on the transcribers' habits (it learns curly quotes from four books, and Persuasion's
    straight ones then cost it)."""
    return text.translate(TYPOGRAPHY)


def manuscript(author: str, words: int, folder: Path, raw_typography: bool = False) -> int:
    """An equal share of `words` from each of the author's books (held-out book excluded), one file per book."""
    books = sorted(p for p in (SHARED / "corpora" / author).glob("*.txt") if p.name != HELD_OUT[author])
    share, total = words // len(books), 0
    for i, book in enumerate(books):
        paras, n = [], 0
        for para in re.split(r"\n\s*\n", book.read_text(encoding="utf-8")):
            if n >= share:
                break
            paras.append(para)
            n += len(para.split())
        text = "\n\n".join(paras)
        (folder / f"{i + 1:02d}-{book.stem}.txt").write_text(
            (text if raw_typography else typeset(text)) + "\n", "utf-8"
        )
        total += n
    return total


def run_author(author: str, words: int, root: Path, raw_typography: bool = False) -> dict:
    project = root / author
    cli("init", str(project), "--model", str(BASE), "--title", f"{author} benchmark")
    n = manuscript(author, words, project / "manuscript", raw_typography)
    curate_s, _ = cli("curate", "-p", str(project), "--no-progress")
    train_s, train_out = cli("train", "-p", str(project), "--no-progress", "--promote")
    heldout, control = root / f"{author}-heldout.txt", root / f"{author}-control.txt"
    for path, (who, book) in (
        (heldout, (author, HELD_OUT[author])),
        (control, (CONTROL[author], HELD_OUT[CONTROL[author]])),
    ):
        text = (SHARED / "corpora" / who / book).read_text(encoding="utf-8")
        path.write_text(text if raw_typography else typeset(text), encoding="utf-8")
    out_json = root / f"{author}-voice.json"
    eval_s, table = cli(
        "eval",
        "-p",
        str(project),
        "--voice-only",
        "--heldout",
        str(heldout),
        "--control",
        str(control),
        "--exclude-reference",
        author,
        "--json",
        str(out_json),
        "--n-samples",
        str(SAMPLES),
        "--max-new-tokens",
        "128",
    )
    result = json.loads(out_json.read_text())
    run = sorted((project / ".penwright" / "runs").glob("*/time_metrics.json"))
    metrics = json.loads(run[-1].read_text()) if run else {}
    return {
        "author": author,
        "words": n,
        "curate_s": round(curate_s, 1),
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "train_metrics": metrics,
        "sides": result["sides"],
        "table": table,
    }


def targets(r: dict) -> list[tuple[str, str, str, bool]]:
    base, ad = r["sides"][0], r["sides"][1]
    own, ctl = ad["own_ratio"], ad["control_ratio"]
    rows = [
        ("own held-out perplexity (served format)", "<= 0.85x base", f"x{own:.3f}", own <= 0.85),
        ("control author perplexity", ">= own + 0.08", f"x{ctl:.3f} (margin {ctl - own:+.3f})", ctl - own >= 0.08),
    ]
    if ad.get("delta_author") is not None and base.get("delta_author") is not None:
        rows.append(
            (
                "Delta to the author (generated)",
                "lower than base",
                f"{base['delta_author']:.3f} -> {ad['delta_author']:.3f}",
                ad["delta_author"] < base["delta_author"],
            )
        )
        rows.append(
            (
                "Delta margin to the nearest other",
                "larger than base",
                f"{base['delta_margin']:+.3f} -> {ad['delta_margin']:+.3f}",
                ad["delta_margin"] > base["delta_margin"],
            )
        )
    copy = ad.get("copy_share_voice")
    rows.append(
        (
            "no verbatim run over 12 words",
            ">= 95% of generations",
            "-" if copy is None else f"{1 - copy:.0%}",
            copy is not None and copy <= 0.05,
        )
    )
    total = r["curate_s"] + r["train_s"]
    rows.append(
        (
            "data -> first adapter (curate + train)",
            "<= 5 min wall",
            f"{total / 60:.1f} min ({r['words']:,} words)",
            total <= 300,
        )
    )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--words", type=int, default=100_000)
    ap.add_argument("--authors", default="austen,doyle")
    ap.add_argument(
        "--out", type=Path, default=None, help="keep the projects and figures here (default: a temp folder)"
    )
    ap.add_argument(
        "--raw-typography",
        action="store_true",
        help="keep each Gutenberg edition's own quotes, dashes and _italics_ (default: one typography, see typeset)",
    )
    args = ap.parse_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="pw-quality-"))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for author in args.authors.split(","):
        r = run_author(author, args.words, root, args.raw_typography)
        results.append(r)
        tm = r["train_metrics"]
        print(
            f"\n## {author}: {r['words']:,} words; curate {r['curate_s']} s, train {r['train_s']} s "
            f"({tm.get('steps')} steps, {tm.get('tokens_per_s')} tokens/s), eval {r['eval_s']} s\n"
        )
        print(r["table"])
    print("\n## Targets (31M base, this machine, defaults)\n")
    print("| author | measure | target | measured | met |\n| --- | --- | --- | --- | --- |")
    for r in results:
        for measure, target, got, ok in targets(r):
            print(f"| {r['author']} | {measure} | {target} | {got} | {'yes' if ok else 'NO'} |")
    (root / "quality.json").write_text(
        json.dumps([{k: v for k, v in r.items() if k != "table"} for r in results], indent=1, default=str)
    )
    print(f"\nfigures: {root / 'quality.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
