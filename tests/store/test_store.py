"""The store on both back ends: catalogue-derived schema, migrations, upsert counts, vanished rows, daily views."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import usageledger.store.duckdb as duckdb_store
from usageledger import catalogue
from usageledger._secrets import redact_url_password
from usageledger.errors import ConfigError, StoreError
from usageledger.store import (
    BaseStore,
    Stream,
    StreamMark,
    WindowWrite,
    encode_group_key,
    migrations,
    open_store,
    table_for,
    tables,
)

DAY = 86400
T0 = 1_790_000_000 - 1_790_000_000 % DAY


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path, new_store: Callable[[str, Path], str]) -> Iterator[BaseStore]:
    """A fresh, migrated store on each back end (a copy of one migrated before: ``new_store``)."""
    url = new_store(request.param, tmp_path / "s.duckdb")
    with open_store(url) as opened:
        yield opened


def cost_row(day: int, project: str | None, item: str, amount: str) -> dict[str, Any]:
    return {
        "bucket_start": T0 + day * DAY,
        "bucket_end": T0 + (day + 1) * DAY,
        "project_id": project,
        "line_item": item,
        "amount_value": Decimal(amount),
        "currency": "usd",
        "quantity": Decimal("1000"),
        "quantity_unit": "tokens",
    }


COSTS = Stream.create("costs", "1d", ("project_id", "line_item"))


def write(
    store: BaseStore,
    rows: list[dict[str, Any]],
    lo: int = 0,
    hi: int = 3,
    *,
    stream: Stream = COSTS,
    org: str = "acme",
    watermark: int | None = None,
) -> Any:
    return store.commit_window(WindowWrite(org, stream, rows, T0 + lo * DAY, T0 + hi * DAY, "run", T0, watermark))


def test_every_endpoint_has_a_typed_table_with_exact_money() -> None:
    """One table per endpoint; money is DECIMAL/NUMERIC(38,18); the key is org, stream, bucket_start, group_key."""
    assert [t.name for t in tables()] == ["costs" if e.is_costs else f"usage_{e.name}" for e in catalogue.ENDPOINTS]
    costs = table_for("costs")
    for dialect, money in (("duckdb", "DECIMAL(38,18)"), ("postgres", "NUMERIC(38,18)")):
        sql = costs.create_sql(dialect)  # type: ignore[arg-type]
        assert f'"amount_value" {money}' in sql and f'"quantity" {money}' in sql
        # PostgreSQL indexes the key; DuckDB checks it at commit (test_a_key_written_twice_is_refused_at_commit)
        assert ("PRIMARY KEY (org, stream, bucket_start, group_key)" in sql) is (dialect == "postgres")
        lines = [line.strip().rstrip(",") for line in sql.splitlines()]
        for key in ("org", "stream", "bucket_start", "group_key"):
            assert any(line.startswith(f'"{key}" ') and line.endswith("NOT NULL") for line in lines), key
        assert "DOUBLE" not in sql and "REAL" not in sql and "FLOAT" not in sql
    assert table_for("completions").create_sql("duckdb").count("BIGINT") == len(catalogue.get("completions").metrics)
    assert '"batch" BOOLEAN' in table_for("completions").create_sql("postgres")


def test_group_key_keeps_null_apart_from_every_value() -> None:
    """NULL, the string 'null', false and '' all encode differently; the encoding is deterministic."""
    keys = {encode_group_key(v) for v in ([None], ["null"], [False], [""], ["None"])}
    assert len(keys) == 5
    assert encode_group_key([]) == "[]"
    assert encode_group_key(["p", None, True]) == encode_group_key(["p", None, True]) == '["p",null,true]'


@pytest.fixture(params=["duckdb", "postgres"])
def scratch_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseStore]:
    """A store of each back end migrated from scratch by this open (``store`` is a copy of one migrated before)."""
    url = str(tmp_path / "s.duckdb") if request.param == "duckdb" else request.getfixturevalue("pg_url")
    with open_store(url) as opened:
        yield opened


def test_migrations_are_named_ordered_recorded_and_idempotent(scratch_store: BaseStore) -> None:
    """Applied migrations are recorded in order; re-opening applies nothing."""
    store = scratch_store
    assert store.applied_migrations() == migrations.all_names()
    assert store.applied_migrations()[0] == "0001_streams_and_sync_runs"
    assert store.pending_migrations() == []
    assert store.migrate() == []


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_a_failing_migration_leaves_the_store_as_it_was(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pending migrations run in one transaction: one that fails undoes the others, nothing is half-made."""
    url = str(tmp_path / "s.duckdb") if backend == "duckdb" else request.getfixturevalue("pg_url")
    broken = migrations.Migration("9999_broken", lambda dialect, existing: ["CREATE TABLE nonsense (x NOSUCHTYPE)"])
    real = migrations.pending
    monkeypatch.setattr(migrations, "pending", lambda applied: [*real(applied), broken])
    with open_store(url, migrate=False) as store:
        with pytest.raises(StoreError):
            store.migrate()
        assert store.applied_migrations() == []
        made = f"SELECT COUNT(*) FROM information_schema.tables WHERE {store.this_schema} AND table_name = 'streams'"
        assert store.query(made) == [(0,)]
    monkeypatch.setattr(migrations, "pending", real)
    with open_store(url) as store:  # the next open migrates it whole
        assert store.applied_migrations() == migrations.all_names()


