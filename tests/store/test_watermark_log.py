"""The watermark log: `--as-of` says where each stream was synced up to at the time asked about, on both stores.

Two syncs with their clocks days apart (`sync --now T1`, a second later `sync --now T2`; seen times are the wall
clock's, in whole seconds): a reading between them finds the first sync's watermarks, not today's capped at the
reading (the rule before the log, which a store upgraded to the log still gets for the times before its upgrade,
with a warning).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from usageledger import timeutil
from usageledger.cli import app
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.report import Period, Scope
from usageledger.report.assemble import assemble_report
from usageledger.report.history import as_closed, as_of, watermarks_unlogged
from usageledger.store import BaseStore, Stream, WindowWrite, open_store
from usageledger.store.closes import close_month, month_bounds
from usageledger.store.history import watermarks_before_the_log
from usageledger.store.schema import primary_daily_streams_sql
from usageledger.store.watermarks import LOG, MIGRATION_NAME, REGISTRATION_MIGRATION
from usageledger.sync import SyncOptions

from fixtures.emulator import EMULATOR_NOW
from fixtures.syncing import run

DAY = 86400
COSTS = Stream.create("costs", "1d", ("project_id", "line_item"))
HOURLY = Stream.create("completions", "1h", ("model",))
FIRST = EMULATOR_NOW - 8 * DAY
"""The first sync's clock; the second's is EMULATOR_NOW."""


@pytest.fixture(params=["duckdb", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path, new_store: Callable[[str, Path], str]) -> str:
    return new_store(request.param, tmp_path / "ledger.duckdb")


def _marks(db: BaseStore) -> dict[str, int | None]:
    return {
        stream: None if mark is None else int(mark.timestamp())
        for stream, mark in db.query("SELECT stream, watermark FROM streams WHERE org = 'main'")
    }


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def two_syncs(url: str) -> Iterator[tuple[str, int, dict[str, int | None], dict[str, int | None]]]:
    """A sync with its clock at FIRST, a moment, another sync at EMULATOR_NOW: the store's URL, the moment and the
    watermarks after each sync."""
    clock = [float(FIRST)]
    emu = Emulator(EmulatorConfig(seed=5, days=20, projects=2, users=2, models=2), clock=lambda: clock[0])
    with run_server(emu) as base, open_store(url) as store:
        assert run(store, base, streams=(COSTS, HOURLY), since=FIRST - 10 * DAY, now=clock[0]).ok
        first = _marks(store)
        moment = int(time.time())
        while int(time.time()) <= moment:
            time.sleep(0.05)
        clock[0] = float(EMULATOR_NOW)
        assert run(store, base, streams=(COSTS, HOURLY), now=clock[0]).ok
        second = _marks(store)
    yield url, moment, first, second


def test_as_of_between_two_syncs_finds_the_first_syncs_watermarks(
    two_syncs: tuple[str, int, dict[str, int | None], dict[str, int | None]],
) -> None:
    """`--as-of` capped today's watermarks at the as-of time's bucket: days the second sync read were called
    synced and final at a time before it. The log gives where each stream stood then: the first sync's edge."""
    url, between, first, second = two_syncs
    assert first[COSTS.id] == timeutil.floor(FIRST, "1d") and first[HOURLY.id] == timeutil.floor(FIRST, "1h")
    capped = {s: min(m or 0, timeutil.floor(between, "1d")) for s, m in second.items()}
    assert capped == second != first  # what the rule before the log said: today's watermarks
    options = SyncOptions()
    period = Period(date(2026, 11, 1), date(2026, 11, 21))
    with open_store(url) as store:
        with as_of(store, between) as past:
            assert _marks(past) == first
            data = assemble_report(past, period, Scope(), options=options)[0]
        with as_of(store, FIRST - 1) as before_both:  # before any sync: no stream registered yet
            assert _marks(before_both) == {}
        with as_of(store, int(time.time()) + 5) as after_both:
            assert _marks(after_both) == second
        assert _marks(store) == second  # the shadow is gone
        # One line a move: each commit that moved a watermark logged it, up to where the stream stands now.
        lines = store.query(f"SELECT stream, watermark FROM {LOG} ORDER BY seq")
        assert lines and {s: int(m.timestamp()) for s, m in lines} == second
        assert watermarks_unlogged(store, between) is None
    edge = datetime.fromtimestamp(options.final_until("1d", first[COSTS.id]) or 0, UTC).date()
    assert data.provisional_from == edge
    args = ("report", "--store", url, "--since", "2026-11-01", "--until", "2026-11-21", "--as-of", str(between))
    result = _invoke(*args, "--format", "json")
    doc = json.loads(result.stdout)
    # As of then the costs reached only through the first sync's day, and the report says so (of the store then).
    through = datetime.fromtimestamp(first[COSTS.id] or 0, UTC).date() - timedelta(days=1)
    assert doc["provisional_from"] == edge.isoformat()
    assert [w for w in doc["warnings"] if "costs of org main are synced only" in w and f"through {through}," in w]
    assert len(doc["warnings"]) == 1


