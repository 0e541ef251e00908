"""Build the stylometry references the package ships: `trainer/evaluate/references.json` (function-word
frequency profiles, no text) and `trainer/evaluate/control.txt` (a short public-domain control passage set).

    python benchmarks/build_references.py

Sources: the public-domain novels in ../shared/corpora (Project Gutenberg; provenance in each MANIFEST.tsv).
The books the quality benchmark holds out (Persuasion, The Hound of the Baskervilles) are left out of both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"
HELD_OUT = {"persuasion.txt", "the_hound_of_the_baskervilles.txt"}
CONTROL = {"austen": "emma.txt", "doyle": "a_study_in_scarlet.txt"}  # a passage of each, from the middle
CONTROL_WORDS = 2500


def control_passage(text: str, words: int) -> str:
    from penwright.trainer.evaluate.voice import unwrap

    paras = unwrap(text).split("\n\n")
    start, out, n = len(paras) // 2, [], 0
    for p in paras[start:]:
        out.append(p)
        n += len(p.split())
        if n >= words:
            break
    return "\n\n".join(out)


def main() -> int:
    sys.path.insert(0, str(REPO))
    from penwright.trainer.evaluate.stylometry import build_references
    from penwright.trainer.evaluate.voice import unwrap

    books = {
        a: [
            unwrap(p.read_text(encoding="utf-8")) for p in sorted((CORPORA / a).glob("*.txt")) if p.name not in HELD_OUT
        ]
        for a in ("austen", "doyle")
    }
    refs = build_references(books)
    out = REPO / "trainer" / "evaluate"
    (out / "references.json").write_text(json.dumps(refs) + "\n", encoding="utf-8")
    control = [
        control_passage((CORPORA / a / name).read_text(encoding="utf-8"), CONTROL_WORDS) for a, name in CONTROL.items()
    ]
    header = (
        "Public-domain control passages (Project Gutenberg): Jane Austen, Emma (1815); Arthur Conan Doyle, "
        "A Study in Scarlet (1887). Another writer's prose: an adapter should improve its author's text "
        "clearly more than this.\n\n"
    )
    (out / "control.txt").write_text(header + "\n\n".join(control) + "\n", encoding="utf-8")
    print(
        f"{refs['segments']} segments; authors {list(refs['authors'])}; control "
        f"{sum(len(c.split()) for c in control)} words"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
