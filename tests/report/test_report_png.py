"""PNG charts (matplotlib): the legend sits outside the plotted data and the axes read like money or counts."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image, ImageStat

from usageledger.report.charts import (
    PNG_LABEL_CHARS,
    PROVISIONAL_ALPHA,
    Chart,
    Series,
    png_figure,
    png_label,
    write_png,
)

if TYPE_CHECKING:
    # Imported where used: every pytest-xdist worker imports every test module to collect it, and matplotlib
    # costs ~0.3 s of CPU to import; only the worker that runs these tests pays it.
    from matplotlib.figure import Figure

DAYS = tuple(f"Nov {d:02d}" for d in range(1, 31))
MODELS = tuple(f"gpt-4o-mini-2024-07-18-variant-{i}" for i in range(8))
TOKENS = Chart(
    slug="tokens-by-model",
    title="Tokens by model per day",
    kind="lines",
    categories=DAYS,
    # Tens of millions of tokens a day: matplotlib's default axis would print "1e7" above the ticks.
    series=tuple(
        Series(m, tuple(25_000_000 - i * 2_000_000 + (d % 7) * 400_000 for d in range(30)))
        for i, m in enumerate(MODELS)
    ),
    unit="tokens",
)
SPEND = Chart(
    slug="daily-spend-by-project",
    title="Daily spend by project",
    kind="stacked_bars",
    categories=DAYS,
    series=tuple(Series(f"WWW MARKETING WEB {i} (EMEA)", tuple(4_000 + 100 * i for _ in DAYS)) for i in range(6)),
    unit="USD",
    money=True,
)


def _drawn(chart: Chart) -> Figure:
    figure = png_figure(chart)
    figure.draw_without_rendering()
    return figure


@pytest.mark.parametrize("chart", [TOKENS, SPEND], ids=lambda c: c.kind)
def test_legend_is_outside_the_axes(chart: Chart) -> None:
    """The legend belongs to the figure, below the axes: its box does not meet the plot area, nor leave the image."""
    figure = _drawn(chart)
    (ax,) = figure.axes
    assert ax.get_legend() is None and len(figure.legends) == 1
    legend = figure.legends[0].get_window_extent()
    plot = ax.get_window_extent()
    assert legend.y1 < plot.y0, f"legend top {legend.y1:.0f}px reaches the axes bottom {plot.y0:.0f}px"
    assert not legend.overlaps(plot)
    assert legend.x0 >= 0 and legend.x1 <= figure.bbox.width and legend.y0 >= 0
    assert len(figure.legends[0].get_texts()) == len(chart.series)


@pytest.mark.parametrize("chart", [TOKENS, SPEND], ids=lambda c: c.kind)
def test_tick_labels_are_humanized(chart: Chart) -> None:
    """Value ticks read 25M or $24k: no scientific notation and no offset text such as 1e7 above the axis."""
    figure = _drawn(chart)
    (ax,) = figure.axes
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(labels) >= 3
    for label in [*labels, ax.yaxis.get_offset_text().get_text()]:
        assert "e+" not in label and "1e" not in label and "×10" not in label, label
    suffix = "k" if chart.money else "M"
    assert any(label.endswith(suffix) for label in labels), labels
    assert all(label.startswith("$") for label in labels) == chart.money


def test_png_screenshot_keeps_the_plot_clear_of_the_legend(tmp_path: Path) -> None:
    """The written PNG grows to hold the legend, and the band between the axes and the legend is plain background."""
    path = write_png(TOKENS, tmp_path / "tokens.png")
    figure = _drawn(TOKENS)
    (ax,) = figure.axes
    with Image.open(path) as image:
        assert image.width == 1000 and image.height > 420
        assert ImageStat.Stat(image.convert("L")).var[0] > 100
        # Inside the axes the legend would put dark text over the lines; outside, the top half of the plot holds
        # only lines and gridless background. Sample the plot's top quarter: no legend text rows there.
        box = ax.get_window_extent()
        top = image.height - box.y1
        band = image.convert("L").crop((int(box.x0) + 2, int(top) + 2, int(box.x1) - 2, int(top + box.height / 4)))
        dark = sum(band.histogram()[:80]) / (band.width * band.height)
        assert dark < 0.01, f"{dark:.1%} of the plot's top quarter is dark ink"


LINE_ITEMS = Chart(
    slug="spend-by-line-item",
    title="Spend by line item (top 20)",
    kind="hbars",
    categories=(
        "gpt-4o-2024-08-06, output",
        "ft:gpt-4o-mini-2024-07-18:acme-marketing-research-dept:cx7y2k, batch input",
        "ft:gpt-4o-mini-2024-07-18:acme-marketing-research-dept:cx7y2k, web search tool calls (medium context)",
        "text-embedding-3-small",
    ),
    series=(Series("spend", (Decimal("166.2"), Decimal("40.81"), Decimal("38.1"), Decimal("0.02"))),),
    unit="USD",
    money=True,
)


def test_bars_carry_their_figures_and_long_labels_keep_their_line_items() -> None:
    """A PNG's bars had no figures (a bar of $0.02 beside one of $166 was no bar at all), and a 101-character line
    item took more than half the image from the bars. Each bar now ends in its figure, as in the HTML report, and a
    label past 48 characters is shortened in its model, keeping the line item that tells the bars apart."""
    figure = _drawn(LINE_ITEMS)
    (ax,) = figure.axes
    figures = [t.get_text() for t in ax.texts]
    assert figures == ["$0.02", "$38.1", "$40.8", "$166"]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "gpt-4o-2024-08-06, output"
    assert all(len(label) <= PNG_LABEL_CHARS for label in labels), labels
    assert labels[1].endswith(", web search tool calls (…") and labels[1].startswith("ft:gpt-4o-mini")
    assert labels[2].endswith(", batch input") and "…" in labels[2]
    # The largest bar's figure stays inside the axes.
    biggest = ax.texts[-1].get_window_extent()
    assert biggest.x1 <= ax.get_window_extent().x1


def test_png_label_shortens_by_the_html_reports_rule() -> None:
    """A label within the width is kept; one with no line item is cut at its end; otherwise the item keeps up to
    55% of the width and the model the rest."""
    assert png_label("gpt-4o, output") == "gpt-4o, output"
    assert png_label("x" * 60) == "x" * 47 + "…"
    shortened = png_label("m" * 40 + ", " + "i" * 40)
    assert len(shortened) == PNG_LABEL_CHARS
    assert shortened.startswith("m" * 21 + "…, ") and shortened.endswith("i" * 23 + "…")
    assert png_label("m" * 40 + ", batch input") == "m" * 34 + "…, batch input"


def test_provisional_days_are_lighter_and_the_legend_says_so() -> None:
    """The HTML report draws provisional days lighter; the PNG drew them like final ones, and it travels without the
    page's banner. From the first provisional day every bar is lighter, and the legend names the shade and the day."""
    chart = replace(SPEND, provisional_from=27)
    figure = _drawn(chart)
    (ax,) = figure.axes
    for container in ax.containers:
        alphas = [bar.get_alpha() for bar in container]
        assert alphas == [None] * 27 + [PROVISIONAL_ALPHA] * 3
    texts = [t.get_text() for t in figure.legends[0].get_texts()]
    assert texts[-1] == "provisional from Nov 28" and len(texts) == len(chart.series) + 1
    handle = figure.legends[0].legend_handles[-1]
    assert handle is not None and handle.get_alpha() == PROVISIONAL_ALPHA
    final = _drawn(SPEND)
    assert [t.get_text() for t in final.legends[0].get_texts()] == [s.label for s in SPEND.series]