def test_a_store_from_before_the_log_answers_as_before_and_logs_from_its_upgrade(url: str) -> None:
    """A store upgraded to the log (migration 0012) gets a baseline of the watermarks it holds: before it, `--as-of`
    takes each as the latest it can have stood (the rule before the log), and says so; from it on, the log."""
    lo, w1, w2, w3 = (timeutil.to_unix(d) for d in ("2026-10-01", "2026-10-10", "2026-10-20", "2026-10-30"))

    def write(mark: int, amount: str) -> None:
        rows = [
            {"bucket_start": day, "bucket_end": day + DAY, "project_id": "proj_a", "line_item": "gpt-4o, input"}
            | {"amount_value": Decimal(amount), "currency": "usd", "quantity": None, "quantity_unit": None}
            for day in range(lo, mark, DAY)
        ]
        store.commit_window(WindowWrite("main", COSTS, rows, lo, mark, f"run-{mark}", mark + 3600, mark))

    with open_store(url) as store:
        store.register_stream("main", COSTS, at=lo)
        write(w1, "1.00")
        write(w2, "2.00")
        # As an older usageledger left it: no watermark log.
        store.execute(f"DROP TABLE {LOG}")
        store.execute("DELETE FROM schema_migrations WHERE name = %s", (MIGRATION_NAME,))
        assert store.migrate() == [MIGRATION_NAME]
        baseline = w2 + 3600  # the stream's last logged row was seen then
        assert store.query(f"SELECT watermark, run_id, seen_at FROM {LOG}") == [
            (datetime.fromtimestamp(w2, UTC), MIGRATION_NAME, datetime.fromtimestamp(baseline, UTC))
        ]
        middle = w1 + 5 * DAY + 7200  # between the two writes, before the upgrade's baseline
        with as_of(store, middle) as past:
            assert _marks(past) == {COSTS.id: timeutil.floor(middle, "1d")}  # capped, as before the log
        with as_of(store, w1) as before_any:
            assert _marks(before_any) == {COSTS.id: None}  # no entry of the stream yet: not synced
        assert watermarks_before_the_log(store, middle) == baseline
        assert watermarks_unlogged(store, w1) is None  # nothing synced then: nothing guessed
        write(w3, "3.00")  # after the upgrade: logged
        with as_of(store, baseline + 60) as past:
            assert _marks(past) == {COSTS.id: w2}
        with as_of(store, w3 + 3600) as past:
            assert _marks(past) == {COSTS.id: w3}
        assert watermarks_before_the_log(store, baseline) is None
    args = ("report", "--store", url, "--since", "2026-10-01", "--until", "2026-10-31", "--as-of", str(middle))
    doc = json.loads(_invoke(*args, "--format", "json").stdout)
    assert [w for w in doc["warnings"] if "watermark log" in w] == [
        f"--as-of {timeutil.iso(middle)}: the store has logged where its streams were synced up to only since"
        f" {timeutil.iso(baseline)} (its upgrade to the watermark log), so each is taken as synced as far as it can"
        " have been then; days shown final may still have been provisional"
    ]


