"""`usageledger statement`: showback statements that add up to the month's costs to the cent, the allocation rules,
the per-day currency conversion and its error, on a store synced from the emulator over 90 days."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser
from typer.testing import CliRunner, Result

from usageledger._text import one_line
from usageledger.cli import app
from usageledger.config import STATEMENT_ALLOCATIONS, parse_config
from usageledger.errors import ConfigError, ParameterError
from usageledger.report.fx import load_rates, rate_problem
from usageledger.report.queries import COSTS_VIEW, utc_day
from usageledger.report.statement import (
    ALLOCATIONS,
    SHARED,
    apportion,
    build_statements,
    month_statements,
)
from usageledger.store import open_store
from usageledger.store.closes import close_month

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

MONTH = "2026-10"
FIRST, UNTIL = date(2026, 10, 1), date(2026, 11, 1)
CENT = Decimal("0.01")


def _run(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def _json(*args: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_run("statement", *args, "--format", "json").stdout)
    return doc


@pytest.fixture(scope="module")
def store(emulator_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """90 days of costs and the directory (projects, groups: one project is in no team) from the emulator."""
    path = str(tmp_path_factory.mktemp("statement") / "s.duckdb")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
        _run("sync", "--store", path, "--now", str(EMULATOR_NOW), "--base-url", emulator_url, "-e", "costs",
             "--since", "90d")  # fmt: skip
    return path


def _day_costs(store: str) -> dict[date, Decimal]:
    with open_store(store, read_only=True) as db:
        rows = db.query(
            f"SELECT bucket_start, SUM(amount_value) FROM {COSTS_VIEW} WHERE bucket_start >= %s AND bucket_start < %s"
            " GROUP BY bucket_start",
            [datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)],
        )
    return {utc_day(d): Decimal(a) for d, a in rows}


def _invoice(store: str) -> Decimal:
    """The month's costs straight from the store, rounded to the cent once: what the invoice says."""
    return sum(_day_costs(store).values(), Decimal(0)).quantize(CENT, rounding=ROUND_HALF_UP)


def _check_sums(doc: dict[str, Any]) -> None:
    statements = doc["statements"]
    assert sum(Decimal(s["total"]) for s in statements) == Decimal(doc["total"])
    for s in statements:
        assert sum(Decimal(line["amount"]) for line in s["lines"]) == Decimal(s["total"]), s["owner"]
        assert Decimal(s["direct"]) + Decimal(s["shared"]) == Decimal(s["total"])
        for line in s["lines"]:
            assert Decimal(line["amount"]) == Decimal(line["amount"]).quantize(CENT)
            assert abs(Decimal(line["amount"]) - Decimal(line["exact"])) < CENT
    assert doc["adds_up"] is True


@pytest.mark.parametrize("by", ["team", "project"])
@pytest.mark.parametrize("allocation", ALLOCATIONS)
def test_statements_add_up_to_the_invoice(store: str, by: str, allocation: str) -> None:
    doc = _json(MONTH, "--store", store, "--by", by, "--allocate", allocation)
    assert Decimal(doc["total"]) == _invoice(store)
    assert doc["month"] == MONTH and doc["complete"] is True and doc["currency"] == "USD"
    assert doc["allocation"]["rule"] == allocation
    _check_sums(doc)
    owners = [s["owner"] for s in doc["statements"]]
    assert len(owners) == len(set(owners)) >= 2
    assert any("add up to" in note and doc["total"] in note.replace(",", "") for note in doc["notes"])
    assert doc["closed"] is None and doc["adjustments"] == []  # an open month: the current figures, nothing apart


def test_text_output_says_it_adds_up(store: str) -> None:
    text = _run("statement", MONTH, "--store", store).stdout
    total = f"${_invoice(store):,}"
    assert f"add up to {total}" in " ".join(text.split())
    assert "in proportion to each statement's direct spend" in " ".join(text.split())


