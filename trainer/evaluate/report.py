"""report.json and a self-contained report.html (inline CSS and SVG charts: no scripts, no network).

The page shows, for a writer: the scores side by side, the sentence-length distributions of the
author and each model, the loss curves of the training run, and sample generations next to the
author's real continuation.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from penwright.trainer.evaluate.style import SENTENCE_BUCKETS

COLORS = ["#1b1b1b", "#8a8a8a", "#c0392b", "#2471a3", "#229954", "#b9770e"]
ROWS = [  # (key, label, how to read it)
    ("served_perplexity", "Your held-out text: perplexity", "raw text, as the editor sends it; lower = more like you"),
    ("control_perplexity", "Another writer: perplexity", "the control text in the same layout"),
    ("own_ratio", "Yours vs base", "own perplexity / the base's (below 1 = learned)"),
    ("control_ratio", "Other writer vs base", "control perplexity / the base's"),
    ("voice_margin", "Voice margin", "other writer's ratio - yours: above 0 = it learned YOUR voice, not just prose"),
    ("delta_author", "Delta to you", "Burrows' Delta of its continuations to your held-out text (lower = closer)"),
    ("delta_margin", "Delta margin", "nearest other writer's Delta - yours (higher = more clearly you)"),
    ("style_score", "Style score (0-100)", "higher = closer to the author's habits"),
    ("perplexity", "Held-out perplexity", "lower = the author's unseen text surprises the model less"),
    ("copy_longest", "Longest copied span (words)", "verbatim run shared with the training text"),
    ("copy_share", "Samples that copy", "share copying more than the limit"),
    ("repetition", "Repetition rate", "share of repeated 3-word phrases (loops)"),
    ("distinct_2", "Distinct-2", "share of unique word pairs (1 = no repeats)"),
    ("leak_share", "Samples with leaked tags", "chat tags or assistant talk in the prose"),
    ("tokens_per_s", "Tokens per second", "generation speed on this machine"),
]


def read_train_log(path: Path | str) -> list[dict]:
    """Entries of a run's train_log.json: a list of {step, loss, valid_loss?...}, or a dict holding one."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        data = next(
            (v for k, v in data.items() if isinstance(v, list) and k in ("log", "entries", "history", "steps")), []
        )
    return [e for e in data if isinstance(e, dict) and "step" in e]


def loss_series(entries: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """{"train": [(step, loss)], "valid": [...]} from log entries.

    Keys: loss/train_loss, valid_loss/eval_loss/val_loss.
    """
    series: dict[str, list[tuple[float, float]]] = {"train": [], "valid": []}
    for e in entries:
        for name, keys in (("train", ("loss", "train_loss")), ("valid", ("valid_loss", "eval_loss", "val_loss"))):
            v = next((e[k] for k in keys if isinstance(e.get(k), (int, float))), None)
            if v is not None:
                series[name].append((float(e["step"]), float(v)))
    return {k: v for k, v in series.items() if v}


def build_report(
    author: dict, sides: list[dict], loss_logs: dict[str, list[dict]] | None = None, meta: dict | None = None
) -> dict:
    return {
        "meta": meta or {},
        "author": author,
        "sides": sides,
        "loss": {k: loss_series(v) for k, v in (loss_logs or {}).items()},
    }


def write_report(report: dict, out_dir: Path | str) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "report.html").write_text(render_html(report))
    return out / "report.json", out / "report.html"


def _e(x) -> str:
    return html.escape(str(x))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return "-" if v is None else str(v)