def test_a_closed_month_reads_the_watermarks_the_close_saw_by_its_mark(url: str) -> None:
    """A close is read back by the log's high-water mark it drew: a watermark moved in the close's own second (seen
    times are whole seconds) came after it, and the closed month's reading does not take it."""
    day, at = timeutil.to_unix("2026-10-20"), timeutil.to_unix("2026-11-02T10:00:00")
    october = date(2026, 10, 1)

    def write(mark: int) -> None:
        row = {"bucket_start": day, "bucket_end": day + DAY, "project_id": "proj_a", "line_item": "gpt-4o, input"}
        row |= {"amount_value": Decimal("1.00"), "currency": "usd", "quantity": None, "quantity_unit": None}
        store.commit_window(WindowWrite("main", COSTS, [row], day, day + DAY, f"run-{mark}", at, mark))

    with open_store(url) as store:
        store.register_stream("main", COSTS)
        write(day + DAY)
        (line,) = [c for c in close_month(store, october, ["main"], at=at) if c.level == "org"]
        write(day + 2 * DAY)  # in the close's second
        with as_closed(store, line, buckets=month_bounds(october)) as past:
            assert _marks(past) == {COSTS.id: day + DAY}
        with as_of(store, at) as by_time:
            assert _marks(by_time) == {COSTS.id: day + 2 * DAY}
        store.delete_org("main")  # an org's history goes with it
        assert store.query(f"SELECT COUNT(*) FROM {LOG}") == [(0,)]


def test_a_watermark_set_by_hand_is_logged_when_it_moves(url: str) -> None:
    """`set_watermark` moves a watermark outside a sync: the move is logged (seen at its `at`), one that would move
    it back neither moves it nor logs anything."""
    mark, at = timeutil.to_unix("2026-10-10"), timeutil.to_unix("2026-10-12")
    with open_store(url) as store:
        store.register_stream("main", COSTS, at=mark)
        store.set_watermark("main", COSTS.id, mark, at=at)
        store.set_watermark("main", COSTS.id, mark - DAY, at=at + 60)  # backwards: nothing
        assert store.query(f"SELECT watermark, seen_at FROM {LOG}") == [
            (datetime.fromtimestamp(mark, UTC), datetime.fromtimestamp(at, UTC))
        ]
        with as_of(store, at - 1) as before:
            assert _marks(before) == {COSTS.id: None}
        with as_of(store, at) as then:
            assert _marks(then) == {COSTS.id: mark}


def test_a_reading_of_one_org_is_told_only_of_that_orgs_logs(url: str) -> None:
    """`report --org B --as-of` warned of org A's watermarks from before the log (the demo's beside a real org's), and
    said nothing of B's own revision log beginning after the time asked: each warning reads the orgs asked for."""
    lo, w1, w2, w3 = (timeutil.to_unix(d) for d in ("2026-10-01", "2026-10-10", "2026-10-20", "2026-10-30"))

    def write(org: str, mark: int) -> None:
        rows = [
            {"bucket_start": day, "bucket_end": day + DAY, "project_id": "proj_a", "line_item": "gpt-4o, input"}
            | {"amount_value": Decimal("1.00"), "currency": "usd", "quantity": None, "quantity_unit": None}
            for day in range(lo, mark, DAY)
        ]
        store.commit_window(WindowWrite(org, COSTS, rows, lo, mark, f"run-{org}-{mark}", mark + 3600, mark))

    with open_store(url) as store:
        for org in ("early", "late"):  # as a sync registers them
            store.register_org(org, synthetic=False, source="api", at=lo)
            store.register_stream(org, COSTS, at=lo)
        write("early", w1)
        write("early", w2)
        write("late", w3)  # its first sync: after the time asked
        store.execute(f"DROP TABLE {LOG}")  # as an older usageledger left it
        store.execute("DELETE FROM schema_migrations WHERE name = %s", (MIGRATION_NAME,))
        assert store.migrate() == [MIGRATION_NAME]
        middle = w1 + 5 * DAY
        assert watermarks_before_the_log(store, middle) == w2 + 3600  # early's baseline: after the time asked
        assert watermarks_before_the_log(store, middle, "late") is None
        assert watermarks_before_the_log(store, middle, ["early", "late"]) == w2 + 3600
    args = ("report", "--store", url, "--since", "2026-10-01", "--until", "2026-10-31", "--as-of", str(middle))
    done = _invoke(*args, "--org", "late", "--format", "json")
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["warnings"] == [
        f"--as-of {timeutil.iso(middle)}: the store's revision log has entries of org late only from"
        f" {timeutil.iso(w3 + 3600)}, the first sync of org late, so it held nothing then; --as-of asks what the"
        " store knew at a time (for spend over a period, use --since and --until)"
    ]
    doc = json.loads(_invoke(*args, "--format", "json").stdout)  # every org: early's watermarks were guessed
    assert [w for w in doc["warnings"] if "watermark log" in w] != []


