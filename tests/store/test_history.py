"""The revision log read back: the store as it stood at a time, per-key deltas and restatements, on both stores.

A revising emulator grows recent buckets as its clock moves on; two syncs a second apart (seen times are whole
seconds) give a moment between them to ask about.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from usageledger import timeutil
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.errors import ParameterError
from usageledger.report import Period, Scope, build_report
from usageledger.report.history import adjustments, as_closed, changes, deltas
from usageledger.report.statement import month_statements
from usageledger.store import BaseStore, Stream, WindowWrite, open_store, table_for, tables, to_datetime
from usageledger.store.closes import ClosedLine, close_month, closed_lines, month_bounds, month_totals, reopen_month
from usageledger.store.history import as_of, deltas_sql, restatements_sql, stream_group_bys
from usageledger.store.revisions import logged_metrics

from fixtures.emulator import EMULATOR_NOW
from fixtures.stores import copy_store
from fixtures.syncing import run

DAY = 86400
STREAMS = (
    Stream.create("completions", "1d", ("project_id", "model", "batch")),
    Stream.create("costs", "1d", ("project_id", "line_item")),
)
SINCE = timeutil.floor(EMULATOR_NOW - 10 * DAY, "1d")
PERIOD = Period(date(2026, 11, 5), date(2026, 11, 25))


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path, new_store: Callable[[str, Path], str]) -> Iterator[BaseStore]:
    url = new_store(request.param, tmp_path / "ledger.duckdb")
    with open_store(url) as opened:
        yield opened


Tables = dict[str, list[tuple[object, ...]]]


def _sync_twice(store: BaseStore) -> tuple[int, Tables]:
    """A sync, a moment, the clock two days on, a second sync: the moment, and the tables at the moment."""
    clock = [float(EMULATOR_NOW)]
    emu = Emulator(
        EmulatorConfig(seed=3, days=20, projects=2, users=3, models=2, revisions=True), clock=lambda: clock[0]
    )
    with run_server(emu) as url:
        assert run(store, url, streams=STREAMS, since=SINCE, now=clock[0]).ok
        held = {spec.name: _rows(store, spec.name) for spec in tables()}
        moment = int(time.time())
        while int(time.time()) <= moment:
            time.sleep(0.05)
        clock[0] += 2 * DAY
        second = run(store, url, streams=STREAMS, now=clock[0])
        assert second.ok and second.counts.updated > 0
    return moment, held


@pytest.fixture(scope="module")
def _synced_twice() -> dict[str, tuple[str, int, Tables]]:
    """Per back end, a store after :func:`_sync_twice` (made by the first test that needs it), its moment and
    tables; nothing opens it again, each test gets a copy."""
    return {}


@pytest.fixture(params=["duckdb", "postgres"])
def two_syncs(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    new_store: Callable[[str, Path], str],
    _synced_twice: dict[str, tuple[str, int, Tables]],
) -> Iterator[tuple[BaseStore, int, Tables]]:
    """A store after a sync, a moment, the clock two days on and a second sync: the store (the test's own copy), the
    moment, the tables at the moment.

    The two syncs (and the wait of up to a second for the moment) run once per back end and module, not once per
    test: a copy holds the same rows, revision log and times (the DuckDB file, or a PostgreSQL database made from it
    as a template)."""
    kind = request.param
    if kind not in _synced_twice:
        url = new_store(kind, tmp_path_factory.mktemp("two-syncs") / "ledger.duckdb")
        with open_store(url) as master:
            moment, held = _sync_twice(master)
        _synced_twice[kind] = (url, moment, held)
    url, moment, held = _synced_twice[kind]
    with open_store(copy_store(url, tmp_path, request)) as opened:
        yield opened, moment, held


def _rows(db: BaseStore, table: str) -> list[tuple[object, ...]]:
    spec = next(s for s in tables() if s.name == table)
    cols = ", ".join(f'"{c}"' for c in spec.column_names if c != "synced_at")
    return db.query(f"SELECT {cols} FROM {table} ORDER BY org, stream, bucket_start, group_key")


def test_as_of_gives_every_table_and_the_report_as_they_stood(
    two_syncs: tuple[BaseStore, int, Tables],
) -> None:
    store, moment, held = two_syncs
    now_total = build_report(store, PERIOD, Scope()).total_spend
    with as_of(store, moment) as past:
        for spec in tables():
            assert _rows(past, spec.name) == held[spec.name], spec.name
        then_total = build_report(past, PERIOD, Scope()).total_spend
    span = (int(PERIOD.previous().start.timestamp()), int(PERIOD.end.timestamp()))
    with as_of(store, moment, span) as period_only:  # only the buckets a report of the period reads
        assert build_report(period_only, PERIOD, Scope()).total_spend == then_total
        assert period_only.query("SELECT COUNT(*) FROM costs WHERE bucket_start >= %s", (PERIOD.end,)) == [(0,)]
    with as_of(store, int(time.time()) + 5) as present:
        assert build_report(present, PERIOD, Scope()).total_spend == now_total
    assert then_total != now_total
    # The shadows are gone once the block ends: the store reads the present again.
    assert build_report(store, PERIOD, Scope()).total_spend == now_total
    with as_of(store, 0) as before_anything:
        assert build_report(before_anything, PERIOD, Scope()).total_spend == 0


def test_deltas_since_the_moment_add_up_to_the_change(
    two_syncs: tuple[BaseStore, int, Tables],
) -> None:
    store, moment, held = two_syncs
    spec = table_for("costs")
    groups = stream_group_bys(store)
    sql, params = deltas_sql(spec, store.dialect, groups, since=moment)
    delta = Decimal(0)
    amount = spec.column_names.index("amount_value")
    for row in store.query(sql, params):
        delta += row[amount]
    before = sum((r[amount] for r in held["costs"] if r[amount] is not None), Decimal(0))
    after = store.query("SELECT SUM(amount_value) FROM costs")[0][0]
    assert delta != 0 and before + delta == after
    # From nothing, the deltas rebuild the table (every metric of every row).
    sql, params = deltas_sql(spec, store.dialect, groups)
    rebuilt = {r[:5]: r for r in store.query(sql + " ORDER BY 1, 2, 3, 5", params)}
    for row in _rows(store, "costs"):
        for metric in logged_metrics(spec):
            i = spec.column_names.index(metric)
            assert (rebuilt[row[:5]][i] or 0) == (row[i] or 0)


def test_restatements_are_the_second_syncs_changes_with_old_and_new(
    two_syncs: tuple[BaseStore, int, Tables],
) -> None:
    store, moment, _ = two_syncs
    sql, params = restatements_sql(since=moment)
    rows = store.query(sql, params)
    assert rows and all(r[6] != r[7] for r in rows)
    sql, params = restatements_sql(until=moment)
    assert store.query(sql, params) == []  # the first sync read every bucket for the first time
    sql, params = restatements_sql(since=moment, org="nobody")
    assert store.query(sql, params) == []


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.parametrize("two_syncs", ["postgres"], indirect=True)
def test_restatements_read_each_entry_once_on_postgres(two_syncs: tuple[BaseStore, int, Tables]) -> None:
    """`changes` on PostgreSQL took 4-8 s for 2,000 restatements of a 90-day store (0.5 s on DuckDB): the query
    joined each (row, metric)'s count back to its first and its last entry, PostgreSQL guessed the entries at one
    row and nested-looped the joins, sorting every entry again once per entry. Now no step of its plan runs more
    than once per row of the log it reads: every sort runs once."""
    store, moment, _ = two_syncs
    for since in (moment, None):
        sql, params = restatements_sql(since=since)
        restated = len(store.query(sql, params))
        plan = store.query("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)[0][0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        sorts = [n for n in _plan_nodes(plan[0]["Plan"]) if n["Node Type"] in ("Sort", "Incremental Sort")]
        assert restated > 1 and sorts, plan
        assert all(n["Actual Loops"] == 1 for n in sorts), [(n["Node Type"], n["Actual Loops"]) for n in sorts]


def test_a_vanished_row_is_a_change_to_zero_and_gone_from_the_present_not_the_past(store: BaseStore) -> None:
    """A row a re-read no longer returns: `changes` shows it going to nothing, as of before it is still there."""
    clock = [float(EMULATOR_NOW)]
    emu = Emulator(EmulatorConfig(seed=3, days=20, projects=2, users=3, models=2), clock=lambda: clock[0])
    stream = STREAMS[1]
    day = timeutil.floor(EMULATOR_NOW, "1d") - DAY
    with run_server(emu) as url:
        assert run(store, url, streams=(stream,), since=SINCE, now=clock[0]).ok
        columns = ("project_id", "line_item", "amount_value", "currency", "quantity", "quantity_unit")
        stored = store.query(
            f"SELECT {', '.join(columns)} FROM costs WHERE stream = %s AND bucket_start = %s",
            (stream.id, to_datetime(day)),
        )
        ghost = ("proj_gone", "gpt-4o, input", Decimal("1.25"), "usd", Decimal("3"), "tokens")
        rows = [
            {"bucket_start": day, "bucket_end": day + DAY, **dict(zip(columns, r, strict=True))}
            for r in [*stored, ghost]
        ]
        store.commit_window(WindowWrite("main", stream, rows, day, day + DAY, "manual", int(clock[0])))
        moment = int(time.time())
        while int(time.time()) <= moment:
            time.sleep(0.05)
        assert run(store, url, streams=(stream,), now=clock[0]).counts.deleted == 1
        rerun = store.query("SELECT COUNT(*) FROM revisions")[0][0]
        assert run(store, url, streams=(stream,), now=clock[0]).ok
        assert store.query("SELECT COUNT(*) FROM revisions")[0][0] == rerun  # nothing changed, nothing logged
    found = changes(store, since=moment)
    gone = [r for r in found.restatements if dict(r.group).get("project_id") == "proj_gone"]
    assert {(r.metric, r.old, r.new, r.delta) for r in gone} == {
        ("amount_value", Decimal("1.25"), None, Decimal("-1.25")),
        ("quantity", Decimal("3"), None, Decimal("-3")),
    }
    assert found.spend_delta == Decimal("-1.25")
    assert [d.delta for d in deltas(store, since=moment, tables=["costs"]) if "proj_gone" in d.group_key] == [
        Decimal("-1.25"),
        Decimal("-3"),
    ]
    with as_of(store, moment) as past:
        assert past.query("SELECT amount_value, currency FROM costs WHERE project_id = 'proj_gone'") == [
            (Decimal("1.25"), None)  # the log follows metrics; a vanished row's currency is not known any more
        ]
    assert store.query("SELECT COUNT(*) FROM costs WHERE project_id = 'proj_gone'")[0][0] == 0


def test_a_closed_month_keeps_its_figures_and_a_restatement_is_an_adjustment(
    two_syncs: tuple[BaseStore, int, Tables],
) -> None:
    store, moment, _ = two_syncs
    november = date(2026, 11, 1)
    # Closed at the moment between the syncs, with the figures the store held then.
    with as_of(store, moment) as past:
        then = {(o, p): a for o, p, a, _ in month_totals(past, november)}
    with store.transaction():
        for (org, project), amount in then.items():
            store.execute(
                "INSERT INTO closed_months (org, month, level, project_id, amount, currency, closed_at)"
                " VALUES (%s, %s, 'project', %s, %s, 'usd', %s)",
                (org, november, project, amount, to_datetime(moment)),
            )
        store.execute(
            "INSERT INTO closed_months (org, month, level, project_id, amount, currency, closed_at)"
            " VALUES ('main', %s, 'org', NULL, %s, 'usd', %s)",
            (november, sum(then.values(), Decimal(0)), to_datetime(moment)),
        )
    now = {(o, p): a for o, p, a, _ in month_totals(store, november)}
    found = adjustments(store)
    total = next(a for a in found if a.level == "org")
    assert total.amount == sum(now.values(), Decimal(0)) - sum(then.values(), Decimal(0)) != 0
    for a in found:
        if a.level == "project":
            assert a.amount == now.get(("main", a.project_id), Decimal(0)) - then.get(("main", a.project_id), 0)
    restated = changes(store, since=moment).restatements
    assert any(r.after_close for r in restated) and all(
        r.after_close == r.is_spend for r in restated if r.table == "costs"
    )
    # Closing through the store layer records the present; nothing moved since, so nothing to adjust.
    store.execute("DELETE FROM closed_months")
    lines = close_month(store, november, ["main"], at=int(time.time()))
    assert sum(line.amount for line in lines if line.level == "project") == sum(now.values(), Decimal(0))
    assert adjustments(store) == []
    assert reopen_month(store, november, ["main"]) == 1 and closed_lines(store) == []


@pytest.mark.parametrize("store", ["duckdb"], indirect=True)
def test_wrong_history_arguments_are_refused_naming_them(store: BaseStore) -> None:
    """A reversed span answered "no changes", `deltas(tables="costs")` read the tables c, o, s, t, s and an unknown
    table answered nothing, `org=5` leaked DuckDB's Conversion Error, and a path for the store (here and in
    `build_report`) an AttributeError from deep inside; each is now a ParameterError naming the argument."""
    costs = Stream.create("costs", "1d", ("project_id", "line_item"))
    store.register_stream("acme", costs)
    row = {"project_id": "p", "line_item": "gpt, input", "amount_value": Decimal("1.5"), "currency": "usd"}
    start = EMULATOR_NOW - EMULATOR_NOW % DAY - DAY
    rows = [{"bucket_start": start, "bucket_end": start + DAY, "quantity": None, "quantity_unit": None, **row}]
    store.commit_window(WindowWrite("acme", costs, rows, start, start + DAY, "r", start))
    assert deltas(store, tables="costs") == deltas(store, tables=["costs"]) != []
    for call, said in [
        (lambda: changes(store, since="2026-11-10", until="2026-11-01"), "until: 2026-11-01T00:00:00Z is not after"),
        (lambda: deltas(store, since="2026-11-10", until="2026-11-10"), "until: 2026-11-10T00:00:00Z is not after"),
        (lambda: deltas(store, tables=["nope"]), "tables: 'nope' is not a table of the store"),
        (lambda: changes(store, org=5), "org: expected an org's name, got 5"),
        (lambda: changes("ledger.duckdb"), "store: expected an open store"),
        (lambda: build_report("ledger.duckdb", Period(date(2026, 10, 1), date(2026, 11, 1))), "db: expected an open"),
    ]:
        with pytest.raises(ParameterError) as caught:
            call()  # type: ignore[no-untyped-call]
        assert str(caught.value).startswith(said)


def _write_costs(store: BaseStore, stream: Stream, day: int, amount: str, seen: int) -> None:
    """One day's costs row of proj_a, ``amount`` dollars, as a sync sees it at ``seen``."""
    row = {"bucket_start": day, "bucket_end": day + DAY, "project_id": "proj_a", "line_item": "gpt-4o, input"}
    row |= {"amount_value": Decimal(amount), "currency": "usd", "quantity": None, "quantity_unit": None}
    store.commit_window(WindowWrite("main", stream, [row], day, day + DAY, "manual", seen))


