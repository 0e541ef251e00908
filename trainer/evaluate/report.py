"""report.json and a self-contained report.html (inline CSS and SVG charts: no scripts, no network).

The page shows, for a writer: the scores side by side, the sentence-length distributions of the
author and each model, the loss curves of the training run, and sample generations next to the
author's real continuation.
"""

from __future__ import annotations

import html
import json
import math
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


def _nice_step(span: float, count: int) -> float:
    """A tick step of 1, 2 or 5 times a power of ten giving about `count` intervals over `span`."""
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    f = raw / power
    return power * (1 if f < 1.5 else 2 if f < 3 else 5 if f < 7 else 10)


def axis(lo: float, hi: float, count: int = 5) -> tuple[float, float, float, list[float]]:
    """(low, high, step, ticks) of an axis for values lo..hi: the data's range with a margin of 8% (never below 0
    for data that is not), widened to whole ticks. Not from 0: losses of 3.1-3.6 get 3.0-3.7, not a flat line.
    The dashboard's chart uses the same rule (server/static/dashboard.js `axis`)."""
    margin = (hi - lo) * 0.08 if hi > lo else max(abs(hi) * 0.05, 0.05)
    a, b = lo - margin, hi + margin
    if lo >= 0 > a:
        a = 0.0
    step = _nice_step(b - a, count)
    a, b = math.floor(a / step + 1e-9) * step, math.ceil(b / step - 1e-9) * step
    ticks = [float(f"{a + i * step:.12g}") for i in range(round((b - a) / step) + 1)]
    return ticks[0], ticks[-1], step, ticks


def _tick(v: float, step: float) -> str:
    return f"{v:.{max(0, -math.floor(math.log10(step) + 1e-9))}f}"


