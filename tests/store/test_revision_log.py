"""The revision log: every insert, update and delete a sync makes is appended in its transaction, on both stores.

Restatements are real: an emulator with ``revisions`` grows recent buckets as its clock moves on. The log's one
invariant, checked after every step: for each stored row and metric, the log's entries chain (each old value is the
previous entry's new value) and end at the stored value, so the sum of deltas equals what the store holds.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from usageledger import timeutil
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.store import BaseStore, Stream, WindowWrite, open_store, revisions, table_for, tables
from usageledger.store._types import to_datetime
from usageledger.store.revisions import logged_metrics
from usageledger.sync import Org

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import emulator_process, finish, launcher, run_cli, sync_args
from fixtures.stores import copy_duckdb
from fixtures.syncing import run

DAY = 86400
STREAMS = (Stream.create("completions", "1d", ("project_id", "model")), Stream.create("costs", "1d", ("project_id",)))
SINCE = timeutil.floor(EMULATOR_NOW - 10 * DAY, "1d")
LATER = str(EMULATOR_NOW + 2 * DAY)
"""The second emulator's now in the kill test: two days on, so the re-read restates recent buckets."""
FIRST_SINCE = "2026-11-06"
"""Where the kill test's first sync starts: the two weeks before the emulator's now (2026-11-20)."""
LOG = (
    "SELECT seq, org, stream, endpoint_table, bucket_start, group_key, change, metric, old_value, new_value, run_id"
    " FROM revisions ORDER BY seq, metric"  # the entries of one inserted row share its seq
)


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path, new_store: Callable[[str, Path], str]) -> Iterator[BaseStore]:
    """A fresh store of each kind."""
    url = new_store(request.param, tmp_path / "ledger.duckdb")
    with open_store(url) as opened:
        yield opened


@pytest.fixture
def revising() -> Iterator[tuple[str, list[float]]]:
    """An emulator whose recent buckets grow as its clock moves on: its URL and its (settable) clock."""
    clock = [float(EMULATOR_NOW)]
    emu = Emulator(
        EmulatorConfig(seed=3, days=20, projects=2, users=3, models=2, revisions=True), clock=lambda: clock[0]
    )
    with run_server(emu) as url:
        yield url, clock


def assert_log_explains_the_store(store: BaseStore) -> None:
    """Each (row, metric)'s entries chain old→new from nothing, and end at the stored value (NULL once deleted)."""
    last: dict[tuple[Any, ...], Decimal | None] = {}
    for _, org, stream, table, start, key, change, metric, old, new, _ in store.query(LOG):
        at = (table, org, stream, start, key, metric)
        assert last.get(at) == old, f"{at}: entry {change} starts from {old}, the log held {last.get(at)}"
        assert (change != "insert" or old is None) and (change != "delete" or new is None)
        last[at] = new
    stored: dict[tuple[Any, ...], Decimal | None] = {}
    for spec in tables():
        metrics = logged_metrics(spec)
        cols = ", ".join(f'"{m}"' for m in metrics)
        for row in store.query(f"SELECT org, stream, bucket_start, group_key, {cols} FROM {spec.name}"):
            for metric, value in zip(metrics, row[4:], strict=True):
                if value is not None:
                    stored[(spec.name, *row[:4], metric)] = Decimal(value)
    logged = {k: v for k, v in last.items() if v is not None}
    assert logged == stored


def bucket_sums_from_deltas(store: BaseStore, table: str, metric: str) -> dict[Any, Decimal]:
    """Per bucket, the sum of every delta the log holds for one metric."""
    rows = store.query(
        "SELECT bucket_start, SUM(COALESCE(new_value, 0) - COALESCE(old_value, 0)) FROM revisions"
        " WHERE endpoint_table = %s AND metric = %s GROUP BY bucket_start",
        (table, metric),
    )
    return {r[0]: Decimal(r[1]) for r in rows}


def bucket_sums_stored(store: BaseStore, table: str, metric: str) -> dict[Any, Decimal]:
    rows = store.query(f'SELECT bucket_start, SUM("{metric}") FROM {table} GROUP BY bucket_start')
    return {r[0]: Decimal(r[1]) for r in rows}