def test_negative_bars_are_drawn_left_of_zero() -> None:
    """The axis of the bars' figures started at zero: a line item whose period total is negative (a credit) was cut
    off, bar and figure, and a chart of negative totals alone turned the axis round. Every bar and its figure stay
    inside the axes, on the side of zero they point to."""
    chart = replace(
        LINE_ITEMS, series=(Series("spend", (Decimal("166.2"), Decimal("-40.81"), Decimal(0), Decimal(3))),)
    )
    for drawn in (
        chart,
        replace(chart, series=(Series("spend", (Decimal(-2), Decimal(-5), Decimal(-1), Decimal(0))),)),
    ):
        (ax,) = _drawn(drawn).axes
        low, high = ax.get_xlim()
        assert low < high
        values = [float(v) for v in drawn.series[0].values]
        assert low < min(0.0, *values) or min(values) == 0
        box = ax.get_window_extent()
        for text in ax.texts:
            extent = text.get_window_extent()
            assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
    (ax,) = _drawn(replace(chart, series=(Series("spend", (Decimal(0),) * 4),))).axes
    assert ax.get_xlim() == (0.0, 1.0)


def test_long_legend_labels_are_shortened() -> None:
    """A project name of 150 characters was a legend entry wider than the image, cut at both edges with the
    provisional entry beside it; legend labels are shortened as the bars' are, and the legend fits the figure."""
    chart = replace(SPEND, series=(Series("A" * 150, SPEND.series[0].values), *SPEND.series[1:]), provisional_from=0)
    figure = _drawn(chart)
    texts = [t.get_text() for t in figure.legends[0].get_texts()]
    assert texts[0] == png_label("A" * 150) and len(texts[0]) == PNG_LABEL_CHARS
    assert texts[-1] == "provisional from Nov 01"
    assert figure.legends[0].get_window_extent().width <= figure.bbox.width
