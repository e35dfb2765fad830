"""``usageledger forecast``, ``credit`` and the forecast and credit alerts of ``check``, on a store synced from the
emulator over 90 days (its fixed now: 2026-11-20T12:00Z, so the forecast is as of 19 November)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.cli.commands_report import EXIT_FINDINGS
from usageledger.errors import ParameterError, UsageLedgerError
from usageledger.report.credit import credit_balance
from usageledger.report.forecast_out import forecast_line
from usageledger.report.forecasting import build_forecast
from usageledger.report.formatting import format_money
from usageledger.store import open_store
from usageledger.store.credit import add_topup, list_topups

from fixtures.reports import ORG

NOW = "2026-11-20T12:00:00Z"
AS_OF = date(2026, 11, 19)


def _spend(path: Path, first: date, until: date) -> Decimal:
    with open_store(path, migrate=False, read_only=True) as db:
        value = db.query(
            "SELECT SUM(amount_value) FROM costs_daily WHERE bucket_start >= %s AND bucket_start < %s",
            [
                datetime(first.year, first.month, first.day, tzinfo=UTC),
                datetime(until.year, until.month, until.day, tzinfo=UTC),
            ],
        )[0][0]
    return Decimal(value)


def _run(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    return result


def _json(*args: str, code: int = 0) -> Any:
    return json.loads(_run(*args, "--format", "json", code=code).stdout)


def test_forecast_json_has_a_month_end_figure_with_a_range(demo_store: Path) -> None:
    """Run as the user would (a fresh process): decimal strings, a range around the figure, the method."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from usageledger.cli import main; main()",
            "forecast",
            "--store",
            str(demo_store),
            "--format",
            "json",
            "--now",
            NOW,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(out.stdout)
    assert doc["month"] == "2026-11" and doc["as_of"] == AS_OF.isoformat()
    low, point, high = (Decimal(doc[k]) for k in ("low", "month_end", "high"))
    actual = Decimal(doc["actual_to_date"])
    assert all(isinstance(doc[k], str) for k in ("low", "month_end", "high", "actual_to_date"))
    assert actual <= low <= point <= high and low < high
    assert actual == _spend(demo_store, date(2026, 11, 1), date(2026, 11, 20)).quantize(Decimal("0.01"))
    # Eleven days of November are left: the forecast adds a plausible share on top of 19 days of spend.
    assert actual * Decimal("1.2") < point < actual * Decimal("2.5")
    assert "Theil-Sen" in doc["method"] and doc["days_used"] == 56
    assert doc["runway"] is None and doc["groups"] == []


def test_runway_is_the_day_a_budget_is_crossed(demo_store: Path) -> None:
    doc = _json("forecast", "--store", str(demo_store), "--now", NOW)
    point, actual = Decimal(doc["month_end"]), Decimal(doc["actual_to_date"])
    later = _json("forecast", "--store", str(demo_store), "--now", NOW, "--budget", str((actual + point) / 2))
    assert AS_OF < date.fromisoformat(later["runway"]) <= date(2026, 11, 30)
    crossed = _json("forecast", "--store", str(demo_store), "--now", NOW, "--budget", str(actual / 2))
    assert date.fromisoformat(crossed["runway"]) < AS_OF
    never = _json("forecast", "--store", str(demo_store), "--now", NOW, "--budget", str(point * 2))
    assert never["runway"] is None and Decimal(never["budget"]) == point * 2