PROJECTS = Stream.create("costs", "1d", ("project_id",))
"""A daily costs stream other than the default one (``COSTS``), which outranks it as an org's primary stream."""


def _costs(stream: Stream, lo: int, hi: int, amount: str) -> list[dict[str, Any]]:
    line_item = "gpt-4o, input" if "line_item" in stream.group_by else None
    return [
        {"bucket_start": day, "bucket_end": day + DAY, "project_id": "proj_a", "line_item": line_item}
        | {"amount_value": Decimal(amount), "currency": "usd", "quantity": None, "quantity_unit": None}
        for day in range(lo, hi, DAY)
    ]


def test_a_stream_registered_later_does_not_take_over_readings_of_before(url: str) -> None:
    """`--as-of` and a closed month's reading listed today's streams: the default costs stream, registered after
    the time asked (in the close's own second, too), became the org's primary daily stream then, and the spend of
    then read as the nothing it held. A reading sees the streams registered by its time (by its mark, for a close)."""
    assert COSTS.is_default and not PROJECTS.is_default
    lo, hi, at = (timeutil.to_unix(d) for d in ("2026-10-01", "2026-10-10", "2026-11-02T10:00:00"))
    october = date(2026, 10, 1)
    primary = f"SELECT org, stream FROM ({primary_daily_streams_sql('costs')}) AS p"
    spend = "SELECT SUM(amount_value) FROM costs_daily"
    with open_store(url) as store:
        store.register_stream("main", PROJECTS, at=lo)
        store.commit_window(WindowWrite("main", PROJECTS, _costs(PROJECTS, lo, hi, "1.00"), lo, hi, "r1", hi, hi))
        (line,) = [c for c in close_month(store, october, ["main"], at=at) if c.level == "org"]
        assert line.amount == Decimal("9.00")
        store.register_stream("main", COSTS, at=at)  # in the close's second, after it
        store.commit_window(WindowWrite("main", COSTS, _costs(COSTS, lo, hi, "2.00"), lo, hi, "r2", at + DAY, hi))
        assert store.query(primary) == [("main", COSTS.id)]  # today's
        with as_of(store, at - 60) as past:
            assert past.query(primary) == [("main", PROJECTS.id)] and past.query(spend) == [(Decimal("9.00"),)]
        with as_closed(store, line, buckets=month_bounds(october)) as past:
            assert past.query(primary) == [("main", PROJECTS.id)] and past.query(spend) == [(Decimal("9.00"),)]
        with as_of(store, at + DAY) as later:
            assert later.query(primary) == [("main", COSTS.id)] and later.query(spend) == [(Decimal("18.00"),)]


def test_a_store_from_before_registration_times_dates_each_stream_by_the_first_the_store_knew_of_it(
    url: str,
) -> None:
    """Migration 0014 gives the streams a store holds the earliest the store knows of each (its first line in either
    log); one it knows nothing of gets none, and is in every reading, as before the migration."""
    lo, hi = timeutil.to_unix("2026-10-01"), timeutil.to_unix("2026-10-10")
    with open_store(url) as store:
        store.register_stream("main", PROJECTS, at=lo)
        store.commit_window(WindowWrite("main", PROJECTS, _costs(PROJECTS, lo, hi, "1.00"), lo, hi, "r1", hi, hi))
        store.register_stream("main", COSTS, at=hi)
        first = store.query("SELECT MIN(seq) FROM revisions WHERE stream = %s", (PROJECTS.id,))[0][0]
        for column in ("registered_at", "registered_seq"):  # as an older usageledger left it
            store.execute(f"ALTER TABLE streams DROP COLUMN {column}")
        store.execute("DELETE FROM schema_migrations WHERE name = %s", (REGISTRATION_MIGRATION,))
        assert store.migrate() == [REGISTRATION_MIGRATION]
        got = dict(
            (s, (a if a is None else int(a.timestamp()), q))
            for s, a, q in store.query("SELECT stream, registered_at, registered_seq FROM streams")
        )
        assert got == {PROJECTS.id: (hi, first), COSTS.id: (None, None)}
        with as_of(store, lo) as past:  # nothing of PROJECTS yet; COSTS, undated, as before
            assert _marks(past) == {COSTS.id: None}


