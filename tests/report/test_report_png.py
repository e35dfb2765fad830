"""PNG charts (matplotlib): the legend sits outside the plotted data and the axes read like money or counts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image, ImageStat

from usageledger.report.charts import Chart, Series, png_figure, write_png

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
