"""Terminal and machine output on a store synced from the emulator: numbers are never cut at any width, check's
alerts stay one per line when piped, ``--format json`` prints one document, and periods are what they say.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType
from typer.testing import CliRunner

from usageledger import timeutil
from usageledger._amounts import cents
from usageledger.cli import app
from usageledger.cli.commands_report import EXIT_FINDINGS
from usageledger.client import Client
from usageledger.report.charts import report_charts
from usageledger.report.folding import RowLimit
from usageledger.report.formatting import format_count, format_money
from usageledger.report.jsonout import dumps, json_decimal, reconcile_document
from usageledger.report.names import Names
from usageledger.report.queries import Period, ReportData, Scope, build_report
from usageledger.report.reconciliation import ReconcileResult, ReconcileRow, reconcile
from usageledger.report.tables import DataTable, label, number
from usageledger.report.terminal import render_reconcile, render_report
from usageledger.report.trend import summarise
from usageledger.store import default_streams, open_store

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

WIDTHS = (60, 80, 120)
TODAY = datetime.fromtimestamp(EMULATOR_NOW, UTC).date()
RANGE = ["--since", (TODAY - timedelta(days=29)).isoformat(), "--until", (TODAY + timedelta(days=1)).isoformat()]
CUT_NUMBER = re.compile(r"(\$[\d,.]*|\d,[\d,]*|\d\.\d*)…|…[\d,.]*\d")
"""A number cut short: money, a count with separators or a decimal ending in `…`, or digits after one."""


@pytest.fixture(scope="module")
def report_data(demo_store: Path) -> ReportData:
    """The report's figures for the 30 days ending on the emulator's today."""
    return build_report_for(demo_store, 30)


def _render(renderable: RenderableType, width: int) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _report_numbers(data: ReportData) -> list[str]:
    cur = data.currency
    numbers = [format_money(s.amount, cur) for s in data.spend_by_project]
    numbers += [format_money(s.amount, cur) for s in RowLimit().split(data.spend_by_line_item)[0]]
    numbers += [format_money(m.amount, cur) for m in data.spend_by_model]
    numbers += [format_money(m.per_million_tokens, cur, places=4) for m in data.spend_by_model if m.per_million_tokens]
    for u in data.usage_by_model:
        numbers += [format_count(n) for n in (u.input_tokens, u.output_tokens, u.tokens, u.requests)]
    return numbers


@pytest.mark.parametrize("width", WIDTHS)
def test_report_prints_every_number_whole(report_data: ReportData, width: int) -> None:
    """At 60, 80 and 120 columns every spend, rate and token count of the report appears whole, none cut to `…`."""
    text = _render(render_report(report_data), width)
    assert len(report_data.spend_by_line_item) > 5
    for value in _report_numbers(report_data):
        assert value in text, f"{value} is missing at {width} columns"
    assert not CUT_NUMBER.search(text)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width


@pytest.mark.parametrize("width", [40, 60, 72, 80, 100, 140])
def test_the_reports_header_never_parts_a_label_from_its_figure(report_data: ReportData, width: int) -> None:
    """`Tokens` ended an 80-column line with its count on the next one, and `low $4.40,` was parted from `high`:
    the summary breaks only between a label and figure pair and the next, and is one line where it fits."""
    text = _render(render_report(report_data), width)
    lines = text.splitlines()
    tokens, requests = format_count(report_data.total_tokens), format_count(report_data.total_requests)
    for pair in (
        f"Tokens {tokens}",
        f"Requests {requests}",
        f"Spend {format_money(report_data.total_spend, report_data.currency)}",
    ):
        assert any(pair in line for line in lines), f"{pair!r} is parted at {width} columns:\n{text}"
    assert any(re.search(r"low \$[\d,.]+, high \$[\d,.]+", line) for line in lines), text
    summary = f"Spend {format_money(report_data.total_spend, report_data.currency)}  ({report_data.comparison()})"
    if len(summary) + len(f"   Tokens {tokens}   Requests {requests}") <= width:
        assert any(line.rstrip().endswith(f"Requests {requests}") and line.startswith("Spend") for line in lines)


@pytest.mark.parametrize("width", WIDTHS)
def test_reconcile_prints_every_number_whole(demo_store: Path, width: int) -> None:
    """The reconciliation's token counts and percentages are whole at every width."""
    period = Period(TODAY - timedelta(days=29), TODAY + timedelta(days=1))
    with open_store(demo_store, read_only=True) as store:
        result = reconcile(store, period, tolerance=Decimal(0))
    text = _render(render_reconcile(result), width)
    for r in result.differences:
        assert f"{(r.relative * 100).quantize(Decimal('0.01'))}%" in text
    assert not CUT_NUMBER.search(text)