def test_a_restatement_is_logged_with_old_and_new_values(store: BaseStore, revising: tuple[str, list[float]]) -> None:
    """Sync, move the revising emulator two days on, sync: updates carry the old and new values, money as Decimal."""
    url, clock = revising
    first = run(store, url, streams=STREAMS, since=SINCE, now=clock[0])
    assert first.ok
    inserted = store.query("SELECT COUNT(*) FROM revisions WHERE change = 'insert'")[0][0]
    assert inserted > 0 and store.query("SELECT COUNT(*) FROM revisions WHERE change <> 'insert'")[0][0] == 0
    assert_log_explains_the_store(store)
    before = bucket_sums_stored(store, "costs", "amount_value")
    clock[0] += 2 * DAY
    second = run(store, url, streams=STREAMS, now=clock[0])
    assert second.ok and second.counts.updated > 0
    updates = store.query(
        "SELECT bucket_start, old_value, new_value, run_id FROM revisions"
        " WHERE change = 'update' AND endpoint_table = 'costs' AND metric = 'amount_value'"
    )
    assert len(updates) > 0
    run_ids = {r[0] for r in store.query("SELECT run_id FROM sync_runs")}
    for start, old, new, run_id in updates:
        assert isinstance(old, Decimal) and isinstance(new, Decimal) and old != new
        assert run_id in run_ids and start in before
    restated = {r[0] for r in updates}
    after = bucket_sums_stored(store, "costs", "amount_value")
    assert all(after[day] != before[day] for day in restated)
    assert_log_explains_the_store(store)
    for table, metric in (("costs", "amount_value"), ("usage_completions", "input_tokens")):
        assert bucket_sums_from_deltas(store, table, metric) == bucket_sums_stored(store, table, metric)


def test_the_log_is_append_only_and_a_rerun_that_changes_nothing_adds_nothing(
    store: BaseStore, revising: tuple[str, list[float]]
) -> None:
    """A second sync appends after the first's entries and leaves them as they were; an unchanged re-run adds none."""
    url, clock = revising
    assert run(store, url, streams=STREAMS, since=SINCE, now=clock[0]).ok
    first = store.query(LOG)
    clock[0] += DAY
    assert run(store, url, streams=STREAMS, now=clock[0]).ok
    second = store.query(LOG)
    assert len(second) > len(first) and second[: len(first)] == first
    third = run(store, url, streams=STREAMS, now=clock[0])
    assert third.ok and third.counts.unchanged > 0 and third.counts.updated == third.counts.inserted == 0
    assert store.query(LOG) == second


def test_a_row_that_vanishes_is_logged_as_a_delete(store: BaseStore, revising: tuple[str, list[float]]) -> None:
    """A stored row the re-read no longer returns is deleted, and the log records it with its old values."""
    url, clock = revising
    stream = STREAMS[1]
    assert run(store, url, streams=(stream,), since=SINCE, now=clock[0]).ok
    day = timeutil.floor(EMULATOR_NOW, "1d") - DAY
    columns = ("project_id", "amount_value", "currency", "quantity", "quantity_unit")
    stored = store.query(
        f"SELECT {', '.join(columns)} FROM costs WHERE stream = %s AND bucket_start = %s", (stream.id, to_datetime(day))
    )
    ghost = [("proj_gone", Decimal("1.25"), "usd", Decimal("3"), None)]
    rows = [
        {"bucket_start": day, "bucket_end": day + DAY, **dict(zip(columns, r, strict=True))} for r in stored + ghost
    ]
    # The day re-read with one more row than the API has (a row it later withdraws).
    store.commit_window(WindowWrite("main", stream, rows, day, day + DAY, "manual", int(clock[0])))
    result = run(store, url, streams=(stream,), now=clock[0])
    assert result.counts.deleted == 1
    gone = store.query(
        "SELECT change, metric, old_value, new_value FROM revisions WHERE group_key = %s ORDER BY seq",
        ('["proj_gone"]',),
    )
    assert gone == [
        ("insert", "amount_value", None, Decimal("1.25")),
        ("insert", "quantity", None, Decimal("3")),
        ("delete", "amount_value", Decimal("1.25"), None),
        ("delete", "quantity", Decimal("3"), None),
    ]
    assert_log_explains_the_store(store)