@pytest.mark.parametrize("by", ["project", "team", "model"])
def test_forecast_by_a_dimension_gives_one_row_each(demo_store: Path, by: str, tmp_path: Path) -> None:
    """Teams as report --by team reads them: here the config's [teams] puts the biggest project in "Search"."""
    config = tmp_path / "usageledger.toml"
    biggest = _json("forecast", "--store", str(demo_store), "--now", NOW, "--by", "project")["groups"][0]["project"]
    config.write_text(f'[teams]\nSearch = ["{biggest}"]\n', encoding="utf-8")
    doc = _json("forecast", "--store", str(demo_store), "--now", NOW, "--by", by, "--config", str(config))
    if by == "team":
        assert [g["team"] for g in doc["groups"]] == ["Search", "unassigned"] or {g["team"] for g in doc["groups"]} == {
            "Search",
            "unassigned",
        }
    assert doc["by"] == by and len(doc["groups"]) >= 2
    # The groups' spend to date is the month's, to the cent (each group's own forecast is its own).
    assert sum(Decimal(g["actual_to_date"]) for g in doc["groups"]) == Decimal(doc["actual_to_date"])
    assert all(Decimal(g["low"]) <= Decimal(g["month_end"]) <= Decimal(g["high"]) for g in doc["groups"])
    if by == "project":
        assert all(g["project"] is None or g["project"].startswith("proj_") for g in doc["groups"])


def test_other_months(demo_store: Path) -> None:
    december = _json("forecast", "--store", str(demo_store), "--now", NOW, "--month", "2026-12")
    assert december["actual_to_date"] == "0.00" and Decimal(december["month_end"]) > 0
    october = _json("forecast", "--store", str(demo_store), "--now", NOW, "--month", "2026-10")
    assert october["low"] == october["month_end"] == october["high"] == october["actual_to_date"]
    assert Decimal(october["month_end"]) == _spend(demo_store, date(2026, 10, 1), date(2026, 11, 1)).quantize(
        Decimal("0.01")
    )


def test_a_month_the_store_covers_in_part_is_said(demo_store: Path) -> None:
    """The store's first month: its days before the first costs counted as nothing spent, without a word (a month
    that is over read as its whole spend); now a warning names them, as `statement` does. A whole month says none."""
    with open_store(demo_store, migrate=False, read_only=True) as db:
        first = db.query("SELECT MIN(bucket_start) FROM costs_daily")[0][0].date()
    month = f"{first:%Y-%m}"
    result = CliRunner().invoke(app, ["forecast", "--store", str(demo_store), "--now", NOW, "--month", month])
    assert result.exit_code == 0, result.output
    assert (
        f"warning: the store lacks days of {month}: {first.replace(day=1)} to {first - timedelta(days=1)} for {ORG} "
        f"(its costs start on {first}); they count as nothing spent"
    ) in result.output
    whole = CliRunner().invoke(app, ["forecast", "--store", str(demo_store), "--now", NOW, "--month", "2026-10"])
    assert whole.exit_code == 0 and "warning" not in whole.output, whole.output


def test_the_terminal_table_and_footnote(demo_store: Path) -> None:
    out = _run("forecast", "--store", str(demo_store), "--now", NOW, "--budget", "1", "--by", "project").stdout
    assert "Forecast 2026-11 as of 2026-11-19 UTC" in out and "total" in out
    assert "Runway: the budget of $1.00 was crossed on 2026-11-01." in out
    assert "Theil-Sen" in out and "need not add up" in out