@pytest.mark.parametrize("width", (30, *WIDTHS))
def test_table_shortens_labels_never_numbers(width: int) -> None:
    """A long label gives way with `…`; numbers keep every digit, down to a row-per-block layout when narrow."""
    table = DataTable("Spend by line item", label("line item"), number("spend"), number("per 1M tokens"))
    long_label = "gpt-4o-2024-08-06, input tokens billed under a very long descriptive line item name"
    table.add_row(long_label, "$12,345,678.91", "$1,234.5678")
    table.add_row("x", "$0.00", "-")
    text = _render(table, width)
    assert "$12,345,678.91" in text and "$1,234.5678" in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    if width < 120:
        assert long_label not in text


def test_a_table_is_laid_out_as_an_ascii_output_spells_it() -> None:
    """On an output that cannot encode `€` the stream writes `EUR`, two cells wider than the `€` rich measured: the
    table is laid out with `EUR` itself, so every line is as wide as the others, and a styled cell keeps its style."""
    from rich.text import Text

    from usageledger._text import ASCII_ERRORS

    table = DataTable("Statement 2026-10 ∙ Zürich", label("team"), number("total"))
    table.add_row("Zürich", Text("€1,234.50", style="red"))
    table.add_row("total", "€12.00")
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii", errors=ASCII_ERRORS, newline="\n")
    Console(file=out, width=60, force_terminal=True, color_system="standard").print(table)
    out.flush()
    text = raw.getvalue().decode("ascii")
    plain = re.sub("\x1b\\[[0-9;]*m", "", text)
    assert "Zurich" in plain and "| total  |    EUR12.00 |" in plain, plain
    drawn = [line for line in plain.splitlines() if line.startswith(("+", "|"))]
    assert len(drawn) >= 4 and len({len(line) for line in drawn}) == 1, plain
    assert "\x1b[31mEUR\x1b[0m\x1b[31m1,234.50" in text, text  # red, as given


@pytest.mark.parametrize("width", (30, 40, *WIDTHS))
def test_shortened_labels_never_make_two_rows_read_the_same(width: int) -> None:
    """At 40 columns `text-embedding-3-large` and `-small` were both `text-embeddin…`: labels that would collide
    fold onto more lines instead, so every name can still be read whole; labels that stay distinct are cut."""
    table = DataTable("Spend by model", label("model"), number("spend"), number("per 1M tokens"))
    for model, spend in (("text-embedding-3-large", "$2.10"), ("text-embedding-3-small", "$0.84")):
        table.add_row(model, spend, "$0.1300")
    text = _render(table, width)
    assert "$2.10" in text and "$0.84" in text and "…" not in text
    lines = text.splitlines()
    first, second = (next(i for i, line in enumerate(lines) if spend in line) for spend in ("$2.10", "$0.84"))
    # What each row shows of its name, from its first line up to the next row's (or the end of the table).
    shown = [
        "".join(lines[first:second]).replace("$2.10", "").replace("$0.1300", ""),
        "".join(lines[second:]).replace("$0.84", "").replace("$0.1300", ""),
    ]
    assert shown[0] != shown[1], text
    distinct = DataTable("Spend by model", label("model"), number("spend"), number("per 1M tokens"))
    distinct.add_row("gpt-4o-mini-2024-07-18, input tokens", "$2.10", "$0.1300")
    distinct.add_row("o3-mini-2025-01-31, output tokens", "$0.84", "$0.1300")
    if width == 40:
        assert "…" in _render(distinct, width)