def test_every_format_says_the_month_is_a_utc_month(store: str, tmp_path: Path) -> None:
    """A statement's month is a UTC month, which it did not say, where `report`'s period says `UTC` and `forecast`
    `as of ... UTC`: its first sentence says the month's days and UTC in the terminal, the JSON's notes and the HTML
    page, and the JSON has the month's start and end as UTC timestamps. The CSV stays as it was (a month column)."""
    span = "2026-10 (2026-10-01 to 2026-10-31 UTC)"
    out_csv, out_html = tmp_path / "s.csv", tmp_path / "s.html"
    text = " ".join(
        _run("statement", MONTH, "--store", store, "--csv", str(out_csv), "--html", str(out_html)).stdout.split()
    )
    assert f"statements of {span} add up to" in text and text.count("UTC") == 1, text
    doc = _json(MONTH, "--store", store)
    assert (doc["start"], doc["end"]) == ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z")
    assert (doc["first_day"], doc["until"]) == ("2026-10-01", "2026-11-01")
    assert doc["notes"][0].startswith(f"The {len(doc['statements'])} statements of {span} add up to"), doc["notes"]
    page = out_html.read_text(encoding="utf-8")
    assert f"statements of {span} add up to" in page
    csv_text = out_csv.read_text(encoding="utf-8")
    assert (
        csv_text.startswith("month,by,owner,name,kind,model,line_item,amount,currency,amount_usd")
        and "UTC" not in csv_text
    )


def test_shared_spend_is_allocated_by_the_rule(store: str) -> None:
    """By team, one project is in no team: its spend is shared, and each rule spreads it as it says."""
    proportional = _json(MONTH, "--store", store)
    shared = Decimal(proportional["shared_total"])
    assert shared > 10 and proportional["shared_projects"]
    owners = proportional["statements"]
    direct_total = sum(Decimal(s["direct"]) for s in owners)
    for s in owners:
        expected = shared * Decimal(s["direct"]) / direct_total
        assert abs(Decimal(s["shared"]) - expected) < Decimal("0.02"), s["owner"]
        assert [line for line in s["lines"] if line["shared"]], "the shared part is a line of its own"
    even = _json(MONTH, "--store", store, "--allocate", "even")
    parts = [Decimal(s["shared"]) for s in even["statements"]]
    assert max(parts) - min(parts) <= CENT and sum(parts) == Decimal(even["shared_total"])
    # The shared parts are rounded inside each statement, so their sum may move by a cent with the rule.
    assert abs(Decimal(even["shared_total"]) - shared) <= CENT
    none = _json(MONTH, "--store", store, "--allocate", "none")
    by_owner = {s["owner"]: s for s in none["statements"]}
    assert abs(Decimal(by_owner[SHARED]["total"]) - shared) <= CENT
    assert all(Decimal(s["shared"]) == 0 for o, s in by_owner.items() if o != SHARED)
    assert none["statements"][-1]["owner"] == SHARED


def test_the_config_chooses_the_rule(store: str, tmp_path: Path) -> None:
    config = tmp_path / "usageledger.toml"
    config.write_text('[statement]\nallocate = "even"\n', encoding="utf-8")
    doc = _json(MONTH, "--store", store, "--config", str(config))
    assert doc["allocation"]["rule"] == "even"
    assert _json(MONTH, "--store", store, "--config", str(config), "--allocate", "none")["allocation"]["rule"] == "none"
    with pytest.raises(ConfigError, match=r"statement\.allocate"):
        parse_config({"statement": {"allocate": "by headcount"}})
    assert STATEMENT_ALLOCATIONS == ALLOCATIONS


def test_config_teams_decide_the_statements(store: str, tmp_path: Path) -> None:
    with open_store(store, read_only=True) as db:
        projects = sorted(p for (p,) in db.query(f"SELECT DISTINCT project_id FROM {COSTS_VIEW}") if p is not None)
    config = tmp_path / "usageledger.toml"
    config.write_text(f'[teams]\nAlpha = ["{projects[0]}"]\nBeta = {json.dumps(projects[1:])}\n', encoding="utf-8")
    doc = _json(MONTH, "--store", store, "--config", str(config))
    assert {s["owner"] for s in doc["statements"]} == {"Alpha", "Beta"}
    assert doc["shared_projects"] in ([], [None])
    assert Decimal(doc["total"]) == _invoice(store)
    _check_sums(doc)


