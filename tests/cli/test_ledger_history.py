"""The ledger remembers, through the command line, on DuckDB and PostgreSQL: the issue's check scenario.

A revising `usageledger emulator` at the tests' fixed now; a sync; the emulator two days on; a second sync. The plain
report shows the revised totals, `changes` lists the restatements, `report --as-of` a moment between the syncs gives
exactly the first sync's total, `export --as-of` its rows and `export --deltas` what moved. Then a closed month:
its restatement is an adjustment in `changes`, in `report` and to `check --restated-over`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from usageledger import timeutil
from usageledger.cli import app
from usageledger.report.names import resolve_names
from usageledger.serve import build_app
from usageledger.store import default_streams, open_store
from usageledger.store.closes import closed_lines
from usageledger.sync import Org, SyncOptions, sync

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import cli, emulator_process, finish, run_cli, sync_args
from fixtures.reports import ORG
from fixtures.stores import copy_store

DAY = 86400
LATER = str(EMULATOR_NOW + 2 * DAY)
PERIOD = ["--since", "2026-11-01", "--until", "2026-11-21"]
"""The days both syncs read: the second sync's new days (21 and 22 November) are outside it."""


@pytest.fixture(scope="module")
def two_clocks() -> Iterator[tuple[str, str]]:
    """Two revising emulators of one organisation: at the tests' now, and two days later."""
    with emulator_process("--revisions") as now, emulator_process("--revisions", "--now", LATER) as later:
        yield now, later


@pytest.fixture(scope="module")
def first_syncs() -> dict[str, str]:
    """Per back end, a store after the first sync at the tests' now, made by the first test that needs it."""
    return {}


@pytest.fixture(params=["duckdb", "postgres"])
def store_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    two_clocks: tuple[str, str],
    first_syncs: dict[str, str],
) -> str:
    """A store after the first sync (a CLI sync from the emulator at the tests' now), the test's own copy.

    Every test here starts with that same sync; it runs once per back end and module, and each test gets a copy
    (the DuckDB file, or a PostgreSQL database made from it as a template).
    """
    kind = request.param
    if kind not in first_syncs:
        where = tmp_path_factory.mktemp("first")
        cluster: Any = request.getfixturevalue("_pg_cluster") if kind == "postgres" else None
        master = str(where / "first.duckdb") if cluster is None else cluster.createdb(f"ledger_{os.getpid()}_first")
        ok(sync_args(master), two_clocks[0], where)
        first_syncs[kind] = master
    return copy_store(first_syncs[kind], tmp_path, request)


def ul(args: list[str], url: str, cwd: Path) -> tuple[int, str, str]:
    return finish(run_cli([*cli(), *args], url, cwd))


def ok(args: list[str], url: str, cwd: Path) -> str:
    code, out, err = ul(args, url, cwd)
    assert code == 0, f"{args}: {err}"
    return out


def spend(url: str, cwd: Path, store: str, *extra: str) -> str:
    doc = json.loads(ok(["report", "--store", store, *PERIOD, "--format", "json", *extra], url, cwd))
    return str(doc["totals"]["spend"])


def sync_twice(store: str, clocks: tuple[str, str], cwd: Path) -> tuple[str, int]:
    """The first sync's report total, and a moment (Unix seconds) after it and before the second sync (``store``
    comes synced once: see ``store_url``)."""
    first = spend(clocks[0], cwd, store)
    moment = int(time.time())
    while int(time.time()) <= moment:  # seen times are whole seconds: the second sync is seen after the moment
        time.sleep(0.05)
    ok(sync_args(store, "--now", LATER), clocks[1], cwd)
    return first, moment


