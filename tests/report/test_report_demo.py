"""The report, the HTML page and reconciliation on the demo store: a real sync from the emulator into DuckDB.

Every figure the report shows is checked against a direct SQL sum over the store, written here independently of
the report's own queries.
"""

from __future__ import annotations

import io
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat
from rich.console import Console
from starlette.testclient import TestClient
from typer.testing import CliRunner

from usageledger import catalogue, timeutil
from usageledger.cli import app
from usageledger.cli.commands_report import EXIT_FINDINGS
from usageledger.config import Config
from usageledger.errors import ParameterError
from usageledger.mcp_tools import LedgerTools
from usageledger.report.forecasting import build_forecast, check_horizon
from usageledger.report.formatting import format_money, format_percent
from usageledger.report.html import render_html
from usageledger.report.months import check_month
from usageledger.report.names import Names, names_from_mapping
from usageledger.report.period import report_period
from usageledger.report.queries import Period, ReportData, Scope, build_report
from usageledger.report.reconciliation import reconcile
from usageledger.report.statement import month_statements
from usageledger.report.terminal import render_report
from usageledger.serve import build_app
from usageledger.store import BaseStore, OrgRecord, Stream, default_streams, open_store
from usageledger.store.duckdb import DuckDBStore
from usageledger.sync import Org, SyncOptions, sync

from fixtures.browser import BrowserPage
from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.reports import ORG

CHARTS = ("daily-spend-by-project", "tokens-by-model", "spend-by-line-item", "cost-per-million-tokens")
TOKEN_VIEWS = [
    f"usage_{e.name}_daily"
    for e in catalogue.USAGE_ENDPOINTS
    if "model" in e.group_by and "input_tokens" in {m.name for m in e.metrics}
]


@pytest.fixture(scope="module")
def demo_period() -> Period:
    """The 30 whole days before the emulator's now (2026-11-20T12:00Z)."""
    today = datetime.fromtimestamp(EMULATOR_NOW, UTC).date()
    return Period(today - timedelta(days=30), today)


@pytest.fixture
def store(demo_store: Path) -> Iterator[BaseStore]:
    """The demo store, opened read-only."""
    opened = open_store(demo_store, migrate=False, read_only=True)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def conn(store: BaseStore) -> Any:
    """The demo store's DuckDB connection, for the direct SQL sums."""
    return store.connection  # type: ignore[attr-defined]


@pytest.fixture
def demo_report(store: BaseStore, demo_period: Period) -> ReportData:
    """The report over the demo period."""
    return build_report(store, demo_period)


@pytest.fixture
def demo_names(conn: Any) -> Names:
    """Names for two of the demo's projects; the others stay IDs."""
    ids = [r[0] for r in conn.execute("SELECT DISTINCT project_id FROM costs_daily ORDER BY 1 LIMIT 2").fetchall()]
    return names_from_mapping({"projects": {pid: f"Team {i}" for i, pid in enumerate(ids)}})


def _bounds(period: Period) -> list[datetime]:
    return [period.start, period.end]


def _sums(conn: Any, sql: str, params: list[Any]) -> dict[Any, Decimal]:
    return {r[0]: Decimal(r[1]) for r in conn.execute(sql, params).fetchall()}


def test_demo_store_has_data(demo_report: ReportData) -> None:
    """The demo period holds spend, tokens and several projects and models, so the checks below mean something."""
    assert demo_report.total_spend > 0 and demo_report.total_tokens > 0
    assert len(demo_report.spend_by_project) > 1 and len(demo_report.usage_by_model) > 1


def test_spend_figures_equal_direct_sums(conn: Any, demo_report: ReportData, demo_period: Period) -> None:
    """Total, per project, per line item, per model and per day equal direct SQL sums over costs_daily."""
    where = "WHERE bucket_start >= ? AND bucket_start < ?"
    params = _bounds(demo_period)
    total = conn.execute(f"SELECT SUM(amount_value) FROM costs_daily {where}", params).fetchone()[0]
    assert demo_report.total_spend == total
    by_project = _sums(conn, f"SELECT project_id, SUM(amount_value) FROM costs_daily {where} GROUP BY 1", params)
    assert {s.key: s.amount for s in demo_report.spend_by_project} == by_project
    by_item = _sums(conn, f"SELECT line_item, SUM(amount_value) FROM costs_daily {where} GROUP BY 1", params)
    assert {s.key: s.amount for s in demo_report.spend_by_line_item} == by_item
    for column, figures in (("api_key_id", demo_report.spend_by_api_key), ("user_id", demo_report.spend_by_user)):
        sql = f"SELECT {column}, SUM(amount_value) FROM costs_daily {where} AND {column} IS NOT NULL GROUP BY 1"
        assert {s.key: s.amount for s in figures} == _sums(conn, sql, params)
    by_model: dict[str | None, Decimal] = defaultdict(Decimal)
    for item, amount in by_item.items():
        by_model[item.split(", ", 1)[0] if item and ", " in item else None] += amount
    assert {m.model: m.amount for m in demo_report.spend_by_model} == dict(by_model)
    rows = conn.execute(f"SELECT bucket_start, amount_value FROM costs_daily {where}", params).fetchall()
    by_day: dict[date, Decimal] = defaultdict(Decimal)
    for start, amount in rows:
        by_day[start.astimezone(UTC).date()] += amount
    assert dict(demo_report.daily_spend) == {d: by_day.get(d, Decimal(0)) for d in demo_period.each_day()}
    assert sum(v for _, v in demo_report.daily_spend) == total
    per_project_day: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for start, project, amount in conn.execute(
        f"SELECT bucket_start, project_id, amount_value FROM costs_daily {where}", params
    ).fetchall():
        per_project_day[(start.astimezone(UTC).date(), project)] += amount
    assert {(v.day, v.key): v.value for v in demo_report.daily_spend_by_project} == dict(per_project_day)