def _rates(path: Path, skip: date | None = None) -> dict[date, Decimal]:
    rates = {FIRST + timedelta(days=i): Decimal("0.9") + Decimal(i) / 1000 for i in range((UNTIL - FIRST).days)}
    lines = ["date,rate", *(f"{d},{r}" for d, r in rates.items() if d != skip)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rates


def test_currency_converts_each_day_at_its_rate(store: str, tmp_path: Path) -> None:
    rates = _rates(tmp_path / "rates.csv")
    doc = _json(MONTH, "--store", store, "--currency", "eur", "--fx", str(tmp_path / "rates.csv"))
    assert doc["currency"] == "EUR"
    expected = sum((amount * rates[d] for d, amount in _day_costs(store).items()), Decimal(0))
    assert Decimal(doc["total"]) == expected.quantize(CENT, rounding=ROUND_HALF_UP)
    assert Decimal(doc["total"]) != _invoice(store)
    assert {r["day"]: Decimal(r["rate"]) for r in doc["rates"]} == {d.isoformat(): r for d, r in rates.items()}
    assert any("EUR" in note and "0.9 to 0.93" in note for note in doc["notes"])
    _check_sums(doc)
    text = " ".join(_run("statement", MONTH, "--store", store, "--currency", "EUR", "--fx",
                         str(tmp_path / "rates.csv")).stdout.split())  # fmt: skip
    assert "€" in text and "0.9 to 0.93 EUR per USD" in text
    out = tmp_path / "s.csv"
    _run(
        "statement",
        MONTH,
        "--store",
        store,
        "--currency",
        "EUR",
        "--fx",
        str(tmp_path / "rates.csv"),
        "--csv",
        str(out),
    )
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    # a rate line was in "USD": a spreadsheet's sum of the USD amounts added up the rates
    assert {r["currency"] for r in rows if r["kind"] == "rate"} == {"EUR per USD"}
    assert {r["currency"] for r in rows if r["kind"] != "rate"} == {"EUR"}
    assert len([r for r in rows if r["kind"] == "rate"]) == len(rates)


@pytest.mark.parametrize("by", ["team", "project"])
def test_a_converted_statement_keeps_usd_beside(store: str, tmp_path: Path, by: str) -> None:
    """Converted, every output gave the month and each statement in EUR alone: the invoice's USD figure was gone.
    Now each statement's USD total, as billed, is beside its own, and they add up to the invoice in every format."""
    _rates(tmp_path / "rates.csv")
    fx = ("--store", store, "--by", by, "--allocate", "none", "--currency", "EUR", "--fx", str(tmp_path / "rates.csv"))
    doc = _json(MONTH, *fx)
    usd = _json(MONTH, "--store", store, "--by", by, "--allocate", "none")
    assert Decimal(doc["total_usd"]) == _invoice(store) == Decimal(usd["total"]) == Decimal(usd["total_usd"])
    assert sum(Decimal(s["total_usd"]) for s in doc["statements"]) == _invoice(store)
    # the same owners' USD figures as the statement in USD (no allocation, so no EUR-weighted split between them)
    assert {s["owner"]: s["total_usd"] for s in doc["statements"]} == {
        s["owner"]: s["total"] for s in usd["statements"]
    }
    _check_sums(doc)
    out_csv, out_html = tmp_path / "s.csv", tmp_path / "s.html"
    text = _run("statement", MONTH, *fx, "--csv", str(out_csv), "--html", str(out_html)).stdout
    assert "in USD" in text and f"${_invoice(store):,}" in text
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    totals = [r for r in rows if r["kind"] == "total"]
    assert sum(Decimal(r["amount_usd"]) for r in totals) == _invoice(store)
    assert sum(Decimal(r["amount"]) for r in totals) == Decimal(doc["total"])
    assert all(r["amount_usd"] == "" for r in rows if r["kind"] != "total")
    page = out_html.read_text(encoding="utf-8")
    assert "total in USD" in page and f"${_invoice(store):,}" in page and f"€{Decimal(doc['total']):,}" in page
    assert all(f"${Decimal(s['total_usd']):,}</td>" in page for s in doc["statements"])


def test_a_missing_day_is_a_one_line_error(store: str, tmp_path: Path) -> None:
    missing = date(2026, 10, 19)
    _rates(tmp_path / "rates.csv", skip=missing)
    result = subprocess.run(
        [sys.executable, "-c", "from usageledger.cli import main; main()", "statement", MONTH, "--store", store,
         "--currency", "EUR", "--fx", str(tmp_path / "rates.csv")],
        capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "2026-10-19" in lines[0] and "--fx" in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""
    only_fx = CliRunner().invoke(app, ["statement", MONTH, "--store", store, "--fx", str(tmp_path / "rates.csv")])
    assert only_fx.exit_code == 2 and "--currency" in only_fx.output


@pytest.mark.parametrize(
    ("text", "message"),
    [("date,rate\n2026-10-01,abc\n", "not a positive rate"), ("day,value\n", "header"),
     ("date,rate\n2026-10-01,0.9\n2026-10-01,0.8\n", "two different rates"), ("date,rate\n", "no rates"),
     ("date,rate\n2026-10-01,0\n", "not a positive rate"), ("date,rate\n2026-10-01,-0.9\n", "not a positive rate"),
     ("date,rate\n2026-10-01,1e30\n", "line 2: '1e30' is out of range; a rate is between 0.000001 and 1000000"),
     ("date,rate\n2026-10-01,1e-999\n", "'1e-999' is out of range"), ("date,rate\n2026-10-01,1e999\n", "range"),
     ("date,rate\n2026-10-01,0.0000009\n", "out of range"), ("date,rate\n2026-10-01,1000000.1\n", "out of range"),
     ("date,rate\n2026-10-01,0.92153456789012\n", "'0.92153456789012' has 14 significant digits; round it to 10"),
     ("date,rate\n2026-10-01,1000000\n2026-10-02,0.000001234567\n", "need 19 digits side by side"),
     ("date,rate\n2026-10-01,1,23\n", r"line 2: .* has 3 values .* decimal point \(1\.23\), not a comma"),
     ("date,rate\n2026-10-01,0.92,ECB\n", "line 2: .* 3 values and the header 2"),
     ("date;rate\n2026-10-01;0,92\n", "header line date,rate .*semicolons"),
     ("date,rate\n2026-10-01,0.921500000000000000000000000001\n", "has 30 significant digits; round it to 10"),
     ('date,rate\n2026-10-01,"1,05"\n', r"line 2: '1,05' is not a positive rate; .* decimal point \(1\.05\)"),
     ("\n\ndate,rate\n\n2026-10-01,abc\n", "line 5: 'abc' is not a positive rate"),
     ("\n;\n", "header line date,rate .*semicolons"), ("\n \n", "header line date,rate$"),
     # Decimal reads both: 1_0 converted at 10, 0.9 and a full-width 2 at 0.92
     ("date,rate\n2026-10-01,1_0\n", "line 2: '1_0' is not a number of ASCII digits and a point; write it like"),
     ("date,rate\n2026-10-01,0.9\uff12\n", "line 2: '0.9\uff12' is not a number of ASCII digits")],
)  # fmt: skip
def test_bad_rate_files_name_fx(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rates.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ParameterError, match=message) as caught:
        load_rates(path, "EUR")
    assert str(caught.value).startswith("--fx:")
    with pytest.raises(ParameterError, match="--currency"):
        load_rates(path, "USD")


@pytest.mark.parametrize("rate", ["1e30", "1e-999", "1e999", "0.123456789012345"])
@pytest.mark.parametrize(
    "command",
    [["statement", MONTH], ["report", "--since", "2026-10-01", "--until", "2026-11-01"],
     ["report", "--since", "2026-10-01", "--until", "2026-11-01", "--format", "json"],
     ["export", "--format", "focus", "--output", "focus.csv"]],
)  # fmt: skip
def test_an_absurd_rate_is_refused_naming_fx(store: str, tmp_path: Path, rate: str, command: list[str]) -> None:
    """1e30 was a decimal.InvalidOperation traceback (statement) or a DuckDB overflow naming no flag (report);
    1e-999 a TypeError traceback (the product became a float column); 15 digits overflowed DuckDB's DECIMAL(38)."""
    path = tmp_path / "rates.csv"
    day = date(2026, 8, 1)
    path.write_text("date,rate\n" + "".join(f"{day + timedelta(days=i)},{rate}\n" for i in range(150)), "utf-8")
    args = [a if a != "focus.csv" else str(tmp_path / a) for a in command]
    result = CliRunner().invoke(app, [*args, "--store", store, "--currency", "EUR", "--fx", str(path)])
    assert result.exit_code == 2 and not isinstance(result.exception, TypeError | ArithmeticError), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --fx: ") and "line 2" in lines[0], result.output
    assert f"{rate!r} " in lines[0] and ("out of range" in lines[0] or "15 significant digits" in lines[0])


def test_a_rate_of_thirty_decimals_is_refused_not_rounded() -> None:
    """Past 28 digits Decimal.normalize() rounded the rate to its context: 0.9215 plus 1e-30 counted as 4 digits,
    passed the 10-digit rule and converted as 0.9215 in the report's SQL, as the rate itself in the statement."""
    assert rate_problem(Decimal("0.921500000000000000000000000001")) is not None
    assert rate_problem(Decimal("0.921500000000000000000000000000")) is None  # trailing zeros: 0.9215
    assert rate_problem(Decimal("1" + "0" * 5 + "." + "0" * 30)) is None  # 1000000 written with 30 zeros


def test_blank_lines_above_the_header_are_skipped(tmp_path: Path) -> None:
    """A blank first line was an IndexError traceback; the lines keep their numbers in messages."""
    path = tmp_path / "rates.csv"
    path.write_text("\r\n\r\ndate,rate\r\n2026-10-01,0.9215\r\n", encoding="utf-8")
    assert load_rates(path, "eur").rates == {date(2026, 10, 1): Decimal("0.9215")}


@pytest.mark.parametrize("rate", ["1000000", "0.000001", "0.0000123456789", "999999.9999", "0.9215000000000000000000"])
def test_rates_at_the_limits_convert_exactly(store: str, tmp_path: Path, rate: str) -> None:
    """Rates at the ends of the range, and of ten significant digits, convert exactly in the report's SQL and in
    the statement's Decimals: the same totals as converting the store's amounts by hand."""
    path = tmp_path / "rates.csv"
    day = date(2026, 8, 1)
    path.write_text("date,rate\n" + "".join(f"{day + timedelta(days=i)},{rate}\n" for i in range(150)), "utf-8")
    expected = sum((a * Decimal(rate) for a in _day_costs(store).values()), Decimal(0))
    doc = _json(MONTH, "--store", store, "--currency", "EUR", "--fx", str(path))
    assert Decimal(doc["total"]) == expected.quantize(CENT, rounding=ROUND_HALF_UP)
    _check_sums(doc)
    report = json.loads(
        _run("report", "--since", "2026-10-01", "--until", "2026-11-01", "--store", store, "--format", "json",
             "--currency", "EUR", "--fx", str(path)).stdout
    )  # fmt: skip
    assert Decimal(report["totals"]["spend"]) == expected


def test_csv_and_html_outputs(store: str, tmp_path: Path) -> None:
    out_csv, out_html = tmp_path / "s.csv", tmp_path / "s.html"
    _run("statement", MONTH, "--store", store, "--by", "project", "--csv", str(out_csv), "--html", str(out_html))
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    totals = [Decimal(r["amount"]) for r in rows if r["kind"] == "total"]
    assert sum(totals) == _invoice(store)
    lines = [Decimal(r["amount"]) for r in rows if r["kind"] in ("direct", "shared")]
    assert sum(lines) == _invoice(store)
    page = out_html.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and f"${_invoice(store):,}" in page and "add up to" in page
    refused = CliRunner().invoke(app, ["statement", MONTH, "--store", store, "--csv", store])
    assert refused.exit_code == 2 and "would be overwritten" in refused.output
    folder = CliRunner().invoke(app, ["statement", MONTH, "--store", store, "--html", str(tmp_path)])
    assert folder.exit_code == 2 and "--html" in folder.output and "is a directory" in folder.output
    assert "Statement" not in folder.output, "refused before anything is computed or printed"
    twice = tmp_path / "twice.out"
    both = ["statement", MONTH, "--store", store, "--csv", str(twice), "--html", f"{tmp_path}/./twice.out"]
    same = CliRunner().invoke(app, both)
    assert same.exit_code == 2 and "--html" in same.output and "the file of --csv" in same.output
    assert not twice.exists(), "the same path given twice: nothing is written"
    with open_store(store, read_only=True) as db:
        assert db.query(f"SELECT COUNT(*) FROM {COSTS_VIEW}")[0][0] > 1000


def test_names_cannot_run_as_formulas_or_markup(store: str, tmp_path: Path) -> None:
    """A project named `=cmd|' /C calc'!A0` (names come from the API and from files) went into the statement CSV as
    is, a formula a spreadsheet runs; its cell now starts with an apostrophe. Commas and quotes stay one cell, a
    newline is written as its escape (a name is one line), the HTML page escapes markup, and amounts (negative ones
    too) stay numbers."""
    owners = [s["owner"] for s in _json(MONTH, "--store", store, "--by", "project")["statements"]]
    evil = ["=cmd|' /C calc'!A0 <b>bold</b>", '+1, "two"\nlines & more', "@SUM(1)"]
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"projects": dict(zip(owners, evil, strict=False))}), encoding="utf-8")
    out_csv, out_html = tmp_path / "s.csv", tmp_path / "s.html"
    _run("statement", MONTH, "--store", store, "--by", "project", "--names", str(names), "--csv", str(out_csv),
         "--html", str(out_html))  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8"), newline="")))
    shown = {r["owner"]: r["name"] for r in rows if r["kind"] == "total"}
    for owner, name in zip(owners, evil, strict=False):
        expected = f"{one_line(name)} ({owner})"  # one line: its newline written as `\n`
        assert shown[owner] == ("'" + expected if name[0] in "=+@" else expected)
    assert all(not r["name"].startswith(("=", "+", "@", "-")) for r in rows)
    assert sum(Decimal(r["amount"]) for r in rows if r["kind"] == "total") == _invoice(store)
    page = out_html.read_text(encoding="utf-8")
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "&quot;two&quot;\\nlines &amp; more" in page and "<b>" not in page