def _line_chart(
    title: str, series: list[tuple[str, list[tuple[float, float]]]], x_labels: list[str] | None, cls: str
) -> str:
    """An SVG line chart; one polyline per series, x-axis labels when given (categorical)."""
    w, h, pad = 640, 260, 44
    pts = [p for _, s in series for p in s]
    if not pts:
        return f'<p class="empty">{_e(title)}: no data.</p>'
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(0.0, min(p[1] for p in pts)), max(p[1] for p in pts) or 1.0
    sx = lambda x: pad + (x - x0) / ((x1 - x0) or 1) * (w - 2 * pad)  # noqa: E731
    sy = lambda y: h - pad - (y - y0) / ((y1 - y0) or 1) * (h - 2 * pad)  # noqa: E731
    parts = [
        f'<svg class="chart {cls}" viewBox="0 0 {w} {h}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
    ]
    parts.append(f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>')
    parts.append(f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#999"/>')
    parts.append(
        f'<text x="4" y="{pad}" font-size="11">{y1:.3g}</text><text x="4" y="{h - pad}" font-size="11">{y0:.3g}</text>'
    )
    if x_labels:
        for i, lab in enumerate(x_labels):
            parts.append(
                f'<text x="{sx(i):.1f}" y="{h - pad + 16}" font-size="10" text-anchor="middle">{_e(lab)}</text>'
            )
    else:
        parts.append(f'<text x="{pad}" y="{h - pad + 16}" font-size="11">{x0:g}</text>')
        parts.append(f'<text x="{w - pad}" y="{h - pad + 16}" font-size="11" text-anchor="end">{x1:g}</text>')
    for i, (name, s) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        parts.append(
            f'<polyline class="series" data-name="{_e(name)}" fill="none" stroke="{color}" '
            f'stroke-width="2" points="{coords}"><title>{_e(name)}</title></polyline>'
        )
        parts.append(f'<text x="{w - pad - 150}" y="{pad + 14 * i}" font-size="12" fill="{color}">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _bar_chart(title: str, bars: list[tuple[str, float]], cls: str, top: float = 100.0) -> str:
    w, bar_h, pad = 640, 26, 8
    h = pad * 2 + bar_h * len(bars)
    parts = [
        f'<svg class="chart {cls}" viewBox="0 0 {w} {h}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
    ]
    for i, (name, v) in enumerate(bars):
        y = pad + i * bar_h
        width = max(0.0, min(v, top)) / top * (w - 260)
        parts.append(f'<text x="4" y="{y + 17}" font-size="12">{_e(name)}</text>')
        parts.append(
            f'<rect class="bar" x="180" y="{y + 4}" width="{width:.1f}" height="{bar_h - 8}" '
            f'fill="{COLORS[i % len(COLORS)]}"><title>{_e(name)}: {v:.1f}</title></rect>'
        )
        parts.append(f'<text x="{186 + width:.1f}" y="{y + 17}" font-size="12">{v:.1f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _scores_table(report: dict) -> str:
    sides = report["sides"]
    head = "".join(f"<th>{_e(s['label'])}</th>" for s in sides)
    rows = []
    for key, label, hint in ROWS:
        if not any(key in s for s in sides):
            continue
        cells = "".join(f"<td>{_e(_fmt(s.get(key)))}</td>" for s in sides)
        rows.append(f'<tr><th title="{_e(hint)}">{_e(label)}<div class="hint">{_e(hint)}</div></th>{cells}</tr>')
    parts = list(sides[0].get("style_parts", {})) if sides else []
    for p in parts:
        cells = "".join(f"<td>{_e(_fmt(s.get('style_parts', {}).get(p)))}</td>" for s in sides)
        rows.append(
            f'<tr class="part"><th>&nbsp;&nbsp;style: {_e(p.replace("_", " "))}<div '
            f'class="hint">similarity 0-1</div></th>{cells}</tr>'
        )
    warn = "".join(f"<td>{_e('; '.join(s.get('guard_failures') or []) or 'all pass')}</td>" for s in sides)
    rows.append(f"<tr><th>Guards</th>{warn}</tr>")
    return f'<table class="scores"><tr><th></th>{head}</tr>{"".join(rows)}</table>'


def _samples(report: dict) -> str:
    sides = report["sides"]
    if not sides or not sides[0].get("samples"):
        return "<p>No samples.</p>"
    head = "<th>prompt</th><th>the author wrote</th>" + "".join(f"<th>{_e(s['label'])}</th>" for s in sides)
    rows = []
    for i, sample in enumerate(sides[0]["samples"]):
        texts = "".join(
            f"<td>{_e(s['samples'][i]['text'] if i < len(s.get('samples', [])) else '')}</td>" for s in sides
        )
        prompt = sample["prompt"] or ""
        short = prompt if len(prompt) < 400 else "..." + prompt[-400:]
        rows.append(
            f'<tr><td class="prompt"><span class="kind">{_e(sample["kind"])}</span> '
            f"{_e(short)}</td><td>{_e(sample['reference'] or '-')}</td>{texts}</tr>"
        )
    return f'<table class="samples"><tr>{head}</tr>{"".join(rows)}</table>'


CSS = """body{font-family:Georgia,serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-weight:normal}table{border-collapse:collapse;margin:1em 0;width:100%}
td,th{border-bottom:1px solid #ddd;padding:6px 8px;vertical-align:top;text-align:left;font-size:14px}
.hint{font-size:11px;color:#777;font-weight:normal}.part th{font-weight:normal;color:#555}
.samples td{white-space:pre-wrap;font-size:13px}
.kind{font-size:11px;color:#fff;background:#777;padding:1px 4px;border-radius:3px}
.chart{width:100%;max-width:680px;display:block;margin:0.5em 0}.meta{color:#666;font-size:13px}"""


def render_html(report: dict) -> str:
    sides, author, meta = report["sides"], report["author"], report.get("meta", {})
    labels = [f"<={e}" for e in SENTENCE_BUCKETS] + [f">{SENTENCE_BUCKETS[-1]}"]
    dist = [(author.get("label", "author"), list(enumerate(author["profile"]["sentence_histogram"])))]
    dist += [(s["label"], list(enumerate(s["profile"]["sentence_histogram"]))) for s in sides if "profile" in s]
    loss_charts = [
        _line_chart(f"Loss of run {name}", [(k, v) for k, v in series.items()], None, "loss")
        for name, series in report.get("loss", {}).items()
    ] or ['<p class="empty">No training log was found for these models.</p>']
    words = ", ".join(author.get("characteristic_words", [])[:30])
    scores = [(s["label"], float(s.get("style_score") or 0)) for s in sides]
    score_chart = _bar_chart("Style score (100 = the author's own habits)", scores, "scorebars")
    meta_line = " &middot; ".join(f"{_e(k)}: {_e(v)}" for k, v in meta.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Penwright evaluation</title><style>{CSS}</style></head>
<body><h1>Does it write like the author?</h1><p class="meta">{meta_line}</p>
<h2>Scores</h2>{score_chart}
{_scores_table(report)}
<p class="meta">The author's characteristic words (used far more than in general English): {_e(words)}</p>
<h2>Sentence lengths</h2>
<p class="meta">Share of sentences by length in words. Rhythm is variance: a voice mixes short and long.</p>
{_line_chart("Sentence-length distribution", dist, labels, "sentences")}
<h2>Training</h2>{"".join(loss_charts)}
<h2>Samples</h2>{_samples(report)}
</body></html>
"""