def test_upsert_counts_inserted_updated_unchanged_and_deleted(store: BaseStore) -> None:
    """A re-read counts unchanged rows, a revised value updates in place, a vanished row is deleted."""
    store.register_stream("acme", COSTS)
    rows = [cost_row(0, "p1", "a", "0.06"), cost_row(0, None, "a", "0.07"), cost_row(1, "p1", "a", "1.5")]
    first = write(store, rows)
    assert (first.inserted, first.updated, first.unchanged, first.deleted) == (3, 0, 0, 0)
    again = write(store, rows)
    assert (again.inserted, again.updated, again.unchanged, again.deleted) == (0, 0, 3, 0)
    revised = [cost_row(0, "p1", "a", "0.08"), cost_row(1, "p1", "a", "1.5")]
    third = write(store, revised)
    assert (third.inserted, third.updated, third.unchanged, third.deleted) == (0, 1, 1, 1)
    stored = store.query("SELECT project_id, amount_value FROM costs ORDER BY bucket_start, group_key")
    assert stored == [("p1", Decimal("0.08")), ("p1", Decimal("1.5"))]
    assert store.stream_states()[0].row_count == 2


def test_a_window_read_again_unchanged_writes_and_logs_nothing(
    store: BaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-read lag window that came back as it was (NULLs included) is counted unchanged without a statement that
    logs, deletes, updates or inserts rows (they were most of a no-op sync's store time); one with as many rows but
    one revised and one replaced still takes every step."""
    store.register_stream("acme", COSTS)
    rows = [cost_row(0, "p1", "a", "0.06"), cost_row(0, None, "a", "0.07"), cost_row(1, "p1", "a", "1.5")]
    write(store, rows)
    logged = store.query("SELECT COUNT(*) FROM revisions")[0][0]
    statements: list[str] = []
    execute = store.execute

    def spy(sql: str, params: Any = ()) -> int:
        statements.append(sql)
        return execute(sql, params)

    monkeypatch.setattr(store, "execute", spy)
    again = write(store, [dict(r) for r in rows])
    assert (again.inserted, again.updated, again.unchanged, again.deleted) == (0, 0, 3, 0)
    rows_touched = [s for s in statements if s.startswith(("INSERT", "DELETE", "UPDATE costs"))]
    assert rows_touched == []
    assert store.query("SELECT COUNT(*) FROM revisions")[0][0] == logged
    # The same number of rows, but one revised and one replaced by another group: not a no-op.
    revised = [cost_row(0, "p1", "a", "0.09"), cost_row(0, "p2", "a", "0.07"), cost_row(1, "p1", "a", "1.5")]
    third = write(store, revised)
    assert (third.inserted, third.updated, third.unchanged, third.deleted) == (1, 1, 1, 1)
    stored = store.query("SELECT project_id, amount_value FROM costs ORDER BY bucket_start, project_id")
    assert stored == [("p1", Decimal("0.09")), ("p2", Decimal("0.07")), ("p1", Decimal("1.5"))]
    assert store.query("SELECT COUNT(*) FROM revisions")[0][0] > logged


def test_postgres_analyses_every_staged_batch_before_reading_it(
    tmp_path: Path, new_store: Callable[[str, Path], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A staged batch's temporary table is analysed: autovacuum never analyses one, and unanalysed the planner
    guessed one row of it and compared a re-read window's stored rows with its staged ones in a nested loop, the
    square of the window's rows (~9 s for a 60-day costs window). ``reltuples`` counts the rows only once analysed
    (before: -1 since PostgreSQL 14, 0 before it); checked for a fresh window's bulk insert and a re-read's
    reconcile."""
    with open_store(new_store("postgres", tmp_path / "unused")) as store:
        seen: list[float] = []
        stage = store._stage

        def spy(spec: Any, payload: Any) -> str:
            name = stage(spec, payload)
            seen.append(store.query(f"SELECT reltuples FROM pg_class WHERE oid = '{name}'::regclass")[0][0])
            return name

        monkeypatch.setattr(store, "_stage", spy)
        store.register_stream("acme", COSTS)
        rows = [cost_row(0, "p1", "a", "0.06"), cost_row(0, None, "a", "0.07"), cost_row(1, "p1", "a", "1.5")]
        assert write(store, rows).inserted == 3
        assert write(store, rows).unchanged == 3
        assert seen == [3, 3]


def test_postgres_analyses_only_written_tables_never_analysed_and_never_fails(
    tmp_path: Path, new_store: Callable[[str, Path], str], caplog: pytest.LogCaptureFixture
) -> None:
    """``analyse_new_tables`` analyses the endpoint tables written since its last call that were never analysed
    (``reltuples`` their rows; -1 before), outside any transaction only; not a table analysed before (its statistics
    stay as they were) nor one not written. It is an optimisation: a failure is logged at debug, never raised."""
    import psycopg

    with open_store(new_store("postgres", tmp_path / "unused")) as store:
        for t in tables():
            store.execute(f"ALTER TABLE {t.name} SET (autovacuum_enabled = false)")
        stats = "SELECT c.reltuples, s.last_analyze IS NOT NULL FROM pg_class AS c JOIN pg_stat_user_tables AS s"
        stats += " ON s.relid = c.oid WHERE c.oid = %s::regclass"
        store.register_stream("acme", COSTS)
        with store.transaction():
            write(store, [cost_row(0, "p1", "a", "0.06"), cost_row(1, "p1", "a", "1.5")])
            store.analyse_new_tables()  # inside a transaction: never, and kept for the call after it
            assert store.query(stats, ["costs"]) == [(-1, False)]
        store.analyse_new_tables()
        assert store.query(stats, ["costs"]) == [(2, True)]
        assert store.query(stats, ["usage_embeddings"]) == [(-1, False)]
        write(store, [cost_row(d, "p1", "b", "1") for d in range(3)])
        store.analyse_new_tables()  # analysed before: left to autovacuum
        assert store.query(stats, ["costs"]) == [(2, True)]

        write(store, [cost_row(2, "p1", "a", "2")])
        [(pid,)] = store.query("SELECT pg_backend_pid()")
        with psycopg.connect(store.url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        with caplog.at_level(logging.DEBUG, logger="usageledger.store"):
            store.analyse_new_tables()  # the connection is gone: said at debug, not raised
        assert [r.getMessage() for r in caplog.records if r.name == "usageledger.store"] == [
            "could not read which tables were never analysed: PostgreSQL: the connection to the store"
            f" {redact_url_password(store.url)} was lost (terminating connection due to administrator command); run"
            " the command again once the server answers: what was committed is kept"
        ]


def test_vanished_rows_are_only_deleted_inside_the_reread_window(store: BaseStore) -> None:
    """Rows outside [lo, hi) and rows of other streams or orgs are never touched by a window's delete."""
    other = Stream.create("costs", "1d", ("project_id",))
    for org in ("acme", "beta"):
        store.register_stream(org, COSTS)
        store.register_stream(org, other)
        write(store, [cost_row(0, "p", "a", "1"), cost_row(2, "p", "a", "2")], org=org)
        write(store, [{**cost_row(0, "p", "a", "5"), "line_item": None}], stream=other, org=org)
    counts = write(store, [], lo=2, hi=3)
    assert counts.deleted == 1
    remaining = store.query("SELECT org, stream, amount_value FROM costs ORDER BY org, stream, amount_value")
    assert remaining == [
        ("acme", "costs.1d.project_id", Decimal("5")),
        ("acme", "costs.1d.project_id+line_item", Decimal("1")),
        ("beta", "costs.1d.project_id", Decimal("5")),
        ("beta", "costs.1d.project_id+line_item", Decimal("1")),
        ("beta", "costs.1d.project_id+line_item", Decimal("2")),
    ]


def test_decimals_round_trip_exactly(store: BaseStore) -> None:
    """18 fractional digits and 20 integer digits survive both back ends unchanged."""
    store.register_stream("acme", COSTS)
    values = ["0.000000000000000001", "12345678901234567890.123456789012345678", "0.1", "-3.3"]
    write(store, [cost_row(0, f"p{i}", "a", v) for i, v in enumerate(values)])
    got = [r[0] for r in store.query("SELECT amount_value FROM costs ORDER BY project_id")]
    assert got == [Decimal(v) for v in values]


def test_watermark_commits_with_the_rows_and_only_when_given(store: BaseStore) -> None:
    """commit_window stores the watermark it is given and leaves it alone when given none."""
    store.register_stream("acme", COSTS)
    write(store, [cost_row(0, "p", "a", "1")], watermark=T0 + DAY)
    write(store, [cost_row(1, "p", "a", "1")], watermark=None)
    assert store.stream_states()[0].watermark == T0 + DAY


def test_failed_window_leaves_nothing_behind(store: BaseStore) -> None:
    """A batch that breaks a rule (a duplicate group) writes no row and no watermark."""
    store.register_stream("acme", COSTS)
    with pytest.raises(StoreError, match="same group twice"):
        write(store, [cost_row(0, "p", "a", "1"), cost_row(0, "p", "a", "2")], watermark=T0 + DAY)
    assert store.query("SELECT COUNT(*) FROM costs") == [(0,)]
    assert store.stream_states()[0].watermark is None


def test_daily_view_never_mixes_groupings(store: BaseStore) -> None:
    """costs_daily shows only the default stream when a model-like finer stream holds the same buckets."""
    ungrouped = Stream.create("costs", "1d", ())
    store.register_stream("acme", ungrouped)
    write(store, [{**cost_row(0, None, "x", "10"), "line_item": None}], stream=ungrouped)
    # Only the ungrouped stream exists: it is the primary one.
    assert store.query("SELECT SUM(amount_value) FROM costs_daily") == [(Decimal("10"),)]
    store.register_stream("acme", COSTS)
    write(store, [cost_row(0, "p1", "a", "4"), cost_row(0, "p2", "b", "6")])
    assert store.query("SELECT SUM(amount_value) FROM costs") == [(Decimal("20"),)]
    assert store.query("SELECT stream, SUM(amount_value) FROM costs_daily GROUP BY stream") == [
        (COSTS.id, Decimal("10"))
    ]
    hourly = Stream.create("completions", "1h", ("model",))
    daily = Stream.create("completions", "1d", ("model",))
    store.register_stream("acme", hourly)
    store.register_stream("acme", daily)
    view_streams = store.query("SELECT DISTINCT stream FROM usage_completions_daily")
    assert view_streams == []  # no rows yet; and the org has a daily stream, so its hourly one is never read
    cols = store.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'usage_completions_daily'"
        " ORDER BY ordinal_position"
    )
    names = [c[0] for c in cols]
    assert names[:4] == ["org", "stream", "bucket_start", "bucket_end"]
    assert "group_key" not in names and "input_tokens" in names and "model" in names


def test_streams_state_and_runs_are_recorded(store: BaseStore) -> None:
    """register_stream is idempotent; mark_stream and runs record status and counts."""
    first = store.register_stream("acme", COSTS)
    assert store.register_stream("acme", COSTS) == first
    assert first.is_default and first.group_by == ("project_id", "line_item") and first.filters == "{}"
    store.begin_run("r1", at=T0, command="sync")
    store.mark_stream("acme", COSTS.id, run_id="r1", at=T0, status="ok")
    state = store.stream_state("acme", COSTS.id)
    assert state is not None and state.last_status == "ok" and state.last_run_at == T0
    assert store.query("SELECT status FROM sync_runs WHERE run_id = 'r1'") == [("running",)]


def test_streams_are_registered_and_marked_together_each_with_its_own_state(store: BaseStore) -> None:
    """A sync registers and marks all its streams in one statement each: every (org, stream) gets its own state,
    in the order asked, twice asked is one row, and each mark keeps its own status and error; a new run's mark
    starts the counters again, a mark of the same run keeps them."""
    hourly = Stream.create("completions", "1h", ("model",))
    pairs = [("acme", COSTS), ("beta", COSTS), ("acme", hourly)]
    states = store.register_streams(pairs)
    assert [(s.org, s.stream) for s in states] == [("acme", COSTS.id), ("beta", COSTS.id), ("acme", hourly.id)]
    assert store.register_streams([*pairs, ("acme", COSTS)])[:3] == states
    assert store.query("SELECT COUNT(*) FROM streams") == [(3,)]
    assert store.register_streams([]) == []
    store.mark_streams(
        [StreamMark("acme", COSTS.id, "ok"), StreamMark("beta", COSTS.id, "failed", "HTTP 500")], run_id="r1", at=T0
    )
    store.execute("UPDATE streams SET last_inserted = 7 WHERE org = 'acme'")
    store.mark_streams(
        [StreamMark("acme", COSTS.id, "ok"), StreamMark("acme", hourly.id, "running")], run_id="r1", at=T0
    )
    got = {(s.org, s.stream): s for s in store.stream_states()}
    assert (got["acme", COSTS.id].last_status, got["acme", COSTS.id].last_error) == ("ok", None)
    assert (got["beta", COSTS.id].last_status, got["beta", COSTS.id].last_error) == ("failed", "HTTP 500")
    assert got["acme", hourly.id].last_status == "running" and got["acme", hourly.id].last_run_at == T0
    assert got["acme", COSTS.id].last_counts.inserted == 7  # the same run: its counts stay
    assert got["acme", hourly.id].last_counts.inserted == 0  # its first mark of r1: a new run's counts start at 0
    store.mark_streams([StreamMark("acme", COSTS.id, "ok")], run_id="r2", at=T0 + DAY)
    again = store.stream_state("acme", COSTS.id)
    assert again is not None and again.last_counts.inserted == 0 and again.last_run_id == "r2"
    assert again.last_run_at == T0 + DAY


def test_duckdb_store_held_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    """A DuckDB file locked by another program gives a StoreError naming its PID, not advice to wait for a sync."""
    import subprocess
    import sys

    path = tmp_path / "locked.duckdb"
    open_store(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,sys; c=duckdb.connect({str(path)!r}); print('ok', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(StoreError, match=rf"is locked by process {holder.pid} \(python[^)]*\), which is not a"):
            open_store(path)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close() if holder.stdout else None


def test_a_bucket_s_foreign_results_are_left_out_and_its_own_kept(store: BaseStore) -> None:
    """Decoded buckets go straight into columns; a result of another endpoint in a bucket is not written."""
    from usageledger.models import Bucket, CompletionsResult, EmbeddingsResult

    stream = Stream.create("completions", "1d", ("model",))
    own = [CompletionsResult(input_tokens=n, output_tokens=1, num_model_requests=1, model=f"m{n}") for n in (1, 2)]
    foreign = EmbeddingsResult(input_tokens=5, num_model_requests=1, model="e")
    buckets = [
        Bucket(start_time=T0, end_time=T0 + DAY, results=[own[0], foreign, own[1]]),
        Bucket(start_time=T0 + DAY, end_time=T0 + 2 * DAY, results=[own[0]]),
    ]
    counts = store.commit_window(WindowWrite("acme", stream, (), T0, T0 + 2 * DAY, "run", T0, buckets=buckets))
    assert counts.inserted == 3
    rows = store.query("SELECT model, input_tokens FROM usage_completions ORDER BY bucket_start, model")
    assert rows == [("m1", 1), ("m2", 2), ("m1", 1)]


def test_a_key_written_twice_is_refused_at_commit(store: BaseStore) -> None:
    """A caller that wrongly marks a window fresh (no stored row at or after its start) cannot store a key twice:
    PostgreSQL's primary key refuses it, DuckDB's check at commit does, and the transaction leaves nothing."""
    rows = [cost_row(0, "p1", "in", "1.5"), cost_row(1, "p1", "in", "2.5")]
    write(store, rows)
    before = store.query("SELECT org, stream, bucket_start, group_key, amount_value FROM costs ORDER BY bucket_start")
    again = WindowWrite("acme", COSTS, [cost_row(1, "p1", "in", "9")], T0 + DAY, T0 + 2 * DAY, "run2", T0, fresh=True)
    with pytest.raises(StoreError):
        store.commit_windows([again])
    # two fresh windows of one batch that overlap: refused whole, neither is written
    other = WindowWrite(
        "acme", COSTS, [cost_row(5, "p2", "in", "1")], T0 + 5 * DAY, T0 + 6 * DAY, "run3", T0, fresh=True
    )
    with pytest.raises(StoreError):
        store.commit_windows([other, other])
    after = store.query("SELECT org, stream, bucket_start, group_key, amount_value FROM costs ORDER BY bucket_start")
    assert after == before and len(after) == 2
    counts = store.commit_windows([other])
    assert counts[0].inserted == 1


def test_a_transaction_too_big_for_the_syncs_cap_lifts_it_and_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The cap saves memory and never fails a sync: DuckDB running out of memory under it (a real out-of-memory
    error, the cap made tiny) rolls the transaction back, lifts the cap for the rest of the sync and commits the
    transaction again, once; the user's limit comes back after the sync."""
    monkeypatch.setattr(duckdb_store, "SYNC_MEMORY_LIMIT", "4MB")
    rows = [cost_row(0, f"proj_{i:06d}", f"item {i}", "1.25") for i in range(10_000)]

    def limit(store: BaseStore) -> str:  # DuckDB shows it rounded: 18.8 GiB set reads back as 18.7 GiB
        return str(store.query("SELECT current_setting('memory_limit')")[0][0])

    with open_store(str(tmp_path / "s.duckdb")) as store:
        before = limit(store)
        with store.sync_settings(), caplog.at_level(logging.INFO, logger="usageledger.store"):
            assert limit(store) == "3.8 MiB"
            assert write(store, rows).inserted == 10_000
            lifted = limit(store)
            assert (
                lifted.split()[1] == before.split()[1]
                and abs(float(lifted.split()[0]) - float(before.split()[0])) < 0.2
            )
            assert write(store, [cost_row(1, "p1", "in", "2")], 1, 2).inserted == 1
        assert limit(store).split()[1] == before.split()[1]
        assert store.query("SELECT COUNT(*), SUM(amount_value) FROM costs") == [(10_001, Decimal("12502"))]
    lifted = [r.getMessage() for r in caplog.records if "cap" in r.getMessage()]
    assert lifted == [f"a transaction needed more memory than the sync's DuckDB cap (4MB): lifted to {before}"]
    # Outside a sync there is no cap to lift: the same error is the caller's, whole, and nothing is written.
    with open_store(str(tmp_path / "t.duckdb")) as store:
        store.execute("SET memory_limit = '4MB'")
        with pytest.raises(StoreError, match="Out of Memory"):
            write(store, rows)
        store.execute("RESET memory_limit")
        assert store.query("SELECT COUNT(*) FROM costs") == [(0,)]


def test_the_spill_folder_a_killed_sync_left_goes_at_close_only_when_empty(tmp_path: Path) -> None:
    """A sync killed while DuckDB spilled under its cap leaves ``<store>.tmp``; the next writer's DuckDB empties
    it and the store removes the empty folder when it closes. A folder with anything in it is never touched."""
    path = tmp_path / "s.duckdb"
    spill = tmp_path / "s.duckdb.tmp"
    spill.mkdir()
    with open_store(str(path)) as store, store.sync_settings():
        write(store, [cost_row(0, "p1", "in", "1.5")])
    assert not spill.exists() and path.exists()
    spill.mkdir()
    (spill / "notes.txt").write_text("mine")
    with open_store(str(path)) as store:
        write(store, [cost_row(1, "p1", "in", "1.5")], 1, 2)
    assert (spill / "notes.txt").read_text() == "mine"


def test_a_sync_bounds_duckdbs_cache_only_where_no_key_index_can_outgrow_it(tmp_path: Path) -> None:
    """While a sync writes, DuckDB works in one thread and its cache is capped, both restored afterwards; a store
    still holding a primary-key index (created before the key check at commit) is left uncapped, so its sync
    cannot fail for memory."""

    def limit(store: BaseStore) -> str:
        return str(store.query("SELECT current_setting('memory_limit')")[0][0])

    def threads(store: BaseStore) -> int:
        return int(store.query("SELECT current_setting('threads')")[0][0])

    with open_store(str(tmp_path / "new.duckdb")) as store:
        before = limit(store)
        store.execute("SET threads = 3")  # a setting of the user's own comes back too
        with store.sync_settings():
            assert limit(store) == "30.5 MiB"  # 32 MB
            assert threads(store) == 1
            write(store, [cost_row(0, "p1", "in", "1.5")])
        assert limit(store) != "30.5 MiB" and limit(store).split()[1] == before.split()[1]
        assert threads(store) == 3
    with open_store(str(tmp_path / "old.duckdb")) as store:
        old_ddl = table_for("costs").create_sql("duckdb")
        old_ddl = old_ddl[: old_ddl.rindex(")")] + ",\n  PRIMARY KEY (org, stream, bucket_start, group_key)\n)"
        store.execute("DROP VIEW IF EXISTS costs_daily")
        store.execute("DROP TABLE costs")
        store.execute(old_ddl)
        before = limit(store)
        with store.sync_settings():
            assert limit(store) == before and threads(store) == 1
            write(store, [cost_row(0, "p1", "in", "1.5")])
        with pytest.raises(StoreError):  # the old index still refuses a key twice, as the check does
            store.commit_windows(
                [WindowWrite("acme", COSTS, [cost_row(0, "p1", "in", "2")], T0, T0 + DAY, "r", T0, fresh=True)]
            )


def test_each_store_has_an_identity_of_its_own_kept_for_its_life(tmp_path: Path) -> None:
    """A UUID made at creation, the same on every open, another for another store: what its exports carry."""
    first, second = str(tmp_path / "a.duckdb"), str(tmp_path / "b.duckdb")
    with open_store(first) as a, open_store(second) as b:
        made = a.identity()
        assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", made)
        assert b.identity() != made
        assert a.query("SELECT COUNT(*) FROM store_identity") == [(1,)]
    with open_store(first) as again:
        assert again.migrate() == [] and again.identity() == made


def test_a_stream_grouped_by_one_string_is_grouped_by_that_field() -> None:
    """`Stream.create("completions", "1d", "model")` read the string as the fields m, o, d, e, l and was refused
    naming 'm'; one string is one field, as the client reads `group_by="model"`."""
    assert Stream.create("completions", "1d", "model") == Stream.create("completions", "1d", ["model"])


def test_a_stream_reads_group_by_and_its_endpoint_as_the_client_does() -> None:
    """The client takes `group_by="model,project_id"` (and a set, a name twice); `Stream.create` refused the comma
    list as one unknown field. It reads group_by by the client's one rule (`rules.group_by_names`), and an endpoint
    given as a list is named, not `unhashable type: 'list'`."""
    two = Stream.create("completions", "1d", ["project_id", "model"])
    assert Stream.create("completions", "1d", "model,project_id") == two
    assert Stream.create("completions", "1d", ["model", "project_id", "model"]) == two
    with pytest.raises(ConfigError, match=r"^group_by: 'model,' holds an empty field name"):
        Stream.create("completions", "1d", "model,")
    with pytest.raises(ConfigError, match=r"^endpoint: an endpoint is one name, got list; choose one of: completions"):
        Stream.create(["completions"])  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_stores_copied_from_the_migrated_template_are_migrated_empty_and_each_its_own(
    backend: str, tmp_path: Path, new_store: Callable[[str, Path], str], request: pytest.FixtureRequest
) -> None:
    """The tests' ``new_store`` copies: every migration applied, no rows, and two copies never share an identity."""
    url = new_store(backend, tmp_path / "copy.duckdb")
    if backend == "duckdb":
        other = new_store(backend, tmp_path / "other.duckdb")
    else:  # new_store gives one database a test; a second copy straight from the cluster
        other = request.getfixturevalue("_pg_cluster").copydb(
            "t_other", request.getfixturevalue("_pg_migrated_template")
        )
    identities = set()
    for each in (url, other):
        with open_store(each, migrate=False) as store:
            assert store.pending_migrations() == [] and store.applied_migrations() == migrations.all_names()
            assert store.query("SELECT COUNT(*) FROM streams") == [(0,)]
            identities.add(store.identity())
    assert len(identities) == 2


def _org_tables(store: BaseStore) -> list[str]:
    """Every table of the store with an ``org`` column, read from the schema itself (views left out)."""
    rows = store.query(
        f"SELECT table_name FROM information_schema.columns WHERE {store.this_schema} AND column_name = 'org'"
        f" AND table_name IN (SELECT table_name FROM information_schema.tables WHERE {store.this_schema}"
        " AND table_type = 'BASE TABLE') ORDER BY 1"
    )
    return [r[0] for r in rows]


def test_deleting_an_org_leaves_nothing_of_it_in_any_table(store: BaseStore) -> None:
    """`delete_org` (`demo --remove`) empties every table with an `org` column of that org, found from the schema
    so a new table is covered: its credit top-ups stayed and were read into a later real org of the same name."""
    from datetime import date

    from usageledger.store.closes import close_month
    from usageledger.store.credit import add_topup
    from usageledger.store.directory import Entry, Snapshot, refresh

    for org in ("gone", "kept"):
        store.register_org(org, synthetic=org == "gone", source="emulator" if org == "gone" else "api", at=T0)
        store.register_stream(org, COSTS)
        write(store, [cost_row(0, "p1", "a", "1.5")], org=org, watermark=T0 + DAY)
        store.commit_window(WindowWrite(org, COSTS, [cost_row(0, "p1", "a", "2")], T0, T0 + DAY, "r2", T0 + 60))
        close_month(store, date.fromtimestamp(T0).replace(day=1), [org], at=T0 + 120)
        add_topup(store, org=org, day=date.fromtimestamp(T0), amount=Decimal("5"), note=None)
        refresh(store, org, Snapshot([Entry("project", "org", "p1", "P1", '{"id": "p1"}')]), at=T0)
    tables_ = _org_tables(store)
    held = {t for t in tables_ if store.query(f"SELECT COUNT(*) FROM {t} WHERE org = 'gone'")[0][0]}
    assert {"costs", "streams", "orgs", "watermark_log", "closed_months", "credit_topups"} <= held
    assert {"directory_versions", "revision_entries", "revisions_costs"} <= held
    kept = {t: store.query(f"SELECT COUNT(*) FROM {t} WHERE org = 'kept'")[0][0] for t in tables_}
    store.delete_org("gone")
    assert {t: store.query(f"SELECT COUNT(*) FROM {t} WHERE org = 'gone'")[0][0] for t in tables_} == dict.fromkeys(
        tables_, 0
    )
    assert {t: store.query(f"SELECT COUNT(*) FROM {t} WHERE org = 'kept'")[0][0] for t in tables_} == kept


def test_both_back_ends_migrate_to_the_same_tables_and_columns(tmp_path: Path, pg_url: str) -> None:
    """Every migration (the watermark log's too) makes the same tables, views and columns, in the same order, on
    DuckDB and on PostgreSQL: a table one back end lacks would be a store whose readings differ by back end."""
    schemas = []
    for url in (str(tmp_path / "s.duckdb"), pg_url):
        with open_store(url) as opened:
            schemas.append(
                opened.query(
                    "SELECT c.table_name, t.table_type, c.column_name, c.is_nullable"
                    f" FROM (SELECT * FROM information_schema.columns WHERE {opened.this_schema}) AS c"
                    f" JOIN (SELECT * FROM information_schema.tables WHERE {opened.this_schema}) AS t"
                    " ON t.table_name = c.table_name ORDER BY c.table_name, c.ordinal_position"
                )
            )
    assert schemas[0] == schemas[1]
    assert ("watermark_log", "BASE TABLE", "seq", "NO") in schemas[0]


def test_a_stream_filtered_by_a_key_where_an_id_goes_is_refused_before_it_is_saved() -> None:
    """`[[streams]] filters = {api_key_ids = ["sk-admin-…"]}` (the key pasted where its ID goes) made a stream whose
    definition, key and all, was saved in the store's streams table; the request was refused only at sync time.
    `Stream.create` refuses it, naming the filter and showing the prefix alone."""
    key = "sk-admin-" + "a" * 40
    with pytest.raises(ConfigError) as refused:
        Stream.create("costs", filters={"api_key_ids": ["key_abc", key]})
    assert str(refused.value).startswith("filters.api_key_ids: holds an API key (sk-admin-…), not an ID")
    assert key not in str(refused.value)


def test_a_stores_repr_names_it_and_its_state_never_its_password(tmp_path: Path, pg_url: str) -> None:
    """A store in a notebook showed `<usageledger.store.duckdb.DuckDBStore object at 0x7f...>`: neither which store
    nor whether it was open. Its repr names its class and its file or URL (the password masked, here one the trusting
    test server ignores), with `read_only` and `closed` said when so."""
    path = tmp_path / "ledger.duckdb"
    with open_store(path) as duck:
        assert repr(duck) == str(duck) == f"DuckDBStore({str(path)!r})"
    assert repr(duck) == f"DuckDBStore({str(path)!r}, closed)"
    with open_store(path, read_only=True) as reader:
        assert repr(reader) == f"DuckDBStore({str(path)!r}, read_only)"
    secret = "s3cret-Pw-7"
    url = pg_url.replace("@", f":{secret}@", 1)
    with open_store(url) as pg:
        shown = repr(pg)
        assert shown == f"PostgresStore({redact_url_password(url)!r})" and ":***@" in shown
    assert secret not in shown and secret not in repr(pg) and repr(pg).endswith(", closed)")