def test_a_closed_month_without_later_restatements(store: str, tmp_path: Path) -> None:
    """Closed and not restated since: the statements are the current ones, every adjustment zero; an org that has
    not closed the month contributes its present figures and is named."""
    copy = tmp_path / "closed.duckdb"
    shutil.copyfile(store, copy)
    with open_store(str(copy)) as db:
        (org,) = db.query(f"SELECT DISTINCT org FROM {COSTS_VIEW}")[0]
        open_now = build_statements(db, FIRST, by="project")
        assert not open_now.closed and month_statements(db, FIRST, by="project") == open_now
        close_month(db, FIRST, ["org-without-spend"], at=int(time.time()))
        mixed = month_statements(db, FIRST, by="project")
        assert mixed.open_orgs == (org,) and mixed.closed_total == 0 and mixed.matches_close
        assert mixed.statements == open_now.statements
        close_month(db, FIRST, [org], at=int(time.time()))
        closed = month_statements(db, FIRST, by="project")
    assert closed.closed and closed.open_orgs == () and {o for o, _ in closed.closes} == {org, "org-without-spend"}
    assert closed.matches_close and closed.closed_total == open_now.exact_total
    assert closed.statements == open_now.statements and closed.total == _invoice(store)
    assert [a.owner for a in closed.adjustments] == [s.owner for s in open_now.statements]
    assert all(a.amount == 0 and a.closed == a.present for a in closed.adjustments)
    assert closed.present_total == closed.total and closed.adjustment_total == 0