def _line_chart(
    title: str,
    series: list[tuple[str, list[tuple[float, float]]]],
    x_labels: list[str] | None,
    cls: str,
    x_title: str = "",
    y_title: str = "",
) -> str:
    """An SVG line chart; one polyline per series. Both axes fit the data and carry tick values and a title;
    with `x_labels` the x axis is categorical (point i is labelled x_labels[i])."""
    w, h, left, right, top, bottom = 640, 280, 64, 16, 16, 48
    pts = [p for _, s in series for p in s]
    if not pts:
        return f'<p class="empty">{_e(title)}: no data.</p>'
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1, ystep, yticks = axis(min(p[1] for p in pts), max(p[1] for p in pts))
    sx = lambda x: left + (x - x0) / (x1 - x0) * (w - left - right)  # noqa: E731
    sy = lambda y: h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)  # noqa: E731
    parts = [
        f'<svg class="chart {cls}" viewBox="0 0 {w} {h}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
    ]
    parts.append(f'<g class="y-axis" data-min="{y0:g}" data-max="{y1:g}">')
    for t in yticks:
        parts.append(
            f'<line x1="{left}" y1="{sy(t):.1f}" x2="{w - right}" y2="{sy(t):.1f}" stroke="#eee"/>'
            f'<text class="tick" x="{left - 6}" y="{sy(t) + 4:.1f}" font-size="11" text-anchor="end">'
            f"{_tick(t, ystep)}</text>"
        )
    parts.append("</g>")
    parts.append(f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="#999"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#999"/>')
    parts.append('<g class="x-axis">')
    if x_labels:
        xticks = [(i, lab) for i, lab in enumerate(x_labels)]
    else:
        xstep = max(1.0, round(_nice_step(x1 - x0, 6))) if x1 - x0 >= 3 else _nice_step(x1 - x0, 6)
        first = math.ceil(x0 / xstep - 1e-9)
        xticks = [(k * xstep, f"{k * xstep:g}") for k in range(first, math.floor(x1 / xstep + 1e-9) + 1)]
    for x, lab in xticks:
        parts.append(
            f'<text class="tick" x="{sx(x):.1f}" y="{h - bottom + 16}" font-size="10" text-anchor="middle">'
            f"{_e(lab)}</text>"
        )
    parts.append("</g>")
    parts.append(
        f'<text class="axis-title x" x="{left + (w - left - right) / 2:.0f}" y="{h - 8}" font-size="12" '
        f'text-anchor="middle">{_e(x_title)}</text>'
        f'<text class="axis-title y" x="14" y="{top + (h - top - bottom) / 2:.0f}" font-size="12" '
        f'text-anchor="middle" transform="rotate(-90 14 {top + (h - top - bottom) / 2:.0f})">{_e(y_title)}</text>'
    )
    for i, (name, s) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        parts.append(
            f'<polyline class="series" data-name="{_e(name)}" fill="none" stroke="{color}" '
            f'stroke-width="2" points="{coords}"><title>{_e(name)}</title></polyline>'
        )
        parts.append(
            f'<text x="{w - right - 150}" y="{top + 14 + 14 * i}" font-size="12" fill="{color}">{_e(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _bar_chart(title: str, bars: list[tuple[str, float]], cls: str, value_title: str = "") -> str:
    """Horizontal bars from 0 (a bar's length is its value) to the largest value, on a labelled value axis."""
    w, bar_h, pad, label_w, right, axis_h = 640, 26, 8, 180, 60, 40
    h = pad + bar_h * len(bars) + axis_h
    values = [v for _, v in bars] or [0.0]
    _, top, step, ticks = axis(min(0.0, *values), max(0.0, *values))
    low = ticks[0]
    sx = lambda v: label_w + (v - low) / ((top - low) or 1) * (w - label_w - right)  # noqa: E731
    parts = [
        f'<svg class="chart {cls}" viewBox="0 0 {w} {h}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
    ]
    base = pad + bar_h * len(bars)
    parts.append(f'<g class="x-axis" data-min="{low:g}" data-max="{top:g}">')
    for t in ticks:
        parts.append(
            f'<line x1="{sx(t):.1f}" y1="{pad}" x2="{sx(t):.1f}" y2="{base}" stroke="#eee"/>'
            f'<text class="tick" x="{sx(t):.1f}" y="{base + 14}" font-size="10" text-anchor="middle">'
            f"{_tick(t, step)}</text>"
        )
    parts.append("</g>")
    parts.append(f'<line x1="{sx(0):.1f}" y1="{pad}" x2="{sx(0):.1f}" y2="{base}" stroke="#999"/>')
    for i, (name, v) in enumerate(bars):
        y = pad + i * bar_h
        x, width = min(sx(0), sx(v)), abs(sx(v) - sx(0))
        parts.append(f'<text x="4" y="{y + 17}" font-size="12">{_e(name)}</text>')
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y + 4}" width="{width:.1f}" height="{bar_h - 8}" '
            f'fill="{COLORS[i % len(COLORS)]}"><title>{_e(name)}: {v:.1f}</title></rect>'
        )
        parts.append(f'<text x="{max(sx(0), sx(v)) + 6:.1f}" y="{y + 17}" font-size="12">{v:.1f}</text>')
    parts.append(
        f'<text class="axis-title x" x="{label_w + (w - label_w - right) / 2:.0f}" y="{h - 6}" font-size="12" '
        f'text-anchor="middle">{_e(value_title)}</text>'
    )
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
        _line_chart(f"Loss of run {name}", [(k, v) for k, v in series.items()], None, "loss", "step", "loss")
        for name, series in report.get("loss", {}).items()
    ] or ['<p class="empty">No training log was found for these models.</p>']
    words = ", ".join(author.get("characteristic_words", [])[:30])
    scores = [(s["label"], float(s.get("style_score") or 0)) for s in sides]
    score_chart = _bar_chart(
        "Style score (100 = the author's own habits)", scores, "scorebars", "style score (100 = the author's habits)"
    )
    meta_line = " &middot; ".join(f"{_e(k)}: {_e(v)}" for k, v in meta.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Penwright evaluation</title><style>{CSS}</style></head>
<body><h1>Does it write like the author?</h1><p class="meta">{meta_line}</p>
<h2>Scores</h2>{score_chart}
{_scores_table(report)}
<p class="meta">The author's characteristic words (used far more than in general English): {_e(words)}</p>
<h2>Sentence lengths</h2>
<p class="meta">Share of sentences by length in words. Rhythm is variance: a voice mixes short and long.</p>
{_line_chart("Sentence-length distribution", dist, labels, "sentences", "words per sentence", "share of sentences")}
<h2>Training</h2>{"".join(loss_charts)}
<h2>Samples</h2>{_samples(report)}
</body></html>
"""