@pytest.fixture(scope="module")
def two_clocks() -> Iterator[tuple[str, str]]:
    """Two revising `usageledger emulator` processes of one organisation: at the test's now, and two days later."""
    with emulator_process("--revisions") as now, emulator_process("--revisions", "--now", LATER) as later:
        yield now, later


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_sigkill_mid_commit_leaves_the_log_and_the_rows_consistent(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, two_clocks: tuple[str, str]
) -> None:
    """SIGKILL right after a write (or the log append) or a watermark of a revising re-read: log and rows agree."""
    rng = random.Random()
    first: str | None = None  # the store after the first sync, made once and copied for the second kill
    for i, (phase, at) in enumerate((("write", rng.randint(1, 12)), ("watermark", rng.randint(1, 6)))):
        where = f"{kind}, {phase} #{at}"
        if kind == "duckdb":
            url = str(tmp_path / f"k{i}.duckdb")
            if first is not None:
                copy_duckdb(first, url)
        else:
            name = f"revkill_{i}_{rng.randrange(10**9)}"
            url = request.getfixturevalue("_pg_cluster").createdb(name, template=first)
        if first is None:
            # The first sync (no directory: nothing here reads it, and no kill point falls in it), of the two weeks
            # before now, not 90 days: the re-read that is killed reads from the watermarks whatever the history, and
            # every check below reads the whole store in Python.
            first_sync = sync_args(url, "--since", FIRST_SINCE, "--no-directory")
            code, _, err = finish(run_cli([*launcher(), *first_sync], two_clocks[0], tmp_path))
            assert code == 0, err
            if kind == "duckdb":
                first = str(tmp_path / "first.duckdb")
                copy_duckdb(url, first)
            else:
                first = name + "_first"
                request.getfixturevalue("_pg_cluster").createdb(first, template=name)
        args = [*launcher(), *sync_args(url, "--now", LATER, "--no-directory")]
        code, _, err = finish(run_cli(args, two_clocks[1], tmp_path, KILL_PHASE=phase, KILL_AT=str(at)))
        assert code == -9, f"{where}: the sync finished before its kill point: {err}"
        with open_store(url) as opened:
            assert_log_explains_the_store(opened)
        code, _, err = finish(run_cli(args, two_clocks[1], tmp_path))
        assert code == 0, f"{where}: {err}"
        with open_store(url) as opened:
            assert opened.query("SELECT COUNT(*) FROM revisions WHERE change = 'update'")[0][0] > 0, where
            assert_log_explains_the_store(opened)


def test_fresh_windows_log_one_insert_per_metric(store: BaseStore, revising: tuple[str, list[float]]) -> None:
    """A first sync (bulk inserts) logs each non-NULL metric of each row once, old NULL, new the stored value."""
    url, clock = revising
    assert run(store, url, streams=STREAMS, since=SINCE, now=clock[0]).ok
    spec = table_for("costs")
    rows = store.query(f"SELECT COUNT(*) FROM {spec.name}")[0][0]
    logged = store.query("SELECT COUNT(*) FROM revisions WHERE endpoint_table = 'costs' AND metric = 'amount_value'")
    assert logged[0][0] == rows > 0
    assert store.query("SELECT COUNT(*) FROM revisions WHERE old_value IS NOT NULL")[0][0] == 0