def test_a_statement_that_did_not_change_since_the_close_has_no_adjustment(store: str, tmp_path: Path) -> None:
    """One project restated after the close by fractions of a cent: its statement moves, the others' do not. Each
    adjustment was present minus closed of two largest-remainder apportionments, so an unchanged statement could
    show a cent moved there by the rounding of the others; now only a changed one has an adjustment, and closed +
    adjustments is the present total to the cent."""
    copy = tmp_path / "closed.duckdb"
    shutil.copyfile(store, copy)
    with open_store(str(copy)) as db:
        (org,) = db.query(f"SELECT DISTINCT org FROM {COSTS_VIEW}")[0]
        close_month(db, FIRST, [org], at=int(time.time()) - 1)
        owners = [s.owner for s in build_statements(db, FIRST, by="project").statements]
        moved = owners[-1]
        bucket = datetime(2026, 10, 20, tzinfo=UTC)
        phantoms = []
        for step in range(1, 5):  # the restatement is not logged: as of the close, the month is unchanged
            db.execute(
                "UPDATE costs SET amount_value = amount_value + 0.0007 WHERE project_id = %s AND bucket_start = %s",
                [moved, bucket],
            )
            closed = month_statements(db, FIRST, by="project")
            present = build_statements(db, FIRST, by="project")
            assert closed.closed and closed.present_total == present.total
            assert sum((a.amount for a in closed.adjustments), closed.total) == present.total
            for a in closed.adjustments:
                assert a.present == a.closed + a.amount
                if a.owner != moved and a.amount != 0:
                    phantoms.append((step, a.owner, a.amount))
    assert phantoms == []