def test_as_of_changes_and_deltas_after_a_restating_sync(
    store_url: str, two_clocks: tuple[str, str], tmp_path: Path
) -> None:
    url = two_clocks[1]
    first, moment = sync_twice(store_url, two_clocks, tmp_path)
    revised = spend(url, tmp_path, store_url)
    with open_store(store_url) as db:
        held = db.query(
            "SELECT SUM(amount_value) FROM costs_daily WHERE bucket_start >= %s AND bucket_start < %s",
            (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)),
        )[0][0]
    assert Decimal(revised) == held and Decimal(revised) != Decimal(first)

    changes = json.loads(ok(["changes", "--store", store_url, "--format", "json"], url, tmp_path))
    spent = [r for r in changes["restatements"] if r["table"] == "costs" and r["metric"] == "amount_value"]
    assert spent and all(Decimal(r["delta"]) == Decimal(r["new"] or 0) - Decimal(r["old"] or 0) for r in spent)
    in_period = sum((Decimal(r["delta"]) for r in spent if r["bucket_start"] < "2026-11-21"), Decimal(0))
    assert Decimal(first) + in_period == Decimal(revised)
    # usage's whole counts are JSON integers as in every document (the log's "-621.000000000000000000" was written)
    counts = [r for r in changes["restatements"] if r["table"] != "costs"]
    assert counts and all(type(r[k]) is int or r[k] is None for r in counts for k in ("old", "new", "delta"))
    assert all(isinstance(r["delta"], str) for r in changes["restatements"] if r["table"] == "costs")
    before = json.loads(ok(["changes", "--store", store_url, "--until", str(moment), "-f", "json"], url, tmp_path))
    assert before["restatements"] == []  # the first sync read every bucket for the first time
    text = ok(["changes", "--store", store_url], url, tmp_path)
    assert "Restatements" in text and spent[0]["stream"][:20] in text

    # As of a moment between the syncs: exactly the first sync's total, and its rows.
    assert spend(url, tmp_path, store_url, "--as-of", str(moment)) == first
    iso_moment = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert spend(url, tmp_path, store_url, "--as-of", iso_moment) == first
    as_of_doc = json.loads(
        ok(["report", "--store", store_url, *PERIOD, "--format", "json", "--as-of", iso_moment], url, tmp_path)
    )
    assert as_of_doc["forecast"] is None and as_of_doc["credit"] is None, "today's outlook is not the ledger then"
    then = ok(["export", "--store", store_url, "-e", "costs", "--as-of", str(moment), *PERIOD], url, tmp_path)
    assert sum((Decimal(r["amount_value"]) for r in csv.DictReader(io.StringIO(then))), Decimal(0)) == Decimal(first)

    # Deltas since the moment, added to the first sync's figures, give the revised ones (negative deltas included).
    moved = ok(
        ["export", "--store", store_url, "-e", "costs", "--deltas", "--changed-since", str(moment), *PERIOD],
        url,
        tmp_path,
    )
    rows = list(csv.DictReader(io.StringIO(moved)))
    assert rows and Decimal(first) + sum((Decimal(r["amount_value"]) for r in rows), Decimal(0)) == Decimal(revised)

    code, _, err = ul(["report", "--store", store_url, "--as-of", "yesterdayish"], url, tmp_path)
    assert code != 0 and "--as-of" in err and "Traceback" not in err
    code, _, err = ul(["export", "--store", store_url, "--changed-since", "1d"], url, tmp_path)
    assert code != 0 and "--changed-since" in err and "--deltas" in err