def test_a_store_written_before_the_log_gets_a_baseline_when_migrated(
    store: BaseStore, revising: tuple[str, list[float]]
) -> None:
    """Migration 0006 logs the rows an older store holds as inserts, so the log explains it before the next sync."""
    url, clock = revising
    assert run(store, url, streams=STREAMS, since=SINCE, now=clock[0]).ok
    rows = store.query("SELECT COUNT(*) FROM costs")[0][0]
    with store.transaction():  # the store as a release before the log left it
        drop_the_log(store)
        store.execute("DROP SEQUENCE revisions_seq")
        store.execute(
            "DELETE FROM schema_migrations WHERE name IN ('0006_revision_log', %s)", (revisions.INSERTS_MIGRATION,)
        )
    assert store.migrate() == ["0006_revision_log", revisions.INSERTS_MIGRATION]
    baseline = store.query(
        "SELECT COUNT(*), MIN(run_id), MAX(run_id) FROM revisions WHERE endpoint_table = 'costs'"
        " AND metric = 'amount_value'"
    )
    assert baseline == [(rows, "0006_revision_log", "0006_revision_log")]
    assert_log_explains_the_store(store)
    clock[0] += 2 * DAY
    assert run(store, url, streams=STREAMS, now=clock[0]).ok
    assert_log_explains_the_store(store)


def test_removing_an_org_removes_its_history_and_nothing_else(
    store: BaseStore, revising: tuple[str, list[float]]
) -> None:
    """`delete_org` (demo --remove) takes the org's log entries with its rows; another org's entries stay."""
    url, clock = revising
    orgs = [Org("main", FAKE_ADMIN_KEY, url), Org("other", FAKE_ADMIN_KEY, url)]
    assert run(store, url, streams=STREAMS, since=SINCE, now=clock[0], orgs=orgs).ok
    other = store.query("SELECT COUNT(*) FROM revisions WHERE org = 'other'")[0][0]
    assert other > 0
    store.delete_org("main")
    assert store.query("SELECT org, COUNT(*) FROM revisions GROUP BY org") == [("other", other)]
    assert_log_explains_the_store(store)


def drop_the_log(store: BaseStore) -> None:
    """Drop the ``revisions`` view and every table behind it (not the sequence)."""
    store.execute("DROP VIEW revisions")
    for table in revisions.log_tables():
        store.execute(f"DROP TABLE {table}")


def test_a_store_with_the_narrow_log_keeps_every_entry_when_its_inserts_go_wide(
    store: BaseStore, revising: tuple[str, list[float]]
) -> None:
    """Migration 0009 renames the narrow log (one row per entry, as 0006 made it) to ``revision_entries`` and puts
    the ``revisions`` view over it and the new wide insert tables: what the log said before, it says after, and the
    next sync's fresh inserts go wide."""
    url, clock = revising
    assert run(store, url, streams=STREAMS, since=SINCE, now=clock[0]).ok
    entries = store.query(LOG)
    columns = "seq, org, stream, endpoint_table, bucket_start, bucket_end, group_key, change, metric, old_value,"
    columns += " new_value, run_id, seen_at"
    rows = store.query(f"SELECT {columns} FROM revisions ORDER BY seq, metric")
    with store.transaction():  # the store as the release with the narrow log left it
        drop_the_log(store)
        store.execute(revisions.migration_statements(store.dialect, {})[1])  # 0006's CREATE TABLE revisions
        placeholders = ", ".join(["%s"] * 13)
        for row in rows:
            store.execute(f"INSERT INTO revisions ({columns}) VALUES ({placeholders})", row)
        store.execute("DELETE FROM schema_migrations WHERE name = %s", (revisions.INSERTS_MIGRATION,))
    assert store.migrate() == [revisions.INSERTS_MIGRATION]
    assert store.query(LOG) == entries
    assert store.query(f"SELECT COUNT(*) FROM {revisions.ENTRIES}")[0][0] == len(entries)
    assert_log_explains_the_store(store)
    clock[0] += 2 * DAY
    more = (*STREAMS, Stream.create("completions", "1d", ("model",)))  # a new stream: its windows are fresh
    assert run(store, url, streams=more, since=SINCE, now=clock[0]).ok
    wide = sum(store.query(f"SELECT COUNT(*) FROM {revisions.insert_table(s)}")[0][0] for s in tables())
    assert wide > 0
    assert store.query(LOG)[: len(entries)] == entries
    assert_log_explains_the_store(store)