def test_a_write_in_the_closes_second_is_after_it(store: BaseStore) -> None:
    """`close 2026-10 && sync`: the log's seen times are whole seconds, and a closed month was read back by the
    close's time, so a restatement seen in the close's second counted as closed: the statement's closed figures
    moved and its adjustments, and `after_close`, said nothing moved (the close waited its second out to avoid it).
    A close now records the log's high-water mark and is read back by it: here the write after the close is seen in
    the very second of the close, and is still after it."""
    stream, day, at = STREAMS[1], timeutil.to_unix("2026-10-20"), int(time.time())
    october = date(2026, 10, 1)

    def write(amount: str, seen: int) -> None:
        _write_costs(store, stream, day, amount, seen)

    store.register_stream("main", stream)
    write("10.00", at)
    (line,) = [c for c in close_month(store, october, ["main"], at=at) if c.level == "org"]
    write("12.50", at)  # a sync right after the close, in its second
    assert line.closed_seq is not None and line.amount == Decimal("10.00")
    with as_closed(store, line, buckets=month_bounds(october)) as past:
        assert [(p, a) for _, p, a, _ in month_totals(past, october)] == [("proj_a", Decimal("10.00"))]
    total = next(a for a in adjustments(store) if a.level == "org")
    assert (total.closed, total.current, total.amount) == (Decimal("10.00"), Decimal("12.50"), Decimal("2.50"))
    restated = [r for r in changes(store, since=at - 1).restatements if r.metric == "amount_value"]
    assert [(r.delta, r.after_close) for r in restated] == [(Decimal("2.50"), True)]
    statements = month_statements(store, october, by="project")
    assert statements.matches_close and statements.closed_exact == Decimal("10.00")
    assert (statements.total, statements.present_total) == (Decimal("10.00"), Decimal("12.50"))
    assert statements.adjustment_total == Decimal("2.50")


