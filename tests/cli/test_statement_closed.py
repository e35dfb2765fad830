"""`usageledger statement` of a closed month, through the command line, on DuckDB and PostgreSQL.

A revising emulator at the tests' fixed now; a sync; `close 2026-11`; the emulator two days on and a second sync
that restates November. The statement then shows the figures closed (the very statements of before the close, adding
up to the closed total), and lists apart, per statement, the adjustment: present minus closed. Closed plus
adjustments is the month's present costs, to the cent. Reopened, the month is an open one again.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import cli, emulator_process, finish, run_cli, sync_args
from fixtures.stores import copy_store

LATER = str(EMULATOR_NOW + 2 * 86400)
NOVEMBER = ["--since", "2026-11-01", "--until", "2026-12-01"]
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def clocks() -> Iterator[tuple[str, str]]:
    """Two revising emulators of one organisation: at the tests' now, and two days later."""
    with emulator_process("--revisions") as now, emulator_process("--revisions", "--now", LATER) as later:
        yield now, later


@pytest.fixture(scope="module")
def first_syncs() -> dict[str, str]:
    """Per back end, a store after the first sync at the tests' now (a DuckDB file, or a PostgreSQL URL), made by
    the first test that needs it and never opened again: it is only copied."""
    return {}


def first_synced(
    kind: str, request: pytest.FixtureRequest, clocks: tuple[str, str], first_syncs: dict[str, str], tmp_path: Path
) -> str:
    """A copy, for one test, of a store after the first sync (a CLI sync from the emulator at the tests' now).

    Every test here starts with that same sync; it runs once per back end and module, and each test gets a copy
    (the DuckDB file, or a PostgreSQL database made from it as a template, with an identity of its own).
    """
    if kind not in first_syncs:
        where = request.getfixturevalue("tmp_path_factory").mktemp("first")
        cluster: Any = request.getfixturevalue("_pg_cluster") if kind == "postgres" else None
        master = str(where / "first.duckdb") if cluster is None else cluster.createdb(f"closed_{os.getpid()}_first")
        ok(sync_args(master), clocks[0], where)
        first_syncs[kind] = master
    return copy_store(first_syncs[kind], tmp_path, request)


@pytest.fixture(params=["duckdb", "postgres"])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, clocks: tuple[str, str], first_syncs: dict[str, str]
) -> str:
    """A store after the first sync, the test's own copy."""
    return first_synced(request.param, request, clocks, first_syncs, tmp_path)


def ok(args: list[str], url: str, cwd: Path) -> str:
    code, out, err = finish(run_cli([*cli(), *args], url, cwd))
    assert code == 0, f"{args}: {err}"
    return out


def statement(store: str, url: str, cwd: Path, *extra: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        ok(["statement", "2026-11", "--store", store, "--by", "project", "-f", "json", *extra], url, cwd)
    )
    return doc


def month_spend(store: str, url: str, cwd: Path) -> Decimal:
    doc = json.loads(ok(["report", "--store", store, *NOVEMBER, "-f", "json"], url, cwd))
    return Decimal(doc["totals"]["spend"])


