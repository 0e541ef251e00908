"""Quality benchmark: does an adapter move the real 31M base toward its author, and only its author?

On `../shared/models/gutenberg-qwen2-31m` (Austen and Doyle were held out of its pretraining), train
one adapter on Austen minus *Persuasion* and one on Doyle minus *The Hound of the Baskervilles*,
with Penwright's own curation and the `regular` preset, then evaluate base, Austen adapter and
Doyle adapter on both held-out books and print one table:

- held-out perplexity (plain text of the held-out book, and its curated continuation rows);
- style score (0-100) of the generated continuations against Austen (Persuasion) and Doyle (Hound);
- copying: longest verbatim span shared with the adapter's training books, share of samples over
  12 words; degeneration: repetition rate and distinct-2.

Two phases, so the GPU phase needs no `wordfreq`:

    python benchmarks/quality.py run   --out DIR   # curate, train (both authors in parallel), perplexity, generate
    python benchmarks/quality.py table --out DIR   # style scores and the copy guard on this machine; prints the table
    python benchmarks/quality.py all   --out DIR   # both

`run` on a CPU: pass e.g. `--max-steps 20 --max-chars 300000 --samples 6` (a reduced run; say so).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
AUTHORS = {
    "austen": {"heldout": "persuasion.txt", "title": "Persuasion"},
    "doyle": {"heldout": "the_hound_of_the_baskervilles.txt", "title": "Hound of the Baskervilles"},
}
COPY_WORDS = 12


def log(*a) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# -- phase 1: curate + train (one process per author, run in parallel) ---------------------------------------

def stage_books(corpora: Path, author: str, work: Path, max_chars: int | None) -> tuple[Path, Path]:
    """Copy the author's training books (all but the held-out one) and the held-out book into `work`."""
    books, held = work / "books", work / "heldout"
    for d in (books, held):
        d.mkdir(parents=True, exist_ok=True)
    for f in sorted((corpora / author).glob("*.txt")):
        text = f.read_text(encoding="utf-8")[: max_chars or None]
        (held if f.name == AUTHORS[author]["heldout"] else books).joinpath(f.name).write_text(text, encoding="utf-8")
    return books, held


def curate_folder(folder: Path, out: Path, tokenizer, valid_fraction: float = 0.1, pair_types: list[str] | None = None):
    from penwright.trainer.curate.pipeline import curate
    from penwright.trainer.settings import CurationSettings

    settings = CurationSettings(valid_fraction=valid_fraction)
    if pair_types:
        settings.pair_types = pair_types
    return curate([folder], ["**/*.txt"], [], None, settings, tokenizer, out, root=folder)


