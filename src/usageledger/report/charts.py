"""Charts as data, drawn two ways: HTML with inline SVG (:mod:`~usageledger.report.chart_html`, no dependency)
and PNG (matplotlib, imported only when asked).

A :class:`Chart` holds categories (days, or bar labels) and one or more series. Three kinds cover the report:
``stacked_bars`` (daily spend stacked by project), ``lines`` (tokens by model over time) and ``hbars`` (spend by
line item, cost per million tokens). Values are exact (``Decimal`` or ``int``); they become floats only to place
pixels.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from usageledger.errors import ConfigError
from usageledger.report.finality import first_provisional
from usageledger.report.names import Names
from usageledger.report.queries import DailyValue, ReportData
from usageledger.report.trend import bucket_starts, grain_for, rebucket

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

__all__ = [
    "PALETTE",
    "PNG_LABEL_CHARS",
    "PROVISIONAL_ALPHA",
    "Chart",
    "ChartKind",
    "Series",
    "color",
    "nice_ticks",
    "png_figure",
    "png_label",
    "report_charts",
    "short_number",
    "undrawable",
    "write_png",
]

_PNG_WIDTH_PX: Final = 1000
_PNG_HEIGHT_PX: Final = 420
"""Height of a PNG chart without its legend, which adds its own height below the axes."""
PNG_LABEL_CHARS: Final = 48
"""The longest bar or legend label a PNG chart writes whole; a longer one is shortened (:func:`png_label`), where a
full 72-character line item took over half the image's width from its bars."""
PROVISIONAL_ALPHA: Final = 0.45
"""How opaque a provisional day's bar is drawn, in the PNG as in the HTML report."""

FALLBACK_FONTS: Final = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK KR",
    "Noto Sans Arabic",
    "Noto Sans Hebrew",
    "Noto Emoji",
    "Droid Sans Fallback",
    "WenQuanYi Zen Hei",
    "Arial Unicode MS",
    "Hiragino Sans",
    "Microsoft YaHei",
    "Segoe UI Symbol",
    "Symbola",
)
"""Fonts a PNG chart reads a character from when matplotlib's own (DejaVu Sans) has none, those installed: a world
org's names are Japanese, Chinese, Korean, Arabic and Hebrew, with emoji, and DejaVu Sans has none of the CJK."""
_GLYPH_MISSING: Final = r"Glyph \d+ .*missing from"
"""matplotlib's UserWarning for a character no font of the figure has (once per character and per draw)."""

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
    provisional_from: int | None = None
    """The index of the first category that holds provisional data (drawn lighter); ``None``: all final."""

    def __post_init__(self) -> None:
        for s in self.series:
            if len(s.values) != len(self.categories):
                raise ValueError(f"series {s.label!r} has {len(s.values)} values for {len(self.categories)} categories")

    @property
    def is_empty(self) -> bool:
        return not self.categories or all(v == 0 for s in self.series for v in s.values)


_UNITS: Final = ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k"))


def _significant(value: float, digits: int = 3) -> str:
    """``value`` (not negative) to ``digits`` significant digits, positional (never ``1e+03``), zeros trimmed."""
    if value == 0 or not math.isfinite(value):
        return "0"
    places = min(10, max(0, digits - 1 - math.floor(math.log10(value))))
    text = f"{value:,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def short_number(value: float, *, money: bool = False) -> str:
    """A compact, human axis label, never in scientific notation: ``1.2k``, ``3.4M``, ``$0.05``, ``$12.3k``."""
    prefix = "$" if money else ""
    magnitude = abs(value)
    if magnitude == 0 or not math.isfinite(magnitude):
        return f"{prefix}0"
    sign = "-" if value < 0 else ""
    # The unit is chosen after rounding, so 999,999 reads 1M rather than 1000k.
    rounded = float(f"{magnitude:.3g}")
    for size, suffix in _UNITS:
        if rounded >= size:
            return f"{sign}{prefix}{_significant(magnitude / size)}{suffix}"
    return f"{sign}{prefix}{_significant(magnitude)}"


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