def test_a_closed_month_statement_uses_the_closed_figures_and_lists_adjustments_apart(
    store_url: str, clocks: tuple[str, str], tmp_path: Path
) -> None:
    url = clocks[1]  # the store comes synced once at the tests' now (``store_url``)
    before = statement(store_url, url, tmp_path)
    assert before["closed"] is None and before["adjustments"] == []
    closed_spend = month_spend(store_url, url, tmp_path)
    assert Decimal(before["total"]) == closed_spend.quantize(CENT, rounding=ROUND_HALF_UP)

    ok(["close", "2026-11", "--store", store_url, "--now", "2026-12-02", "--allow-partial"], url, tmp_path)
    closed = int(time.time())  # the close's second or later: the restatement is seen after it (whole seconds)
    while int(time.time()) <= closed:
        time.sleep(0.02)
    ok(sync_args(store_url, "--now", LATER), url, tmp_path)
    present_spend = month_spend(store_url, url, tmp_path)
    assert present_spend != closed_spend  # November was restated after its close

    doc = statement(store_url, url, tmp_path)
    closed = doc["closed"]
    assert closed is not None and closed["matches_close"] is True and closed["open_orgs"] == []
    recorded = json.loads(ok(["changes", "--store", store_url, "-f", "json"], url, tmp_path))["adjustments"]
    org_line = next(a for a in recorded if a["level"] == "org" and a["month"] == "2026-11")
    assert Decimal(closed["closed_total"]) == Decimal(org_line["closed"]) == closed_spend
    assert [c["closed_at"] for c in closed["closes"]] == [org_line["closed_at"]]

    # The statements are the closed figures: those of before the close, line by line, adding up to the closed total.
    assert doc["statements"] == before["statements"]
    assert Decimal(doc["total"]) == closed_spend.quantize(CENT, rounding=ROUND_HALF_UP)
    assert sum((Decimal(s["total"]) for s in doc["statements"]), Decimal(0)) == Decimal(doc["total"])

    # Adjustments, apart: per statement present minus closed; closed plus adjustments is the month's present costs.
    adjustments = {a["owner"]: a for a in doc["adjustments"]}
    closed_totals = {s["owner"]: Decimal(s["total"]) for s in doc["statements"]}
    assert set(closed_totals) <= set(adjustments)
    closed_exact = {
        s["owner"]: sum((Decimal(line["exact"]) for line in s["lines"]), Decimal(0)) for s in doc["statements"]
    }
    for owner, a in adjustments.items():  # the closed figure as close records it, to the cent (not re-apportioned)
        assert Decimal(a["closed"]) == closed_exact.get(owner, Decimal(0)).quantize(CENT, rounding=ROUND_HALF_UP)
        assert Decimal(a["amount"]) == Decimal(a["present"]) - Decimal(a["closed"])
    moved = sum((Decimal(a["amount"]) for a in doc["adjustments"]), Decimal(0))
    assert moved != 0 and Decimal(closed["adjustment_total"]) == moved
    present = present_spend.quantize(CENT, rounding=ROUND_HALF_UP)
    assert Decimal(closed["present_total"]) == present
    assert sum(closed_totals.values(), Decimal(0)) + moved == present

    out = ok(["statement", "2026-11", "--store", store_url, "--by", "project", "--csv", "s.csv", "--html", "s.html"],
             url, tmp_path)  # fmt: skip
    flat = " ".join(out.split())
    assert "Adjustments to 2026-11 since its close" in flat and "use the figures closed at" in flat
    assert f"add up to ${Decimal(doc['total']):,}, the month's costs as closed to the cent" in flat
    rows = list(csv.DictReader(io.StringIO((tmp_path / "s.csv").read_text(encoding="utf-8"))))
    in_csv = {r["owner"]: Decimal(r["amount"]) for r in rows if r["kind"] == "adjustment"}
    assert in_csv == {o: Decimal(a["amount"]) for o, a in adjustments.items()}
    assert sum((Decimal(r["amount"]) for r in rows if r["kind"] == "total"), Decimal(0)) == Decimal(doc["total"])
    assert "Adjustments since the close" in (tmp_path / "s.html").read_text(encoding="utf-8")

    # Reopened, the month is open again: its statements are the present figures, with no adjustments.
    ok(["close", "2026-11", "--reopen", "--store", store_url, "--now", "2026-12-02"], url, tmp_path)
    reopened = statement(store_url, url, tmp_path)
    assert reopened["closed"] is None and reopened["adjustments"] == []
    assert Decimal(reopened["total"]) == present


@pytest.fixture(scope="module")
def _closed_and_restated_master(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    clocks: tuple[str, str],
    first_syncs: dict[str, str],
) -> str:
    """A DuckDB store synced, November closed, then restated by a sync two days on: made once for the module (the
    three tests below read the same store), never opened again, only copied."""
    where = tmp_path_factory.mktemp("closed-restated")
    store_url = first_synced("duckdb", request, clocks, first_syncs, where)
    ok(["close", "2026-11", "--store", store_url, "--now", "2026-12-02", "--allow-partial"], clocks[1], where)
    closed = int(time.time())  # the close's second or later: the restatement is seen after it (whole seconds)
    while int(time.time()) <= closed:
        time.sleep(0.02)
    ok(sync_args(store_url, "--now", LATER), clocks[1], where)
    return store_url


