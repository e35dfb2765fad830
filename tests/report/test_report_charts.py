"""Charts: well-formed HTML with inline SVG, sensible axes, PNG output and the missing-extra message."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

import pytest

from usageledger.errors import ConfigError
from usageledger.report.chart_html import render_chart
from usageledger.report.charts import Chart, Series, nice_ticks, short_number, write_png
from usageledger.report.formatting import format_money, format_ratio, format_signed_money
from usageledger.report.terminal import sparkline

SVG = "{http://www.w3.org/2000/svg}"

STACKED = Chart(
    slug="s",
    title="Daily <spend>",
    kind="stacked_bars",
    categories=("Nov 01", "Nov 02", "Nov 03"),
    series=(Series("proj & co", (Decimal("1.5"), Decimal(0), Decimal(2))), Series("b", (Decimal(1), Decimal(3), 0))),
    unit="USD",
    money=True,
)


@pytest.mark.parametrize("kind", ["stacked_bars", "lines", "hbars"])
def test_chart_is_well_formed_and_escaped(kind: str) -> None:
    """Every chart kind renders one well-formed figure labelled with its title, labels escaped, shapes drawn."""
    chart = Chart(
        STACKED.slug,
        STACKED.title,
        kind,
        STACKED.categories,
        STACKED.series[:1] if kind == "hbars" else STACKED.series,
        "USD",
    )  # type: ignore[arg-type]
    root = ET.fromstring(render_chart(chart))
    assert root.tag == "figure" and root.get("aria-label") == "Daily <spend>" and root.get("id") == "chart-s"
    drawn = (
        root.findall(f".//{SVG}rect") + root.findall(f".//{SVG}polyline") + root.findall(".//span[@class='chart-bar']")
    )
    assert len(drawn) > 1
    if kind != "hbars":
        assert [li.itertext().__next__() for li in root.iter("li")] == ["proj & co", "b"]


def test_chart_classes_are_namespaced_and_carry_no_styles() -> None:
    """Charts bring no <style> of their own and every class they use starts with chart-: nothing leaks either way."""
    for kind in ("stacked_bars", "lines"):
        root = ET.fromstring(render_chart(Chart("s", "t", kind, STACKED.categories, STACKED.series, "USD")))  # type: ignore[arg-type]
        assert not root.findall(".//style") and not root.findall(f".//{SVG}style")
        classes = {c for el in root.iter() for c in (el.get("class") or "").split()}
        assert classes and all(c == "chart" or c.startswith("chart-") for c in classes), classes


def test_stacked_bars_draw_one_rect_per_nonzero_value() -> None:
    """Zero values draw nothing; the others each get a bar segment with a tooltip."""
    root = ET.fromstring(render_chart(STACKED))
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(bars) == 4


def test_empty_chart_says_so() -> None:
    """A chart with nothing to draw shows a message instead of empty axes."""
    empty = Chart("e", "Empty", "lines", (), (), "tokens")
    assert "No data in this period" in render_chart(empty)


def test_series_must_match_categories() -> None:
    """A series of the wrong length is a programming error caught at construction."""
    with pytest.raises(ValueError, match="2 values for 3 categories"):
        Chart("x", "x", "lines", ("a", "b", "c"), (Series("s", (1, 2)),), "u")


def test_nice_ticks_cover_the_maximum() -> None:
    """Ticks start at zero, step by 1/2/2.5/5 x 10^n and reach at least the maximum."""
    for maximum in (0.7, 3, 10, 47.2, 1234, 9_999_999):
        ticks = nice_ticks(maximum)
        assert ticks[0] == 0 and ticks[-1] >= maximum and 2 <= len(ticks) <= 12
    assert nice_ticks(0) == [0.0, 1.0]


def test_short_numbers() -> None:
    """Axis labels are compact."""
    assert short_number(1500) == "1.5k"
    assert short_number(2_500_000, money=True) == "$2.5M"
    assert short_number(12_345, money=True) == "$12.3k"
    assert short_number(0) == "0"
    assert short_number(-1234.5, money=True) == "-$1.23k"


@pytest.mark.parametrize("value", [999_999, 999.6, 0.0000123, 1.23e16, 4e-11, 9_995_000_000])
def test_short_numbers_never_use_scientific_notation(value: float) -> None:
    """Rounding up to the next unit and very large or small values stay positional: 1M, never 1e+03k."""
    text = short_number(value)
    assert "e" not in text.lower(), text
    assert short_number(999_999) == "1M" and short_number(0.0000123) == "0.0000123"


def test_png_is_written(tmp_path: Path) -> None:
    """write_png produces a real PNG file with matplotlib."""
    path = write_png(STACKED, tmp_path / "charts" / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without matplotlib the error names the usageledger[charts] extra."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"usageledger\[charts\]"):
        write_png(STACKED, tmp_path / "s.png")


def test_sparkline_scales_low_to_high() -> None:
    """The smallest value is the lowest block, the largest the highest; flat data is flat."""
    assert sparkline([Decimal(0), Decimal(5), Decimal(10)]) == "▁▅█"
    assert sparkline([3, 3]) == "▁▁"
    assert sparkline([]) == ""


def test_money_is_rounded_only_for_display() -> None:
    """Formatting rounds half-up to cents and never turns -0 into a sign."""
    assert format_money(Decimal("1234.565")) == "$1,234.57"
    assert format_money(Decimal("-0.001")) == "$0.00"
    assert format_money(Decimal("2.5"), "chf") == "2.50 CHF"
    assert format_signed_money(Decimal("1.2")) == "+$1.20"
    assert format_signed_money(Decimal("-1.2")) == "-$1.20"
    assert format_ratio(Decimal("0.125")) == "+12.5%"
    assert format_ratio(None) == "new"
