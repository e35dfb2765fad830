"""`export --format delta`: Delta Lake tables that a re-run MERGEs, rewriting only the months that changed.

The ledger is synced from an emulator with revisions, exported, then synced again from the same organisation two days
later (recent buckets have grown, new days have come) with one early day deleted from the store (rows that vanished).
The re-run's tables must equal a fresh export of the same store, read back three ways: ``deltalake``, polars, and
DuckDB's delta extension (the ``duckdb-extension-delta`` wheel, pinned to DuckDB 1.5.5, which ``scripts/bootstrap``
installs apart in ``.venv/duckdb-delta``; it runs in a subprocess of its own).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest

from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.errors import ParameterError
from usageledger.export_delta import DeltaExportResult, delta_schema, export_delta
from usageledger.store import BaseStore, open_store, tables

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.syncing import DAY, run

if TYPE_CHECKING:
    from deltalake import DeltaTable

DUCKDB_DELTA = Path(sys.prefix) / "duckdb-delta"
KEY = [(c, "ascending") for c in ("org", "stream", "bucket_start", "group_key")]


def _sync(store: BaseStore, now: int) -> None:
    """A sync at ``now`` (the first 100 days back; later ones from the watermarks, re-reading the lag window)."""
    config = EmulatorConfig(seed=5, days=150, projects=3, users=4, models=3, now=now, revisions=True)
    with run_server(Emulator(config)) as url:
        since = {"since": EMULATOR_NOW - 100 * DAY} if now == EMULATOR_NOW else {}
        assert run(store, url, now=now, **since).ok


@contextlib.contextmanager
def _costs_ledger(where: str | Path, *, days: int, since_days: int) -> Iterator[BaseStore]:
    """A store at ``where`` holding the last ``since_days`` days of the daily costs stream of an emulated org of
    ``days`` days (seed 5): what most tests below export, change and export again."""
    from usageledger.store import Stream

    with open_store(str(where)) as store:
        with run_server(Emulator(EmulatorConfig(seed=5, days=days, now=EMULATOR_NOW))) as url:
            assert run(store, url, streams=(Stream.create("costs", "1d"),), since=EMULATOR_NOW - since_days * DAY).ok
        yield store


def _delta_table(path: Path) -> DeltaTable:
    """The Delta table at ``path``. deltalake and polars are imported where used: deltalake loads pyarrow.dataset
    and pandas, polars its own engine, ~0.4 s of CPU that every pytest-xdist worker would pay to collect this
    module."""
    from deltalake import DeltaTable

    return DeltaTable(str(path))


def _read(path: Path) -> pa.Table:
    return _delta_table(path).to_pyarrow_table().sort_by(KEY)


def _store_rows(store: BaseStore, name: str) -> int:
    return int(store.query(f"SELECT COUNT(*) FROM {name}")[0][0])


def _duckdb_read(lake: Path, fresh: Path, names: list[str]) -> dict[str, Any]:
    """Per table, read by DuckDB's delta extension: rows, the cost total, and rows in one lake but not the other."""
    script = """
import json, os, sys
import duckdb, duckdb_extension_delta
ext = os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "v" + duckdb.__version__)
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")  # stdout carries only the JSON
con.execute(f"LOAD '{ext}/delta.duckdb_extension'")
lake, fresh, names = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
out = {}
for n in names:
    a, b = f"delta_scan('{lake}/{n}')", f"delta_scan('{fresh}/{n}')"
    only = con.sql(f"SELECT COUNT(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b})").fetchone()[0]
    only += con.sql(f"SELECT COUNT(*) FROM (SELECT * FROM {b} EXCEPT ALL SELECT * FROM {a})").fetchone()[0]
    rows = con.sql(f"SELECT COUNT(*) FROM {a}").fetchone()[0]
    total = con.sql(f"SELECT SUM(amount_value) FROM {a}").fetchone()[0] if n == "costs" else None
    out[n] = {"rows": rows, "differ": only, "total": None if total is None else str(total)}
print(json.dumps(out))
"""
    proc = subprocess.run(
        [sys.executable, "-S", "-c", script, str(lake), str(fresh), ",".join(names)],
        env={"PYTHONPATH": str(DUCKDB_DELTA), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_a_rerun_after_revisions_equals_a_fresh_export(tmp_path: Path) -> None:
    """Merge after revisions and deletions == fresh export (deltalake, polars, DuckDB); only changed months written."""
    lake, fresh = tmp_path / "lake", tmp_path / "fresh"
    with open_store(str(tmp_path / "ledger.duckdb")) as store:
        _sync(store, EMULATOR_NOW)
        first = export_delta(store, lake)
        assert all(t.created and t.rewritten and len(t.rewritten) == t.months for t in first.tables)
        assert first.total == sum(_store_rows(store, s.name) for s in tables())

        again = export_delta(store, lake)  # nothing changed: nothing written, no new table version
        assert again.rewritten == 0 and again.total == first.total
        assert all(_delta_table(t.path).version() == 0 for t in again.tables)

        _sync(store, EMULATOR_NOW + 2 * DAY)  # the clock moved: recent buckets revised, two new days
        gone = store.execute(  # and one early day vanished from the ledger
            "DELETE FROM costs WHERE bucket_start >= %s AND bucket_start < %s",
            (_ts(EMULATOR_NOW - 95 * DAY), _ts(EMULATOR_NOW - 94 * DAY)),
        )
        assert gone > 0
        merged = export_delta(store, lake)
        export_delta(store, fresh)
        names = [s.name for s in tables()]
        specs = {s.name: s for s in tables()}
        counts = {s.name: _store_rows(store, s.name) for s in tables()}
        cost_total = store.query("SELECT SUM(amount_value) FROM costs")[0][0]

    _check_merge(merged)
    for name in names:
        a, b = _read(lake / name), _read(fresh / name)
        assert a.num_rows == counts[name]
        assert a.equals(b), f"{name}: the merged table differs from a fresh export"
        assert a.schema.names == delta_schema(specs[name]).names
        import polars as pl

        pa_from_polars = pl.read_delta(str(lake / name)).sort(["org", "stream", "bucket_start", "group_key"])
        assert pa_from_polars.equals(
            pl.read_delta(str(fresh / name)).sort(["org", "stream", "bucket_start", "group_key"])
        )
        assert pa_from_polars.height == counts[name]
    read = _duckdb_read(lake, fresh, names)
    assert {n: (r["rows"], r["differ"]) for n, r in read.items()} == {n: (counts[n], 0) for n in names}
    assert read["costs"]["total"] == str(cost_total)  # the money is exact through Delta and back


def _check_merge(merged: DeltaExportResult) -> None:
    """Only the changed months were rewritten: the recent ones (revisions, new days) and the deleted day's."""
    costs = next(t for t in merged.tables if t.table == "costs")
    assert costs.deleted > 0 and (costs.updated + costs.inserted) > 0
    assert "2026-08" in costs.rewritten  # the deleted day (2026-08-18)
    assert "2026-11" in costs.rewritten  # revisions and new days
    assert "2026-09" not in costs.rewritten  # untouched months are left alone
    assert 0 < merged.rewritten < merged.months
    for t in merged.tables:
        assert not t.created and _delta_table(t.path).version() == (1 if t.rewritten else 0)


def _ts(at: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC)


def test_the_store_and_foreign_directories_are_never_written(tmp_path: Path) -> None:
    """PATH is never the store, nor a directory of a table name that holds something else; nothing is written."""
    db = tmp_path / "ledger.duckdb"
    with open_store(str(db)) as store:
        with pytest.raises(ParameterError, match="is the DuckDB store"):
            export_delta(store, db)
        foreign = tmp_path / "out" / "costs"
        foreign.mkdir(parents=True)
        (foreign / "notes.txt").write_text("mine")
        with pytest.raises(ParameterError, match="is not a Delta table"):
            export_delta(store, tmp_path / "out")
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["costs"]
        assert (foreign / "notes.txt").read_text() == "mine"
    assert db.stat().st_size > 0


def test_the_cli_exports_then_merges_and_refuses_filters_in_one_line(tmp_path: Path) -> None:
    """`export --format delta`: the first run writes every month, the second none; filters and stdout are refused."""
    from typer.testing import CliRunner

    from usageledger.cli import app

    db = str(tmp_path / "ledger.duckdb")
    with _costs_ledger(db, days=90, since_days=60) as store:
        rows = _store_rows(store, "costs")
    runner = CliRunner()
    args = ["export", "--format", "delta", "--store", db, "--endpoint", "costs", "--output", str(tmp_path / "lake")]
    first = runner.invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert f"Exported {rows:,} rows to {tmp_path / 'lake'} as 1 Delta table (3 of 3 month partitions written)." in (
        first.stderr
    )
    second = runner.invoke(app, args, terminal_width=200)
    assert second.exit_code == 0 and "(0 of 3 month partitions written)" in second.stderr, second.output
    assert _read(tmp_path / "lake" / "costs").num_rows == rows
    without_output = args[: args.index("--output")]
    mirrors = "not with --format delta, which mirrors the whole ledger;"
    for extra, message in (
        (["--org", "x"], f"--org: {mirrors} filter when you read it"),
        (["--partition-by", "day"], f"--partition-by: {mirrors} its tables are partitioned by month"),
        (
            ["--with-names"],
            f"--with-names: {mirrors} join the names when you read it (export --with-names to CSV or Parquet has them)",
        ),
        (
            ["--deltas"],
            f"--deltas: {mirrors} export --deltas to CSV or Parquet, or compare two versions of the Delta tables",
        ),
        (["--output", "-"], "--output: --format delta writes a directory of tables; give one with --output DIR"),
    ):
        given = [*without_output, *extra] if extra[0] == "--output" else [*args, *extra]
        refused = runner.invoke(app, given, terminal_width=200)
        assert refused.exit_code == 2 and refused.stderr.strip() == f"error: {message}", refused.output


def test_a_postgres_ledger_exports_exactly_and_a_rerun_writes_nothing(migrated_pg_url: str, tmp_path: Path) -> None:
    """From PostgreSQL too: every row, the money exact, and a re-run with nothing new writes no partition."""
    import pyarrow.compute as pc

    with (
        open_store(migrated_pg_url) as store,
        run_server(Emulator(EmulatorConfig(seed=5, days=90, now=EMULATOR_NOW))) as url,
    ):
        assert run(store, url, since=EMULATOR_NOW - 60 * DAY).ok
        first = export_delta(store, tmp_path / "lake")
        again = export_delta(store, tmp_path / "lake")
        counts = {s.name: _store_rows(store, s.name) for s in tables()}
        total = store.query("SELECT SUM(amount_value) FROM costs")[0][0]
    assert {t.table: t.rows for t in first.tables} == counts
    assert first.rewritten == first.months > 0 and again.rewritten == 0
    assert pc.sum(_read(tmp_path / "lake" / "costs").column("amount_value")).as_py() == total


def test_another_stores_export_is_refused_and_the_lake_keeps_its_rows(tmp_path: Path) -> None:
    """A lake mirrors one store: the demo's synthetic ledger exported over a real one would have replaced it whole.
    Another store's export is refused before anything is written; the owner's own re-runs go on merging."""
    from usageledger.store import Stream
    from usageledger.sync import Org

    lake = tmp_path / "lake"
    costs = (Stream.create("costs", "1d"),)
    with run_server(Emulator(EmulatorConfig(seed=5, days=40, now=EMULATOR_NOW))) as url:
        with open_store(str(tmp_path / "real.duckdb")) as real:
            assert run(real, url, streams=costs, since=EMULATOR_NOW - 30 * DAY).ok
            assert export_delta(real, lake, endpoints=["costs"]).total == _store_rows(real, "costs")
            real_id = real.identity()
        with open_store(str(tmp_path / "demo.duckdb")) as demo:
            demo_org = Org("demo", FAKE_ADMIN_KEY, url, synthetic=True)
            assert run(demo, url, streams=costs, orgs=[demo_org], since=EMULATOR_NOW - 10 * DAY).ok
            assert demo.identity() != real_id
            before = _delta_table(lake / "costs").version()
            with pytest.raises(ParameterError) as refused:
                export_delta(demo, lake)
            assert str(refused.value) == (
                f"--output: {lake / 'costs'} mirrors another store ({real_id}); exporting this store "
                "(synthetic data: the demo's or the emulator's) over it would replace that store's rows: export "
                "each store to a directory of its own"
            )
            assert sorted(p.name for p in lake.iterdir()) == ["costs"]  # nothing written, not even the other tables
            assert _delta_table(lake / "costs").version() == before
    with open_store(str(tmp_path / "real.duckdb")) as real:
        assert real.identity() == real_id  # kept for the store's life
        assert _read(lake / "costs").column("org").unique().to_pylist() == ["main"]
        assert export_delta(real, lake, endpoints=["costs"]).rewritten == 0
        # A table written before tables named their store is taken over by the first store that exports to it;
        # a comment someone set on the table stays, the store's line after it.
        _delta_table(lake / "costs").alter.set_table_description("Spend, for finance")
        assert export_delta(real, lake, endpoints=["costs"]).rewritten == 0
        described = _delta_table(lake / "costs").metadata().description or ""
        assert (
            described.startswith("Spend, for finance\nThe costs table of usageledger store ") and real_id in described
        )


def test_wrong_delta_export_arguments_are_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`export_delta(store, "")` wrote the lake's tables into the working folder, `endpoints="costs"` was the
    endpoints c, o, s, t, s, and `batch_rows=0` a DeltaError quoting Arrow's C Data interface; each is now one
    ParameterError naming the argument (one string is one endpoint), and nothing is written."""
    monkeypatch.chdir(tmp_path)
    with open_store(str(tmp_path / "ledger.duckdb")) as store:
        for arguments, param in [({"path": ""}, "path"), ({"path": None}, "path"), ({"batch_rows": 0}, "batch_rows")]:
            call: dict[str, Any] = {"path": tmp_path / "lake", "endpoints": ["costs"], **arguments}
            with pytest.raises(ParameterError) as caught:
                export_delta(store, call.pop("path"), **call)
            assert caught.value.param == param
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("ledger.duckdb")) == []
        assert [t.table for t in export_delta(store, tmp_path / "lake", endpoints="costs").tables] == ["costs"]


def test_an_export_waits_for_another_export_of_the_same_lake(tmp_path: Path) -> None:
    """Two exports into one lake at once both wrote every table, the later appending each row again (a lake of
    doubled rows that MERGE never repaired): one waits for the other's lock, saying so, then writes only what
    differs."""
    import fcntl
    import logging
    import os
    import shutil
    import threading

    lake = tmp_path / "lake"
    lake.mkdir()
    waiting = threading.Event()

    class _Told(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "another usageledger export is writing it" in record.getMessage():
                waiting.set()

    told = _Told()
    logging.getLogger("usageledger.export").addHandler(told)
    db = str(tmp_path / "ledger.duckdb")
    with _costs_ledger(db, days=40, since_days=30) as store:
        rows = _store_rows(store, "costs")
        results: list[DeltaExportResult] = []
        held = os.open(lake, os.O_RDONLY)  # what the other export holds while it writes
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            later = threading.Thread(target=lambda: results.append(export_delta(store, lake, endpoints=["costs"])))
            later.start()
            assert waiting.wait(60), "the second export did not wait for the lake's lock"
            assert not (lake / "costs").exists()  # nothing written while the other export holds the lake
            export_delta(store, tmp_path / "other", endpoints=["costs"])  # the other export writes its table...
            shutil.copytree(tmp_path / "other" / "costs", lake / "costs")  # ...into the lake, then lets go
        finally:
            os.close(held)
            logging.getLogger("usageledger.export").removeHandler(told)
        later.join(120)
    assert results and results[0].total == rows and results[0].rewritten == 0  # it found the table equal
    assert _read(lake / "costs").num_rows == rows  # each row once


def test_a_lake_an_earlier_race_doubled_is_repaired_by_the_next_export(tmp_path: Path) -> None:
    """Two exports at once (before they took turns) left a lake with each row twice; the lock stopped new doubling,
    but a doubled lake stayed doubled: its months differed from the store, so each export MERGEd them again, and a
    MERGE matches both copies of a row to its one source row, updating and deleting neither. A month that holds a
    key twice is now rewritten whole, in the same export, and the next export finds it equal."""
    from deltalake import write_deltalake

    lake = tmp_path / "lake"
    with _costs_ledger(str(tmp_path / "ledger.duckdb"), days=70, since_days=60) as store:
        rows = _store_rows(store, "costs")
        first = export_delta(store, lake, endpoints=["costs"])
        assert first.total == rows and first.tables[0].months >= 2
        held = _delta_table(lake / "costs").to_pyarrow_table()
        write_deltalake(str(lake / "costs"), held, mode="append")  # the second export of the race: every row again
        assert _read(lake / "costs").num_rows == 2 * rows
        repaired = export_delta(store, lake, endpoints=["costs"])
        export_delta(store, tmp_path / "fresh", endpoints=["costs"])
        assert _read(lake / "costs").equals(_read(tmp_path / "fresh" / "costs"))  # each row once again
        assert repaired.rewritten == first.tables[0].months and repaired.tables[0].deleted == rows
        again = export_delta(store, lake, endpoints=["costs"])
        assert again.rewritten == 0 and _read(lake / "costs").num_rows == rows


def test_an_output_inside_a_delta_table_is_refused(tmp_path: Path) -> None:
    """`--output lake/costs` (a table, not the lake) nested twelve tables in the costs table's directory, where its
    VACUUM deletes every file the table's log does not name: refused, the table and the lake left as they were."""

    db = str(tmp_path / "ledger.duckdb")
    with _costs_ledger(db, days=40, since_days=10) as store:
        export_delta(store, tmp_path / "lake", endpoints=["costs"])
        before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "lake").rglob("*"))
        table = tmp_path / "lake" / "costs"
        month = next(table.glob("month=*"))
        for output, said in ((table, "is the Delta table"), (month / "x", "is inside the Delta table")):
            with pytest.raises(ParameterError, match=f"{said} {table}: a lake is a directory of tables, not a table"):
                export_delta(store, output, endpoints=["costs"])
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "lake").rglob("*")) == before