def test_a_runway_gone_by_is_said_in_the_past(demo_store: Path) -> None:
    """As of 19 November, `forecast --budget 1` said "is crossed on 2026-11-01 at this rate", a day gone by spoken
    of as still to come (and `check` "already crossed on 2026-11-01 at this rate"); a month that is over said its
    budget "is not crossed ... at this rate". A day at or before *as of* was crossed; a day after it is to come."""
    doc = _json("forecast", "--store", str(demo_store), "--now", NOW)
    actual, point = Decimal(doc["actual_to_date"]), Decimal(doc["month_end"])
    ahead = str(((actual + point) / 2).quantize(Decimal("0.01")))
    args = ("forecast", "--store", str(demo_store), "--now", NOW, "--budget")
    assert "Runway: the budget of $1.00 was crossed on 2026-11-01.\n" in _run(*args, "1").stdout
    runway = _json(*args, ahead)["runway"]
    assert runway > AS_OF.isoformat()
    assert f"is crossed on {runway} at this rate." in _run(*args, ahead).stdout
    # the day the spend to date crossed it is *as of* itself at the latest: a budget of all but the last cent
    exact = str(actual - Decimal("0.01"))
    assert f"was crossed on {AS_OF}." in _run(*args, exact).stdout
    over = _run(*args, "1000000", "--month", "2026-10").stdout
    assert "Runway: the budget of $1,000,000.00 was not crossed in 2026-10.\n" in over
    assert "is not crossed in 2026-11 at this rate." in _run(*args, "1000000").stdout
    fired = _json("check", "--store", str(demo_store), "--now", NOW, "--forecast-over", "1", code=EXIT_FINDINGS)
    [alert] = _alerts(fired, "forecast")
    assert alert["message"].endswith("; was crossed on 2026-11-01"), alert["message"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--month", "2026-13"], "--month: '2026-13' is not a month; write it as YYYY-MM"),
        (["--month", "next"], "--month: 'next' is not a month"),
        (["--budget", "lots"], "--budget: 'lots' is not an amount"),
        (["--budget", "-5"], "--budget: an amount must be zero or more"),
        (["--budget", "1e400"], "--budget: '1e400' is too large"),
        # exit 1, and no flag named: "the store's costs start on 2026-08-23, after 2020-01: there is nothing to ..."
        (["--month", "2020-01"], "--month: 2020-01 ends before the store's costs start on 2026-"),
        (["--month", "9999-12"], "--month: 9999-12 starts after next month; a forecast reaches at most one month"),
        (["--month", "2027-01"], "pass 2026-11 (this month), 2026-12 or an earlier month"),
        # a warning that no row names it, then exit 1 saying so again with no flag named: now one line, exit 2
        (
            ["--project", "proj_nope"],
            "--project: proj_nope appears in no cost or usage row of this store; check the ID",
        ),
    ],
)
def test_bad_input_is_one_line(demo_store: Path, args: list[str], says: str) -> None:
    bad_input = says.startswith("--") or "forecast" not in says  # a refused value: 2; nothing to forecast from: 1
    result = _run("forecast", "--store", str(demo_store), "--now", NOW, *args, code=2 if bad_input else 1)
    assert says in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output


def test_report_shows_this_months_forecast(demo_store: Path) -> None:
    doc = _json("report", "--store", str(demo_store))
    fc = doc["forecast"]
    assert Decimal(fc["low"]) <= Decimal(fc["month_end"]) <= Decimal(fc["high"])
    assert doc["credit"] is None
    text = _run("report", "--store", str(demo_store)).stdout
    assert f"Forecast {fc['month']} " in text


def test_credit_add_list_remove_and_the_balance(demo_store_copy: Path) -> None:
    added = _json("credit", "add", "2026-11-01", "1500.00", "--note", "INV-7", "--store", str(demo_store_copy))
    assert added["org"] == ORG and Decimal(added["amount"]) == 1500 and added["day"] == "2026-11-01"
    second = _json("credit", "add", "2026-11-10", "250", "--store", str(demo_store_copy))
    listed = _json("credit", "list", "--store", str(demo_store_copy), "--now", NOW)
    assert [t["id"] for t in listed["topups"]] == [added["id"], second["id"]]
    assert listed["topups"][0]["note"] == "INV-7"
    balance = listed["balance"]
    spent = _spend(demo_store_copy, date(2026, 11, 1), date(2026, 11, 21))
    assert Decimal(balance["spent"]) == spent and Decimal(balance["balance"]) == 1750 - spent
    assert balance["since"] == "2026-11-01" and balance["as_of"] == AS_OF.isoformat()
    # `spent` counts today's costs so far, a day past the forecast's `as_of`: `spent_through` says so (it read as the
    # spend through `as_of`, a day's spend more than that)
    assert balance["spent_through"] == "2026-11-20" and spent > _spend(
        demo_store_copy, date(2026, 11, 1), date(2026, 11, 20)
    )
    assert balance["runway"] is not None and date.fromisoformat(balance["runway"]) > AS_OF
    # the terminal line says it too ("spent since 2026-11-01" did not say through which day, nor that it is open)
    shown = _run("credit", "list", "--store", str(demo_store_copy), "--now", NOW).stdout
    assert f"{format_money(spent, 'usd')} spent from 2026-11-01 through 2026-11-20 so far);" in shown, shown
    status = _json("status", "--store", str(demo_store_copy))
    assert status["credit"]["balance"] == balance["balance"]
    assert "Prepaid credit" in _run("status", "--store", str(demo_store_copy)).stdout
    assert _json("report", "--store", str(demo_store_copy))["credit"]["balance"] == balance["balance"]

    removed = _run("credit", "remove", str(second["id"]), "--store", str(demo_store_copy))
    assert f"Removed top-up {second['id']}" in removed.stdout
    after = _json("credit", "list", "--store", str(demo_store_copy), "--now", NOW)
    assert [t["id"] for t in after["topups"]] == [added["id"]]
    assert date.fromisoformat(after["balance"]["runway"]) < date.fromisoformat(balance["runway"])
    again = _run("credit", "remove", str(second["id"]), "--store", str(demo_store_copy), code=2)
    assert f"ID: no top-up has ID {second['id']}" in again.output