def test_a_closed_month_restated_is_an_adjustment(store_url: str, two_clocks: tuple[str, str], tmp_path: Path) -> None:
    url = two_clocks[1]  # the store comes synced once at the tests' now (``store_url``)
    november = ["--since", "2026-11-01", "--until", "2026-12-01"]
    doc = json.loads(ok(["report", "--store", store_url, *november, "-f", "json"], url, tmp_path))
    closed_total = Decimal(doc["totals"]["spend"])
    # The emulator's November ends on the 20th: closed as the store holds it, and said so.
    code, out, err = ul(
        ["close", "2026-11", "--store", store_url, "--now", "2026-12-02", "--allow-partial"], url, tmp_path
    )
    assert code == 0 and "Closed 2026-11" in out, err
    assert err.startswith("warning: closing 2026-11 without 2026-11-20 to 2026-11-30 for default"), err
    code, _, err = ul(["close", "2026-11", "--store", store_url, "--now", "2026-12-02"], url, tmp_path)
    assert code != 0 and "already closed" in err and "--reopen" in err
    code, _, err = ul(["close", "2026-12", "--store", store_url, "--now", "2026-12-02"], url, tmp_path)
    assert code != 0 and "MONTH" in err and "not ended" in err and len(err.strip().splitlines()) == 1
    closed = int(time.time())  # the close's second or later: the restatement is seen after it (whole seconds)
    while int(time.time()) <= closed:
        time.sleep(0.02)
    ok(sync_args(store_url, "--now", LATER), url, tmp_path)

    changes = json.loads(ok(["changes", "--store", store_url, "-f", "json"], url, tmp_path))
    total = next(a for a in changes["adjustments"] if a["level"] == "org")
    assert total["month"] == "2026-11" and Decimal(total["closed"]) == closed_total
    doc = json.loads(ok(["report", "--store", store_url, *november, "-f", "json"], url, tmp_path))
    assert Decimal(total["current"]) == Decimal(doc["totals"]["spend"]) != closed_total
    assert Decimal(total["amount"]) == Decimal(total["current"]) - closed_total
    assert any(a["level"] == "org" and a["amount"] == total["amount"] for a in doc["adjustments"])
    assert any(r["after_close"] for r in changes["restatements"] if r["metric"] == "amount_value")
    text = ok(["report", "--store", store_url, *november], url, tmp_path)
    assert "adjustment: 2026-11" in text.replace("\n", " ")
    html = tmp_path / "november.html"  # the HTML report shows it too, in its own card, with the JSON's figure
    ok(["report", "--store", store_url, *november, "--html", str(html)], url, tmp_path)
    card = html.read_text(encoding="utf-8").split('id="adjustments"', 1)[1].split("</section>", 1)[0]
    assert f'data-amount="{total["amount"]}"' in card and "adjustment: 2026-11" in card
    with TestClient(build_app(store_url)) as client:  # and so does the dashboard, with the same card
        november_q = {"since": "2026-11-01", "until": "2026-12-01"}
        api = client.get("/api/report", params=november_q).json()
        assert api["adjustments"] == doc["adjustments"]
        shown = client.get("/", params=november_q).text.split('id="adjustments"', 1)[1].split("</section>", 1)[0]
        assert f'data-amount="{total["amount"]}"' in shown and "adjustment: 2026-11" in shown

    check = ["check", "--store", store_url, "--now", LATER, "--stale-after", "100d"]
    code, out, err = ul([*check, "--restated-over", "0.001"], url, tmp_path)
    assert code == 3 and "closed month 2026-11 restated" in out, err
    code, out, _ = ul([*check, "--restated-over", "1000000"], url, tmp_path)
    assert "closed month" not in out and "restated: " in out

    out = ok(["close", "2026-11", "--reopen", "--store", store_url, "--now", "2026-12-02"], url, tmp_path)
    assert "Reopened 2026-11" in out
    changes = json.loads(ok(["changes", "--store", store_url, "-f", "json"], url, tmp_path))
    assert changes["adjustments"] == [] and not any(r["after_close"] for r in changes["restatements"])


def _close(store: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["close", *args, "--store", str(store), "--now", "2026-12-02"])


def test_close_refuses_a_month_the_store_does_not_cover(demo_store_copy: Path) -> None:
    """`close 2020-01` recorded $0.00 for a month before the store's first costs, and a month whose first days the
    store lacks was closed as if whole. The first is refused; the second too, unless --allow-partial, which then
    closes it with one warning naming the missing days. The demo store's costs run from 2026-08-22 to 2026-11-19."""
    before = _close(demo_store_copy, "2020-01")
    assert before.exit_code == 2 and before.stderr.strip() == (
        "error: MONTH: 2020-01 ends before the store's costs start on 2026-08-22: give 2026-08 or a later month, or "
        "sync that month first (usageledger sync --since 2020-01-01)"
    ), before.output
    partial = _close(demo_store_copy, "2026-08")
    assert partial.exit_code == 2 and partial.stderr.strip() == (
        "error: MONTH: the store lacks days of 2026-08: 2026-08-01 to 2026-08-21 for org-demo (its costs start on "
        "2026-08-22); sync them first (usageledger sync --since 2026-08-01), or pass --allow-partial to close it as "
        "the store holds it"
    ), partial.output
    unsynced = _close(demo_store_copy, "2026-11")
    assert unsynced.exit_code == 2, unsynced.output
    assert "2026-11-20 to 2026-11-30 for org-demo (its costs are synced through 2026-11-19)" in unsynced.stderr
    with open_store(str(demo_store_copy)) as db:
        assert closed_lines(db) == [], "a refused close records nothing"

    allowed = _close(demo_store_copy, "2026-08", "--allow-partial")
    # the month closed is a UTC month: the heading says its days and UTC
    assert allowed.exit_code == 0 and "Closed 2026-08 (2026-08-01 to 2026-08-31 UTC)" in allowed.stdout, allowed.output
    assert allowed.stderr.strip() == (
        "warning: closing 2026-08 without 2026-08-01 to 2026-08-21 for org-demo (its costs start on 2026-08-22)"
    )
    whole = _close(demo_store_copy, "2026-10")
    assert whole.exit_code == 0 and whole.stderr == "", whole.output
    with open_store(str(demo_store_copy)) as db:
        assert sorted({line.month.isoformat() for line in closed_lines(db)}) == ["2026-08-01", "2026-10-01"]