COSTS_KEY = "org = %s AND stream = %s AND bucket_start = %s AND group_key = %s"


def _month_keys(store: BaseStore, month: str, n: int) -> list[tuple[Any, ...]]:
    """``n`` natural keys of the store's costs rows of ``month`` (``YYYY-MM``), the same ones every time."""
    from datetime import UTC, datetime

    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    sql = (
        "SELECT org, stream, bucket_start, group_key FROM costs WHERE bucket_start >= %s AND bucket_start < %s"
        f" ORDER BY bucket_start, group_key LIMIT {n}"
    )
    return [tuple(row) for row in store.query(sql, (start, end))]


def _change_months(store: BaseStore, months: list[str]) -> None:
    """In the first month two rows' money moves by the smallest step a decimal(38,18) holds, nothing else; in the
    last, one row goes and a new one (another group) comes; the months between are left alone."""
    for key in _month_keys(store, months[0], 2):
        changed = store.execute(
            f"UPDATE costs SET amount_value = amount_value + 0.000000000000000001 WHERE {COSTS_KEY}", key
        )
        assert changed == 1
    gone, copied = _month_keys(store, months[-1], 2)
    assert store.execute(f"DELETE FROM costs WHERE {COSTS_KEY}", gone) == 1
    columns = [f.name for f in delta_schema(next(s for s in tables() if s.name == "costs")) if f.name != "month"]
    picked = ", ".join("group_key || '-new'" if c == "group_key" else c for c in columns)
    added = store.execute(
        f"INSERT INTO costs ({', '.join(columns)}) SELECT {picked} FROM costs WHERE {COSTS_KEY}", copied
    )
    assert added == 1


