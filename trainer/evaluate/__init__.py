"""Evaluation: does the tuned model write like the author, without copying or looping?

- `style`: style profile of a text and a 0-100 style score against the author.
- `guards`: copying, degeneration and leaked-token guards.
- `model`: loading base (+ adapter), held-out perplexity, timed generation.
- `core`: one side's metrics on a fixed held-out context; `gate`: the daemon's fast version.
- `report`: report.json and a self-contained report.html.

Heavy libraries are imported inside functions; `from penwright.trainer.evaluate import gate_metrics`
is cheap.
"""

from penwright.trainer.evaluate.gate import compare_candidates, gate_metrics

__all__ = ["compare_candidates", "gate_metrics"]
