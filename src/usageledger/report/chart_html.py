"""Charts drawn for the HTML report: responsive HTML with inline SVG for the plotted shapes, no JavaScript.

Every chart fills the width of its card at any window size and stays sharp, because nothing is scaled as a
picture: text (axis labels, legend, bar labels) is ordinary HTML text laid out by the browser, and only the plotted
shapes are SVG, in a plot area whose ``viewBox`` is stretched to the area's size (``preserveAspectRatio="none"``)
with strokes that keep their pixel width (``vector-effect="non-scaling-stroke"``).

* The legend is an HTML list that wraps, so its labels can never overlap.
* Axis labels sit at percentages of the plot area; labels a narrow chart has no room for are marked
  ``chart-minor`` and hidden by a container query in the page's stylesheet.
* Every class starts with ``chart-`` and the styles live in the page's stylesheet (``report.css``), scoped to
  ``figure.chart``: the charts carry no ``<style>`` of their own, so no chart rule can reach the page, nor a page
  rule a chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from html import escape
from typing import Final

from usageledger.report.charts import PROVISIONAL_ALPHA, Chart, Series, color, nice_ticks, short_number

__all__ = ["render_chart"]

_PLOT_HEIGHT: Final = 1000
"""Height of the plot area's viewBox; the browser stretches it to the area's CSS height."""
_WIDE_PLOT_PX: Final = 620
"""Plot width the x-axis labels are thinned for on a desktop card; a narrow card hides the minor ones."""
_NARROW_PLOT_PX: Final = 260
_CHAR_PX: Final = 6.6
"""Estimated width of one axis-label character at the axis font size (11 px sans-serif), in CSS pixels."""


def _num(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _label_step(labels: Sequence[str], plot_px: float) -> int:
    """Show every n-th label so that estimated label widths plus a gap fit in ``plot_px``."""
    widest = max((len(label) for label in labels), default=1) * _CHAR_PX + 14
    fit = max(1, math.floor(plot_px / widest))
    return max(1, math.ceil(len(labels) / fit))


def _x_axis(categories: Sequence[str]) -> str:
    n = len(categories)
    wide = _label_step(categories, _WIDE_PLOT_PX)
    narrow = wide * max(1, math.ceil(_label_step(categories, _NARROW_PLOT_PX) / wide))
    spans = []
    for i, category in enumerate(categories):
        if i % wide:
            continue
        minor = ' class="chart-minor"' if i % narrow else ""
        spans.append(f'<span{minor} style="left:{_num((i + 0.5) * 100 / n)}%">{escape(category)}</span>')
    return f'<div class="chart-x" aria-hidden="true">{"".join(spans)}</div>'


def _y_axis(ticks: Sequence[float], money: bool) -> tuple[str, int]:
    """The tick labels (HTML) and the length of the longest, which sizes the axis column."""
    top = ticks[-1]
    labels = [short_number(t, money=money) for t in ticks]
    spans = "".join(
        f'<span style="bottom:{_num(t * 100 / top)}%">{escape(label)}</span>'
        for t, label in zip(ticks, labels, strict=True)
    )
    return f'<div class="chart-y" aria-hidden="true">{spans}</div>', max(len(label) for label in labels)


def _legend(series: Sequence[Series]) -> str:
    items = "".join(
        f'<li><span class="chart-swatch" style="background:{color(i)}"></span>{escape(s.label)}</li>'
        for i, s in enumerate(series)
    )
    return f'<ul class="chart-legend">{items}</ul>'


def _figure(chart: Chart, kind: str, inner: str) -> str:
    title = escape(chart.title)
    return f'<figure class="chart chart-{kind}" id="chart-{escape(chart.slug)}" aria-label="{title}">{inner}</figure>'


def _tip_text(chart: Chart, text: str, value: Decimal | int) -> str:
    """Hover text: the label and its value; money shows its sign ($), anything else its unit."""
    amount = short_number(float(value), money=chart.money)
    return f"{text}: {amount}" if chart.money else f"{text}: {amount} {chart.unit}"


def _tip(chart: Chart, text: str, value: Decimal | int) -> str:
    return f"<title>{escape(_tip_text(chart, text, value))}</title>"


def _columns(chart: Chart) -> str:
    n = len(chart.categories)
    if chart.kind == "stacked_bars":
        maximum = max(float(sum(s.values[i] for s in chart.series)) for i in range(n))
    else:
        maximum = max(float(v) for s in chart.series for v in s.values)
    ticks = nice_ticks(maximum)
    scale = _PLOT_HEIGHT / ticks[-1]

    def y(value: float) -> str:
        return _num(_PLOT_HEIGHT - value * scale)

    shapes = [
        f'<line class="chart-gridline" x1="0" x2="{n}" y1="{y(t)}" y2="{y(t)}" vector-effect="non-scaling-stroke"/>'
        for t in ticks[1:]
    ]
    if chart.kind == "stacked_bars":
        for i, category in enumerate(chart.categories):
            bottom = 0.0
            for j, s in enumerate(chart.series):
                value = float(s.values[i])
                if value <= 0:
                    continue
                # Provisional data (it may still be restated) is drawn lighter, and its tip says so.
                late = chart.provisional_from is not None and i >= chart.provisional_from
                faded = f' class="provisional" fill-opacity="{PROVISIONAL_ALPHA}"' if late else ""
                tip = f"{category} · {s.label}" + (" (provisional)" if late else "")
                shapes.append(
                    f'<rect x="{_num(i + 0.1)}" y="{y(bottom + value)}" width="0.8" height="{_num(value * scale)}" '
                    f'fill="{color(j)}"{faded}>{_tip(chart, tip, s.values[i])}</rect>'
                )
                bottom += value
    else:
        for j, s in enumerate(chart.series):
            if n == 1:
                points = f"0.2,{y(float(s.values[0]))} 0.8,{y(float(s.values[0]))}"
            else:
                points = " ".join(f"{_num(i + 0.5)},{y(float(v))}" for i, v in enumerate(s.values))
            total = sum(s.values, Decimal(0))
            shapes.append(
                f'<polyline points="{points}" fill="none" stroke="{color(j)}" stroke-width="2" '
                f'stroke-linejoin="round" vector-effect="non-scaling-stroke">'
                f"{_tip(chart, f'{s.label}, whole period', total)}</polyline>"
            )
    shapes.append(
        f'<line class="chart-baseline" x1="0" x2="{n}" y1="{_PLOT_HEIGHT}" y2="{_PLOT_HEIGHT}" '
        'vector-effect="non-scaling-stroke"/>'
    )
    y_axis, y_chars = _y_axis(ticks, chart.money)
    plot = (
        f'<svg class="chart-plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {n} {_PLOT_HEIGHT}" '
        f'preserveAspectRatio="none" role="img" aria-label="{escape(chart.title)}">{"".join(shapes)}</svg>'
    )
    area = (
        f'<div class="chart-area" style="--chart-y-width:{y_chars}ch">{y_axis}{plot}{_x_axis(chart.categories)}'
        f'<div class="chart-unit">{escape(chart.unit)}</div></div>'
    )
    return _figure(chart, "columns", area + _legend(chart.series))


def _label(category: str) -> str:
    """A bar's label in two parts that shorten apart: a line item (``model, item``) too long for its column keeps up
    to 55% of it for its item and shortens its model in the rest (``ft:gpt-4o-mini-…, batch input``), so the bars of
    one long model are told apart by their items; a label with no item is all tail, shortened at its end."""
    head, comma, item = category.partition(", ")
    if not comma:
        return f'<span class="chart-label-tail">{escape(category)}</span>'
    return f'<span class="chart-label-head">{escape(head)}</span><span class="chart-label-tail">, {escape(item)}</span>'


def _hbars(chart: Chart) -> str:
    values = chart.series[0].values
    maximum = max(float(v) for v in values)
    rows = []
    for category, value in zip(chart.categories, values, strict=True):
        share = float(value) / maximum if maximum > 0 else 0.0
        tip = escape(_tip_text(chart, category, value))
        rows.append(
            f'<div class="chart-label" title="{tip}">{_label(category)}</div>'
            f'<div class="chart-track" title="{tip}"><span class="chart-bar" '
            f'style="width:calc((100% - 5em) * {_num(max(share, 0.0))});background:{color(0)}"></span>'
            f'<span class="chart-value">{escape(short_number(float(value), money=chart.money))}</span></div>'
        )
    return _figure(
        chart,
        "hbars",
        f'<div class="chart-rows">{"".join(rows)}</div><div class="chart-unit">{escape(chart.unit)}</div>',
    )


def render_chart(chart: Chart) -> str:
    """The chart as one ``<figure class="chart">`` element, styled by the report's stylesheet."""
    if chart.is_empty:
        return _figure(chart, "empty", '<p class="chart-note">No data in this period</p>')
    if chart.kind == "hbars":
        return _hbars(chart)
    return _columns(chart)