def test_a_rerun_rewrites_the_months_whose_rows_changed_and_counts_what_changed(tmp_path: Path) -> None:
    """A month whose rows differ only by 1e-18 of one row's money, and one that lost a row and gained another, are
    found and rewritten in one commit, counted as a MERGE counted them (2 updated, 1 inserted, 1 deleted); the
    month between keeps its files; the table equals a fresh export, and the next run writes nothing."""

    lake = tmp_path / "lake"
    with _costs_ledger(str(tmp_path / "ledger.duckdb"), days=90, since_days=60) as store:
        export_delta(store, lake, endpoints=["costs"])
        table = _delta_table(lake / "costs")
        months = sorted(p["month"] for p in table.partitions())
        assert len(months) == 3
        untouched = set(table.file_uris(file_pruning_predicate=[("month", "=", months[1])]))
        _change_months(store, months)
        merged = export_delta(store, lake, endpoints=["costs"]).tables[0]
        export_delta(store, tmp_path / "fresh", endpoints=["costs"])
        again = export_delta(store, lake, endpoints=["costs"])
        rows = _store_rows(store, "costs")
    assert merged.rewritten == (months[0], months[2])
    assert (merged.inserted, merged.updated, merged.deleted, merged.rows) == (1, 2, 1, rows)
    table = _delta_table(lake / "costs")
    assert table.version() == 1  # one commit for both months
    assert set(table.file_uris(file_pruning_predicate=[("month", "=", months[1])])) == untouched
    assert _read(lake / "costs").equals(_read(tmp_path / "fresh" / "costs"))
    assert again.rewritten == 0 and _delta_table(lake / "costs").version() == 1