@pytest.mark.parametrize("width", (30, 40, 60, 120))
def test_a_table_without_a_column_renders_as_one_built_without_it(width: int) -> None:
    """`query` drops columns from a table already measured (:meth:`DataTable.without`) instead of building it again:
    what was measured of the other columns moves with them, so the result is laid out as a table made without that
    column, at every width, and the table it came from is left whole."""
    columns = (label("model"), label("line item"), number("spend"), label("project"), number("requests"))
    rows = [
        ("text-embedding-3-large", "input tokens billed under a long line item", "$2.10", "Search Assistant", "12"),
        ("text-embedding-3-small", "output", "$12,345.67", "Support Bot, a longer project name", "1,234,567"),
        ("gpt-4o", "x", "$0.00", "P", "0"),
    ]
    full = DataTable("Spend", *columns)
    for row in rows:
        full.add_row(*row)
    before = _render(full, width)
    assert full.fits(width) or width < 120  # measures taken, then carried over by without()
    for drop in (0, 1, 3, 2):
        kept = [i for i in range(len(columns)) if i != drop]
        fresh = DataTable("Spend", *(columns[i] for i in kept))
        for row in rows:
            fresh.add_row(*(row[i] for i in kept))
        cut = full.without(columns[drop].header)
        assert cut.fits(width) == fresh.fits(width)
        assert _render(cut, width) == _render(fresh, width), (drop, width)
        assert _render(cut.without("spend" if drop != 2 else "requests"), width) == _render(
            fresh.without("spend" if drop != 2 else "requests"), width
        )
    assert _render(full, width) == before
    with pytest.raises(ValueError, match=r"^the table has no column 'team'$"):
        full.without("team")


@pytest.mark.parametrize("width", (40, 50, 60))
def test_labels_that_fold_break_only_at_their_spaces(width: int) -> None:
    """Labels that would read the same cut (`Search Assistant, gpt-4o-…` twice) fold onto more lines; folded narrower
    than a word, `gpt-4o-mini-tts` broke as `gpt-4o-mini-tt` over `s`. The column is kept as wide as its widest word,
    and a `whole` column is never cut, even where its labels stay distinct."""
    models = ("gpt-4o-mini-tts", "gpt-4o-mini-transcribe")
    table = DataTable("Spend", label("day"), label("project, model"), number("spend"), number("per 1M tokens"))
    for model in models:
        table.add_row("2026-11-17", f"Search Assistant, {model}", "$12,345.67", "$1,234.5678")
    lines = [line.strip("│┃ ") for line in _render(table, width).splitlines()]
    assert "…" not in "".join(lines) and "$12,345.67" in "".join(lines)
    assert all(any(model in line for line in lines) for model in models), lines
    assert not any(line.endswith(("gpt-4o-mini-tt", "gpt-4o-mini-tra")) for line in lines), lines

    whole = DataTable(None, label("project, model", whole=True), number("spend"))
    whole.add_row("Search Assistant, gpt-4o-mini-transcribe", "$12,345.67")
    shown = _render(whole, width)
    assert "…" not in shown and "gpt-4o-mini-transcribe" in shown and "Search" in shown and "Assistant," in shown

    # A whole column of one long name, the widest label, at its floor: the other label still gives way for it.
    beside = DataTable(None, label("model", whole=True), label("line item"), number("spend"))
    beside.add_row("gpt-4o-audio-preview-2024-12-17", "input tokens billed under a long line item", "$1.00")
    assert "┃" in _render(beside, 66), "the table dropped its borders though a label could still give way"


@pytest.mark.parametrize("width", (30, 40, 60))
def test_a_record_line_wider_than_the_terminal_goes_on_indented(width: int) -> None:
    """In the block layout a long name went on at the left edge (`project: WWWW MARKETING ... CUSTOMER` over
    `SUPPORT ASSISTANT PLATFORM`), which read as the next record; it goes on two cells past its own line's indent,
    broken at its spaces, with no character lost but the space it broke at."""
    name = "WWWWWW MARKETING WEB 18 (EMEA) - MOBILE CUSTOMER SUPPORT ASSISTANT PLATFORM"
    table = DataTable("Spend by project", label("project", whole=True), number("spend"), number("share"))
    table.add_row(name, "$690.62", "16.5%")
    table.add_row("CustomerSupportAutomationPipelineForEnterpriseAccountsNumber7", "$509.08", "12.2%")
    lines = _render(table, width).splitlines()
    assert not table.fits(width) and all(len(line) <= width for line in lines), lines
    heads = [i for i, line in enumerate(lines) if line.startswith("project:")]
    first = lines[heads[0] : lines.index("  spend: $690.62")]
    assert len(first) > 1 and all(line.startswith("  ") and line[2] != " " for line in first[1:]), lines
    assert " ".join(line.strip() for line in first).removeprefix("project: ") == name
    # a word wider than a line is folded, every part of it indented, none of it lost
    second = lines[heads[1] : lines.index("  spend: $509.08")]
    assert all(line.startswith("  ") for line in second[1:]), lines
    assert "".join(line.strip() for line in second).removeprefix("project:") == (
        "CustomerSupportAutomationPipelineForEnterpriseAccountsNumber7"
    )
    assert lines[-1] == "  share: 12.2%"