def color(i: int) -> str:
    """The palette colour of the i-th series (the palette repeats)."""
    return PALETTE[i % len(PALETTE)]


def _matplotlib() -> tuple[type[Figure], type[FuncFormatter]]:
    """matplotlib's Figure and FuncFormatter, or a ConfigError naming the extra that installs it."""
    try:
        import matplotlib  # noqa: F401  (checked first: a blocked package must not pass through cached submodules)
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError as exc:
        raise ConfigError(
            "PNG charts need matplotlib: install the charts extra with pip install 'usageledger[charts]'"
        ) from exc
    return Figure, FuncFormatter


def _families() -> list[str]:
    """The font families of a PNG chart: matplotlib's (DejaVu Sans), then the installed ones of
    :data:`FALLBACK_FONTS`, which matplotlib reads a character from when the ones before have none."""
    import matplotlib
    from matplotlib import font_manager

    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    return [*matplotlib.rcParams["font.family"], *(f for f in FALLBACK_FONTS if f in installed)]


@contextmanager
def _fonts() -> Iterator[None]:
    """:func:`_families` for what is drawn inside, and matplotlib's warning for a character none of them has
    silenced: :func:`undrawable` says which, once for every chart."""
    import matplotlib

    with matplotlib.rc_context({"font.family": _families()}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_GLYPH_MISSING, category=UserWarning)
        yield


def undrawable(charts: Iterable[Chart]) -> str:
    """The characters of the charts' text (titles, labels, legends) that no font of a PNG chart has, in the order
    they first appear: matplotlib draws each as a box, so a name in them cannot be read. Empty when every one is
    drawn. Needs the ``usageledger[charts]`` extra."""
    _matplotlib()
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    paths = set()
    for family in _families():
        with contextlib.suppress(ValueError):  # a family with no font installed
            paths.add(findfont(FontProperties(family=[family]), fallback_to_default=False))  # a str: a pattern
    drawn = {code for path in paths for code in FT2Font(path).get_charmap()}
    texts = [
        text
        for chart in charts
        for text in (
            chart.title,
            chart.unit,
            *map(png_label, chart.categories),
            *(png_label(s.label) for s in chart.series),
        )
    ]
    return "".join(dict.fromkeys(c for text in texts for c in text if not c.isspace() and ord(c) not in drawn))


def check_png_support() -> None:
    """Raise the ``ConfigError`` naming the ``usageledger[charts]`` extra when matplotlib cannot be imported: said
    before a command writes anything, so ``report --html r.html --png charts/`` does not write the page, then fail."""
    _matplotlib()


def png_figure(chart: Chart) -> Figure:
    """The chart as a matplotlib ``Figure`` (needs the ``usageledger[charts]`` extra).

    The legend sits below the axes, outside the plotted area, in as many columns as its estimated label widths
    allow; the value axis reads like the HTML report's (``$12.3k``, ``1.2M``), never ``1e7``.
    """
    figure_class, formatter = _matplotlib()
    with _fonts():
        return _figure(chart, figure_class, formatter)