def test_a_month_the_store_no_longer_holds_leaves_the_table(tmp_path: Path) -> None:
    """A month whose every row the store deleted is dropped from the table (its rows counted as deleted), even
    when no other month changed: nothing is left to write, and the month's files go all the same."""

    lake = tmp_path / "lake"
    with _costs_ledger(str(tmp_path / "ledger.duckdb"), days=90, since_days=60) as store:
        export_delta(store, lake, endpoints=["costs"])
        months = sorted(p["month"] for p in _delta_table(lake / "costs").partitions())
        held = _read(lake / "costs")
        second = _ts(EMULATOR_NOW - 30 * DAY).replace(day=1, hour=0, minute=0, second=0)
        assert second.strftime("%Y-%m") == months[1]
        gone = store.execute("DELETE FROM costs WHERE bucket_start < %s", (second,))
        assert gone > 0
        merged = export_delta(store, lake, endpoints=["costs"]).tables[0]
        rows = _store_rows(store, "costs")
    assert merged.rewritten == (months[0],) and merged.deleted == gone == held.num_rows - rows
    assert (merged.inserted, merged.updated) == (0, 0)
    assert sorted(p["month"] for p in _delta_table(lake / "costs").partitions()) == months[1:]
    assert _read(lake / "costs").num_rows == rows