def test_apportion_is_largest_remainder() -> None:
    third = Decimal(1) / 3
    assert apportion([third, third, third], Decimal("1.00")) == [Decimal("0.34"), Decimal("0.33"), Decimal("0.33")]
    values = [Decimal("0.125"), Decimal("0.125"), Decimal("0.25")]
    assert sum(apportion(values, Decimal("0.50"))) == Decimal("0.50")
    assert apportion([Decimal("2.004"), Decimal("1.006")], Decimal("3.01")) == [Decimal("2.00"), Decimal("1.01")]
    assert apportion([], Decimal(0)) == []


def test_report_by_team_json_has_teams_adding_up_to_totals(store: str) -> None:
    doc = json.loads(
        _run(
            "report",
            "--store",
            store,
            "--by",
            "team",
            "--since",
            "2026-10-01",
            "--until",
            "2026-11-01",
            "--format",
            "json",
        ).stdout
    )
    assert isinstance(doc["teams"], list) and len(doc["teams"]) >= 2
    for team in doc["teams"]:
        assert isinstance(team["spend"], str) and Decimal(team["spend"]).is_finite()
    total = Decimal(doc["totals"]["spend"])
    assert isinstance(doc["totals"]["spend"], str)
    assert sum(Decimal(t["spend"]) for t in doc["teams"]).quantize(CENT) == total.quantize(CENT)
    assert total.quantize(CENT, rounding=ROUND_HALF_UP) == _invoice(store)