def train_author(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    from penwright.trainer.presets import load_training_settings
    from penwright.trainer.settings import ModelSettings
    from penwright.trainer.train import run_training

    work = Path(args.out) / args.author
    books, held = stage_books(Path(args.corpora), args.author, work, args.max_chars)
    tok = AutoTokenizer.from_pretrained(args.model)
    t0 = time.perf_counter()
    pairs = args.pair_types.split(",") if args.pair_types else None
    curate_folder(books, work / "dataset", tok, pair_types=pairs)
    curate_folder(held, work / "heldout_dataset", tok, valid_fraction=0.5, pair_types=pairs)
    log(args.author, f"curated in {time.perf_counter() - t0:.0f}s")
    overrides = {"max_minutes": args.max_minutes}
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    if args.max_seq_length:
        overrides["max_seq_length"] = args.max_seq_length
    settings = load_training_settings("regular", overrides)
    t0 = time.perf_counter()
    result = run_training(work / "dataset", settings, args.model, work / "run",
                          model_settings=ModelSettings(base=args.model, max_context_tokens=args.max_seq_length or 2048),
                          on_progress=lambda p: p["step"] % 50 == 0 and log(args.author, "step", p["step"], "loss", round(p["loss"], 3)))
    info = {**result.to_dict(), "train_seconds": round(time.perf_counter() - t0, 1), "preset": "regular", "overrides": overrides}
    (work / "train_result.json").write_text(json.dumps(info, indent=1, default=str))
    log(args.author, "trained:", result.steps, "steps,", result.stop_reason, "eval loss", result.eval_loss)


# -- phase 1b: perplexity and generation for base / austen / doyle on both held-out books ---------------------

def _windows(tokenizer, text: str, size: int, n: int) -> list[str]:
    """`n` evenly spaced windows of about `size` tokens from the held-out book (as text)."""
    ids = tokenizer(text, add_special_tokens=False).input_ids[1000:]  # skip the title page
    step = max(size, (len(ids) - size) // max(n, 1))
    return [tokenizer.decode(ids[i : i + size]) for i in range(0, len(ids) - size, step)][:n]


def _rows(path: Path, kind: str = "continuation") -> list[dict]:
    rows = []
    for name in ("valid.jsonl", "train.jsonl"):
        f = path / name
        if f.is_file():
            rows += [r for r in (json.loads(line) for line in f.open()) if r.get("kind") == kind]
    return rows


def evaluate_side(args: argparse.Namespace) -> None:
    """Perplexity and generations of one side (base, or one author's adapter) on both held-out books."""
    from penwright.trainer.evaluate import model as lm
    from penwright.trainer.evaluate.prompts import row_continuations, text_continuations
    from penwright.trainer.evaluate.style import unwrap

    out = Path(args.out)
    adapter = None if args.side == "base" else json.loads((out / args.side / "train_result.json").read_text())["adapter_dir"]
    model, tok = lm.load_model(args.model, adapter, args.device)
    raw: dict = {"side": args.side, "books": {}}
    for book_author, meta in AUTHORS.items():
        held = unwrap((out / book_author / "heldout" / meta["heldout"]).read_text(encoding="utf-8"))  # Gutenberg hard wraps
        rows = _rows(out / book_author / "heldout_dataset")
        n_chat = args.samples // 2
        prompts = row_continuations(rows, n_chat) + text_continuations([held[20000:]], args.samples - n_chat)
        gens = lm.generate(model, tok, prompts, args.max_new_tokens, 0.8, 0.95, seed=0)
        entry = {
            "title": meta["title"],
            "text_perplexity": lm.text_perplexity(model, tok, _windows(tok, held, 512, args.ppl_windows), 512),
            "rows_perplexity": lm.rows_perplexity(model, tok, rows[: args.ppl_rows], 1024),
            "prompts": [p.__dict__ for p in prompts],
            "generations": [g.text for g in gens],
            "tokens_per_s": lm.throughput(gens),
        }
        own_valid = out / book_author / "dataset" / "valid.jsonl"
        if own_valid.is_file():  # the trainer's own eval split, measured as served (compare with its eval_loss)
            entry["own_valid_rows"] = lm.rows_perplexity(model, tok, [json.loads(x) for x in own_valid.open()][: args.ppl_rows], 2048)
        raw["books"][book_author] = entry
        log(f"{args.side} on {meta['title']}: ppl {entry['text_perplexity']['perplexity']} rows {entry['rows_perplexity']['perplexity']}")
    (out / f"raw_{args.side}.json").write_text(json.dumps(raw, indent=1))


def evaluate_all(args: argparse.Namespace, common: list[str]) -> None:
    """The three sides in parallel processes (a 31M model leaves the GPU mostly idle), merged into raw.json."""
    out = Path(args.out)
    extra = ["--samples", str(args.samples), "--max-new-tokens", str(args.max_new_tokens), "--ppl-windows",
             str(args.ppl_windows), "--ppl-rows", str(args.ppl_rows)] + (["--device", args.device] if args.device else [])
    _parallel({side: [sys.executable, __file__, "side", "--side", side, *common, *extra] for side in ("base", *AUTHORS)}, out)
    raw = {"sides": {}, "books": {}}
    for side in ("base", *AUTHORS):
        data = json.loads((out / f"raw_{side}.json").read_text())
        raw["sides"][side] = data["books"]
        for book, entry in data["books"].items():
            raw["books"][book] = {"title": entry["title"], "prompts": entry["prompts"]}
    (out / "raw.json").write_text(json.dumps(raw, indent=1))


def _parallel(commands: dict[str, list[str]], out: Path) -> None:
    procs = {}
    for name, cmd in commands.items():
        procs[name] = subprocess.Popen(cmd, stdout=open(out / f"log_{name}.txt", "w"), stderr=subprocess.STDOUT)
    failed = [n for n, p in procs.items() if p.wait() != 0]
    for name in commands:
        text = (out / f"log_{name}.txt").read_text()
        sys.stdout.write(f"--- {name}\n" + "\n".join(line for line in text[-4000:].splitlines() if "it/s]" not in line) + "\n")
    if failed:
        raise SystemExit(f"failed: {failed}")


def run_phase(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--out", str(out), "--model", args.model, "--corpora", args.corpora, "--max-minutes", str(args.max_minutes)]
    for flag in ("max_steps", "max_chars", "max_seq_length", "pair_types"):
        if getattr(args, flag):
            common += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    # both authors at once: a 31M model leaves a big GPU mostly idle
    _parallel({a: [sys.executable, __file__, "train", "--author", a, *common] for a in AUTHORS}, out)
    evaluate_all(args, common)


# -- phase 2: style and copy guard (needs wordfreq), and the table -------------------------------------------

def table(args: argparse.Namespace) -> str:
    from penwright.trainer.evaluate import guards, style

    out, corpora = Path(args.out), Path(args.corpora)
    raw = json.loads((out / "raw.json").read_text())
    profiles, vocab = {}, {}
    for author, meta in AUTHORS.items():
        profiles[author] = style.profile((corpora / author / meta["heldout"]).read_text(encoding="utf-8")[20000:])
        vocab[author] = style.characteristic_words(profiles[author])
    train_texts = {a: [f.read_text(encoding="utf-8") for f in sorted((corpora / a).glob("*.txt")) if f.name != m["heldout"]] for a, m in AUTHORS.items()}
    indexes = {a: guards.CopyIndex(t) for a, t in train_texts.items()}
    head = ["model", "held-out book", "ppl text", "ppl rows", "style vs Austen", "style vs Doyle", "copy longest", "copy >12w", "repetition", "distinct-2"]
    lines, results = [head], {}
    for side, books in raw["sides"].items():
        for book, entry in books.items():
            gens = entry["generations"]
            gp = style.profile("\n\n".join(g.strip() for g in gens if g.strip()))
            s_a = style.style_score(gp, profiles["austen"], vocab["austen"])["score"]
            s_d = style.style_score(gp, profiles["doyle"], vocab["doyle"])["score"]
            copy = guards.copy_metrics(gens, indexes[side], COPY_WORDS) if side in indexes else {"copy_longest": "-", "copy_share": "-"}
            deg = guards.degeneration_metrics(gens)
            row = {"ppl_text": entry["text_perplexity"]["perplexity"], "ppl_rows": entry["rows_perplexity"]["perplexity"],
                   "style_austen": s_a, "style_doyle": s_d, **copy, **deg}
            results.setdefault(side, {})[book] = row
            lines.append([side if side == "base" else f"{side} adapter", raw["books"][book]["title"], f"{row['ppl_text']:.2f}",
                          f"{row['ppl_rows']:.2f}", f"{s_a:.1f}", f"{s_d:.1f}", str(copy["copy_longest"]),
                          _pct(copy["copy_share"]), f"{deg['repetition']:.3f}", f"{deg['distinct_2']:.3f}"])
    (out / "table.json").write_text(json.dumps(results, indent=1))
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    md = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in lines]
    md.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    text = "\n".join(md) + "\n\n" + _verdict(results)
    (out / "table.md").write_text(text)
    return text


def _pct(x) -> str:
    return x if isinstance(x, str) else f"{x:.0%}"


def _verdict(r: dict) -> str:
    """The three claims of the benchmark, checked on the figures above."""
    base = r["base"]
    lines = []
    for a, other in (("austen", "doyle"), ("doyle", "austen")):
        own = r[a][a]["ppl_text"] / base[a]["ppl_text"] - 1
        cross = r[a][other]["ppl_text"] / base[other]["ppl_text"] - 1
        key = f"style_{a}"
        lines.append(
            f"{a} adapter: held-out perplexity vs base {own:+.1%} on its own author, {cross:+.1%} on the other; "
            f"style vs {a} on its own author's prompts {base[a][key]:.1f} -> {r[a][a][key]:.1f}, on the other's "
            f"{base[other][key]:.1f} -> {r[a][other][key]:.1f}; copies >{COPY_WORDS} words: {r[a][a]['copy_share']:.0%} "
            f"(guard 25%); repetition {r[a][a]['repetition']:.2f} (guard 0.30)"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=["run", "train", "eval", "side", "table", "all"])
    p.add_argument("--side", choices=["base", *AUTHORS])
    p.add_argument("--out", default="bench-quality")
    p.add_argument("--model", default=str(SHARED / "models" / "gutenberg-qwen2-31m"))
    p.add_argument("--corpora", default=str(SHARED / "corpora"))
    p.add_argument("--author", choices=list(AUTHORS))
    p.add_argument("--device", default=None)
    p.add_argument("--max-steps", type=int, default=None, help="override the preset's max_steps (CPU runs)")
    p.add_argument("--max-minutes", type=float, default=120.0, help="training time cap per author")
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--pair-types", default=None,
                   help="comma-separated curation pair types (default: curation's own, persona pairs included)")
    p.add_argument("--max-chars", type=int, default=None, help="cut every book to this many characters (CPU runs)")
    p.add_argument("--samples", type=int, default=12, help="generations per side and held-out book")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--ppl-windows", type=int, default=32)
    p.add_argument("--ppl-rows", type=int, default=48)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.phase == "train":
        train_author(args)
    if args.phase == "side":
        evaluate_side(args)
    if args.phase == "eval":  # the evaluation half of `run`, on runs already trained
        evaluate_all(args, ["--out", args.out, "--model", args.model, "--corpora", args.corpora])
    if args.phase in ("run", "all"):
        run_phase(args)
    if args.phase in ("table", "all"):
        print(table(args))


if __name__ == "__main__":
    main()