def test_token_figures_equal_direct_sums(conn: Any, demo_report: ReportData, demo_period: Period) -> None:
    """Tokens and requests by model equal direct sums over every token-metered usage view."""
    expected: dict[str | None, list[int]] = defaultdict(lambda: [0, 0, 0])
    for view in TOKEN_VIEWS:
        columns = {r[0] for r in conn.execute(f"DESCRIBE {view}").fetchall()}
        out = "SUM(output_tokens)" if "output_tokens" in columns else "0"
        for model, inp, outp, req in conn.execute(
            f"SELECT model, SUM(input_tokens), {out}, SUM(num_model_requests) FROM {view} "
            "WHERE bucket_start >= ? AND bucket_start < ? GROUP BY 1",
            _bounds(demo_period),
        ).fetchall():
            row = expected[model]
            row[0] += int(inp or 0)
            row[1] += int(outp or 0)
            row[2] += int(req or 0)
    got = {u.model: [u.input_tokens, u.output_tokens, u.requests] for u in demo_report.usage_by_model}
    assert got == dict(expected)
    assert demo_report.total_tokens == sum(v[0] + v[1] for v in expected.values())


def test_cost_per_million_equals_direct_sums(conn: Any, demo_report: ReportData, demo_period: Period) -> None:
    """Cost per 1M tokens is token-priced spend over billed tokens, both direct sums."""
    spend: dict[str, Decimal] = defaultdict(Decimal)
    tokens: dict[str, Decimal] = defaultdict(Decimal)
    for item, unit, amount, quantity in conn.execute(
        "SELECT line_item, quantity_unit, amount_value, quantity FROM costs_daily "
        "WHERE bucket_start >= ? AND bucket_start < ? AND quantity_unit IN ('tokens', '1000_tokens')",
        _bounds(demo_period),
    ).fetchall():
        model = item.split(", ", 1)[0]
        spend[model] += amount
        tokens[model] += quantity * (1000 if unit == "1000_tokens" else 1)
    rates = {m.model: m.per_million_tokens for m in demo_report.spend_by_model if m.per_million_tokens is not None}
    assert rates == {m: (spend[m] * 1_000_000 / tokens[m]).quantize(Decimal("0.000001")) for m in tokens}
    assert rates


def test_movers_equal_direct_sums(conn: Any, demo_report: ReportData, demo_period: Period) -> None:
    """Top movers compare direct sums of this period and the previous one of the same length."""
    previous = demo_period.previous()
    sql = (
        "SELECT project_id, SUM(amount_value) FROM costs_daily WHERE bucket_start >= ? AND bucket_start < ? GROUP BY 1"
    )
    now = _sums(conn, sql, _bounds(demo_period))
    before = _sums(conn, sql, _bounds(previous))
    assert previous.days == demo_period.days and previous.until == demo_period.since
    assert demo_report.previous_spend == sum(before.values())
    for mover in demo_report.movers_by_project:
        assert mover.current == now.get(mover.key, Decimal(0))
        assert mover.previous == before.get(mover.key, Decimal(0))
    changes = sorted((abs(now.get(k, Decimal(0)) - before.get(k, Decimal(0))) for k in {*now, *before}), reverse=True)
    assert [abs(m.change) for m in demo_report.movers_by_project] == [c for c in changes if c][: len(changes)]


def test_project_filter_narrows_every_figure(store: BaseStore, demo_report: ReportData, demo_period: Period) -> None:
    """With --project the totals are that project's share of the whole."""
    project = demo_report.spend_by_project[0].key
    narrowed = build_report(store, demo_period, Scope(project=project))
    assert narrowed.total_spend == demo_report.spend_by_project[0].amount
    assert [s.key for s in narrowed.spend_by_project] == [project]
    assert 0 < narrowed.total_tokens < demo_report.total_tokens


def test_reconcile_consistent_data_has_no_difference(store: BaseStore, demo_period: Period) -> None:
    """Emulator data agrees by construction: tokens per day and model match exactly."""
    result = reconcile(store, demo_period)
    assert result.rows and result.differences == ()
    assert result.usage_total == result.costs_total > 0


def test_reconcile_reports_a_revision_on_one_side(demo_store: Path, demo_period: Period, tmp_path: Path) -> None:
    """A revision injected into the usage side of one day and model is reported, and only that pair."""
    copy = tmp_path / "revised.duckdb"
    copy.write_bytes(demo_store.read_bytes())
    day = demo_period.since + timedelta(days=3)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    with open_store(copy) as revised:
        org, stream, key, model = revised.query(
            "SELECT org, stream, group_key, model FROM usage_completions WHERE bucket_start = %s "
            "AND stream IN (SELECT DISTINCT stream FROM usage_completions_daily) ORDER BY model, group_key LIMIT 1",
            [start],
        )[0]
        revised.execute(
            "UPDATE usage_completions SET output_tokens = output_tokens + 1234 "
            "WHERE org = %s AND stream = %s AND bucket_start = %s AND group_key = %s",
            [org, stream, start, key],
        )
        result = reconcile(revised, demo_period)
        lenient = reconcile(revised, demo_period, tolerance=Decimal("0.5"))
    assert [(r.org, r.day, r.model, r.difference) for r in result.differences] == [(org, day, model, Decimal(-1234))]
    assert lenient.differences == ()


@pytest.fixture
def report_file(demo_report: ReportData, demo_names: Names, tmp_path: Path) -> Path:
    """The demo store's report written as one HTML file."""
    path = tmp_path / "report.html"
    path.write_text(render_html(demo_report, demo_names, generated_at=datetime(2026, 11, 20, tzinfo=UTC)))
    return path


def test_html_is_self_contained(report_file: Path, demo_names: Names) -> None:
    """No external resource (no link, no script src, no http URL in src/href), and names replace IDs."""
    text = report_file.read_text()
    assert "<link" not in text and "<script src" not in text
    assert 'src="http' not in text and 'href="http' not in text
    for slug in CHARTS:
        assert f'id="chart-{slug}"' in text
    assert "Team 0" in text