def test_a_closed_statements_adjustments_show_the_closed_figures_as_close_recorded_them(store: BaseStore) -> None:
    """Three projects of $576.604, $1.003 and $1.003: `close` recorded them and prints $576.60, $1.00, $1.00 (the
    month $578.61); the statement's adjustments showed the first as $576.61 closed, its share of the month by
    largest remainder. The closed figures are shown as recorded, to the cent, and closed + adjustment is the
    present figure, the adjustments adding up to the change of the month's total."""
    stream, day, at = STREAMS[1], timeutil.to_unix("2026-10-20"), int(time.time())
    october = date(2026, 10, 1)
    store.register_stream("main", stream)
    rows = [
        {"bucket_start": day, "bucket_end": day + DAY, "project_id": project, "line_item": "gpt-4o, input"}
        | {"amount_value": Decimal(amount), "currency": "usd", "quantity": None, "quantity_unit": None}
        for project, amount in (("proj_a", "576.604"), ("proj_b", "1.003"), ("proj_c", "1.003"))
    ]
    store.commit_window(WindowWrite("main", stream, rows, day, day + DAY, "manual", at - 1))
    recorded = [c for c in close_month(store, october, ["main"], at=at) if c.level == "project"]
    printed = {c.project_id: c.amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) for c in recorded}
    assert printed == {"proj_a": Decimal("576.60"), "proj_b": Decimal("1.00"), "proj_c": Decimal("1.00")}
    rows[1]["amount_value"] = Decimal("2.003")  # proj_b restated after the close
    store.commit_window(WindowWrite("main", stream, rows, day, day + DAY, "manual", at + 1))
    for allocation in ("none", "proportional"):
        statements = month_statements(store, october, by="project", allocation=allocation)
        assert statements.total == Decimal("578.61") and statements.present_total == Decimal("579.61")
        shown = {a.owner: (a.closed, a.present, a.amount) for a in statements.adjustments}
        assert shown == {
            "proj_a": (Decimal("576.60"), Decimal("576.60"), Decimal("0.00")),
            "proj_b": (Decimal("1.00"), Decimal("2.00"), Decimal("1.00")),
            "proj_c": (Decimal("1.00"), Decimal("1.00"), Decimal("0.00")),
        }
        assert statements.adjustment_total == statements.present_total - statements.total
        assert sum(s.total for s in statements.statements) == statements.total  # the statements: to the cent