@pytest.mark.parametrize("write", ["set_watermark", "register_stream", "commit_window"])
def test_a_close_waits_for_a_watermark_move_or_a_registration_in_flight(write: str, pg_url: str) -> None:
    """Two writers of one PostgreSQL: a watermark moved by hand (or a stream registered) drew its number from
    `revisions_seq` beside a close, which drew its mark above it before the move committed and so counted, read back,
    a move it never saw. Both now hold the log's write lock, as a sync's commit (whose watermark line is written
    in it) does: the close waits for them."""
    import threading

    october = date(2026, 10, 1)
    mark, at = timeutil.to_unix("2026-10-10"), timeutil.to_unix("2026-11-02T10:00:00")
    first, closer = open_store(pg_url), open_store(pg_url)
    closer_pid = closer.query("SELECT pg_backend_pid()")[0][0]
    closed: list[Any] = []
    try:
        first.register_stream("main", PROJECTS, at=mark)
        if write != "register_stream":
            first.register_stream("main", COSTS, at=mark)
        with first.transaction():  # numbered, not committed yet
            if write == "set_watermark":
                first.set_watermark("main", COSTS.id, mark, at=at)
            elif write == "commit_window":
                lo = timeutil.to_unix("2026-10-01")
                first.commit_window(
                    WindowWrite("main", COSTS, _costs(COSTS, lo, mark, "2.00"), lo, mark, "r", at, mark)
                )
            else:
                first.register_stream("main", COSTS, at=at)
            thread = threading.Thread(target=lambda: closed.extend(close_month(closer, october, ["main"], at=at)))
            thread.start()
            deadline = time.monotonic() + 30
            waiting = "SELECT COUNT(*) FROM pg_locks WHERE pid = %s AND NOT granted"
            while thread.is_alive() and not first.query(waiting, (closer_pid,))[0][0]:
                assert time.monotonic() < deadline, "the close neither waited nor finished"
                time.sleep(0.01)
            assert thread.is_alive(), "the close drew its mark beside an uncommitted write of the log's sequence"
        thread.join(30)
        (line,) = [c for c in closed if c.level == "org"]
        with as_closed(first, line, buckets=month_bounds(october)) as past:
            assert _marks(past)[COSTS.id] == (None if write == "register_stream" else mark)
    finally:
        first.close()
        closer.close()


def test_a_statement_of_a_month_closed_before_the_log_reads_no_watermark(url: str) -> None:
    """A month closed before the store's upgrade to the watermark log is read back by the guessing rule for its
    watermarks, which `report --as-of` warns of; a statement reads only the month's rows as of the close (no
    finality, no watermark), so it matches its close with nothing to warn of."""
    lo, hi, at = (timeutil.to_unix(d) for d in ("2026-10-01", "2026-11-01", "2026-11-02T10:00:00"))
    with open_store(url) as store:
        store.register_stream("main", COSTS, at=lo)
        store.commit_window(WindowWrite("main", COSTS, _costs(COSTS, lo, hi, "1.00"), lo, hi, "r1", hi, hi))
        close_month(store, date(2026, 10, 1), ["main"], at=at)
        store.commit_window(WindowWrite("main", COSTS, _costs(COSTS, lo, hi, "1.50"), lo, hi, "r2", at + DAY, hi))
        store.execute(f"DROP TABLE {LOG}")  # as an older usageledger left it
        store.execute("DELETE FROM schema_migrations WHERE name = %s", (MIGRATION_NAME,))
        assert store.migrate() == [MIGRATION_NAME]
        assert watermarks_before_the_log(store, at) is not None  # an --as-of of the close's time would warn
    done = _invoke("statement", "2026-10", "--by", "project", "--store", url, "--format", "json")
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["closed"]["matches_close"] is True and Decimal(doc["total"]) == Decimal("31.00")
    assert "warning" not in done.stderr