def test_report_renders_with_visible_charts(browser_page: BrowserPage, report_file: Path, tmp_path: Path) -> None:
    """Chromium renders the file offline, every chart has real pixels, the console stays clean."""
    page = browser_page.page
    page.goto(report_file.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    for slug in CHARTS:
        chart = page.locator(f"#chart-{slug}")
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 80
        shot = tmp_path / f"{slug}.png"
        chart.screenshot(path=str(shot))
        with Image.open(shot) as image:
            stat = ImageStat.Stat(image.convert("L"))
            assert stat.var[0] > 100, f"chart {slug} looks blank (variance {stat.var[0]:.1f})"
            assert len(image.getcolors(maxcolors=1 << 16) or []) > 5
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert browser_page.errors == []
    assert [u for u in browser_page.requests if not u.startswith("file:")] == []


def _column(page: BrowserPage, table: str, index: int) -> list[str]:
    return page.page.locator(f"#{table} tbody tr td:nth-child({index})").all_inner_texts()


def _values(page: BrowserPage, table: str, index: int) -> list[float]:
    cells = page.page.locator(f"#{table} tbody tr td:nth-child({index})")
    return [float(v) for v in cells.evaluate_all("cells => cells.map(c => c.dataset.value)")]


def test_clicking_headers_sorts_tables(browser_page: BrowserPage, report_file: Path) -> None:
    """A click sorts a column ascending, a second click descending; text columns sort by name."""
    page = browser_page.page
    page.goto(report_file.as_uri())
    header = page.locator("#spend-by-project thead th").nth(1)
    header.click()
    ascending = _values(browser_page, "spend-by-project", 2)
    assert len(ascending) > 1 and ascending == sorted(ascending)
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert _values(browser_page, "spend-by-project", 2) == sorted(ascending, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    page.locator("#usage-by-model thead th").nth(0).click()
    models = _column(browser_page, "usage-by-model", 1)
    assert models == sorted(models, key=str.lower)
    assert browser_page.errors == []


def test_cli_report_terminal(demo_store: Path, demo_period: Period, demo_report: ReportData, tmp_path: Path) -> None:
    """`report` prints every section for the period, with project names from the config's [names]."""
    project = demo_report.spend_by_project[0].key
    config = tmp_path / "usageledger.toml"
    config.write_text(f'[names.projects]\n{project} = "Search team"\n')
    span = ["--since", demo_period.since.isoformat(), "--until", demo_period.until.isoformat()]
    result = CliRunner().invoke(
        app, ["report", "--store", str(demo_store), *span, "--config", str(config)], env={"COLUMNS": "160"}
    )
    assert result.exit_code == 0, result.output
    for section in (
        "Spend by project",
        "Spend by line item",
        "Spend by model",
        "Tokens and requests by model",
        "Daily spend",
        "Top movers by project",
        "Top movers by model",
        "per 1M tokens",
    ):
        assert section in result.output
    assert "Search team" in result.output and project not in result.output
    assert f"Spend {format_money(demo_report.total_spend)}" in result.output


def test_cli_report_html_and_png(demo_store: Path, demo_period: Period, tmp_path: Path) -> None:
    """`report --html --png` writes the page and one PNG per chart, names from a CSV file."""
    names = tmp_path / "names.csv"
    names.write_text("kind,id,name\nproject,proj_0,Search team\n")
    html, png = tmp_path / "out" / "report.html", tmp_path / "charts"
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--store",
            str(demo_store),
            "--since",
            demo_period.since.isoformat(),
            "--until",
            demo_period.until.isoformat(),
            "--html",
            str(html),
            "--png",
            str(png),
            "--names",
            str(names),
        ],
    )
    assert result.exit_code == 0, result.output
    assert html.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in png.iterdir()) == sorted(f"{slug}.png" for slug in CHARTS)
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in png.iterdir())


def test_cli_reconcile_explains_and_fails_over(demo_store: Path, demo_period: Period, tmp_path: Path) -> None:
    """`reconcile` explains why the sides differ; --fail-over exits 3 only when a difference exceeds tolerance."""
    span = ["--since", demo_period.since.isoformat(), "--until", demo_period.until.isoformat()]
    clean = CliRunner().invoke(app, ["reconcile", "--store", str(demo_store), *span, "--fail-over"])
    assert clean.exit_code == 0, clean.output
    assert "No differences beyond the tolerance" in clean.output
    words = " ".join(clean.output.replace("│", " ").split())
    assert "two different pipelines" in words and "invoice" in words and "revised" in words
    copy = tmp_path / "revised.duckdb"
    copy.write_bytes(demo_store.read_bytes())
    with open_store(copy) as revised_store:
        revised_store.execute(
            "UPDATE usage_completions SET input_tokens = input_tokens * 2 WHERE bucket_start = %s", [demo_period.start]
        )
    revised = CliRunner().invoke(app, ["reconcile", "--store", str(copy), *span, "--fail-over"])
    assert revised.exit_code == EXIT_FINDINGS, revised.output
    assert "beyond the tolerance" in revised.output
    # 99%, not 100%: a tolerance of 100% or more hides every difference and is refused (see below); doubling one
    # day's input tokens moves that day's pairs by well under 99%, and no pair lost a side.
    tolerant = CliRunner().invoke(app, ["reconcile", "--store", str(copy), *span, "--tolerance", "99%", "--fail-over"])
    assert tolerant.exit_code == 0 and "tolerance 99%" in tolerant.output, tolerant.output
    half = CliRunner().invoke(app, ["reconcile", "--store", str(copy), *span, "--tolerance", "0.5"])
    assert "tolerance 50%" in half.output and "E+" not in half.output, half.output


def test_cli_errors_are_one_line(tmp_path: Path, demo_store: Path) -> None:
    """A missing store, a bad option value or a --png path that is a file: one clear line, exit 1 (bad input 2)."""
    existing = tmp_path / "existing-file"
    existing.write_text("keep me")
    png = CliRunner().invoke(app, ["report", "--store", str(demo_store), "--png", str(existing)])
    assert png.exit_code == 2 and "Traceback" not in png.output and str(existing) in png.output, png.output
    assert len(png.output.strip().splitlines()) == 1 and existing.read_text() == "keep me"
    missing = CliRunner().invoke(app, ["report", "--store", str(tmp_path / "nope.duckdb")])
    assert missing.exit_code == 1 and "no store at" in missing.output
    bad = CliRunner().invoke(app, ["reconcile", "--store", str(tmp_path / "x.duckdb"), "--tolerance", "lots"])
    assert bad.exit_code == 2 and "--tolerance" in bad.output