def test_a_runway_before_today_is_not_said_to_come(demo_store_copy: Path) -> None:
    """A store last synced weeks ago: `credit list` on 3 December said "runs out on 2026-11-23", a day gone by, read
    as still to come. At the forecast rate the balance may have run out already, and the line says so and what to
    run; the JSON keeps the day."""
    store = str(demo_store_copy)
    left = _spend(demo_store_copy, date(2026, 11, 1), AS_OF + timedelta(days=1)) + 20  # a day or two of spend left
    _run("credit", "add", "2026-11-01", str(left.quantize(Decimal("0.01"))), "--store", store)
    then = _run("credit", "list", "--store", store, "--now", NOW).stdout
    runway = _json("credit", "list", "--store", store, "--now", NOW)["balance"]["runway"]
    assert f"runs out on {runway}" in " ".join(then.split()) and date.fromisoformat(runway) > AS_OF
    later = _json("credit", "list", "--store", store, "--now", "2026-12-20T12:00:00Z")["balance"]
    gone = later["runway"]  # from the store's last costs, a day on from AS_OF once that day is over too
    assert date.fromisoformat(gone) < date(2026, 12, 20) and later["runway_note"] == (
        f"may have run out on {gone}, at the forecast rate from {later['as_of']}, the store's last costs: run"
        " `usageledger sync` for today's balance"
    )
    text = " ".join(_run("credit", "list", "--store", store, "--now", "2026-12-20T12:00:00Z").stdout.split())
    assert f"may have run out on {gone}" in text and "runs out on" not in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["add", "2026-13-01", "5"], "DAY: '2026-13-01' is not a day"),
        (["add", "2026-11-01", "five"], "AMOUNT: 'five' is not an amount"),
        (["add", "2026-11-01", "0"], "AMOUNT: a top-up must be more than zero"),
        # click read -5 as an option: "No such option: -5"
        (["add", "2026-11-01", "-5"], "AMOUNT: a top-up must be more than zero, got '-5'"),
        (["add", "2026-11-01", "1.0000001"], "AMOUNT: '1.0000001' has too many digits"),
        # 1e309 was a traceback (decimal.InvalidOperation from quantize)
        (["add", "2026-11-01", "1e309"], "AMOUNT: '1e309' is too large"),
        (["add", "2026-11-01", "1e15"], "AMOUNT: '1e15' is too large"),
        # a newline split every listing's row, an escape sequence reached the terminal
        (["add", "2026-11-01", "5", "--note", "INV-1\nINV-2"], "--note: 'INV-1\\nINV-2' holds a newline"),
        (["add", "2026-11-01", "5", "--note", "\x1b[31mred"], "--note: '\\x1b[31mred' holds a newline or a control"),
        # a pasted file was kept whole, and `credit list` printed it as 80 lines of the table
        (["add", "2026-11-01", "5", "--note", "x" * 201], "--note: the note has 201 characters; keep it to 200"),
        (["remove", "abc"], "ID: 'abc' is not a top-up ID"),
        # credit not bought yet counted in today's balance and hid a low-credit alert
        (["add", "2999-01-01", "5"], "DAY: 2999-01-01 is after today"),
        # the balance counted the days before the store's first costs as nothing spent: the whole $5 was left
        (["add", "2020-01-01", "5"], "DAY: 2020-01-01 is before the store's costs of org-demo start on 2026-"),
        # recorded, then shown as $0.00
        (["add", "2026-11-01", "0.001"], "AMOUNT: '0.001' has too many digits; give at most 2 decimal places"),
        # a top-up for a mistyped org was recorded, and never met a cost
        (["add", "2026-11-01", "5", "--org", "nope"], "--org: nope holds no data in this store (orgs: org-demo)"),
        # `-5` is read as a value here, so `--day` was taken as DAY: "'--day' is not a day"
        (["add", "--day", "2026-11-01"], "--day: DAY is an argument of this command, not an option; give the value"),
        (["add", "2026-11-01", "5", "--org", "--org"], "--org: no value given (--org was read as its own value)"),
    ],
)
def test_bad_credit_input_is_one_line_and_stores_nothing(demo_store_copy: Path, args: list[str], says: str) -> None:
    result = _run("credit", *args, "--store", str(demo_store_copy), code=2)
    assert says in result.output and len(result.output.strip().splitlines()) == 1
    assert _json("credit", "list", "--store", str(demo_store_copy))["topups"] == []