def _figure(chart: Chart, figure_class: type[Figure], formatter: type[FuncFormatter]) -> Figure:
    def ticks(value: float, _position: float) -> str:
        return short_number(value, money=chart.money)

    fig = figure_class(figsize=(_PNG_WIDTH_PX / 100, _PNG_HEIGHT_PX / 100), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(chart.title)
    if chart.is_empty:
        ax.text(0.5, 0.5, "No data in this period", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    elif chart.kind == "hbars":
        labels = [png_label(c) for c in reversed(chart.categories)]
        values = [float(v) for v in reversed(chart.series[0].values)]
        bars = ax.barh(range(len(labels)), values, color=PALETTE[0], tick_label=labels)
        # Each bar's figure at its end, as the HTML report writes it: a bar of $0.02 beside one of $29 is no bar.
        ax.bar_label(bars, [short_number(v, money=chart.money) for v in values], padding=3, fontsize="small")
        # Room past each bar's end for its figure, on the side it points to: a negative total (a credit's line item)
        # is drawn left of zero, never cut off by an axis that starts at zero, nor turns the axis round (a zero's
        # figure is written right of zero, so the right keeps room too).
        low, high = min(0.0, *values), max(0.0, *values)
        room = (high - low) * 0.12
        ax.set_xlim(low - room if low < 0 else 0.0, high + room if high > low else 1.0)
        ax.xaxis.set_major_formatter(formatter(ticks))
        ax.set_xlabel(chart.unit)
    else:
        xs = list(range(len(chart.categories)))
        bottoms = [0.0] * len(xs)
        late = len(xs) if chart.provisional_from is None else chart.provisional_from
        for j, s in enumerate(chart.series):
            values = [float(v) for v in s.values]
            if chart.kind == "stacked_bars":
                bars = ax.bar(xs, values, bottom=bottoms, color=color(j), label=s.label)
                for bar in bars[late:]:
                    bar.set_alpha(PROVISIONAL_ALPHA)
                bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
            else:
                ax.plot(xs, values, color=color(j), label=s.label, linewidth=2)
        every = max(1, math.ceil(len(xs) / 10))
        ax.set_xticks(xs[::every], list(chart.categories)[::every], rotation=30, ha="right")
        ax.yaxis.set_major_formatter(formatter(ticks))
        ax.set_ylabel(chart.unit)
        ax.set_ylim(bottom=0)
        extra: list[Artist] = []
        if chart.kind == "stacked_bars" and late < len(xs):
            # Provisional days are lighter, as in the HTML report; a PNG travels without the page's banner, so its
            # legend says what lighter means (a patch outside the data: a legend entry and nothing drawn).
            from matplotlib.patches import Patch  # matplotlib is imported by now (_matplotlib above)

            extra = [
                Patch(facecolor="#888888", alpha=PROVISIONAL_ALPHA, label=f"provisional from {chart.categories[late]}")
            ]
        _place_legend(fig, ax, extra)
    return fig


def png_label(category: str, width: int = PNG_LABEL_CHARS) -> str:
    """A bar's label shortened to ``width`` characters by the HTML report's rule: a line item (``model, item``) keeps
    up to 55% of the width for its item and shortens its model in the rest, so the bars of one long model (a
    fine-tuned one) stay told apart by their items; a label with no item is shortened at its end."""
    if len(category) <= width:
        return category
    head, comma, item = category.partition(", ")
    if not comma:
        return category[: width - 1] + "…"
    tail = comma + item
    room = max(width - len(head), int(width * 0.55))
    if len(tail) > room:
        tail = tail[: room - 1] + "…"
    return (head if len(head) + len(tail) <= width else head[: width - len(tail) - 1] + "…") + tail


def _place_legend(fig: Figure, ax: Axes, extra: Sequence[Artist] = ()) -> None:
    """A legend below the axes in as many columns as fit the figure's width (measured), the figure grown to fit;
    ``extra``: entries for what the axes do not draw as such (the provisional days' lighter shade)."""
    handles, labels = ax.get_legend_handles_labels()
    handles += extra
    # shortened as the bars' labels are: one name of 150 characters was wider than the image, cut at both edges
    labels = [png_label(label) for label in [*labels, *(str(a.get_label()) for a in extra)]]
    for columns in range(len(handles), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize="small", frameon=False)
        box = legend.get_window_extent()
        if box.width <= fig.bbox.width - 16 or columns == 1:
            fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + box.height / fig.dpi)
            return
        legend.remove()


def write_png(chart: Chart, path: Path) -> Path:
    """Draw the chart with matplotlib into ``path`` (PNG); needs the ``usageledger[charts]`` extra."""
    fig = png_figure(chart)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _fonts():  # the labels are drawn (again) here
        fig.savefig(path, format="png")
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
            provisional_from=first_provisional(days, data.provisional_from, data.period.until),
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
