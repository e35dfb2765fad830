"""The HTML report's "This month" card (the forecast, the prepaid credit balance) and its sibling card of closed
months restated: the figures of ``report --format json`` and the lines of the terminal report, in one file."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.report.forecast_out import adjustment_line
from usageledger.report.formatting import format_money
from usageledger.report.history import Adjustment
from usageledger.report.html import outlook
from usageledger.report.names import Names


class _Items(HTMLParser):
    """Every ``<li>`` of the page: its attributes and its text, and the ``id`` of the section it is in."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict[str, Any]] = []
        self._section: str | None = None
        self._open: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self._section = dict(attrs).get("id")
        elif tag == "li":
            self._open = {"attrs": dict(attrs), "text": "", "section": self._section}

    def handle_endtag(self, tag: str) -> None:
        if tag == "li" and self._open is not None:
            self.items.append(self._open)
            self._open = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] += data


def _items(page: str) -> list[dict[str, Any]]:
    parser = _Items()
    parser.feed(page)
    return parser.items


def forecast_line_of(terminal: list[str]) -> str:
    return next(line for line in terminal if line.startswith("Forecast "))


def _one(page: str, item_id: str) -> dict[str, Any]:
    found = [i for i in _items(page) if i["attrs"].get("id") == item_id]
    assert len(found) == 1, f"{item_id}: {len(found)} found"
    return found[0]


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_html_report_shows_the_forecast_and_the_credit_as_json_and_terminal_do(
    demo_store_copy: Path, tmp_path: Path
) -> None:
    _run("credit", "add", "2026-11-01", "1500.00", "--store", str(demo_store_copy))
    doc = json.loads(_run("report", "--store", str(demo_store_copy), "--format", "json"))
    fc, credit = doc["forecast"], doc["credit"]
    assert fc is not None and credit is not None and Decimal(credit["balance"]) < 1500
    html = tmp_path / "report.html"
    _run("report", "--store", str(demo_store_copy), "--html", str(html))
    page = html.read_text(encoding="utf-8")

    forecast = _one(page, "outlook-forecast")
    assert forecast["section"] == "outlook"
    assert forecast["attrs"]["data-month-end"] == fc["month_end"]
    assert forecast["attrs"]["data-low"] == fc["low"] and forecast["attrs"]["data-high"] == fc["high"]
    assert forecast["attrs"]["data-month"] == fc["month"]
    shown = format_money(Decimal(fc["month_end"]), doc["currency"])
    assert forecast["text"].startswith(f"Forecast {fc['month']} {shown} (range ")

    balance = _one(page, "outlook-credit")
    assert balance["section"] == "outlook"
    assert balance["attrs"]["data-balance"] == credit["balance"]
    assert balance["text"].startswith(f"Prepaid credit {format_money(Decimal(credit['balance']), 'usd')} left")

    # The same words as the terminal report's lines.
    terminal = [line.strip() for line in _run("report", "--store", str(demo_store_copy)).splitlines()]
    assert "see `usageledger forecast`" in forecast_line_of(terminal)  # the terminal marks the command with backticks
    # a runway gone by (this store is not synced after 2026-11-20) names `usageledger sync` as code, as the forecast
    plain = [line.replace("`", "") for line in terminal]
    assert forecast["text"] in plain and balance["text"] in plain
    assert "<code>usageledger forecast</code>" in page and "`" not in forecast["text"]  # the page sets it as code
    assert 'id="adjustments"' not in page  # no month was closed


def test_without_a_credit_the_card_holds_the_forecast_alone(demo_store: Path, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    _run("report", "--store", str(demo_store), "--html", str(html))
    items = [i for i in _items(html.read_text(encoding="utf-8")) if i["section"] == "outlook"]
    assert [i["attrs"].get("id") for i in items] == ["outlook-forecast"]


def _adjustment(project_id: str | None, closed: str, current: str) -> Adjustment:
    return Adjustment(
        org="org-<demo>",
        month=date(2026, 10, 1),
        level="org" if project_id is None else "project",
        project_id=project_id,
        closed=Decimal(closed),
        current=Decimal(current),
        currency="usd",
        closed_at=datetime(2026, 11, 2, tzinfo=UTC),
    )


def test_closed_month_adjustments_get_their_own_card_in_the_terminal_words() -> None:
    names = Names(projects={"proj_a": "Search & <Ads>"})
    total, project = _adjustment(None, "100.00", "112.345"), _adjustment("proj_a", "40", "35.5")
    page = outlook(None, None, "usd", [total, project], names)
    assert 'id="outlook"' not in page  # no forecast, no credit: no "This month" card
    items = _items(page)
    assert [i["section"] for i in items] == ["adjustments", "adjustments"]
    assert [i["attrs"]["data-amount"] for i in items] == ["12.345", "-4.5"]
    assert items[0]["text"] == (
        "! adjustment: 2026-10 org-<demo> total closed at $100.00, now $112.35 (+$12.35 restated after the close; "
        "see usageledger changes)"
    )
    assert "see <code>usageledger changes</code>" in page  # the terminal's backticks, set as code
    assert "project Search & <Ads> closed at $40.00, now $35.50 (-$4.50 restated" in items[1]["text"]
    assert "<Ads>" not in page and "org-&lt;demo&gt;" in page  # escaped in the page
    assert outlook(None, None, "usd") == ""


def test_a_projects_now_apportioned_off_its_own_rounding_says_so_on_its_line() -> None:
    """A project's change is apportioned to its org total's (largest remainder), so its `now` is closed + that: the
    restated demo printed Marketing Copy "now $426.13" above a project table giving it $426.12, with nothing saying
    why. The line gives the figure rounded alone beside it; a line whose `now` is that figure says nothing more."""
    cents = (Decimal("413.64"), Decimal("426.13"), Decimal("12.49"))
    moved = replace(_adjustment("proj_a", "413.637613970052", "426.124486569712"), cents=cents)
    names = Names(projects={"proj_a": "Marketing Copy"})
    assert adjustment_line(moved, names).plain == (
        "! adjustment: 2026-10 org-<demo> project Marketing Copy closed at $413.64, now $426.13 (+$12.49 restated "
        "after the close; apportioned so the projects add up to the total: $426.12 alone; see `usageledger changes`)"
    )
    page = outlook(None, None, "usd", [moved], names)
    assert "apportioned so the projects add up to the total: $426.12 alone" in _items(page)[0]["text"]
    even = replace(moved, cents=(Decimal("413.64"), Decimal("426.12"), Decimal("12.48")))
    assert "apportioned" not in adjustment_line(even, names).plain
    assert "now $426.12 (+$12.48 restated after the close; see" in adjustment_line(even, names).plain
