"""The evaluation report's charts: axes fit the data (a loss of 3.1-3.6 is not drawn from 0) and are labelled."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from penwright.trainer.evaluate import report

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def texts(root: ET.Element, cls: str, group: str | None = None) -> list[str]:
    scope = root.find(f".//{SVG}g[@class='{group}']") if group else root
    return [t.text or "" for t in scope.iter(f"{SVG}text") if t.get("class") == cls]


def polyline_ys(root: ET.Element) -> list[float]:
    return [float(p.split(",")[1]) for line in root.iter(f"{SVG}polyline") for p in line.get("points").split()]


def tick_lines_y(root: ET.Element) -> list[float]:
    return [float(line.get("y1")) for line in root.find(f".//{SVG}g[@class='y-axis']").iter(f"{SVG}line")]


LOSSES = {
    "train": [(float(s), 3.6 - 0.5 * s / 30) for s in range(1, 31)],
    "valid": [(float(s), 3.55 - 0.4 * s / 30) for s in range(5, 31, 5)],
}


def test_loss_chart_y_axis_fits_losses_of_3_1_to_3_6_and_is_labelled():
    root = parse(report._line_chart("Loss of run r1", list(LOSSES.items()), None, "loss", "step", "loss"))
    y_ticks = [float(t) for t in texts(root, "tick", "y-axis")]
    assert y_ticks == sorted(y_ticks) and len(y_ticks) >= 3
    assert 3.0 <= y_ticks[0] <= 3.1 and 3.6 <= y_ticks[-1] <= 3.8, y_ticks  # not from 0
    y_axis = root.find(f".//{SVG}g[@class='y-axis']")
    assert float(y_axis.get("data-min")) == y_ticks[0] and float(y_axis.get("data-max")) == y_ticks[-1]
    # the curve fills most of the plot's height instead of a flat line near its top
    lines, ys = tick_lines_y(root), polyline_ys(root)
    assert (max(ys) - min(ys)) / (max(lines) - min(lines)) > 0.6
    assert min(lines) <= min(ys) and max(ys) <= max(lines)
    # x ticks are steps within the run, in order; both axes carry a title
    x_ticks = [float(t) for t in texts(root, "tick", "x-axis")]
    assert len(x_ticks) >= 3 and x_ticks == sorted(x_ticks) and 1 <= x_ticks[0] and x_ticks[-1] <= 30
    assert texts(root, "axis-title x") == ["step"] and texts(root, "axis-title y") == ["loss"]


def test_report_html_draws_the_run_log_on_fitted_labelled_axes(tmp_path):
    log = [{"step": s, "loss": 3.6 - 0.5 * s / 30, "valid_loss": 3.5 - 0.3 * s / 30} for s in range(1, 31)]
    profile = {"sentence_histogram": [0.05, 0.2, 0.35, 0.25, 0.1, 0.05, 0.0]}
    author = {"label": "author (held-out)", "profile": profile, "characteristic_words": ["sea"]}
    sides = [{"label": "base", "style_score": 55.0, "profile": profile}, {"label": "v1", "style_score": 62.0}]
    page = report.write_report(report.build_report(author, sides, {"r1": log}), tmp_path)[1].read_text()
    charts = {m.group(1): parse(m.group(0)) for m in re.finditer(r'<svg class="chart (\w+)".*?</svg>', page, re.S)}
    assert set(charts) == {"scorebars", "sentences", "loss"}
    loss_ticks = [float(t) for t in texts(charts["loss"], "tick", "y-axis")]
    assert 3.0 <= loss_ticks[0] <= 3.2 < 3.6 <= loss_ticks[-1] <= 3.8, loss_ticks
    assert texts(charts["loss"], "axis-title y") == ["loss"]
    # shares are never below 0: that axis starts at 0 because the data does, and no tick goes negative
    share_ticks = [float(t) for t in texts(charts["sentences"], "tick", "y-axis")]
    assert share_ticks[0] == 0 and 0.35 <= share_ticks[-1] <= 0.5
    assert texts(charts["sentences"], "axis-title x") == ["words per sentence"]
    assert texts(charts["sentences"], "axis-title y") == ["share of sentences"]


def test_bar_chart_has_a_value_axis_from_zero_to_the_largest_bar():
    root = parse(report._bar_chart("Style score", [("base", 55.0), ("v1", 62.0)], "scorebars", "style score"))
    ticks = [float(t) for t in texts(root, "tick", "x-axis")]
    assert ticks[0] == 0 and 62 <= ticks[-1] < 100, ticks  # fits the scores, not a fixed 0-100
    bars = [float(r.get("width")) for r in root.iter(f"{SVG}rect")]
    assert bars[1] / bars[0] == pytest.approx(62 / 55, rel=0.01)  # a bar's length is its value
    assert texts(root, "axis-title x") == ["style score"]


@pytest.mark.parametrize(
    ("lo", "hi"), [(3.1, 3.6), (3.3, 3.3), (0.0, 0.35), (0.001, 0.004), (9.8, 10.4), (-2.0, 5.0), (1, 500)]
)
def test_axis_covers_the_data_with_a_margin_in_a_few_round_ticks(lo, hi):
    low, high, step, ticks = report.axis(lo, hi)
    assert low < lo or low == lo == 0 and high > hi  # a margin (0 stays the floor of data that is not negative)
    assert low <= lo and hi < high and (lo < 0 or low >= 0)
    assert 3 <= len(ticks) <= 10 and ticks[0] == low and ticks[-1] == high
    assert all(b - a == pytest.approx(step) for a, b in zip(ticks, ticks[1:]))
    assert high - low <= 2.5 * max(hi - lo, abs(hi) * 0.1, 0.1)  # fits the data: not stretched to 0