def test_report_converts_totals_and_tables_per_day(store: str, tmp_path: Path) -> None:
    rates = _rates(tmp_path / "rates.csv")
    period = ("--since", "2026-10-17", "--until", "2026-11-01")  # the previous 15 days are in October too
    args = ("report", "--store", store, *period, "--currency", "EUR", "--fx", str(tmp_path / "rates.csv"))
    doc = json.loads(_run(*args, "--format", "json").stdout)
    costs = _day_costs(store)
    expected = sum((costs[d] * rates[d] for d in costs if d >= date(2026, 10, 17)), Decimal(0))
    assert doc["currency"] == "EUR"
    assert Decimal(doc["totals"]["spend"]).quantize(CENT) == expected.quantize(CENT)
    assert sum(Decimal(p["spend"]) for p in doc["spend_by_project"]).quantize(CENT) == expected.quantize(CENT)
    assert {r["day"] for r in doc["fx"]["rates"]} == {(FIRST + timedelta(days=i)).isoformat() for i in range(1, 31)}
    teams = json.loads(_run(*args, "--by", "team", "--format", "json").stdout)
    assert sum(Decimal(t["spend"]) for t in teams["teams"]).quantize(CENT) == expected.quantize(CENT)
    text = " ".join(_run(*args).stdout.split())
    assert (
        "€" in text and "Converted from USD to EUR at each day's rate" in text and "0.901 to 0.93 EUR per USD" in text
    )
    _run(*args, "--html", str(tmp_path / "r.html"))
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "€" in page and "Converted from USD to EUR at each day&#x27;s rate" in page
    _rates(tmp_path / "rates.csv", skip=date(2026, 10, 5))
    missing = CliRunner().invoke(app, list(args))
    assert missing.exit_code == 2 and "2026-10-05" in missing.output and "--fx" in missing.output


def test_a_month_the_store_does_not_cover_is_refused_or_said(store: str) -> None:
    """`statement 2027-01` (not started) and a month before the store's first costs printed a $0.00 statement "adding
    up to the month's costs"; both are refused, naming MONTH. A month whose first days the store lacks is given
    with a warning on stderr naming them."""
    with open_store(store, read_only=True) as db:
        first = utc_day(db.query(f"SELECT MIN(bucket_start) FROM {COSTS_VIEW}")[0][0])
    runner = CliRunner()
    before = runner.invoke(app, ["statement", "2020-01", "--store", store])
    assert before.exit_code == 2 and before.stdout == "", before.output
    assert before.stderr.startswith(f"error: MONTH: 2020-01 ends before the store's costs start on {first}: give "), (
        before.stderr
    )
    today = datetime.now(UTC).date()
    later = date(today.year + today.month // 12, today.month % 12 + 1, 1)
    future = runner.invoke(app, ["statement", f"{later:%Y-%m}", "--store", store])
    assert future.exit_code == 2 and future.stderr.strip() == (
        f"error: MONTH: {later:%Y-%m} has not started yet (today is {today}): give this month or an earlier one"
    ), future.output
    assert first.day > 1, "the store's costs start inside a month"
    partial = runner.invoke(app, ["statement", f"{first:%Y-%m}", "--store", store, "--format", "json"])
    assert partial.exit_code == 0, partial.output
    assert partial.stderr.strip() == (
        f"warning: the store lacks days of {first:%Y-%m}: {first.replace(day=1)} to {first - timedelta(days=1)} for "
        f"default (its costs start on {first})"
    )
    doc = json.loads(partial.stdout)  # the JSON carries the warning too, as `report`'s does: a pipe sees it
    assert doc["month"] == f"{first:%Y-%m}" and doc["warnings"] == [partial.stderr.strip().removeprefix("warning: ")]
    whole = runner.invoke(app, ["statement", MONTH, "--store", store])
    assert whole.exit_code == 0 and whole.stderr == "", whole.output
    assert (
        json.loads(runner.invoke(app, ["statement", MONTH, "--store", store, "--format", "json"]).stdout)["warnings"]
        == []
    )


def test_a_team_project_or_model_report_lists_only_its_own_closed_month_adjustments(store: str, tmp_path: Path) -> None:
    """October closed, then two projects restated (one in each team). ``report --team``/``--project`` listed every
    project's adjustment and the org's total, which cover other projects; ``--model`` listed them too, beside one
    model's spend; ``check --project --restated-over`` alerted on other projects. Now a team or a project gets its
    projects' own adjustments, a model none (closes are by project), said in a warning, and the whole org still all."""
    copy = tmp_path / "closed.duckdb"
    shutil.copyfile(store, copy)
    with open_store(str(copy)) as db:
        (org,) = db.query(f"SELECT DISTINCT org FROM {COSTS_VIEW}")[0]
        spent = db.query(
            f"SELECT DISTINCT project_id FROM {COSTS_VIEW} WHERE bucket_start >= %s AND bucket_start < %s",
            [datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)],
        )
        projects = sorted(p for (p,) in spent if p is not None)  # with October spend (one project retired before)
        close_month(db, FIRST, [org], at=int(time.time()) - 1)
        for moved in (projects[0], projects[-1]):
            db.execute(
                "UPDATE costs SET amount_value = amount_value + 0.25 WHERE project_id = %s AND bucket_start >= %s"
                " AND bucket_start < %s",
                [moved, datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)],
            )
    config = tmp_path / "usageledger.toml"
    config.write_text(f'[teams]\nAlpha = ["{projects[0]}"]\nBeta = {json.dumps(projects[1:])}\n', encoding="utf-8")
    october = ["--store", str(copy), "--config", str(config), "--since", "2026-10-01", "--until", "2026-11-01"]

    def listed(*scope: str) -> tuple[list[tuple[str, str | None]], list[str]]:
        doc = json.loads(_run("report", *october, *scope, "--format", "json").stdout)
        return [(a["level"], a["project_id"]) for a in doc["adjustments"]], doc["warnings"]

    everything, _ = listed()
    model = json.loads(_run("report", *october, "--format", "json").stdout)["spend_by_model"][0]["model"]
    assert everything == [("org", None), ("project", projects[0]), ("project", projects[-1])]
    assert listed("--team", "Alpha") == ([("project", projects[0])], [])
    assert listed("--team", "Beta") == ([("project", projects[-1])], [])
    assert listed("--project", projects[-1]) == ([("project", projects[-1])], [])
    assert listed("--project", projects[1]) == ([], [])
    by_model, warnings = listed("--model", model)
    assert by_model == [] and any("not by model" in w and "model filter" in w for w in warnings)
    assert listed("--team", "Alpha", "--model", model)[1][-1] == warnings[-1]

    check = CliRunner().invoke(
        app, ["check", *october[:4], "--project", projects[-1], "--restated-over", "1", "--now", "2026-11-02"]
    )
    restated = [line for line in check.stdout.splitlines() if line.startswith("ALERT restated")]
    assert len(restated) == 1 and projects[-1] in restated[0], check.stdout
    assert "1 closed-month figure moved" in check.stdout


