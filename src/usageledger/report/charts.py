"""Charts as data, drawn two ways: inline SVG (no dependency) and PNG (matplotlib, imported only when asked).

A :class:`Chart` holds categories (days, or bar labels) and one or more series. Three kinds cover the report:
``stacked_bars`` (daily spend stacked by project), ``lines`` (tokens by model over time) and ``hbars`` (spend by
line item, cost per million tokens). Values are exact (``Decimal`` or ``int``); they become floats only to place
pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Final, Literal

from usageledger.errors import ConfigError
from usageledger.report.names import Names
from usageledger.report.queries import DailyValue, ReportData
from usageledger.report.trend import bucket_starts, grain_for, rebucket

__all__ = [
    "PALETTE",
    "Chart",
    "ChartKind",
    "Series",
    "nice_ticks",
    "render_svg",
    "report_charts",
    "short_number",
    "write_png",
]

ChartKind = Literal["stacked_bars", "lines", "hbars"]
Number = Decimal | int

PALETTE: Final[tuple[str, ...]] = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)

_WIDTH: Final = 760
_HEIGHT: Final = 300
_LEFT: Final = 64
_RIGHT: Final = 16
_TOP: Final = 16
_BOTTOM: Final = 44
_LEGEND_ROW: Final = 18


@dataclass(frozen=True, slots=True)
class Series:
    """One named series; ``values`` line up with the chart's categories."""

    label: str
    values: tuple[Number, ...]


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart's data and labels; ``slug`` names its PNG file and its element id in the HTML report."""

    slug: str
    title: str
    kind: ChartKind
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    unit: str
    money: bool = False

    def __post_init__(self) -> None:
        for s in self.series:
            if len(s.values) != len(self.categories):
                raise ValueError(f"series {s.label!r} has {len(s.values)} values for {len(self.categories)} categories")

    @property
    def is_empty(self) -> bool:
        return not self.categories or all(v == 0 for s in self.series for v in s.values)


def short_number(value: float, *, money: bool = False) -> str:
    """A compact axis label: ``1.2k``, ``3.4M``, ``$0.05``."""
    prefix = "$" if money else ""
    magnitude = abs(value)
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if magnitude >= size:
            return f"{prefix}{value / size:.3g}{suffix}"
    if magnitude == 0:
        return f"{prefix}0"
    return f"{prefix}{value:.3g}"