def test_credit_never_creates_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.duckdb"
    result = _run("credit", "add", "2026-11-01", "5", "--store", str(missing), code=1)
    assert "no store at" in result.output and not missing.exists()
    for command in (["add", "2026-11-01", "5"], ["remove", "1"]):  # said "no store at", as if it could be made
        other = _run("credit", *command, "--store", "sqlite:///x.db", code=1)
        assert "unsupported store sqlite:///x.db" in other.output


def _alerts(doc: Any, kind: str) -> list[Any]:
    return [a for a in doc["alerts"] if a["kind"] == kind]


def test_check_forecast_over_fires_before_the_money_is_spent(demo_store: Path) -> None:
    doc = _json("forecast", "--store", str(demo_store), "--now", NOW)
    actual, point = Decimal(doc["actual_to_date"]), Decimal(doc["month_end"])
    budget = str(((actual + point) / 2).quantize(Decimal("0.01")))  # not spent yet, but on the way
    fired = _json("check", "--store", str(demo_store), "--now", NOW, "--forecast-over", budget, code=EXIT_FINDINGS)
    [alert] = _alerts(fired, "forecast")
    assert alert["message"].startswith("forecast over budget by") and "crossed on 2026-11-" in alert["message"]
    calm = CliRunner().invoke(
        app, ["check", "--store", str(demo_store), "--now", NOW, "--forecast-over", str(point * 2), "--format", "json"]
    )
    doc = json.loads(calm.stdout)
    assert _alerts(doc, "forecast") == [] and any(c.startswith("forecast organisation") for c in doc["checks"])


def test_a_spent_balance_ran_out_on_the_day_it_went_below_zero(demo_store_copy: Path) -> None:
    """100 bought on 1 November: it ran out on the first day the spend since then was above 100."""
    _run("credit", "add", "2026-11-01", "100", "--store", str(demo_store_copy))
    balance = _json("credit", "list", "--store", str(demo_store_copy), "--now", NOW)["balance"]
    day = date(2026, 11, 1)
    while _spend(demo_store_copy, date(2026, 11, 1), day + timedelta(days=1)) <= 100:
        day += timedelta(days=1)
    assert Decimal(balance["balance"]) < 0 and balance["runway"] == day.isoformat()
    assert balance["runway_note"] == f"ran out on {balance['runway']}"
    # The terminal and the alert say it in the past tense: "runs out on" a day gone by read as still to come.
    listed = _run("credit", "list", "--store", str(demo_store_copy), "--now", NOW).stdout
    assert f"ran out on {day.isoformat()}" in listed and "runs out" not in listed
    fired = _json("check", "--store", str(demo_store_copy), "--now", NOW, "--credit-below", "0", code=EXIT_FINDINGS)
    [alert] = _alerts(fired, "credit")
    assert f"ran out on {day.isoformat()}" in alert["message"] and "runs out" not in alert["message"]