def test_a_title_wider_than_its_table_stays_on_one_line() -> None:
    """`forecast --project` at 80 columns printed `Forecast 2026-12 as of 2026-11-22  project Search` over
    `Assistant`: rich wraps a table's title to the table's width. The title is a line of its own, as wide as the
    console."""
    title = "Forecast 2026-12 as of 2026-11-22  project Search Assistant"
    table = DataTable(title, label("scope"), number("to date"), number("month end"))
    table.add_row("total", "$0.00", "$2,466.27")
    lines = _render(table, 80).splitlines()
    assert lines[0] == title and "$2,466.27" in lines[4], lines


def test_a_column_header_never_holds_a_colon_and_blank_cells_have_no_line() -> None:
    """In the block layout a row is `header: value` lines: `status`'s counts read `last run: +ins ~upd =same -del:
    +385` (a colon in the header) and `sync`'s total at 60 columns printed an empty `windows:` line. A header with a
    colon is refused when the table is made, and a blank cell is left out of its row's block."""
    with pytest.raises(ValueError, match="holds ':'"):
        DataTable(None, label("stream"), number("last run: +ins"))
    table = DataTable("Synced", label("stream"), number("windows"), number("inserted"), label("status"))
    table.add_row("costs.1d.project_id", "3/3", "17,389", "ok")
    table.add_row("total", "", "25,661", "")
    lines = [line.strip() for line in _render(table, 30).splitlines()]
    assert lines == [
        "Synced",
        "stream: costs.1d.project_id",
        "windows: 3/3",
        "inserted: 17,389",
        "status: ok",
        "stream: total",
        "inserted: 25,661",
    ], lines