def nice_ticks(maximum: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``maximum``: steps of 1, 2 or 5 times a power of ten."""
    if maximum <= 0 or not math.isfinite(maximum):
        return [0.0, 1.0]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    top = math.ceil(maximum / step - 1e-9) * step
    n = round(top / step)
    return [i * step for i in range(n + 1)]


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _legend(series: Sequence[Series], y: float) -> list[str]:
    parts: list[str] = []
    x = float(_LEFT)
    for i, s in enumerate(series):
        label = escape(s.label)
        width = 18 + 7 * len(s.label)
        if x + width > _WIDTH - _RIGHT:
            x = float(_LEFT)
            y += _LEGEND_ROW
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{_color(i)}"/>')
        parts.append(f'<text x="{x + 14:.1f}" y="{y:.1f}" class="legend">{label}</text>')
        x += width + 12
    return parts


def _legend_rows(series: Sequence[Series]) -> int:
    rows, x = 1, float(_LEFT)
    for s in series:
        width = 18 + 7 * len(s.label)
        if x + width > _WIDTH - _RIGHT:
            rows, x = rows + 1, float(_LEFT)
        x += width + 12
    return rows


def _x_labels(categories: Sequence[str], x_of: list[float], baseline: float) -> list[str]:
    every = max(1, math.ceil(len(categories) / 10))
    return [
        f'<text x="{x_of[i]:.1f}" y="{baseline + 16:.1f}" class="axis" text-anchor="middle">{escape(c)}</text>'
        for i, c in enumerate(categories)
        if i % every == 0
    ]


def _y_axis(ticks: list[float], y_of: float, scale: float, money: bool) -> list[str]:
    parts = []
    for t in ticks:
        y = y_of - t * scale
        parts.append(f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
            f"{escape(short_number(t, money=money))}</text>"
        )
    return parts


def _svg(chart: Chart, height: float, body: list[str]) -> str:
    title = escape(chart.title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="chart-{escape(chart.slug)}" '
        f'viewBox="0 0 {_WIDTH} {height:.0f}" width="{_WIDTH}" height="{height:.0f}" role="img" '
        f'aria-label="{title}"><title>{title}</title>'
        "<style>.axis{font:11px sans-serif;fill:#555}.legend{font:12px sans-serif;fill:#222}"
        ".grid{stroke:#e3e3e3;stroke-width:1}.empty{font:14px sans-serif;fill:#777}</style>"
        f'<rect x="0" y="0" width="{_WIDTH}" height="{height:.0f}" fill="#ffffff"/>' + "".join(body) + "</svg>"
    )


def _columns(chart: Chart) -> str:
    legend_rows = _legend_rows(chart.series)
    height = _HEIGHT + legend_rows * _LEGEND_ROW
    baseline = float(_HEIGHT - _BOTTOM)
    plot_h = baseline - _TOP
    n = len(chart.categories)
    slot = (_WIDTH - _LEFT - _RIGHT) / n
    x_of = [_LEFT + slot * (i + 0.5) for i in range(n)]
    if chart.kind == "stacked_bars":
        maximum = max(float(sum(s.values[i] for s in chart.series)) for i in range(n))
    else:
        maximum = max(float(v) for s in chart.series for v in s.values)
    ticks = nice_ticks(maximum)
    scale = plot_h / ticks[-1]
    body = _y_axis(ticks, baseline, scale, chart.money)
    if chart.kind == "stacked_bars":
        bar_w = max(1.0, slot * 0.8)
        for i in range(n):
            y = baseline
            for j, s in enumerate(chart.series):
                h = float(s.values[i]) * scale
                if h <= 0:
                    continue
                y -= h
                tip = escape(f"{chart.categories[i]} · {s.label}: {s.values[i]} {chart.unit}")
                body.append(
                    f'<rect x="{x_of[i] - bar_w / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                    f'fill="{_color(j)}"><title>{tip}</title></rect>'
                )
    else:
        for j, s in enumerate(chart.series):
            points = " ".join(f"{x_of[i]:.1f},{baseline - float(v) * scale:.1f}" for i, v in enumerate(s.values))
            body.append(
                f'<polyline points="{points}" fill="none" stroke="{_color(j)}" stroke-width="2">'
                f"<title>{escape(s.label)}</title></polyline>"
            )
            if n == 1:
                body.append(
                    f'<circle cx="{x_of[0]:.1f}" cy="{baseline - float(s.values[0]) * scale:.1f}" r="3" '
                    f'fill="{_color(j)}"/>'
                )
    body.append(f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{baseline}" y2="{baseline}" stroke="#999"/>')
    body.extend(_x_labels(chart.categories, x_of, baseline))
    body.extend(_legend(chart.series, baseline + 40))
    return _svg(chart, height, body)


def _hbars(chart: Chart) -> str:
    n = len(chart.categories)
    row = 22
    label_w = min(260, 12 + 7 * max(len(c) for c in chart.categories))
    height = _TOP + n * row + 30
    left = label_w + 8
    plot_w = _WIDTH - left - 90
    values = chart.series[0].values
    maximum = max(float(v) for v in values)
    scale = plot_w / maximum if maximum > 0 else 0.0
    body = []
    for i, (cat, v) in enumerate(zip(chart.categories, values, strict=True)):
        y = _TOP + i * row
        w = max(0.0, float(v) * scale)
        label = escape(cat if len(cat) <= 36 else cat[:35] + "…")
        body.append(f'<text x="{left - 6}" y="{y + 15}" class="legend" text-anchor="end">{label}</text>')
        body.append(
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{_color(0)}">'
            f"<title>{escape(f'{cat}: {v} {chart.unit}')}</title></rect>"
        )
        body.append(
            f'<text x="{left + w + 6:.1f}" y="{y + 15}" class="axis">'
            f"{escape(short_number(float(v), money=chart.money))}</text>"
        )
    body.append(f'<text x="{left}" y="{height - 8:.0f}" class="axis">{escape(chart.unit)}</text>')
    return _svg(chart, height, body)


def render_svg(chart: Chart) -> str:
    """The chart as a standalone ``<svg>`` element, ready to inline in HTML."""
    if chart.is_empty:
        body = [f'<text x="{_WIDTH / 2}" y="60" class="empty" text-anchor="middle">No data in this period</text>']
        return _svg(chart, 100, body)
    if chart.kind == "hbars":
        return _hbars(chart)
    return _columns(chart)


def write_png(chart: Chart, path: Path) -> Path:
    """Draw the chart with matplotlib into ``path`` (PNG); needs the ``usageledger[charts]`` extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError(
            "PNG charts need matplotlib: install the charts extra with pip install 'usageledger[charts]'"
        ) from exc
    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=100)
    try:
        ax.set_title(chart.title)
        if chart.is_empty:
            ax.text(0.5, 0.5, "No data in this period", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        elif chart.kind == "hbars":
            labels = list(reversed(chart.categories))
            values = [float(v) for v in reversed(chart.series[0].values)]
            ax.barh(labels, values, color=PALETTE[0])
            ax.set_xlabel(chart.unit)
        else:
            xs = list(range(len(chart.categories)))
            bottoms = [0.0] * len(xs)
            for j, s in enumerate(chart.series):
                values = [float(v) for v in s.values]
                if chart.kind == "stacked_bars":
                    ax.bar(xs, values, bottom=bottoms, color=_color(j), label=s.label)
                    bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
                else:
                    ax.plot(xs, values, color=_color(j), label=s.label, linewidth=2)
            every = max(1, math.ceil(len(xs) / 10))
            ax.set_xticks(xs[::every], list(chart.categories)[::every], rotation=30, ha="right")
            ax.set_ylabel(chart.unit)
            ax.legend(fontsize="small", ncols=min(4, len(chart.series)))
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


_TOP_SERIES: Final = 7


def _top_series(
    days: Sequence[date], values: Sequence[DailyValue], label: Callable[[str | None], str]
) -> tuple[Series, ...]:
    """One series per key over ``days``: the biggest keys by total, the rest summed into ``other``."""
    totals: dict[str | None, Decimal] = {}
    for v in values:
        totals[v.key] = totals.get(v.key, Decimal(0)) + v.value
    ranked = sorted(totals, key=lambda k: (-totals[k], k is None, k or ""))
    keep = ranked if len(ranked) <= _TOP_SERIES + 1 else ranked[:_TOP_SERIES]
    index = {d: i for i, d in enumerate(days)}
    grid: dict[str, list[Decimal]] = {label(k): [Decimal(0)] * len(days) for k in keep}
    if len(keep) < len(ranked):
        grid["other"] = [Decimal(0)] * len(days)
    for v in values:
        name = label(v.key) if v.key in keep else "other"
        grid[name][index[v.day]] += v.value
    return tuple(Series(name, tuple(vals)) for name, vals in grid.items())


def report_charts(data: ReportData, names: Names) -> list[Chart]:
    """The four charts of the HTML report (and of ``--png``)."""
    # A long period is drawn by week or month (report/trend.py), never as thousands of daily bars.
    grain = grain_for(data.period.days)
    days = bucket_starts(data.period, grain)
    labels = tuple(d.strftime("%b %Y" if grain == "month" else "%b %d") for d in days)
    per = {"day": "Daily", "week": "Weekly", "month": "Monthly"}[grain]
    unit = (data.currency or "usd").upper()
    money = unit == "USD"
    rates = [(m.model or "(no model)", m.per_million_tokens) for m in data.spend_by_model]
    priced = [(model, rate) for model, rate in rates if rate is not None]
    items = data.spend_by_line_item[:20]
    return [
        Chart(
            slug="daily-spend-by-project",
            title=f"{per} spend by project",
            kind="stacked_bars",
            categories=labels,
            series=_top_series(days, rebucket(data.daily_spend_by_project, data.period, grain), names.project),
            unit=unit,
            money=money,
        ),
        Chart(
            slug="tokens-by-model",
            title=f"Tokens by model per {grain}",
            kind="lines",
            categories=labels,
            series=_top_series(
                days, rebucket(data.daily_tokens_by_model, data.period, grain), lambda m: m or "(no model)"
            ),
            unit="tokens",
        ),
        Chart(
            slug="spend-by-line-item",
            title="Spend by line item" + (" (top 20)" if len(data.spend_by_line_item) > 20 else ""),
            kind="hbars",
            categories=tuple(s.key or "(none)" for s in items),
            series=(Series("spend", tuple(s.amount for s in items)),),
            unit=unit,
            money=money,
        ),
        Chart(
            slug="cost-per-million-tokens",
            title="Cost per million tokens by model",
            kind="hbars",
            categories=tuple(model for model, _ in priced),
            series=(Series("per 1M tokens", tuple(rate for _, rate in priced)),),
            unit=f"{unit} per 1M tokens",
            money=money,
        ),
    ]