def test_a_doubled_month_and_a_changed_one_are_rewritten_in_one_commit(tmp_path: Path) -> None:
    """A month an earlier race left doubled is repaired in the same commit as another month whose rows changed (it
    took an overwrite and then a MERGE, two versions): each surplus copy counted as deleted, the change as updated,
    and a warning names the doubled month only."""
    import logging

    from deltalake import write_deltalake

    lake = tmp_path / "lake"
    warned: list[str] = []

    class _Told(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warned.append(record.getMessage())

    told = _Told()
    logging.getLogger("usageledger.export").addHandler(told)
    try:
        with _costs_ledger(str(tmp_path / "ledger.duckdb"), days=90, since_days=60) as store:
            export_delta(store, lake, endpoints=["costs"])
            table = _delta_table(lake / "costs")
            months = sorted(p["month"] for p in table.partitions())
            last = table.to_pyarrow_table(filters=[("month", "=", months[-1])])
            write_deltalake(str(lake / "costs"), last, mode="append")  # the race's second export, of one month
            (key,) = _month_keys(store, months[0], 1)
            store.execute(f"UPDATE costs SET amount_value = amount_value + 1 WHERE {COSTS_KEY}", key)
            repaired = export_delta(store, lake, endpoints=["costs"]).tables[0]
            export_delta(store, tmp_path / "fresh", endpoints=["costs"])
    finally:
        logging.getLogger("usageledger.export").removeHandler(told)
    assert repaired.rewritten == (months[0], months[-1])
    assert (repaired.inserted, repaired.updated, repaired.deleted) == (0, 1, last.num_rows)
    assert _delta_table(lake / "costs").version() == 2  # the append, then one commit
    assert _read(lake / "costs").equals(_read(tmp_path / "fresh" / "costs"))
    said = "held rows twice (two exports at once, before they took turns): rewritten"
    assert [w for w in warned if "held rows twice" in w] == [f"{lake / 'costs'}: months {months[-1]} {said}"]


def test_a_table_whose_files_are_not_its_rows_is_refused_in_one_line(tmp_path: Path) -> None:
    """A table someone turned deletion vectors on for (its files may hold rows it deleted) cannot be compared by
    its files: refused before anything is written, naming the feature (it was a DeltaProtocolError traceback)."""
    from deltalake import TableFeatures

    lake = tmp_path / "lake"
    with _costs_ledger(str(tmp_path / "ledger.duckdb"), days=40, since_days=30) as store:
        export_delta(store, lake, endpoints=["costs"])
        table = _delta_table(lake / "costs")
        table.alter.add_feature(TableFeatures.DeletionVectors, allow_protocol_versions_increase=True)
        before = _delta_table(lake / "costs").version()
        store.execute("DELETE FROM costs WHERE bucket_start < %s", (_ts(EMULATOR_NOW - 20 * DAY),))
        with pytest.raises(ParameterError) as refused:
            export_delta(store, lake)
    assert str(refused.value) == (
        f"--output: {lake / 'costs'} uses Delta reader features this export cannot compare with the store"
        " (deletionVectors); export to a new directory"
    )
    assert _delta_table(lake / "costs").version() == before
    assert sorted(p.name for p in lake.iterdir()) == ["costs"]  # no other table written either


def test_a_lake_whose_path_holds_glob_characters_is_compared_by_its_own_files(tmp_path: Path) -> None:
    """The table's files are read by their own paths: a lake in `la ke*? é` (deltalake names its files
    percent-encoded, `la%20ke*%3F%20%C3%A9`) beside a copy of it in `la keXY é` (which the path, read as a glob
    pattern, also matches) is compared with its own files only, found equal, and after a change rewritten, one row
    counted once. (A path deltalake cannot address, `[` or `%41` in it, is refused: the test below.)"""
    import shutil

    lake = tmp_path / "la ke*? é"
    with _costs_ledger(str(tmp_path / "ledger.duckdb"), days=40, since_days=30) as store:
        export_delta(store, lake, endpoints=["costs"])
        shutil.copytree(lake, tmp_path / "la keXY é")
        assert export_delta(store, lake, endpoints=["costs"]).rewritten == 0
        (key,) = _month_keys(store, "2026-11", 1)
        store.execute(f"UPDATE costs SET amount_value = amount_value * 2 WHERE {COSTS_KEY}", key)
        changed = export_delta(store, lake, endpoints=["costs"]).tables[0]
        export_delta(store, tmp_path / "fresh", endpoints=["costs"])
    assert changed.rewritten == ("2026-11",)
    assert (changed.inserted, changed.updated, changed.deleted) == (0, 1, 0)
    assert _read(lake / "costs").equals(_read(tmp_path / "fresh" / "costs"))


def test_a_postgres_ledgers_changed_months_are_found_and_rewritten(migrated_pg_url: str, tmp_path: Path) -> None:
    """From PostgreSQL too: the months whose rows changed (by 1e-18 of money, a row gone, a row come) and only
    they are rewritten, counted, and the table equals a fresh export, the money exact."""
    import pyarrow.compute as pc

    lake = tmp_path / "lake"
    with _costs_ledger(migrated_pg_url, days=90, since_days=60) as store:
        export_delta(store, lake, endpoints=["costs"])
        months = sorted(p["month"] for p in _delta_table(lake / "costs").partitions())
        _change_months(store, months)
        merged = export_delta(store, lake, endpoints=["costs"]).tables[0]
        export_delta(store, tmp_path / "fresh", endpoints=["costs"])
        total = store.query("SELECT SUM(amount_value) FROM costs")[0][0]
    assert merged.rewritten == (months[0], months[-1])
    assert (merged.inserted, merged.updated, merged.deleted) == (1, 2, 1)
    assert _read(lake / "costs").equals(_read(tmp_path / "fresh" / "costs"))
    assert pc.sum(_read(lake / "costs").column("amount_value")).as_py() == total


@pytest.mark.parametrize("name", ["lake[1]", "lake]", "a%41b", "a|b", "a^b", "a\\b", "a\tb"])
def test_a_lake_path_deltalake_cannot_address_is_refused_in_one_line(tmp_path: Path, name: str) -> None:
    """deltalake reads a local path as a URL: `[`, `]`, `|` or `^` in it ended the export in a Rust panic's
    traceback, and `%41` was read as `A`, the table's files written under `a%41b` and its log looked for under
    `aAb`. Such a path is refused before anything is written, in one line naming `--output`."""
    with open_store(str(tmp_path / "ledger.duckdb")) as store, pytest.raises(ParameterError) as caught:
        export_delta(store, tmp_path / name, endpoints=["costs"])
    assert caught.value.param == "--output"
    assert "deltalake cannot address" in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("ledger.duckdb")) == []