def test_check_credit_below(demo_store_copy: Path) -> None:
    _run("credit", "add", "2026-11-01", "5000", "--store", str(demo_store_copy))
    listed = _json("credit", "list", "--store", str(demo_store_copy), "--now", NOW)
    left = Decimal(listed["balance"]["balance"])
    fired = _json(
        "check", "--store", str(demo_store_copy), "--now", NOW, "--credit-below", str(left + 1), code=EXIT_FINDINGS
    )
    [alert] = _alerts(fired, "credit")
    assert "balance" in alert["message"] and "runs out on" in alert["message"]
    calm = CliRunner().invoke(
        app,
        ["check", "--store", str(demo_store_copy), "--now", NOW, "--credit-below", str(left - 1), "--format", "json"],
    )
    assert _alerts(json.loads(calm.stdout), "credit") == []


def test_check_credit_below_without_top_ups_is_an_error(demo_store: Path) -> None:
    result = _run("check", "--store", str(demo_store), "--now", NOW, "--credit-below", "10", code=1)
    assert "--credit-below: no credit top-up is recorded" in result.output


def test_the_config_alerts_section_sets_both_thresholds(demo_store_copy: Path, tmp_path: Path) -> None:
    """[alerts] forecast_over and credit_below act as the flags do; a flag wins over the config."""
    _run("credit", "add", "2026-11-01", "5000", "--store", str(demo_store_copy))
    config = tmp_path / "usageledger.toml"
    config.write_text('[alerts]\nforecast_over = "1"\ncredit_below = "1000000"\n', encoding="utf-8")
    doc = _json("check", "--store", str(demo_store_copy), "--now", NOW, "--config", str(config), code=EXIT_FINDINGS)
    assert len(_alerts(doc, "forecast")) == 1 and len(_alerts(doc, "credit")) == 1
    calm = CliRunner().invoke(
        app,
        [
            "check",
            "--store",
            str(demo_store_copy),
            "--now",
            NOW,
            "--config",
            str(config),
            "--forecast-over",
            "1000000",
            "--credit-below",
            "0",
            "--format",
            "json",
        ],
    )
    doc = json.loads(calm.stdout)
    assert _alerts(doc, "forecast") == [] and _alerts(doc, "credit") == []
    config.write_text('[alerts]\nforecast_over = "lots"\n', encoding="utf-8")
    bad = _run("check", "--store", str(demo_store_copy), "--config", str(config), code=1)
    assert "alerts.forecast_over: 'lots' is not an amount" in bad.output
    config.write_text('[alerts]\ndaily_budget = "1e400"\n', encoding="utf-8")  # was a decimal.InvalidOperation
    huge = _run("check", "--store", str(demo_store_copy), "--config", str(config), code=1)
    assert (
        huge.output.strip()
        == f"error: {config}: alerts.daily_budget: '1e400' is too large; an amount is below 1,000,000,000,000,000"
    )


def test_the_library_refuses_a_note_that_is_not_one_line(demo_store_copy: Path) -> None:
    """`add_topup` itself keeps notes to one printable line, whoever calls it; nothing is stored."""
    with open_store(str(demo_store_copy)) as db:
        with pytest.raises(ParameterError, match=r"^note: 'a\\rb' holds a newline or a control character"):
            add_topup(db, org="demo", day=date(2026, 11, 1), amount=Decimal(5), note="a\rb")
        assert list_topups(db) == []