def test_a_close_recorded_before_the_high_water_mark_is_read_by_its_time(store: BaseStore) -> None:
    """A close from before migration 0011 has no `closed_seq`: it is read back as it was, by `closed_at` (every
    entry seen up to its second is closed, a later one after it)."""
    stream, day, at = STREAMS[1], timeutil.to_unix("2026-10-20"), int(time.time())
    october = date(2026, 10, 1)

    def write(amount: str, seen: int) -> None:
        _write_costs(store, stream, day, amount, seen)

    store.register_stream("main", stream)
    write("10.00", at - 5)
    close_month(store, october, ["main"], at=at - 5)
    store.execute("UPDATE closed_months SET closed_seq = NULL")  # as an older usageledger recorded it
    write("11.00", at - 5)  # in the close's second: by time, part of the closed month
    write("12.50", at)
    (line,) = [c for c in closed_lines(store) if c.level == "org"]
    assert line.closed_seq is None
    with as_closed(store, line, buckets=month_bounds(october)) as past:
        assert [a for _, _, a, _ in month_totals(past, october)] == [Decimal("11.00")]
    restated = [r for r in changes(store, since=at - 6).restatements if r.metric == "amount_value"]
    assert [(r.delta, r.after_close) for r in restated] == [(Decimal("2.50"), True)]
    assert month_statements(store, october, by="project").closed_exact == Decimal("11.00")


