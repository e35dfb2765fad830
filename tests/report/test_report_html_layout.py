"""The HTML report as a person sees it: the demo's report opened in headless Chromium at desktop and phone widths.

Geometry and computed styles are read from the browser; screenshots are taken and measured. Project names are
deliberately wide (capitals, ``W``s) so a legend laid out from guessed text widths would collide.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from PIL import Image, ImageStat
from playwright.sync_api import Page
from typer.testing import CliRunner

import usageledger.report
from usageledger.cli import app
from usageledger.report.chart_html import render_chart
from usageledger.report.charts import Chart, Series

from fixtures.browser import BrowserPage

CHARTS = ("daily-spend-by-project", "tokens-by-model", "spend-by-line-item", "cost-per-million-tokens")
LEGENDS = ("daily-spend-by-project", "tokens-by-model")
WIDTHS = (1440, 390)
WASHED_GREY = "rgb(227, 227, 227)"


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory, demo_command_store: Path) -> Path:
    """A copy of the `usageledger demo` store, then `report --html` with wide project names from a CSV file."""
    folder = tmp_path_factory.mktemp("html-layout")
    store = demo_command_store
    with duckdb.connect(str(store), read_only=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT DISTINCT project_id FROM costs_daily ORDER BY 1").fetchall()]
    names = folder / "names.csv"
    with names.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["kind", "id", "name"])
        for i, pid in enumerate(ids):
            writer.writerow(["project", pid, f"WWWWWW MARKETING WEB {i} (EMEA) — MOBILE"])
    html = folder / "report.html"
    result = CliRunner().invoke(app, ["report", "--store", str(store), "--html", str(html), "--names", str(names)])
    assert result.exit_code == 0, result.output
    return html


@pytest.fixture(params=WIDTHS, ids=[f"{w}px" for w in WIDTHS])
def opened(
    request: pytest.FixtureRequest, report_file: Path, module_browser_page: BrowserPage
) -> Iterator[BrowserPage]:
    """The report loaded offline at one viewport width (in a fresh context of the module's one Chromium, started
    after ``report_file``, which runs commands in this thread: none may meet Playwright's event loop)."""
    _load(module_browser_page.page, report_file, request.param, 900)
    yield module_browser_page


def _load(page: Page, report_file: Path, width: int, height: int) -> None:
    """The report, loaded offline in a window of ``width`` by ``height`` pixels."""
    page.set_viewport_size({"width": width, "height": height})
    page.goto(report_file.as_uri())
    page.wait_for_load_state("load")


def _luminance(rgb: str) -> float:
    parts = [float(p) / 255 for p in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    lin = [p / 12.92 if p <= 0.03928 else ((p + 0.055) / 1.055) ** 2.4 for p in parts]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast_on_white(rgb: str) -> float:
    return 1.05 / (_luminance(rgb) + 0.05)


TEXT_STYLES = """root => {
  const out = [];
  for (const el of [root, ...root.querySelectorAll('*')]) {
    if (el.closest('title')) continue;
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const s = getComputedStyle(el);
    const svgText = el instanceof SVGElement;
    out.push({text: el.textContent.trim(), paint: svgText ? s.fill : s.color, stroke: s.stroke,
              fontSize: s.fontSize, height: el.getBoundingClientRect().height});
  }
  return out;
}"""


def test_chart_text_is_dark_and_never_greyed_by_the_page(opened: BrowserPage) -> None:
    """Every text in every chart is painted dark enough to read (WCAG 4.5:1), with no stroke leaking from the page."""
    page = opened.page
    for slug in CHARTS:
        texts: list[dict[str, Any]] = page.locator(f"#chart-{slug}").evaluate(TEXT_STYLES)
        assert len(texts) >= 3, slug
        for t in texts:
            assert t["stroke"] in ("none", ""), f"{slug}: {t['text']!r} is stroked {t['stroke']}"
            assert t["paint"] != WASHED_GREY and _contrast_on_white(t["paint"]) >= 4.5, (slug, t)
            # Text keeps its size at every width (a chart scaled as a picture would shrink or blow it up).
            assert 10 <= float(t["fontSize"].removesuffix("px")) <= 14 and t["height"] <= 24, (slug, t)
    assert opened.errors == []
    assert [u for u in opened.requests if not u.startswith(("file:", "data:"))] == []


def test_charts_fill_their_cards_and_the_page_fits(opened: BrowserPage) -> None:
    """Each chart is at least 90% as wide as its card's content box, and the page never scrolls sideways."""
    page = opened.page
    for slug in CHARTS:
        ratio = page.locator(f"#chart-{slug}").evaluate(
            """el => {
              const card = el.closest('section');
              const s = getComputedStyle(card);
              const inner = card.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
              return el.getBoundingClientRect().width / inner;
            }"""
        )
        assert ratio >= 0.9, f"{slug} fills {ratio:.0%} of its card"
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the window"


OVERLAPS = """(root, selector) => {
  const shown = [...root.querySelectorAll(selector)].filter(el => getComputedStyle(el).display !== 'none');
  const found = [];
  shown.forEach((a, i) => shown.slice(i + 1).forEach(b => {
    if (a.contains(b) || b.contains(a)) return;
    const r = a.getBoundingClientRect(), q = b.getBoundingClientRect();
    if (r.left < q.right && q.left < r.right && r.top < q.bottom && q.top < r.bottom) {
      found.push([a.textContent.trim() || a.tagName, b.textContent.trim() || b.tagName]);
    }
  }));
  return {count: shown.length, overlaps: found};
}"""
LEGEND = ".chart-legend li, .chart-swatch, text.legend, rect[width='10'][height='10']"
"""Legend entries and their colour swatches (the old SVG legend drew each as a 10x10 rect beside a text)."""


def test_legend_and_axis_labels_never_overlap(opened: BrowserPage) -> None:
    """No legend entry or swatch intersects another, nor two visible x-axis labels, even with wide names."""
    page = opened.page
    for slug in LEGENDS:
        chart = page.locator(f"#chart-{slug}")
        legend = chart.evaluate(OVERLAPS, LEGEND)
        assert legend["count"] >= 5 and legend["overlaps"] == [], (slug, legend)
        ticks = chart.evaluate(OVERLAPS, ".chart-x span, text.axis[text-anchor=middle]")
        assert ticks["count"] >= 3 and ticks["overlaps"] == [], (slug, ticks)
        chart_box, legend_box = chart.bounding_box(), chart.locator(".chart-legend").bounding_box()
        assert chart_box is not None and legend_box is not None
        assert (
            chart_box["x"] <= legend_box["x"]
            and legend_box["x"] + legend_box["width"] <= chart_box["x"] + chart_box["width"]
        )
    assert "WWWWWW MARKETING WEB 0 (EMEA)" in page.locator("#chart-daily-spend-by-project").text_content()  # type: ignore[operator]


def _ink(path: Path) -> float:
    """The share of pixels dark enough to be text (luminance below 110 of 255)."""
    with Image.open(path) as image:
        grey = image.convert("L")
        histogram = grey.histogram()
        return sum(histogram[:110]) / (grey.width * grey.height)


def test_screenshots_show_dark_legends_and_fit_the_window(opened: BrowserPage, tmp_path: Path) -> None:
    """Screenshots: the page is exactly as wide as the window, not blank, and each legend is drawn in dark ink."""
    page = opened.page
    width = page.viewport_size["width"] if page.viewport_size else 0
    shot = tmp_path / f"report-{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as image:
        assert image.width == width and image.height > 2000
        assert ImageStat.Stat(image.convert("L")).var[0] > 100
    for slug in LEGENDS:
        legend = page.locator(f"#chart-{slug} .chart-legend, #chart-{slug} text.legend").first
        crop = tmp_path / f"{slug}-legend-{width}.png"
        legend.screenshot(path=str(crop))
        assert _ink(crop) > 0.03, f"{slug}'s legend has almost no dark pixels: washed out"


def test_on_a_360_px_phone_every_table_fits_its_panel(report_file: Path, module_browser_page: BrowserPage) -> None:
    """At 360 px the five-column tables of `report --html` (spend and tokens by model, the top movers) scrolled inside
    their panels, each cut mid-figure at the panel's edge (`+$51.` of `+$51.22`); the dashboard's phone rules, which
    set them tighter, are now the report's own, so every panel holds its table whole."""
    page = module_browser_page.page
    _load(page, report_file, 360, 740)
    panels = page.evaluate(
        "() => [...document.querySelectorAll('section.panel')].filter(p => p.querySelector('table'))"
        ".map(p => [p.querySelector('h2').textContent, p.scrollWidth - p.clientWidth])"
    )
    assert len(panels) >= 6
    assert [(title, cut) for title, cut in panels if cut > 1] == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


FINE_TUNED = "ft:gpt-4o-mini-2024-07-18:acme-marketing-research-dept:cx7y2k"
"""A fine-tuned model's name: 61 characters, longer than a bar label's column."""


ITEM_SHOWN = """() => [...document.querySelectorAll('.chart-label')].map(label => {
  const text = label.textContent, at = text.includes(', ') ? text.indexOf(', ') + 2 : 0;
  const walker = document.createTreeWalker(label, NodeFilter.SHOW_TEXT), range = document.createRange();
  let seen = 0, node, started = false;
  while ((node = walker.nextNode())) {
    const len = node.textContent.length;
    if (!started && at < seen + len) { range.setStart(node, at - seen); started = true; }
    seen += len;
    range.setEnd(node, len);
  }
  const r = range.getBoundingClientRect(), box = label.getBoundingClientRect();
  let clipped = false;
  for (let el = range.endContainer.parentElement; el && el !== label.parentElement; el = el.parentElement)
    if (el.scrollWidth > el.clientWidth + 1 && r.right > el.getBoundingClientRect().right + 1) clipped = true;
  return [text.slice(at), r.left >= box.left - 1 && r.right <= box.right + 1 && !clipped];
})"""
"""Each bar label's line item (the text after its model's ``, ``; a label with none, all of it): whether its letters
lie whole inside the label's box, drawn rather than clipped behind an ellipsis."""


def test_bar_labels_of_one_long_model_keep_their_line_items(module_browser_page: BrowserPage) -> None:
    """`Spend by line item` for a fine-tuned model of 61 characters (`report --model`, or any report where its lines
    lead) cut every label at its end, so twenty bars read `ft:gpt-4o-mini-2024-07-18:acme-market…` alike: the item
    now keeps up to 55% of the label and the model is shortened in the rest, at a desktop card's width and a
    phone's."""
    items = ("output", "input", "cached input", "batch output", "decision cached input", "batch cache write")
    chart = Chart(
        slug="spend-by-line-item",
        title="Spend by line item",
        kind="hbars",
        categories=(*(f"{FINE_TUNED}, {item}" for item in items), "file search tool calls"),
        series=(Series("spend", tuple(Decimal(100 - 10 * i) for i in range(len(items) + 1))),),
        unit="USD",
        money=True,
    )
    css = (Path(usageledger.report.__file__).parent / "report.css").read_text(encoding="utf-8")
    page = module_browser_page.page
    # An item keeps up to 55% of its label's column: on a desktop card (some 250 px) the items of up to 12
    # characters are whole, on a phone's (some 150 px) the shortest ones.
    for width, longest in ((560, 12), (330, 6)):
        page.set_content(f"<style>{css}</style><div style='width:{width}px'>{render_chart(chart)}</div>")
        # Where the item's own letters are laid out, clipped or not: a range over them inside the label's box.
        labels: list[list[Any]] = page.evaluate(ITEM_SHOWN)
        assert len(labels) == len(items) + 1
        assert [label for label in labels if len(label[0]) <= longest and not label[1]] == [], width


def test_on_a_phone_the_figure_cards_are_one_a_line_and_as_wide_as_the_page(
    report_file: Path, module_browser_page: BrowserPage
) -> None:
    """At 390 px the spend, tokens and requests cards wrapped to a line each but kept their own text's width, three
    ragged boxes; each now spans the page, and on a wide screen they stay side by side at their own width."""
    page = module_browser_page.page
    _load(page, report_file, 390, 844)
    boxes = page.evaluate(
        "() => { const row = document.querySelector('.cards').getBoundingClientRect();"
        " return [row.width, [...document.querySelectorAll('.cards .card')]"
        ".map(c => [c.getBoundingClientRect().width, c.getBoundingClientRect().top])]; }"
    )
    row, cards = boxes
    assert len(cards) >= 3
    assert len({top for _, top in cards}) == len(cards), "two cards share a line"
    assert all(abs(width - row) <= 1 for width, _ in cards), (row, cards)
    page.set_viewport_size({"width": 1440, "height": 900})
    tops = page.evaluate("() => [...document.querySelectorAll('.cards .card')].map(c => c.getBoundingClientRect().top)")
    assert len(set(tops)) == 1, "on a wide screen the cards sit side by side"