def test_a_top_up_dated_after_now_is_not_in_the_balance_yet(demo_store_copy: Path) -> None:
    """The balance as of --now counts the top-ups bought by that day: one dated later (recorded before this rule,
    or read at an earlier --now) waits for its day instead of hiding a low-credit alert."""
    with open_store(str(demo_store_copy)) as db:
        add_topup(db, org=ORG, day=date(2026, 11, 1), amount=Decimal(100), note=None)
        add_topup(db, org=ORG, day=date(2026, 11, 25), amount=Decimal(5000), note=None)
    before = _json("credit", "list", "--store", str(demo_store_copy), "--now", NOW)["balance"]
    after = _json("credit", "list", "--store", str(demo_store_copy), "--now", "2026-11-26T00:00:00Z")["balance"]
    assert Decimal(before["topups"]) == 100 and Decimal(after["topups"]) == 5100
    fired = _json("check", "--store", str(demo_store_copy), "--now", NOW, "--credit-below", "100", code=EXIT_FINDINGS)
    assert len(_alerts(fired, "credit")) == 1


def test_on_the_first_no_day_of_the_month_is_said_spent(demo_store: Path) -> None:
    """At 00:00:01 on 1 November the forecast is as of 31 October: `check --forecast-over` and the report's line said
    "$0.00 through 2026-10-31", read as October's spend. No day of the month is over: said so; a day later, its
    spend through that day."""
    first = "2026-11-01T00:00:01Z"
    doc = _json("check", "--store", str(demo_store), "--now", first, "--forecast-over", "1", code=EXIT_FINDINGS)
    [alert] = _alerts(doc, "forecast")
    assert "(range $" in alert["message"] and "; no day of 2026-11 over yet) against $1.00" in alert["message"]
    assert "through 2026-10-31" not in alert["message"]
    with open_store(demo_store, migrate=False, read_only=True) as db:
        line = forecast_line(build_forecast(db, date(2026, 11, 1), now=datetime(2026, 11, 1, 0, 0, 1, tzinfo=UTC)))
        assert "; no day of 2026-11 over yet; see `usageledger forecast`)" in line.plain, line.plain
        second = build_forecast(db, date(2026, 11, 1), now=datetime(2026, 11, 2, tzinfo=UTC))
    spent = _spend(demo_store, date(2026, 11, 1), date(2026, 11, 2)).quantize(Decimal("0.01"))
    assert f"; ${spent} through 2026-11-01; see" in forecast_line(second).plain


def test_costs_that_start_today_are_no_day_to_forecast_from(demo_store_copy: Path) -> None:
    """A store whose costs start on a month's 1st, read at 05:00 that day (the forecast is as of the day before):
    `forecast` said the costs start "after 2026-08" of a day of August, and the credit's runway "the store holds 1"
    day of costs up to a day it holds none of. Now: no day of them is over yet, and the store holds 0."""
    with open_store(demo_store_copy, migrate=False, read_only=True) as db:
        first = db.query("SELECT MIN(bucket_start) FROM costs_daily")[0][0].astimezone(UTC).date()
    at = datetime(first.year, first.month, first.day, 5, tzinfo=UTC)
    before = first - timedelta(days=1)
    with open_store(demo_store_copy, migrate=False, read_only=True) as db, pytest.raises(UsageLedgerError) as refused:
        build_forecast(db, first.replace(day=1), now=at)
    assert str(refused.value) == (
        f"the store's costs start on {first}, and no day of them is over yet (a forecast reads whole days, up to"
        f" {before}); a forecast needs at least 7 of them: sync more history first"
    )
    with open_store(demo_store_copy) as db:
        add_topup(db, org=ORG, day=first, amount=Decimal(50), note=None, now=at)
        balance = credit_balance(db, now=at)
    assert balance is not None and balance.runway is None
    assert balance.runway_note == (
        f"a forecast needs at least 7 days of costs, the store holds 0 up to {before}: sync more history first"
    )
    # a month over before the costs start keeps its own refusal
    early = pytest.raises(UsageLedgerError, match=rf"^the store's costs start on {first}, after 2026-01: ")
    with open_store(demo_store_copy, migrate=False, read_only=True) as db, early:
        build_forecast(db, date(2026, 1, 1), now=at)