def test_an_older_stores_closes_gain_an_empty_high_water_mark(store: BaseStore) -> None:
    """Migration 0011 adds `closed_seq` to a store's `closed_months`, its closes kept (with none: read by time)."""
    at = int(time.time())
    store.execute("ALTER TABLE closed_months DROP COLUMN closed_seq")
    store.execute("DELETE FROM schema_migrations WHERE name = '0011_close_seq'")
    store.execute(
        "INSERT INTO closed_months (org, month, level, project_id, amount, currency, closed_at)"
        " VALUES ('main', %s, 'org', NULL, 1, 'usd', %s)",
        (date(2026, 10, 1), to_datetime(at)),
    )
    assert store.pending_migrations() == ["0011_close_seq"]
    assert store.migrate() == ["0011_close_seq"]
    (line,) = closed_lines(store)
    assert (line.org, line.amount, line.closed_seq) == ("main", Decimal(1), None)


def test_a_close_waits_for_a_sync_transaction_in_flight(tmp_path: Path, new_store: Callable[[str, Path], str]) -> None:
    """Two writers of one PostgreSQL store: a sync's transaction has written a restatement (its log entry took a
    sequence number) but not committed when `close` runs. The close read the month without it, yet recorded a mark
    after its number, so reading the month back "as closed" took it in: the statement's closed figures were not the
    ones recorded. A close now waits for the writes in flight (and holds new ones) while it reads and marks."""
    stream, day, at = STREAMS[1], timeutil.to_unix("2026-10-20"), int(time.time())
    october = date(2026, 10, 1)
    url = new_store("postgres", tmp_path / "ledger.duckdb")  # a DuckDB file has one writer: nothing is in flight
    store = open_store(url)
    store.register_stream("main", stream)
    _write_costs(store, stream, day, "10.00", at)
    closed = threading.Event()
    lines: list[ClosedLine] = []

    def close() -> None:
        with open_store(url) as other:
            lines.extend(close_month(other, october, ["main"], at=at))
        closed.set()

    closer = threading.Thread(target=close)
    with store.transaction():  # the sync's transaction: written, not committed
        _write_costs(store, stream, day, "12.50", at)
        closer.start()
        assert not closed.wait(1.0)  # the close waits for it
    closer.join(30)
    assert closed.is_set()
    (total,) = [c for c in lines if c.level == "org"]
    assert total.amount == Decimal("12.50")  # the close saw the committed write, and marked after it
    statements = month_statements(store, october, by="project")
    assert statements.matches_close and statements.closed_exact == Decimal("12.50")
    assert statements.adjustment_total == Decimal("0")
    store.close()
