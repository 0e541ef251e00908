"""Curate a shared corpus (default: the six Austen novels) with the 31M model's tokenizer; print the figures.

    .venv/bin/python benchmarks/curate_corpus.py [--corpus austen|doyle] [--keep]

Builds a temporary writing project around a copy of ../shared/corpora/<corpus>, then runs
`penwright curate` three ways and prints them side by side: cold (nothing cached), warm (nothing
changed), and incremental (one novel edited). A benchmark prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def make_project(corpus: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"penwright-bench-{corpus}-"))
    shutil.copytree(SHARED / "corpora" / corpus, root / "manuscript", ignore=shutil.ignore_patterns("MANIFEST.tsv"))
    for p in (root / "manuscript").iterdir():
        p.chmod(0o644)
    model = SHARED / "models" / "gutenberg-qwen2-31m"
    (root / "penwright.yaml").write_text(f"title: {corpus} benchmark\nmodel:\n  base: {model}\n")
    return root


def run(project_root: Path):
    from penwright.cli.curate import run_curation
    from penwright.project import load_project

    project = load_project(project_root)
    started = time.perf_counter()
    manifest = run_curation(project, dry_run=False, progress_bars=False)
    return manifest, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="austen", choices=["austen", "doyle"])
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()
    root = make_project(args.corpus)
    try:
        cold, cold_s = run(root)
        warm, warm_s = run(root)
        victim = sorted((root / "manuscript").glob("*.txt"))[0]
        victim.write_text(
            victim.read_text(encoding="utf-8") + "\n\nA new closing paragraph, written today by the author.\n",
            encoding="utf-8",
        )
        inc, inc_s = run(root)
        from penwright.cli.curate import print_report

        print_report(cold)
        t, tok = cold.totals, cold.tokens
        print(
            f"\ncorpus {args.corpus}: {t['files']} files, {t['words']:,} words, {t['chunks']:,} chunks, "
            f"{t['rows']:,} rows "
            f"(train {t['train']:,} / valid {t['valid']:,}); pairs {cold.pairs}"
        )
        print(
            f"chunk tokens median/p75/max {tok['chunk']['median']}/{tok['chunk']['p75']}/{tok['chunk']['max']}; "
            f"sample tokens median/p75/max {tok['sample']['median']}/{tok['sample']['p75']}/{tok['sample']['max']}, "
            f"{tok['sample']['share_over_limit']:.2%} over {tok['sample']['limit']}"
        )
        print(f"{'run':<34}{'wall s':>8}{'re-chunked':>12}{'rows':>8}")
        for label, m, s in (
            ("cold (empty cache)", cold, cold_s),
            ("warm (nothing changed)", warm, warm_s),
            (f"incremental ({victim.name} edited)", inc, inc_s),
        ):
            print(f"{label:<34}{s:>8.1f}{m.totals['recomputed_files']:>12}{m.totals['rows']:>8}")
        print(f"incremental / cold wall time: {inc_s / cold_s:.2f}; warm / cold: {warm_s / cold_s:.2f}")
        same = sum(1 for n, f in inc.files.items() if not f.recomputed and f.train == cold.files[n].train)
        print(f"files whose rows were reused unchanged: {same} of {len(inc.files)}")
    finally:
        if args.keep:
            print(f"project kept at {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