def test_status_blocks_at_60_columns_read_one_label_per_line(demo_store: Path) -> None:
    """`status` at 60 columns prints blocks; the counts line is `last run +ins ~upd =same -del: +N ...`, never a
    second `last run:` label inside a label."""
    result = CliRunner().invoke(app, ["status", "--store", str(demo_store)], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    counts = [line.strip() for line in result.output.splitlines() if "+ins" in line]
    assert counts, result.output
    assert all(re.fullmatch(r"last run \+ins ~upd =same -del: \+[\d,]+ ~[\d,]+ =[\d,]+ -[\d,]+", c) for c in counts), (
        counts
    )


@pytest.mark.parametrize(
    "argv",
    [["report", *RANGE], ["reconcile", *RANGE], ["forecast"], ["status"], ["changes"]],
    ids=lambda argv: argv[0],
)
def test_no_line_piped_ends_in_blanks(demo_store: Path, argv: list[str]) -> None:
    """Piped at 80 columns, `report`'s and `forecast`'s titles and wrapped notes ended in the blanks rich pads them
    with to the table's width (`forecast | grep '2026-12-01$'` found nothing); a pipe or a file gets none."""
    result = CliRunner().invoke(app, [*argv, "--store", str(demo_store)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    padded = [line for line in result.stdout.splitlines() if line != line.rstrip()]
    assert padded == [] and result.stdout.strip(), padded


def test_status_prints_every_count_whole(demo_store: Path) -> None:
    """`status` at 80 columns (not a terminal) shows every stream's row count and watermark in full."""
    result = _invoke("status", "--store", str(demo_store))
    assert result.exit_code == 0, result.output
    with open_store(demo_store, read_only=True) as store:
        states = store.stream_states()
    for s in states:
        assert f"{s.row_count:,}" in result.output
        assert s.watermark is not None and timeutil.iso(s.watermark) in result.output
    assert not CUT_NUMBER.search(result.output)


def test_check_prints_one_alert_per_line_when_piped(demo_store: Path) -> None:
    """Piped, `check` prints each alert on one line however long, so `grep ALERT` sees whole messages."""
    day = (TODAY - timedelta(days=1)).isoformat()
    as_json = _invoke("check", "--store", str(demo_store), "--daily-budget", "0", "--date", day, "--format", "json")
    alerts = json.loads(as_json.stdout)["alerts"]
    assert alerts and as_json.exit_code == EXIT_FINDINGS
    plain = _invoke("check", "--store", str(demo_store), "--daily-budget", "0", "--date", day)
    lines = plain.stdout.splitlines()
    for alert in alerts:
        assert f"ALERT {alert['kind']}: {alert['message']}" in lines
    assert any(len(line) > 80 for line in lines)


def test_report_json_is_one_document(demo_store: Path, report_data: ReportData) -> None:
    """`report --format json` prints one document: ISO period, decimal-string totals and every table."""
    result = _invoke("report", "--store", str(demo_store), *RANGE, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["period"]["start"] == f"{TODAY - timedelta(days=29)}T00:00:00Z"
    assert doc["period"]["end"] == f"{TODAY + timedelta(days=1)}T00:00:00Z"
    assert doc["period"]["days"] == 30
    assert doc["totals"]["spend"] == json_decimal(report_data.total_spend)
    assert Decimal(doc["totals"]["spend"]) == report_data.total_spend
    assert doc["totals"]["tokens"] == report_data.total_tokens > 0
    assert doc["totals"]["requests"] == report_data.total_requests > 0
    items = doc["spend_by_line_item"]
    assert len(items) == len(report_data.spend_by_line_item)
    assert sum(Decimal(i["spend"]) for i in items) == report_data.total_spend
    assert set(items[0]) == {"line_item", "spend", "share"}
    for key in ("spend_by_project", "spend_by_model", "usage_by_model", "movers_by_project", "movers_by_model"):
        assert doc[key], key
    assert set(doc["spend_by_model"][0]) == {
        "model",
        "spend",
        "share",
        "token_spend",
        "billed_tokens",
        "per_million_tokens",
    }
    assert doc["trend"]["grain"] == "day" and len(doc["trend"]["points"]) == 30


def test_reconcile_json_has_rows_with_decimal_ratios(demo_store: Path) -> None:
    """`reconcile --format json` lists every day/model pair with its ratio as a decimal string."""
    result = _invoke("reconcile", "--store", str(demo_store), *RANGE, "--tolerance", "0.5", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["tolerance"] == "0.5"
    assert doc["rows"]
    row = doc["rows"][0]
    assert set(row) == {
        "org",
        "day",
        "model",
        "usage_tokens",
        "costs_tokens",
        "difference",
        "relative",
        "beyond_tolerance",
    }
    assert all(isinstance(r["relative"], str) and "E" not in r["relative"] for r in doc["rows"])
    assert doc["differences"] == sum(r["beyond_tolerance"] for r in doc["rows"])


def test_reconcile_json_writes_every_number_in_one_format(demo_store: Path) -> None:
    """Usage tokens came out as `"1424931"` and the same billed tokens as `"1424931.000000000000000000"` (the
    store's 18 places), the difference and ratio with 18 places too: every number is now plain digits with no
    trailing zeros, on the command line and for a result built by hand with exponents and trailing zeros."""
    result = _invoke("reconcile", "--store", str(demo_store), *RANGE, "--tolerance", "1%", "--format", "json")
    doc = json.loads(result.stdout)
    numbers = [doc["tolerance"], doc["usage_tokens"], doc["costs_tokens"]]
    numbers += [r[k] for r in doc["rows"] for k in ("usage_tokens", "costs_tokens", "difference", "relative")]
    plain = re.compile(r"-?(0|[1-9]\d*)(\.\d*[1-9])?")
    assert all(isinstance(n, str) and plain.fullmatch(n) for n in numbers if n is not None), numbers
    row = ReconcileRow("o", date(2026, 11, 1), "m", Decimal("1E+1"), Decimal("12.500000000000000000"))
    built = reconcile_document(
        ReconcileResult(Period(date(2026, 11, 1), date(2026, 11, 2)), Scope(), Decimal("1E-7"), (row,))
    )
    written = json.loads(dumps(built))
    assert written["tolerance"] == "0.0000001" and written["usage_tokens"] == "10" and written["costs_tokens"] == "12.5"
    assert written["rows"][0]["difference"] == "2.5" and written["rows"][0]["relative"] == "0.2"


def test_status_json_lists_streams(demo_store: Path) -> None:
    """`status --format json` gives each stream's state, cursor and last run."""
    result = _invoke("status", "--store", str(demo_store), "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    streams = doc["streams"]
    assert len(streams) == len(default_streams())
    for s in streams:
        assert s["state"] == "ok"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s["watermark"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s["last_run"]["at"])
        assert s["rows"] > 0


def test_check_json_without_alerts_exits_zero(demo_store: Path) -> None:
    """`check --format json` says `fired: false` and exits 0 when nothing fired."""
    day = (TODAY - timedelta(days=1)).isoformat()
    result = _invoke("check", "--store", str(demo_store), "--date", day, "--stale-after", "99999d", "--format", "json")
    doc = json.loads(result.stdout)
    assert doc["fired"] is False and doc["alerts"] == []
    assert result.exit_code == 0


def test_since_days_means_that_many_days(demo_store: Path) -> None:
    """`report --since 30d` covers 30 days ending today, exactly as the default does."""
    default = json.loads(_invoke("report", "--store", str(demo_store), "--format", "json").stdout)
    spanned = json.loads(_invoke("report", "--store", str(demo_store), "--since", "30d", "--format", "json").stdout)
    today = datetime.now(UTC).date()
    assert spanned["period"] == default["period"]
    assert spanned["period"]["days"] == 30
    assert spanned["period"]["first_day"] == (today - timedelta(days=29)).isoformat()
    assert spanned["period"]["last_day"] == today.isoformat()


def test_since_unix_rule() -> None:
    """The one period rule: `Nd` starts at midnight N-1 days before today; hours count back from now."""
    now = EMULATOR_NOW  # 2026-11-20T12:00Z
    midnight = timeutil.floor(now, "1d")
    assert timeutil.since_unix("1d", now=now) == midnight
    assert timeutil.since_unix("30d", now=now) == midnight - 29 * 86400
    assert timeutil.since_unix("2w", now=now) == midnight - 13 * 86400
    assert timeutil.since_unix("36h", now=now) == now - 36 * 3600
    assert timeutil.since_unix("2026-11-01", now=now) == timeutil.to_unix(date(2026, 11, 1))
    assert timeutil.span_start(now, 90 * 86400) == midnight - 89 * 86400  # [sync] since = "90d"
    assert timeutil.span_start(now, 3600) == now - 3600
    for bad in ("0d", "1.5d"):
        with pytest.raises(ValueError, match="--since"):
            timeutil.since_unix(bad, now=now)


def test_long_period_is_summarised_by_month(demo_store: Path) -> None:
    """Five years are shown as about 60 monthly points, not a 1,826-character sparkline."""
    period = Period(TODAY - timedelta(days=5 * 365), TODAY + timedelta(days=1))
    with open_store(demo_store, read_only=True) as store:
        data = build_report(store, period, Scope())
    text = _render(render_report(data), 200)
    trend = next(line for line in text.splitlines() if any(ch in line for ch in "▁▂▃▄▅▆▇█"))
    assert trend.startswith("Monthly spend")
    assert 59 <= sum(ch in "▁▂▃▄▅▆▇█" for ch in trend) <= 62
    weekly = _render(render_report(build_report_for(demo_store, 200)), 200)
    assert "Weekly spend" in weekly


def build_report_for(demo_store: Path, days: int) -> ReportData:
    """The report for the ``days`` days ending on the emulator's today."""
    with open_store(demo_store, read_only=True) as store:
        return build_report(store, Period(TODAY - timedelta(days=days - 1), TODAY + timedelta(days=1)), Scope())


def test_long_period_charts_are_weekly_or_monthly(demo_store: Path) -> None:
    """The HTML/PNG charts of a long period get one point per week or month, and keep every cent of the days."""
    five_years = build_report_for(demo_store, 5 * 365)
    charts = {c.slug: c for c in report_charts(five_years, Names())}
    spend = charts["daily-spend-by-project"]
    assert 60 <= len(spend.categories) <= 61
    assert spend.title.startswith("Monthly")
    assert sum(sum(s.values) for s in spend.series) == five_years.total_spend
    weekly = report_charts(build_report_for(demo_store, 200), Names())[0]
    assert 29 <= len(weekly.categories) <= 30 and weekly.title.startswith("Weekly")
    daily = report_charts(build_report_for(demo_store, 30), Names())[0]
    assert len(daily.categories) == 30


def test_summarise_keeps_exact_sums() -> None:
    """Weekly and monthly points are exact Decimal sums of their days, labelled by their first day in the period."""
    days = [(date(2026, 1, 1) + timedelta(days=i), Decimal("0.01") * i) for i in range(400)]
    weekly = summarise(days)
    assert weekly.grain == "week"
    assert weekly.points[0] == (date(2026, 1, 1), sum((v for _, v in days[:4]), Decimal(0)))  # Thu..Sun
    assert weekly.points[1][0] == date(2026, 1, 5)  # a Monday
    assert sum(v for _, v in weekly.points) == sum(v for _, v in days)
    monthly = summarise(days, "month")
    assert [d.day for d, _ in monthly.points] == [1] * len(monthly.points)
    assert summarise(days[:90]).grain == "day"


@pytest.mark.parametrize("width", WIDTHS)
def test_query_table_shows_every_amount_whole(emulator_url: str, monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """`query costs` as a table keeps `amount_value` and prints every amount whole at 60, 80 and 120 columns."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    monkeypatch.setenv("COLUMNS", str(width))
    args = ["--start", "2026-11-01", "--end", "2026-11-03", "--group-by", "project_id,line_item"]
    result = CliRunner().invoke(app, ["query", "costs", *args, "--base-url", emulator_url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
        found = list(
            client.query(
                "costs", start_time="2026-11-01", end_time="2026-11-03", group_by=["project_id", "line_item"]
            ).rows()
        )
    assert found
    assert "amount_value" in result.stdout
    for row in found:
        assert str(row["amount_value"]) in result.stdout
    assert max(len(line.rstrip()) for line in result.stdout.splitlines()) <= width


def test_report_json_with_html_keeps_stdout_one_document(demo_store: Path, tmp_path: Path) -> None:
    """With `--format json --html`, stdout is the JSON document alone; what was written is said on stderr."""
    page = tmp_path / "report.html"
    result = _invoke("report", "--store", str(demo_store), *RANGE, "-f", "json", "--html", str(page))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["period"]["days"] == 30
    assert page.is_file() and f"wrote {page}" in result.stderr


def test_a_missing_path_is_not_blamed_on_folders_that_are_never_made() -> None:
    """`describe_os_error` said "missing folders are not created" of every missing path, though every command that
    writes a file (`export -o`, `report --html`, `statement --csv`) makes its missing folders: the hint sent a user
    to make folders when the file it named was what was missing."""
    from usageledger.cli._app import describe_os_error

    said = describe_os_error(FileNotFoundError(2, "No such file or directory", "names.csv"))
    assert said == "No such file or directory: names.csv; check that the path exists"


_CENT_KEYS: dict[str, frozenset[str]] = {
    "statement": frozenset(
        {
            "total",
            "shared_total",
            "direct",
            "shared",
            "amount",
            "present_total",
            "adjustment_total",
            "closed",
            "present",
        }
    ),
    "forecast": frozenset({"actual_to_date", "month_end", "low", "high"}),
}
"""Per document, the keys of the figures rounded to the cent for display: they keep their two places."""
_CENT_KEYS["report"] = _CENT_KEYS["forecast"]  # the report carries the forecast's document under `forecast`
_DECIMAL = re.compile(r"-?\d+\.\d+|-?\d+E[-+]?\d+", re.IGNORECASE)


def _decimals(value: object, key: str = "") -> list[tuple[str, str]]:
    """Every ``(key, text)`` of ``value`` whose text is a decimal with a point or an exponent."""
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _decimals(v, k)]
    if isinstance(value, list):
        return [found for v in value for found in _decimals(v, key)]
    return [(key, value)] if isinstance(value, str) and _DECIMAL.fullmatch(value) else []


def test_every_json_document_writes_money_in_one_form(demo_store_copy: Path) -> None:
    """`report` wrote `"spend": "2213.252622658460000000"` (the store's 18 places), `statement` its `exact_total`
    and `credit` its top-ups likewise, where `reconcile` trimmed: every document now writes a decimal exact, trailing
    zeros trimmed, never an exponent; only a figure rounded to the cent for display keeps its two places."""
    store = str(demo_store_copy)
    month = f"{TODAY.replace(day=1) - timedelta(days=1):%Y-%m}"
    assert _invoke("credit", "add", (TODAY - timedelta(days=20)).isoformat(), "500.00", "--store", store).exit_code == 0
    commands = {
        "report": ["report", *RANGE],
        "statement": ["statement", month],
        "forecast": ["forecast"],
        "credit": ["credit", "list"],
        "check": ["check", "--daily-budget", "1.50", "--date", (TODAY - timedelta(days=1)).isoformat()],
        "changes": ["changes"],
        "keys": ["keys"],
        "reconcile": ["reconcile", *RANGE],
        "status": ["status"],
    }
    seen: dict[str, list[tuple[str, str]]] = {}
    for name, argv in commands.items():
        result = _invoke(*argv, "--store", store, "--format", "json")
        assert result.exit_code in (0, EXIT_FINDINGS), (name, result.output)
        seen[name] = _decimals(json.loads(result.stdout))
        for key, text in seen[name]:
            if key in _CENT_KEYS.get(name, ()):
                assert re.fullmatch(r"-?\d+\.\d\d", text), (name, key, text)
            else:
                assert "e" not in text.lower() and not text.endswith("0"), (name, key, text)
    exact = {name: {key for key, _ in found} for name, found in seen.items()}
    assert {"spend", "previous_spend"} <= exact["report"] and "month_end" in exact["report"]
    assert {"exact_total", "exact", "total", "amount"} <= exact["statement"]
    assert {"spent", "balance"} <= exact["credit"] and "month_end" in exact["forecast"]
    # on every value, the store's 18 places among them
    assert [json_decimal(Decimal(v)) for v in ("100", "1E+2", "0E-18", "-0.000", "1E-18")] == [
        "100",
        "100",
        "0",
        "0",
        "0.000000000000000001",
    ]
    assert json_decimal(Decimal("2213.252622658460000000")) == "2213.25262265846"
    assert [json_decimal(cents(Decimal(v))) for v in ("2", "2170.9", "-0.001")] == ["2.00", "2170.90", "0.00"]


def test_json_documents_keep_names_as_they_are(demo_store: Path, tmp_path: Path) -> None:
    """`report --format json` wrote a name with a newline as `Search\\nAssistant` (a backslash and an n, the
    terminal's escape) and two alike names with their IDs appended, where `keys` and `export` keep the name: every
    JSON document now carries the name as it is (the ID is beside it); the terminal still shows it fit to show."""
    store = str(demo_store)
    first = json.loads(_invoke("report", "--store", store, *RANGE, "--format", "json").stdout)
    a, b, c = (row["project_id"] for row in first["spend_by_project"][:3])
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"projects": {a: "Search\nAssistant", b: "Bot", c: "Bot"}}), encoding="utf-8")
    wanted = {a: "Search\nAssistant", b: "Bot", c: "Bot"}
    month = f"{TODAY.replace(day=1) - timedelta(days=1):%Y-%m}"

    def named(rows: list[dict[str, Any]], key: str = "project_id") -> dict[str, str]:
        return {row[key]: row["name"] for row in rows if row[key] in wanted}

    doc = json.loads(_invoke("report", "--store", store, *RANGE, "--names", str(names), "--format", "json").stdout)
    assert named(doc["spend_by_project"]) == wanted and named(doc["movers_by_project"]) == wanted
    teams = _invoke("report", "--store", store, *RANGE, "--by", "team", "--names", str(names), "--format", "json")
    assert named([p for t in json.loads(teams.stdout)["teams"] for p in t["projects"]]) == wanted
    statement = _invoke("statement", month, "--by", "project", "--store", store, "--names", str(names), "-f", "json")
    assert named(json.loads(statement.stdout)["statements"], "owner") == wanted
    forecast = _invoke("forecast", "--by", "project", "--store", store, "--names", str(names), "--format", "json")
    assert named(json.loads(forecast.stdout)["groups"], "project") == wanted
    argv = ["report", "--store", store, *RANGE, "--names", str(names)]
    shown = CliRunner().invoke(app, argv, env={"COLUMNS": "200"}, catch_exceptions=False).stdout
    assert "Search\\nAssistant" in shown and f"Bot ({b})" in shown and f"Bot ({c})" in shown


def test_statement_json_notes_name_projects_as_the_terminal_does(demo_store: Path, tmp_path: Path) -> None:
    """`statement --format json` carries the terminal's sentences as `notes`; with the names as they are, a shared
    project named `Search\\nAssistant` broke a sentence in two, and two alike names read the same. The notes name
    projects as the terminal does (one line, alike ones with their IDs); the `name` fields keep them as they are."""
    store = str(demo_store)
    first = json.loads(_invoke("report", "--store", store, *RANGE, "--format", "json").stdout)
    a, b, c = (row["project_id"] for row in first["spend_by_project"][:3])
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"projects": {a: "Search\nAssistant", b: "Bot", c: "bot"}}), encoding="utf-8")
    config = tmp_path / "usageledger.toml"
    config.write_text(f'[teams]\nAlpha = ["{b}"]\n', encoding="utf-8")  # a and c are in no team: their spend is shared
    month = f"{TODAY.replace(day=1) - timedelta(days=1):%Y-%m}"
    argv = ["statement", month, "--by", "team", "--store", store, "--names", str(names), "--config", str(config)]
    doc = json.loads(_invoke(*argv, "--format", "json").stdout)
    assert {a, c} <= set(doc["shared_projects"])
    shared = next(note for note in doc["notes"] if note.startswith("Shared spend"))
    assert "\n" not in shared and "Search\\nAssistant" in shared and f"bot ({c})" in shared, shared
    assert [p["name"] for s in doc["statements"] for p in s["projects"] if p["project_id"] == b] == ["Bot"]
    terminal = CliRunner().invoke(app, argv, env={"COLUMNS": "400"}, catch_exceptions=False).stdout
    assert shared in terminal.replace("\n", " ")