def test_png_without_matplotlib_is_refused_before_the_html_is_written(
    tmp_path: Path, demo_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the core install `scripts/demo` makes, the README's `report --html report.html --png charts/` wrote the
    page, then failed on the charts; now the missing extra is one line naming --png, before anything is written."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    html, charts = tmp_path / "report.html", tmp_path / "charts"
    done = CliRunner().invoke(app, ["report", "--store", str(demo_store), "--html", str(html), "--png", str(charts)])
    assert done.exit_code == 2, done.output
    assert done.output.startswith("error: --png: PNG charts need matplotlib: install the charts extra"), done.output
    assert len(done.output.strip().splitlines()) == 1, done.output
    assert not html.exists() and not charts.exists()


@pytest.mark.parametrize("bare", ["5", "1", "2.5"])
def test_reconcile_refuses_a_bare_tolerance_that_reads_as_a_percentage(demo_store: Path, bare: str) -> None:
    """No relative difference exceeds 1, so `--tolerance 5` would pass everything; it is refused with the fix."""
    result = CliRunner().invoke(app, ["reconcile", "--store", str(demo_store), "--tolerance", bare, "--fail-over"])
    assert result.exit_code == 2, result.output
    assert "--tolerance" in result.output and f"write {bare}%" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize("tolerance", ["100%", "1000%", "100", "1e999", "1e999%", "100.0%"])
def test_reconcile_refuses_a_tolerance_of_100_percent_or_more(demo_store: Path, tolerance: str) -> None:
    """No relative difference exceeds 100% (token counts are never negative), so such a tolerance hides every
    difference: `100%` and `1000%` were accepted; now one line naming --tolerance, in either spelling, whose fix
    is not itself refused (a bare `100` no longer suggests `100%`)."""
    result = CliRunner().invoke(app, ["reconcile", "--store", str(demo_store), "--tolerance", tolerance])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --tolerance: "), result.output
    assert "hides every difference" in lines[0] and "give less than 100%, like 5%" in lines[0], lines[0]


@pytest.mark.parametrize("tolerance", ["1e-999", "1e-999%", "0.000000001", "0.0000001%"])
def test_reconcile_refuses_a_tolerance_finer_than_six_places_of_a_percent(demo_store: Path, tolerance: str) -> None:
    """`--tolerance 1e-999` printed a tolerance about a thousand digits long: refused on one line, with the finest
    accepted (0.000001%, which is printed as given)."""
    result = CliRunner().invoke(app, ["reconcile", "--store", str(demo_store), "--tolerance", tolerance])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("error: --tolerance: ") and "6 decimal places of a percent" in result.output
    finest = CliRunner().invoke(app, ["reconcile", "--store", str(demo_store), "--tolerance", "0.000001%"])
    assert finest.exit_code == 0 and "tolerance 0.000001%" in finest.output, finest.output


def test_an_until_after_today_ends_the_period_with_today(demo_store: Path) -> None:
    """`report --since 2026-11-01 --until 2030-01-01` compared a month with "the previous 1,157 days": an end after
    today ends the period with today (so `--until` the first of next month means "this month"); a period wholly
    after today is refused on one line naming the start."""
    now = datetime(2026, 11, 20, 15, tzinfo=UTC)
    assert report_period("2026-11-01", "2026-11-21", now=now) == Period(date(2026, 11, 1), date(2026, 11, 21))
    assert report_period("2026-11-01", "2026-11-20T16:00:00Z", now=now).until == date(2026, 11, 21)
    for until in ("2026-11-22", "2026-11-21T00:00:01Z", "2026-12-01", "2030-01-01"):
        assert report_period("2026-11-01", until, now=now) == Period(date(2026, 11, 1), date(2026, 11, 21))
    with pytest.raises(ParameterError, match=r"^since: the period is empty: 2026-12-01 is after today \(2026-11-20\)"):
        report_period("2026-12-01", "2027-01-01", now=now, since_param="since", until_param="until")
    with pytest.raises(ParameterError, match=r"^until: the period is empty: 2026-11-01 is not after since"):
        report_period("2026-11-05", "2026-11-01", now=now, since_param="since", until_param="until")
    result = CliRunner().invoke(
        app, ["report", "--store", str(demo_store), "--since", "2026-11-01", "--until", "2030-01-01", "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    period = json.loads(result.stdout)["period"]
    assert period["first_day"] == "2026-11-01" and period["last_day"] == datetime.now(UTC).date().isoformat(), period


@pytest.mark.parametrize("until", ["9999-12-31T23:59:59Z", "9999-12-31T00:00:01Z", "253402300799"])
def test_an_until_in_the_last_day_there_is_ends_the_period_with_today(demo_store: Path, until: str) -> None:
    """An end inside 9999-12-31, the last day a date holds, is the day after it, which no date holds: `report`
    and `reconcile --until 9999-12-31T23:59:59Z` died in a traceback (OverflowError), the dashboard's /api/report
    answered 500 and the MCP tools "Error executing tool spend", naming nothing. Like any end after today, it
    ends the period with today."""
    now = datetime(2026, 11, 20, 15, tzinfo=UTC)
    assert report_period("2026-11-01", until, now=now) == Period(date(2026, 11, 1), date(2026, 11, 21))
    period = ["--store", str(demo_store), "--since", "2026-11-01", "--until", until]
    reconciled = CliRunner().invoke(app, ["reconcile", *period])
    assert reconciled.exit_code == 0 and reconciled.exception is None, reconciled.output
    done = CliRunner().invoke(app, ["report", *period, "-f", "json"])
    assert done.exit_code == 0 and done.exception is None, done.output
    report = json.loads(done.stdout)
    assert report["period"]["first_day"] == "2026-11-01"
    assert report["period"]["last_day"] == datetime.now(UTC).date().isoformat(), report["period"]
    with TestClient(build_app(str(demo_store))) as client:
        answer = client.get("/api/report", params={"since": "2026-11-01", "until": until})
    assert answer.status_code == 200 and answer.json()["period"] == report["period"], answer.text
    tools = LedgerTools(lambda: open_store(demo_store, migrate=False, read_only=True), Config(), clock=lambda: now)
    assert tools.spend("2026-11-01", until)["period"]["last_day"] == "2026-11-20"


@pytest.mark.parametrize("since", ["1m", "90m", "30s", " 5 ms "])
def test_a_period_since_minutes_or_seconds_is_refused(since: str) -> None:
    """`--since 1m`, meant as a month, was one minute: the report covered today alone and said nothing. A span of
    minutes or seconds in a period is refused naming the parameter and the month's spellings; hours and days stay."""
    now = datetime(2026, 11, 20, 15, tzinfo=UTC)
    with pytest.raises(
        ParameterError, match=r"^since: .* minutes or seconds, .* give 30d or its first day \(2026-11-01\)"
    ):
        report_period(since, None, now=now, since_param="since")
    assert report_period("36h", None, now=now) == Period(date(2026, 11, 19), date(2026, 11, 21))
    assert report_period("1d", None, now=now) == Period(date(2026, 11, 20), date(2026, 11, 21))


def test_format_percent_is_short_for_tiny_and_huge_fractions() -> None:
    """The library's reconcile takes any Decimal tolerance: its percentage is still a short number."""
    assert format_percent(Decimal("0.5")) == "50%" and format_percent(Decimal("0.123456789")) == "12.345679%"
    assert format_percent(Decimal("1e-999")) == "<0.000001%" and format_percent(Decimal(0)) == "0%"
    assert format_percent(Decimal("1e999")) == "1e+1001%"


def test_several_orgs_reconcile_and_report_separately(
    tmp_path: Path, emulator_url: str, demo_report: ReportData, demo_period: Period
) -> None:
    """Two orgs: --org narrows the report; opposite revisions in two orgs are each reported, never cancelled."""
    path = tmp_path / "two.duckdb"
    with open_store(path) as target, ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(
            sync,
            target,
            [Org("org-a", FAKE_ADMIN_KEY, emulator_url), Org("org-b", FAKE_ADMIN_KEY, emulator_url)],
            default_streams(),
            # the period's 30 days and the day before (the demo store's 90 days are more than the figures compared)
            SyncOptions(since=timeutil.floor(EMULATOR_NOW - 31 * 86400, "1d")),
            clock=lambda: EMULATOR_NOW,
        ).result()
    assert result.ok, result.errors
    start = demo_period.start
    assert timeutil.floor(EMULATOR_NOW - 31 * 86400, "1d") < start.timestamp()  # the sync holds the whole period
    with open_store(path) as store:
        both = build_report(store, demo_period)
        only_a = build_report(store, demo_period, Scope(org="org-a"))
        assert only_a.total_spend == demo_report.total_spend and both.total_spend == 2 * only_a.total_spend
        assert reconcile(store, demo_period).differences == ()
        for org, delta in (("org-a", 500), ("org-b", -500)):
            store.execute(
                "UPDATE usage_completions SET output_tokens = output_tokens + %s WHERE org = %s AND bucket_start = %s "
                "AND group_key = (SELECT MIN(group_key) FROM usage_completions WHERE org = %s AND bucket_start = %s "
                "AND model = (SELECT MIN(model) FROM usage_completions WHERE bucket_start = %s))",
                [delta, org, start, org, start, start],
            )
        differences = reconcile(store, demo_period).differences
        assert [(r.org, r.difference) for r in differences] == [("org-a", -500), ("org-b", 500)]
        assert [r.org for r in reconcile(store, demo_period, Scope(org="org-b")).differences] == ["org-b"]


def test_hostile_names_are_escaped(demo_report: ReportData) -> None:
    """A name holding markup is shown as text in tables and chart legends, never run."""
    project = demo_report.spend_by_project[0].key
    assert project is not None
    names = names_from_mapping({"projects": {project: '<script>alert("x")</script> & co'}})
    page = render_html(demo_report, names)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in page


def test_empty_period_renders(store: BaseStore) -> None:
    """A period with no data gives zeros, an empty-chart message and no error, in the terminal and in HTML."""
    empty = build_report(store, Period(date(2020, 1, 1), date(2020, 1, 8)))
    assert empty.total_spend == 0 and empty.spend_by_project == () and len(empty.daily_spend) == 7
    assert empty.currency is None
    page = render_html(empty)
    assert page.count("No data in this period") >= 4
    console = Console(file=io.StringIO(), width=120)
    console.print(render_report(empty))
    assert "Spend $0.00" in console.file.getvalue()  # type: ignore[attr-defined]


def test_spend_by_api_key_and_user_when_costs_group_by_them(tmp_path: Path, demo_period: Period) -> None:
    """A costs stream grouped by API key and user adds those sections, with names where known and IDs elsewhere."""
    stream = Stream.create("costs", "1d", ["project_id", "api_key_id", "user_id", "line_item"])
    rows = [("key_a", "user-1", "1.25"), ("key_a", "user-2", "2.50"), ("key_b", "user-1", "0.75"), ("key_b", None, "4")]
    with open_store(tmp_path / "keys.duckdb") as store:
        store.register_stream(ORG, stream)
        for i, (key, user, amount) in enumerate(rows):
            store.execute(
                "INSERT INTO costs (org, stream, bucket_start, bucket_end, group_key, project_id, api_key_id, user_id, "
                "line_item, amount_value, currency) VALUES (%s, %s, %s, %s, %s, 'proj_x', %s, %s, 'gpt-4o, input', %s, "
                "'usd')",
                [ORG, stream.id, demo_period.start, demo_period.start + timedelta(days=1), str(i), key, user, amount],
            )
        data = build_report(store, demo_period)
    assert [(s.key, s.amount) for s in data.spend_by_api_key] == [
        ("key_b", Decimal("4.75")),
        ("key_a", Decimal("3.75")),
    ]
    assert {s.key: s.amount for s in data.spend_by_user} == {
        None: Decimal(4),
        "user-1": Decimal(2),
        "user-2": Decimal("2.50"),
    }
    names = names_from_mapping({"api_keys": {"key_a": "ci runner"}, "users": {"user-2": "Grace"}})
    console = Console(file=io.StringIO(), width=120)
    console.print(render_report(data, names))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Spend by API key" in text and "ci runner" in text and "key_b" in text and "key_a" not in text
    assert "Spend by user" in text and "Grace" in text and "user-1" in text
    page = render_html(data, names)
    assert 'id="spend-by-api-key"' in page and 'id="spend-by-user"' in page and "ci runner" in page


def test_demo_prints_the_report(tmp_path: Path) -> None:
    """`usageledger demo` ends with the terminal report of the store it just synced."""
    result = CliRunner().invoke(app, ["demo", "--days", "7", "--store", str(tmp_path / "demo.duckdb")])
    assert result.exit_code == 0, result.output
    tail = result.output[result.output.index("Usage & costs") :]
    for section in ("Spend by project", "Spend by model", "Tokens and requests by model", "Top movers by model"):
        assert section in tail


def test_the_demo_prints_the_report_that_report_prints(tmp_path: Path) -> None:
    """The demo's report is `usageledger report --org demo` on the store it synced, line for line (README: "prints the
    report for the last 30"): it printed the bare figures, without the provisional days' `*` and footnote or this
    month's forecast line, which `report` on the same store shows."""
    store = str(tmp_path / "demo.duckdb")
    demo = CliRunner().invoke(app, ["demo", "--days", "7", "--store", store], env={"COLUMNS": "120"})
    assert demo.exit_code == 0, demo.output
    printed = demo.stdout[demo.stdout.index("Usage & costs") :]
    report = CliRunner().invoke(
        app, ["report", "--since", "7d", "--org", "demo", "--store", store], env={"COLUMNS": "120"}
    )
    assert report.exit_code == 0, report.output
    assert "* provisional: spend from " in printed and "\nForecast " in printed, printed
    assert printed == report.stdout


def _demo(store: Path, *days: str) -> tuple[int, dict[str, tuple[int, int]], str]:
    """Run `usageledger demo` on ``store``: its requests, each stream's (inserted, unchanged), and its report."""
    result = CliRunner().invoke(app, ["demo", *days, "--store", str(store)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    found = re.search(r"\((\d+)\s+requests,", result.stdout)  # the heading wraps where the path is long
    assert found, result.stdout
    streams = {
        m[1]: (int(m[2].replace(",", "")), int(m[4].replace(",", "")))
        for m in re.finditer(r"│ (\S+\.1d\.\S+) +│ +([\d,]+) │ +([\d,]+) │ +([\d,]+) │", result.stdout)
    }
    assert len(streams) == len(catalogue.ENDPOINTS), result.stdout
    return int(found[1]), streams, result.stdout[result.stdout.index("Usage & costs") :]


def test_the_demo_run_again_is_incremental_and_a_longer_days_backfills(tmp_path: Path) -> None:
    """ "Run it again and the sync is incremental" (README, `demo --help`): the demo passed its start as `since`, so
    each run read every stream's whole span again (23 requests for 60 days, every row unchanged). Run again, it
    reads each stream from its watermark back by the lag window, as `usageledger sync` does, and reports the same
    figures; a larger --days, whose earlier days the store lacks, still reads from its own start."""
    store = tmp_path / "demo.duckdb"
    requests, first, report = _demo(store, "--days", "7")
    assert all(inserted > 0 for inserted, _ in first.values()), first
    again, second, report_again = _demo(store, "--days", "7")
    assert again <= requests, (again, requests)  # 12 either way: 14 days are one window per stream
    for stream, (inserted, unchanged) in second.items():  # the lag window's rows only, never the whole span
        assert inserted == 0 and unchanged < first[stream][0], (stream, second[stream], first[stream])
    assert report_again == report
    _, longer, wider = _demo(store, "--days", "10")
    assert sum(inserted for inserted, _ in longer.values()) > 0, longer  # the 6 earlier days, read
    assert "against the previous 10 days" in wider, wider[:400]


def test_a_report_says_when_costs_were_never_synced_or_only_in_part(emulator_url: str, tmp_path: Path) -> None:
    """A sync of `--bucket-width 1h` stores usage and skips costs (so does a first sync killed before them): the
    report said "$0.00, new against the previous 20 days" without a word, read as "we spent nothing". The terminal
    (stderr), the JSON, the HTML page, the dashboard's /api/report and the MCP tools now say the costs were never
    synced and how to fix it; once costs are synced only in part, they name the days held and those left out."""
    store = str(tmp_path / "usage.duckdb")
    sync = ["sync", "--store", store, "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "--quiet"]
    env = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}
    done = CliRunner().invoke(app, [*sync, "--since", "2d", "--bucket-width", "1h"], env=env)
    assert done.exit_code == 0 and "skips costs" in done.stderr, done.output
    period = ["--since", "2026-11-01", "--until", "2026-11-21"]
    never = (
        "costs have not been synced for org default, so the spend shown leaves them out; run `usageledger sync` "
        "(costs come in 1d buckets only: give no --bucket-width, or 1d)"
    )
    part = (
        "costs of org default are synced only from 2026-11-01 through 2026-11-09, so the spend shown leaves out "
        "2026-11-10 to 2026-11-20; run `usageledger sync`"
    )
    for said in (never, part):
        argv = ["report", "--store", store, *period]
        text = CliRunner().invoke(app, argv, env={"COLUMNS": "200"})
        assert text.exit_code == 0 and text.stderr == f"warning: {said}\n", text.output
        doc = json.loads(CliRunner().invoke(app, [*argv, "-f", "json"]).stdout)
        assert doc["warnings"] == [said]
        page = tmp_path / "r.html"
        assert CliRunner().invoke(app, [*argv, "--html", str(page)]).exit_code == 0
        as_code = re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(f"Warning: {said}"))  # `usageledger sync`, as code
        shown = f'<p class="store-warning" role="alert">{as_code}</p>'
        assert "<code>usageledger sync</code>" in shown
        assert shown in page.read_text(encoding="utf-8")
        with TestClient(build_app(store)) as client:
            assert client.get("/api/report", params={"since": period[1], "until": period[3]}).json() == doc
        tools = LedgerTools(
            lambda: open_store(store, migrate=False, read_only=True),
            Config(),
            clock=lambda: datetime.fromtimestamp(EMULATOR_NOW, UTC),
        )
        for answer in (tools.spend(period[1], period[3]), tools.spend(period[1], period[3], model="gpt-4o")):
            assert answer["warnings"] == [said]
        # then a bounded sync of the costs of 2026-11-01 to 2026-11-09 alone
        done = CliRunner().invoke(
            app, [*sync, "-e", "costs", "--since", "2026-11-01", "--until", "2026-11-10"], env=env
        )
        assert done.exit_code == 0, done.output
    # synced whole, the costs say nothing (a day short of the period's end is what a daily cron leaves)
    assert CliRunner().invoke(app, [*sync, "-e", "costs", "--since", "2026-11-01"], env=env).exit_code == 0
    whole = CliRunner().invoke(app, ["report", "--store", store, *period, "-f", "json"])
    assert whole.stderr == "" and json.loads(whole.stdout)["warnings"] == [], whole.stderr


def test_check_says_when_the_costs_it_budgets_were_never_synced(emulator_url: str, tmp_path: Path) -> None:
    """`check --daily-budget 5` over a store of hourly usage alone (costs never synced) said "OK: no alerts" on
    $0.00 of spend (only a warning on stderr), a false all-clear for cron and CI reading stdout or the exit code: the
    budgets and the forecast it cannot judge are now an `unchecked` alert on stdout, in the JSON likewise, exit 3; a
    check that reads no costs keeps the warning on stderr; once the month's costs are synced, nothing is said."""
    store = str(tmp_path / "usage.duckdb")
    sync = ["sync", "--store", store, "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "--quiet"]
    env = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}
    assert CliRunner().invoke(app, [*sync, "--since", "2d", "--bucket-width", "1h"], env=env).exit_code == 0
    never = (
        "costs have not been synced for org default, so the spend shown leaves them out; run `usageledger sync` "
        "(costs come in 1d buckets only: give no --bucket-width, or 1d)"
    )
    base = ["check", "--store", store, "--now", str(EMULATOR_NOW), "--stale-after", "30d"]
    argv = [*base, "--daily-budget", "5"]
    text = CliRunner().invoke(app, argv, env={"COLUMNS": "200"})
    assert text.exit_code == EXIT_FINDINGS and text.stderr == "", text.output
    assert f"ALERT unchecked: budgets not judged: {never}\n" in text.stdout and "OK" not in text.stdout
    # the budget's own line says its $0.00 is not a judgement: it had read "checked budget ... is $0.00 against a
    # budget of $5.00" above the alert that says the same budget was not judged
    (budget_line,) = [line for line in text.stdout.splitlines() if "against a budget" in line]
    assert budget_line.endswith("against a budget of $5.00, but its costs are missing (see the unchecked alert)")
    doc = CliRunner().invoke(app, [*argv, "-f", "json"])
    found = json.loads(doc.stdout)
    assert doc.exit_code == EXIT_FINDINGS and doc.stderr == "" and found["fired"] is True, doc.output
    assert found["alerts"] == [{"kind": "unchecked", "subject": "budgets", "message": f"budgets not judged: {never}"}]
    # the forecast cannot be made of no costs: one alert for both, never "cannot forecast" as an error
    both = CliRunner().invoke(app, [*argv, "--forecast-over", "100", "-f", "json"])
    assert both.exit_code == EXIT_FINDINGS, both.output
    assert [a["message"] for a in json.loads(both.stdout)["alerts"]] == [f"budgets and forecast not judged: {never}"]
    # no budget, forecast or credit asked for: the costs are said on stderr, as before
    plain = CliRunner().invoke(app, base, env={"COLUMNS": "200"})
    assert plain.exit_code == 0 and plain.stderr == f"warning: {never}\n" and "OK: no alerts" in plain.stdout
    assert CliRunner().invoke(app, [*sync, "-e", "costs", "--since", "2026-11-01"], env=env).exit_code == 0
    synced = CliRunner().invoke(app, [*argv, "-f", "json"], env={"COLUMNS": "200"})
    assert synced.stderr == "" and synced.exit_code == EXIT_FINDINGS, synced.output  # $5 a day is soon spent
    assert {a["kind"] for a in json.loads(synced.stdout)["alerts"]} == {"budget"}


def test_an_as_of_report_says_what_the_costs_covered_then(emulator_url: str, tmp_path: Path) -> None:
    """`report --as-of` a time before the costs were first synced said nothing of them, its coverage warning
    reading today's store (costs synced whole) beside the figures of then ($0.00 spent, read as nothing spent):
    it now says what the store's costs covered at that time, on stderr and in the JSON's `warnings`."""
    store = str(tmp_path / "s.duckdb")
    sync = ["sync", "--store", store, "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "--quiet"]
    env = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}
    # usage only (hourly, so costs are skipped), two days of it as in the tests above: the costs are what is read
    done = CliRunner().invoke(app, [*sync, "--since", "2d", "--bucket-width", "1h"], env=env)
    assert done.exit_code == 0 and "skips costs" in done.stderr, done.output
    moment = int(time.time())
    while int(time.time()) <= moment:  # seen times are whole seconds: the costs are seen after the moment
        time.sleep(0.05)
    assert CliRunner().invoke(app, [*sync, "-e", "costs", "--since", "2026-11-01"], env=env).exit_code == 0
    argv = ["report", "--store", store, "--since", "2026-11-01", "--until", "2026-11-21", "-f", "json"]
    today = CliRunner().invoke(app, argv)
    assert today.exit_code == 0 and today.stderr == "" and json.loads(today.stdout)["warnings"] == [], today.stderr
    then = CliRunner().invoke(app, [*argv, "--as-of", str(moment)])
    assert then.exit_code == 0, then.output
    said = (
        "costs have not been synced for org default, so the spend shown leaves them out; run `usageledger sync` "
        "(costs come in 1d buckets only: give no --bucket-width, or 1d)"
    )
    doc = json.loads(then.stdout)
    assert Decimal(doc["totals"]["spend"]) == 0 and doc["warnings"] == [said]
    assert then.stderr == f"warning: {said}\n"


def test_a_report_reads_the_org_registry_once(demo_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`report` read the org registry twice (the warnings said on stderr, then again for the JSON's `warnings`): it
    reads it once, and says and carries the same warnings."""
    argv = ["report", "--store", str(demo_store), "--since", "2026-11-01", "-f", "json"]
    before = CliRunner().invoke(app, argv)
    reads: list[str] = []
    real = DuckDBStore.orgs

    def counted(self: DuckDBStore) -> list[OrgRecord]:
        reads.append(self.url)
        return real(self)

    monkeypatch.setattr(DuckDBStore, "orgs", counted)
    after = CliRunner().invoke(app, argv)
    assert len(reads) == 1, reads
    doc = json.loads(after.stdout)
    assert (after.stdout, after.stderr) == (before.stdout, before.stderr) and doc["warnings"]
    assert after.stderr == "".join(f"warning: {w}\n" for w in doc["warnings"])


def test_an_unknown_project_id_is_warned_about(demo_store: Path) -> None:
    """`check --project` and `report --project` with an ID the store never saw warn on stderr; a known one does not."""
    with open_store(demo_store, migrate=False, read_only=True) as store:
        known = store.query("SELECT min(project_id) FROM costs_daily WHERE project_id IS NOT NULL")[0][0]
    # the check and the report of days the store holds: later ones warn that their costs are not synced too
    for command in (["check", "--date", "2026-11-19"], ["report", "--since", "2026-10-22", "--until", "2026-11-21"]):
        typo = CliRunner().invoke(app, [*command, "--store", str(demo_store), "--project", "proj_typo"])
        assert typo.exit_code in (0, EXIT_FINDINGS), typo.output
        warnings = [line for line in typo.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "--project proj_typo" in warnings[0], typo.stderr
        fine = CliRunner().invoke(app, [*command, "--store", str(demo_store), "--project", known])
        assert "warning:" not in fine.stderr, fine.stderr


def test_a_period_takes_whole_days_in_any_form_and_names_a_wrong_edge(store: BaseStore) -> None:
    """`Period(datetime(2026, 10, 1), ...)` built, then `build_report` failed deep inside with "can't compare
    datetime.datetime to datetime.date"; `Period("2026-10-01", ...)` with a TypeError on `-`; a reversed period was
    the root error naming no parameter; `top_movers="5"` a TypeError. A datetime at midnight UTC and an ISO day are
    the day; anything else is a ParameterError naming the edge."""
    day = Period(date(2026, 10, 1), date(2026, 11, 1))
    assert Period(datetime(2026, 10, 1), datetime(2026, 11, 1, tzinfo=UTC)) == day
    assert Period("2026-10-01", "2026-11-01") == day  # type: ignore[arg-type]
    assert build_report(store, Period(datetime(2026, 10, 1), datetime(2026, 11, 1))).total_spend > 0
    refused: list[tuple[Any, Any, str]] = [
        (datetime(2026, 10, 1, 12), date(2026, 11, 1), "since: 2026-10-01T12:00:00 is not a whole UTC day"),
        (date(2026, 10, 1), "November", "until: cannot read 'November' as a day"),
        (1790000000, date(2026, 11, 1), "since: expected a date, got int"),
        (date(2026, 11, 1), date(2026, 10, 1), "until: the period is empty"),
    ]
    for since, until, said in refused:
        with pytest.raises(ParameterError, match=rf"^{re.escape(said)}"):
            Period(since, until)
    with pytest.raises(ParameterError, match=r"^top_movers: expected a whole number"):
        build_report(store, day, top_movers="5")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"^period: expected a Period"):
        build_report(store, (day.since, day.until))  # type: ignore[arg-type]


def test_forecasts_statements_and_months_take_any_month_form_and_naive_times_as_utc(
    store: BaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`build_forecast(db, datetime(2026, 11, 1), ...)` and `check_month(..., today=datetime(...))` were TypeErrors
    ("can't compare datetime.datetime to datetime.date"), `"2026-11"` one from `str.replace`, and a naive `now` was
    read in the machine's zone: on a UTC+14 machine, 2026-11-01 05:00 (UTC) was October, and December "starts after
    next month". A month is a date, a datetime or YYYY-MM; a naive time is UTC, as everywhere else."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        check_horizon(date(2026, 12, 1), now=datetime(2026, 11, 1, 5))
        now = datetime(2026, 11, 20, 12)
        want = build_forecast(store, date(2026, 11, 1), now=now.replace(tzinfo=UTC))
        for month in (datetime(2026, 11, 1), "2026-11", date(2026, 11, 15)):
            assert build_forecast(store, month, now=now) == want  # type: ignore[arg-type]
        october = month_statements(store, date(2026, 10, 1))
        assert month_statements(store, "2026-10") == october  # type: ignore[arg-type]
        assert month_statements(store, datetime(2026, 10, 1)) == october
        # `last` is the month before the one given as today (as `now`, for a forecast), not the wall clock's
        assert month_statements(store, "last", today=date(2026, 11, 20)) == october  # type: ignore[arg-type]
        assert build_forecast(store, "this", now=now) == want  # type: ignore[arg-type]
        check_month(store, datetime(2026, 10, 1), today=datetime(2026, 11, 20))
        with pytest.raises(ParameterError, match=r"^month: 'Oct' is not a month"):
            build_forecast(store, "Oct", now=now)  # type: ignore[arg-type]
        with pytest.raises(ParameterError, match=r"^now: expected a datetime, got date"):
            build_forecast(store, date(2026, 11, 1), now=date(2026, 11, 20))  # type: ignore[arg-type]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_naive_now_is_utc_in_periods_checks_and_metrics(store: BaseStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The forecast's fix above, at its mechanism: `report_period`, `run_checks` and the metrics page (and the
    credit balance) read a naive `now` in the machine's zone too (`astimezone`), so on a UTC+14 machine 2026-11-01
    02:00 was October 31st: another period, budget day and month. Each reads it as UTC now (`utc_moment`)."""
    from usageledger._sections import AlertConfig
    from usageledger.report.alerts import run_checks
    from usageledger.report.metrics import render_metrics

    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        naive = datetime(2026, 11, 1, 2)  # 2026-10-31 12:00 UTC, read in UTC+14
        aware = naive.replace(tzinfo=UTC)
        assert report_period("7d", None, now=naive) == report_period("7d", None, now=aware)
        checked, want = run_checks(store, AlertConfig(), now=naive), run_checks(store, AlertConfig(), now=aware)
        assert (checked.budget_day, checked.anomaly_day) == (want.budget_day, want.anomaly_day)
        assert render_metrics(store, now=naive) == render_metrics(store, now=aware)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