MONEY_CELLS = """() => [...document.querySelectorAll('td')].filter(c => /^-?\\$[0-9]/.test(c.textContent.trim()))
  .map(c => [c.textContent.trim(), getComputedStyle(c).textAlign, getComputedStyle(c).fontVariantNumeric])"""
"""Every table cell holding an amount (`$1,241.36`, `-$0.50`): its text, alignment and figure style."""


@pytest.fixture
def long_names_page(store: str, tmp_path: Path) -> Path:
    """`statement --html` by project, each project named by a 90-character slug with no space to wrap at."""
    owners = [s["owner"] for s in _json(MONTH, "--store", store, "--by", "project")["statements"]]
    names = tmp_path / "names.json"
    slugs = {o: f"MarketingCopy{'AndOn' * 15}Number{i}" for i, o in enumerate(owners)}
    names.write_text(json.dumps({"projects": slugs}), encoding="utf-8")
    page = tmp_path / "statement.html"
    _run("statement", MONTH, "--store", store, "--by", "project", "--names", str(names), "--html", str(page))
    return page


def test_the_html_statement_fits_a_phone_with_its_figures_aligned(long_names_page: Path, browser: Browser) -> None:
    """The statement page had no viewport line, so a phone drew it 980 px wide and shrank it to a third; a project
    name with no space pushed its table past the screen; and the direct and shared columns were left-aligned in
    proportional figures, so amounts did not line up. At 375 px it is now drawn at the phone's width, nothing is
    wider than the screen, and every amount is right-aligned in figures of one width."""
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True, offline=True)
    try:
        page = context.new_page()
        page.goto(long_names_page.as_uri())
        assert page.evaluate("window.innerWidth") == 375
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert "AndOnAndOn" in page.locator("table").first.inner_text()
        cells: list[list[str]] = page.evaluate(MONEY_CELLS)
        assert len(cells) > 20
        assert [c for c in cells if c[1] != "right" or "tabular-nums" not in c[2]] == []
    finally:
        context.close()