@pytest.fixture
def closed_and_restated(_closed_and_restated_master: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The test's own copy of a DuckDB store synced, November closed, then restated by a sync two days on."""
    return copy_store(_closed_and_restated_master, tmp_path, request)


def test_the_mcp_spend_tool_lists_a_closed_months_adjustments_as_report_does(
    closed_and_restated: str, clocks: tuple[str, str], tmp_path: Path
) -> None:
    """The MCP `spend` tool, "the same figures as report --format json", gave a restated closed month's present
    spend with no word of its close: report, the dashboard and `changes` list the adjustments; it now does too, by
    team and for a project; for one model (closes are by project) it says in a warning why it lists none."""
    from usageledger.config import Config
    from usageledger.mcp_tools import LedgerTools
    from usageledger.store import open_existing_store

    store_url = closed_and_restated
    report = json.loads(ok(["report", "--store", store_url, *NOVEMBER, "-f", "json"], clocks[1], tmp_path))
    assert report["adjustments"] and any(a["level"] == "org" for a in report["adjustments"])
    tools = LedgerTools(lambda: open_existing_store(store_url), Config())
    for group_by in ("project", "day", "team"):
        answer = tools.spend(NOVEMBER[1], NOVEMBER[3], group_by)
        assert answer["adjustments"] == report["adjustments"], group_by
    one_model = tools.spend(NOVEMBER[1], NOVEMBER[3], model="gpt-4o")  # closes are by project: none, and why
    assert one_model["adjustments"] == [] and "not by model" in one_model["warnings"][-1]
    assert (answer["currency"], one_model["currency"]) == ("USD", "USD")  # the API's `usd`, as every output gives it
    assert answer["adjustments"][0]["currency"] == "USD" and Decimal(answer["adjustments"][0]["amount"]) > 0
    one = next(a for a in report["adjustments"] if a["level"] == "project")
    scoped = tools.spend(NOVEMBER[1], NOVEMBER[3], project=one["project_id"])["adjustments"]
    assert scoped == [one]
    assert tools.spend("2026-10-01", "2026-11-01")["adjustments"] == []  # October was never closed


def test_a_converted_report_keeps_a_closed_months_adjustments_in_usd(
    closed_and_restated: str, clocks: tuple[str, str], tmp_path: Path
) -> None:
    """`report --currency EUR` printed the closed month's adjustments, USD as `close` recorded them and as the JSON
    says (`currency` USD), with the report's euro sign: "closed at €1,125.97" for $1,125.97. The statement's JSON
    gave the USD `closed_total` among its EUR figures without saying so. One document said `eur`, `EUR` and `usd`:
    every currency of it is now its ISO 4217 code, upper-case, as the statement's and FOCUS's are."""
    store_url = closed_and_restated
    url = clocks[1]
    rates = tmp_path / "rates.csv"
    days = [date(2026, 9, 1) + timedelta(days=i) for i in range(100)]
    rates.write_text("date,rate\n" + "".join(f"{d},0.5\n" for d in days), encoding="utf-8")
    fx = ["--currency", "EUR", "--fx", str(rates)]

    doc = json.loads(ok(["report", "--store", store_url, *NOVEMBER, "-f", "json", *fx], url, tmp_path))
    adjustment = next(a for a in doc["adjustments"] if a["level"] == "org")
    assert adjustment["currency"] == "USD" and Decimal(adjustment["current"]) == 2 * Decimal(doc["totals"]["spend"])
    assert (doc["currency"], doc["fx"]["currency"]) == ("EUR", "EUR")
    assert doc["forecast"] is None or doc["forecast"]["currency"] == "USD"  # the forecast is not converted: it says so
    closed = Decimal(adjustment["closed"]).quantize(CENT, rounding=ROUND_HALF_UP)
    flat = " ".join(ok(["report", "--store", store_url, *NOVEMBER, *fx], url, tmp_path).split())
    assert f"default total closed at ${closed:,}" in flat and "closed at €" not in flat
    ok(["report", "--store", store_url, *NOVEMBER, *fx, "--html", "r.html"], url, tmp_path)
    assert f"total closed at ${closed:,}" in (tmp_path / "r.html").read_text(encoding="utf-8")

    converted = statement(store_url, url, tmp_path, *fx)
    usd = statement(store_url, url, tmp_path)
    assert converted["currency"] == "EUR" and converted["closed"]["closed_total_currency"] == "USD"
    assert converted["closed"]["closed_total"] == usd["closed"]["closed_total"]
    total, moved = Decimal(converted["total"]), Decimal(converted["closed"]["adjustment_total"])
    assert total + moved == Decimal(converted["closed"]["present_total"])  # EUR: closed + adjustments = present
    assert total == (Decimal(usd["closed"]["closed_total"]) / 2).quantize(CENT, rounding=ROUND_HALF_UP)


_LINE = re.compile(r"default (total|project (.+?)) closed at \$([\d,.]+), now \$([\d,.]+) \(\+?(-?\$[\d,.]+)")


def _bare(name: str) -> str:
    return re.sub(r" \(proj_\w+\)$", "", name)


def _cents(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", ""))


def test_a_closed_months_adjustments_print_one_rounding_everywhere(
    closed_and_restated: str, clocks: tuple[str, str], tmp_path: Path
) -> None:
    """`report`, `check --restated-over` (and `changes`' table) rounded each figure of an adjustment on its own:
    "closed at $233.71, now $256.65 (+$22.95)" does not subtract, and the statement of the same month said $256.66.
    Now every line subtracts, the projects' adjustments add up to the total's, and each is the statement's."""
    store_url = closed_and_restated
    url = clocks[1]
    by_project = statement(store_url, url, tmp_path)
    stated = {
        _bare(a["name"]): (Decimal(a["closed"]), Decimal(a["present"]), Decimal(a["amount"]))
        for a in by_project["adjustments"]
    }
    report = ok(["report", "--store", store_url, *NOVEMBER], url, tmp_path)
    code, checked, err = finish(run_cli([*cli(), "check", "--store", store_url, "--restated-over", "0"], url, tmp_path))
    assert code in (0, 3), err
    for text in (" ".join(report.split()), checked):
        lines = {_bare(m[2] or "total"): tuple(_cents(v) for v in m.groups()[2:]) for m in _LINE.finditer(text)}
        assert set(lines) == {"total", *stated} and len(stated) > 1, text
        for closed, now, moved in lines.values():
            assert closed + moved == now
        assert sum(lines[name][2] for name in stated) == lines["total"][2]
        for name, figures in stated.items():
            assert lines[name] == figures
    assert lines["total"] == (
        Decimal(by_project["total"]), Decimal(by_project["closed"]["present_total"]),
        Decimal(by_project["closed"]["adjustment_total"]),
    )  # fmt: skip


def test_check_restated_over_alerts_each_figure_moved_past_it_with_the_statements_adjustment(
    closed_and_restated: str, clocks: tuple[str, str], tmp_path: Path
) -> None:
    """`check --restated-over AMOUNT` through the command line: one `restated` alert per closed-month figure (the
    org's total, each project) whose change is beyond AMOUNT, in the JSON and on stdout, exit 3; none past the
    largest change, exit 0. Each alert gives the figure as the statement's adjustments do (the project's change
    apportioned to the total's), and a project whose apportioned `now` is not its spend rounded alone says so."""
    store_url, url = closed_and_restated, clocks[1]
    by_project = statement(store_url, url, tmp_path)
    stated = {
        _bare(a["name"]): (Decimal(a["closed"]), Decimal(a["present"]), Decimal(a["amount"]))
        for a in by_project["adjustments"]
    }
    closed = by_project["closed"]
    stated["total"] = (
        Decimal(by_project["total"]),
        Decimal(closed["present_total"]),
        Decimal(closed["adjustment_total"]),
    )
    report = json.loads(ok(["report", "--store", store_url, *NOVEMBER, "-f", "json"], url, tmp_path))
    exact = {("total" if a["level"] == "org" else a["project_id"]): Decimal(a["amount"]) for a in report["adjustments"]}
    assert len(exact) > 2 and len(stated) > 1
    check = ["check", "--store", store_url, "--now", LATER, "--stale-after", "100d", "--restated-over"]

    def checked(amount: Decimal, *, code: int) -> dict[str, Any]:
        done, out, err = finish(run_cli([*cli(), *check, str(amount), "-f", "json"], url, tmp_path))
        assert done == code, out + err
        doc: dict[str, Any] = json.loads(out)
        text_code, text, _ = finish(run_cli([*cli(), *check, str(amount)], url, tmp_path))
        assert text_code == code and all(f"ALERT restated: {a['message']}" in text for a in doc["alerts"]), text
        return doc

    least = min(abs(v) for v in exact.values())  # every figure but the one that moved least is beyond it
    doc = checked(least, code=3)
    assert doc["fired"] is True and {a["kind"] for a in doc["alerts"]} == {"restated"}
    beyond = {key for key, amount in exact.items() if abs(amount) > least}
    assert 0 < len(beyond) < len(exact)
    assert len(doc["alerts"]) == len(beyond)
    assert f"restated: {len(exact)} closed-month figures moved since closing, {len(beyond)} by more than" in " ".join(
        doc["checks"]
    )
    for alert in doc["alerts"]:
        found = _LINE.search(alert["message"])
        assert found is not None and alert["message"].startswith("closed month 2026-11 restated: default "), alert
        name = _bare(found[2] or "total")
        assert (_cents(found[3]), _cents(found[4]), _cents(found[5])) == stated[name]  # the statement's figures
        present = Decimal(report["totals"]["spend"]) if name == "total" else None
        key = "total" if name == "total" else next(k for k in beyond if k != "total" and k in alert["subject"])
        assert key in beyond and alert["subject"].startswith("closed 2026-11 default ")
        if present is None:  # a project: its spend as the report's table rounds it, said when `now` is not that
            spend = next(Decimal(p["spend"]) for p in report["spend_by_project"] if p["project_id"] == key)
            alone = spend.quantize(CENT, rounding=ROUND_HALF_UP)
            note = f"; apportioned so the projects add up to the total: ${alone:,} alone)"
            assert alert["message"].endswith(note) == (alone != stated[name][1]), (alert, alone)
            assert alert["message"].endswith(note) or "apportioned" not in alert["message"]
        else:
            assert stated[name][1] == present.quantize(CENT, rounding=ROUND_HALF_UP)
            assert "apportioned" not in alert["message"]
    quiet = checked(max(abs(v) for v in exact.values()), code=0)
    assert quiet["fired"] is False and quiet["alerts"] == []
    assert f"{len(exact)} closed-month figures moved since closing, 0 by more than" in " ".join(quiet["checks"])


def test_check_restated_over_says_a_change_a_hair_beyond_it_is_beyond_it(
    closed_and_restated: str, clocks: tuple[str, str], tmp_path: Path
) -> None:
    """A change a hair over `--restated-over` was alerted with its cents, "+$1.00" under a $1.00 limit, which reads
    as not over: where the cents do not show it beyond the limit, the alert gives the change unrounded to the places
    that do (cut, never rounded up); where they do, the line is as before."""
    store_url, url = closed_and_restated, clocks[1]
    report = json.loads(ok(["report", "--store", store_url, *NOVEMBER, "-f", "json"], url, tmp_path))
    check = ["check", "--store", store_url, "--now", LATER, "--stale-after", "100d", "-f", "json", "--restated-over"]
    hidden = 0
    for exact in sorted({abs(Decimal(a["amount"])) for a in report["adjustments"]}):
        limit = exact.quantize(CENT, rounding=ROUND_DOWN)  # the change is beyond its own cents cut
        if limit == exact:
            continue
        done, out, err = finish(run_cli([*cli(), *check, str(limit)], url, tmp_path))
        assert done == 3, out + err
        for alert in json.loads(out)["alerts"]:
            found = _LINE.search(alert["message"])
            assert found is not None, alert
            printed = abs(_cents(found[5]))
            note = re.search(r", (-?)\+?\$([\d,.]+) unrounded[;)]", alert["message"])
            if printed > limit:
                assert note is None, alert
                continue
            hidden += 1
            assert note is not None, alert
            assert _cents(note[2]) > limit and len(note[2].split(".")[1]) >= 3, alert
    assert hidden, "no change the cents hid beyond its limit"