def test_close_last_names_the_month_before_today_and_this_is_refused(demo_store_copy: Path) -> None:
    """`close last` is the month before `--now`'s (2026-11 on 2026-12-02: refused here only for the days the demo
    store lacks, which names it); `close this` is the current month, refused as `close 2026-12` is."""
    last = _close(demo_store_copy, "last")
    assert last.exit_code == 2 and "the store lacks days of 2026-11: 2026-11-20 to 2026-11-30" in last.stderr
    this = _close(demo_store_copy, "this")
    assert this.exit_code == 2 and this.stderr.strip() == (
        "error: MONTH: this (2026-12) has not ended yet (today is 2026-12-02): close a month once it is over"
    ), this.output
    typo = _close(demo_store_copy, "lsat")
    assert typo.exit_code == 2 and typo.stderr.strip() == (
        "error: MONTH: 'lsat' is not a month; write it as YYYY-MM, like 2026-10, or `last`"
    ), typo.output
    partial = _close(demo_store_copy, "last", "--allow-partial")
    assert partial.exit_code == 0 and "Closed 2026-11" in partial.stdout, partial.output


def test_close_shows_each_project_by_name(demo_command_store: Path, tmp_path: Path) -> None:
    """`close` listed the projects it closed by ID alone (proj_3trS...), where `changes`, `report` and `check` name
    them: each project line is its directory name with its ID."""
    store = tmp_path / "demo.duckdb"
    shutil.copyfile(demo_command_store, store)
    last_month = (datetime.now(UTC).date().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    done = CliRunner().invoke(
        app, ["close", last_month, "--store", str(store), "--allow-partial"], env={"COLUMNS": "200"}
    )
    assert done.exit_code == 0, done.output
    with open_store(str(store)) as db:
        lines = closed_lines(db)
        names = {line.org: resolve_names(db, org=line.org) for line in lines}
    projects = [(line.org, line.project_id) for line in lines if line.level == "project" and line.project_id]
    assert projects and all(names[o].project(p) != p for o, p in projects), "the demo's directory names them"
    for org, project in projects:
        assert f"{names[org].project(project)} ({project})" in done.stdout, done.stdout


def test_closing_every_org_when_one_has_closed_names_the_others(demo_store_copy: Path, emulator_url: str) -> None:
    """With one org's month closed, `close 2026-10` (every org) was refused with "pass --reopen first" alone: a
    hurried user would reopen, and so forget, the closed figures. The refusal also names the --org of each org still
    open, and that close records the other org without touching the closed one."""
    with open_store(str(demo_store_copy)) as db:  # a second synthetic org beside the demo's: costs from October on
        result = sync(
            db,
            [Org("org-second", FAKE_ADMIN_KEY, emulator_url)],
            [s for s in default_streams() if s.endpoint.name == "costs"],
            SyncOptions(since=timeutil.to_unix("2026-10-01")),
            clock=lambda: EMULATOR_NOW,
        )
        assert result.ok, result.errors
    assert _close(demo_store_copy, "2026-10", "--org", ORG).exit_code == 0
    with open_store(str(demo_store_copy)) as db:
        before = closed_lines(db)
    refused = _close(demo_store_copy, "2026-10")
    assert refused.exit_code == 2 and refused.stderr.strip() == (
        f"error: MONTH: 2026-10 is already closed for {ORG}: pass --reopen first to close it again, or close it for "
        "each org still open: --org org-second"
    ), refused.output
    assert _close(demo_store_copy, "2026-10", "--org", "org-second").exit_code == 0
    with open_store(str(demo_store_copy)) as db:
        after = closed_lines(db)
    assert [line for line in after if line.org == ORG] == before
    assert {line.org for line in after} == {ORG, "org-second"}


def test_as_of_before_the_log_says_why_in_the_json(demo_store_copy: Path) -> None:
    """`report --as-of` before the store's first sync said why its figures are empty on stderr only: the JSON
    document's `warnings`, which a program reads, was `[]` beside a spend of 0."""
    done = CliRunner().invoke(
        app, ["report", "--store", str(demo_store_copy), "--as-of", "2020-01-01", "--format", "json"]
    )
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert Decimal(doc["totals"]["spend"]) == 0 and doc["as_of"] == "2020-01-01T00:00:00Z"
    said = [w for w in doc["warnings"] if w.startswith("--as-of 2020-01-01T00:00:00Z: the store's revision log begins")]
    assert len(said) == 1 and f"warning: {said[0]}" in done.stderr
