"""End-to-end sync against the emulator over loopback: idempotent, exact, revision-aware, backfills, several orgs."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from usageledger import catalogue, timeutil
from usageledger.cli import app
from usageledger.emulator import Emulator, EmulatorConfig, FaultConfig, run_server
from usageledger.errors import ConfigError, ParameterError, SyncError
from usageledger.store import BaseStore, Stream, UpsertCounts, default_streams, open_store, table_for, tables
from usageledger.sync import Org, SyncOptions, SyncResult, WindowDone, _state, plan_stream, run_sync, sync

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.syncing import DAY, Snapshot, run, snapshot

START_90 = timeutil.floor(EMULATOR_NOW - 90 * DAY, "1d")


# --- helpers (also used by test_sync_kill) ---------------------------------------------------------------


def store_totals(
    store: BaseStore, org: str, stream: Stream, start: int = 0, end: int = 4_000_000_000
) -> dict[str, Any]:
    """Row count and the sum of every additive metric of one stream, over buckets starting in [start, end)."""
    metrics = [c.name for c in stream.endpoint.additive_metrics]
    sums = ", ".join(f'SUM("{m}")' for m in metrics)
    from datetime import UTC, datetime

    row = store.query(
        f"SELECT COUNT(*), {sums} FROM {table_for(stream.endpoint).name}"
        " WHERE org = %s AND stream = %s AND bucket_start >= %s AND bucket_start < %s",
        (org, stream.id, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)),
    )[0]
    return {"rows": row[0], **{m: (v if v is not None else 0) for m, v in zip(metrics, row[1:], strict=True)}}


def sdk_totals(base_url: str, stream: Stream, start: int, end: int) -> dict[str, Any]:
    """The same totals read with the official openai SDK, paging by hand; money parsed as Decimal from the JSON."""
    from openai import OpenAI  # imported here: ~0.4 s of CPU that every xdist worker would pay to collect this module

    client = OpenAI(admin_api_key=FAKE_ADMIN_KEY, api_key="unused", base_url=base_url, max_retries=2)
    method = getattr(client.admin.organization.usage.with_raw_response, stream.endpoint.sdk_method)
    limit = stream.endpoint.limit_for(stream.bucket_width).maximum
    metrics = [c.name for c in stream.endpoint.additive_metrics]
    totals: dict[str, Any] = defaultdict(int)
    totals["rows"] = 0
    page: str | None = None
    try:
        while True:
            kwargs: dict[str, Any] = {"start_time": start, "end_time": end, "bucket_width": stream.bucket_width}
            kwargs.update(limit=limit, **stream.query_filters())
            if stream.group_by:
                kwargs["group_by"] = list(stream.group_by)
            if page is not None:
                kwargs["page"] = page
            body = json.loads(method(**kwargs).http_response.content, parse_float=Decimal)
            for bucket in body["data"]:
                for result in bucket["results"]:
                    totals["rows"] += 1
                    for m in metrics:
                        value = (result.get("amount") or {}).get("value") if m == "amount_value" else result.get(m)
                        totals[m] += value or 0
            if not body["has_more"]:
                return dict(totals)
            page = body["next_page"]
    finally:
        client.close()


@pytest.fixture
def duck(tmp_path: Path, new_store: Callable[[str, Path], str]) -> Iterator[BaseStore]:
    """A fresh DuckDB store (a copy of one migrated before: ``new_store``)."""
    with open_store(new_store("duckdb", tmp_path / "ledger.duckdb")) as store:
        yield store


@pytest.fixture(scope="module")
def synced_90(tmp_path_factory: pytest.TempPathFactory, emulator_url: str) -> Iterator[tuple[BaseStore, Snapshot]]:
    """A DuckDB store after a 90-day sync of every default stream, with its snapshot."""
    with open_store(tmp_path_factory.mktemp("s90") / "ledger.duckdb") as store:
        result = run(store, emulator_url, since=START_90)
        assert result.ok, result.errors
        yield store, snapshot(store)


# --- the checks ---------------------------------------------------------------------------------------------


def test_90_day_sync_twice_leaves_an_identical_store(synced_90: tuple[BaseStore, Snapshot], emulator_url: str) -> None:
    """Re-running (incrementally, re-reading the lag window) changes nothing and duplicates nothing."""
    store, before = synced_90
    assert all(before[t.name] for t in tables())
    second = run(store, emulator_url)
    assert second.ok
    assert second.counts.inserted == second.counts.updated == second.counts.deleted == 0
    assert second.counts.unchanged > 0
    assert snapshot(store) == before
    third = run(store, emulator_url, since=START_90)
    assert third.counts.unchanged == sum(len(v) for k, v in before.items() if k != "streams")
    assert snapshot(store) == before


@pytest.mark.parametrize("stream", default_streams(), ids=lambda s: s.endpoint.name)
def test_totals_match_the_official_sdk_exactly(
    synced_90: tuple[BaseStore, Snapshot], emulator_url: str, stream: Stream
) -> None:
    """Row counts and every metric's sum equal what the openai SDK reads for the same range (money exact)."""
    store, _ = synced_90
    expected = sdk_totals(emulator_url, stream, START_90, EMULATOR_NOW)
    assert expected["rows"] > 0
    assert store_totals(store, "main", stream) == expected


def test_watermarks_and_status_after_a_sync(synced_90: tuple[BaseStore, Snapshot]) -> None:
    """Every stream's watermark is the start of today's (open) bucket and its status ok."""
    store, _ = synced_90
    states = store.stream_states()
    assert len(states) == len(default_streams())
    assert {s.watermark for s in states} == {timeutil.floor(EMULATOR_NOW, "1d")}
    assert {s.last_status for s in states} == {"ok"}
    assert all(s.row_count > 0 for s in states)
    runs = store.query("SELECT status FROM sync_runs")
    assert runs and {r[0] for r in runs} == {"ok"}


def test_revised_buckets_replace_what_was_stored(duck: BaseStore) -> None:
    """After the emulator's clock moves on, recent buckets have grown and the next sync stores the new values."""
    clock = [float(EMULATOR_NOW)]
    emu = Emulator(
        EmulatorConfig(seed=3, days=20, projects=2, users=3, models=2, revisions=True), clock=lambda: clock[0]
    )
    streams = (Stream.create("completions", "1d", ("project_id", "model")), Stream.create("costs", "1d", ()))
    start = timeutil.floor(EMULATOR_NOW - 10 * DAY, "1d")
    with run_server(emu) as url:
        first = run(duck, url, streams=streams, since=start, now=clock[0])
        assert first.ok
        before = {s.id: store_totals(duck, "main", s) for s in streams}
        clock[0] += DAY / 2
        second = run(duck, url, streams=streams, now=clock[0])
        assert second.ok and second.counts.updated > 0 and second.counts.inserted >= 0
        for s in streams:
            after = store_totals(duck, "main", s)
            assert after == sdk_totals(url, s, start, int(clock[0]))
            assert after != before[s.id]


def test_rows_that_vanish_from_a_reread_bucket_are_deleted(duck: BaseStore, emulator_url: str) -> None:
    """The re-read window is authoritative: a stored row the API no longer returns is deleted."""
    stream = Stream.create("embeddings", "1d", ("project_id", "model"))
    assert run(duck, emulator_url, streams=(stream,), since=START_90).ok
    recent = timeutil.floor(EMULATOR_NOW, "1d") - DAY
    old = START_90 + DAY
    from datetime import UTC, datetime

    for day in (recent, old):
        duck.execute(
            "INSERT INTO usage_embeddings (org, stream, bucket_start, bucket_end, group_key, project_id, model,"
            " input_tokens, num_model_requests)"
            " VALUES ('main', %s, %s, %s, '[\"gone\",\"gone\"]', 'gone', 'gone', 1, 1)",
            (stream.id, datetime.fromtimestamp(day, UTC), datetime.fromtimestamp(day + DAY, UTC)),
        )
    result = run(duck, emulator_url, streams=(stream,))
    assert result.counts.deleted == 1
    left = duck.query("SELECT bucket_start FROM usage_embeddings WHERE project_id = 'gone'")
    assert [int(r[0].timestamp()) for r in left] == [old]  # outside the lag window: not re-read, kept


def test_backfill_does_not_move_the_watermark(duck: BaseStore, emulator_url: str) -> None:
    """--since/--until fill older buckets and leave the watermark where the incremental sync put it."""
    stream = Stream.create("moderations", "1d", ("project_id", "model"))
    assert run(duck, emulator_url, streams=(stream,), since=EMULATOR_NOW - 10 * DAY).ok
    mark = duck.stream_states()[0].watermark
    assert mark == timeutil.floor(EMULATOR_NOW, "1d")
    old_start, old_end = START_90, START_90 + 20 * DAY
    back = run(duck, emulator_url, streams=(stream,), since=old_start, until=old_end)
    assert back.ok and back.counts.inserted > 0
    assert duck.stream_states()[0].watermark == mark
    assert store_totals(duck, "main", stream, old_start, old_end) == sdk_totals(
        emulator_url, stream, old_start, old_end
    )
    plan = plan_stream("main", stream, mark, SyncOptions(since=old_start, until=old_end), now=EMULATOR_NOW)
    assert not plan.moves_watermark and plan.end == old_end


def test_windows_asked_in_spans_of_one_bucket_store_what_whole_windows_store(
    duck: BaseStore,
    tmp_path: Path,
    new_store: Callable[[str, Path], str],
    emulator_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page budget of one result asks every bucket on its own (after the first page, of the default limit), and
    the store holds exactly the rows and watermarks of a sync that asked each window in one request."""
    streams = (
        Stream.create("costs", "1d", ("project_id", "line_item")),
        Stream.create("completions", "1h", ("project_id", "model")),
    )
    since = EMULATOR_NOW - 12 * DAY
    monkeypatch.setattr(_state, "PAGE_RESULTS", 10**9)
    whole = run(duck, emulator_url, streams=streams, since=since)
    monkeypatch.setattr(_state, "PAGE_RESULTS", 1)
    with open_store(new_store("duckdb", tmp_path / "spans.duckdb")) as spans_store:
        spans = run(spans_store, emulator_url, streams=streams, since=since)
        assert whole.ok and spans.ok and whole.counts.inserted > 0
        assert snapshot(spans_store) == snapshot(duck)
    plans = [plan_stream("main", stream, None, SyncOptions(since=since), now=EMULATOR_NOW) for stream in streams]
    windows = sum(len(plan.windows) for plan in plans)
    assert whole.requests <= 2 * windows  # the default limit's page, then the rest of the window in one
    # One request a bucket, but for the first page of a window fetched before its stream's first page was in (its
    # default limit: 7 days, 24 hours).
    buckets = sum(w.limit for plan in plans for w in plan.windows)
    first_pages = sum(len(p.windows) * p.stream.endpoint.limit_for(p.stream.bucket_width).default for p in plans)
    assert spans.requests >= buckets - first_pages > 2 * windows


def _synced_in_pieces(url: str, since: int) -> dict[str, Any]:
    """Three syncs of costs and hourly completions into the store at ``url`` from an emulator whose recent buckets
    grow (a first; half a day later, with a stored row the API no longer returns; the same again): what each
    committed, the store after each, the revision log and the commit events."""
    clock = [float(EMULATOR_NOW)]
    emu = Emulator(
        EmulatorConfig(seed=3, days=40, projects=2, users=3, models=2, revisions=True), clock=lambda: clock[0]
    )
    with run_server(emu) as base_url, open_store(url) as store:
        return _three_syncs(store, base_url, clock, since)


def _three_syncs(store: BaseStore, url: str, clock: list[float], since: int) -> dict[str, Any]:
    streams = (
        Stream.create("costs", "1d", ("project_id", "line_item")),
        Stream.create("completions", "1h", ("project_id", "model")),
    )
    events: list[Any] = []
    results: list[SyncResult] = []
    stores: list[Snapshot] = []
    for step in range(3):
        if step == 1:
            clock[0] += DAY / 2
            recent = timeutil.floor(EMULATOR_NOW, "1d") - DAY
            store.execute(
                "INSERT INTO costs (org, stream, bucket_start, bucket_end, group_key, project_id, line_item,"
                " amount_value) VALUES ('main', %s, %s, %s, '[\"gone\",\"gone\"]', 'gone', 'gone', 1)",
                (streams[0].id, datetime.fromtimestamp(recent, UTC), datetime.fromtimestamp(recent + DAY, UTC)),
            )
        results.append(
            sync(
                store,
                [Org("main", FAKE_ADMIN_KEY, url)],
                streams,
                SyncOptions(since=since),
                on_event=events.append,
                clock=lambda: clock[0],
            )
        )
        stores.append(snapshot(store))
    log = store.query(
        "SELECT org, stream, endpoint_table, bucket_start, group_key, change, metric, old_value, new_value"
        " FROM revisions ORDER BY 1, 2, 3, 4, 5, 6, 7"
    )
    done = [e for e in events if isinstance(e, WindowDone)]
    return {
        "counts": [[(s.stream, s.counts, s.windows_done, s.windows, s.status) for s in r.streams] for r in results],
        "stores": stores,
        "log": log,
        "shares": {stream.id: round(sum(e.share for e in done if e.stream == stream.id), 9) for stream in streams},
        "committed": [sum((e.counts for e in done if e.stream == stream.id), UpsertCounts()) for stream in streams],
        "pieces": len(done),
    }


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_windows_committed_in_pieces_store_what_whole_windows_store(
    backend: str,
    tmp_path: Path,
    new_store: Callable[[str, Path], str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """A page budget of a few buckets' results commits each window in pieces of whole buckets (more commits than
    windows, their shares adding up to the windows); every sync's counts, the rows and watermarks after each, and
    the revision log (updates, a deleted row, nothing for a re-run of the same data) equal a sync writing each
    window whole."""
    since = timeutil.floor(EMULATOR_NOW - 20 * DAY, "1d")
    got: dict[int, dict[str, Any]] = {}
    urls = [new_store(backend, tmp_path / "whole.duckdb")]
    if backend == "duckdb":
        urls.append(new_store(backend, tmp_path / "pieces.duckdb"))
    else:  # new_store gives one database a test; a second copy straight from the cluster
        template = request.getfixturevalue("_pg_migrated_template")
        urls.append(request.getfixturevalue("_pg_cluster").copydb(f"pieces_{uuid.uuid4().hex[:12]}", template))
    for budget, url in zip((10**9, 40), urls, strict=True):
        monkeypatch.setattr(_state, "PAGE_RESULTS", budget)
        got[budget] = _synced_in_pieces(url, since)
    whole, pieces = got[10**9], got[40]
    windows = [n for _, _, _, n, _ in whole["counts"][0]]
    assert whole["pieces"] == 3 * sum(windows) < pieces["pieces"]  # one commit a window, whole; many in pieces
    assert list(pieces["shares"].values()) == list(whole["shares"].values()) == [3 * n for n in windows]
    assert pieces["committed"] == whole["committed"]
    first, second, third = whole["counts"]
    assert all(c.inserted for _, c, _, _, _ in first) and sum(c.deleted for _, c, _, _, _ in second) == 1
    assert any(c.updated for _, c, _, _, _ in second)
    assert all(c == UpsertCounts(unchanged=c.unchanged) for _, c, _, _, _ in third)
    assert pieces["counts"] == whole["counts"]
    assert pieces["stores"] == whole["stores"]
    assert pieces["log"] == whole["log"] and any(change == "delete" for *_, change, _, _, _ in whole["log"])


def test_a_streams_span_follows_the_results_per_bucket_its_pages_held() -> None:
    """Before any page, a request asks the default limit; after, about PAGE_RESULTS results' worth of buckets."""
    stream = Stream.create("costs", "1d", ("project_id", "line_item"))
    start = START_90
    plan = plan_stream("main", stream, None, SyncOptions(since=start), now=EMULATOR_NOW)
    run_ = _state.StreamRun.start(plan, watermark=None, extent=None)
    assert run_.request_span(start, start + 180 * DAY) == start + 7 * DAY  # costs' default limit
    run_.learn(100, start, start + 2 * DAY)  # 50 a bucket: the window's maximum of 180 buckets is the bound
    assert run_.request_span(start, start + 200 * DAY) == start + 180 * DAY
    run_.learn(638_087, start, start + 60 * DAY)  # 10,635 a bucket: four buckets hold about 50,000
    assert run_.request_span(start, start + 60 * DAY) == start + 4 * DAY
    run_.learn(10, start, start + DAY)  # a sparse page never widens the span again
    assert run_.request_span(start, start + 60 * DAY) == start + 4 * DAY
    run_.learn(10**6, start, start + DAY)  # one bucket holding more than the budget: still one bucket
    assert run_.request_span(start, start + 60 * DAY) == start + DAY
    assert run_.request_span(start, start + DAY // 2) == start + DAY // 2  # never past the window


def test_a_run_under_an_injected_clock_records_its_times_on_the_wall_clock(duck: BaseStore, emulator_url: str) -> None:
    """`clock=` (`sync --now`) is the time the run reads by; what the store records of the run is on the wall clock.
    `started_at` and each stream's `last_run_at` took the injected clock while `finished_at`, `synced_at` and the
    revision log's `seen_at` took the wall clock: a run started weeks ago and finished now, whose last run the
    dashboard and Prometheus read as weeks old, and whose times `close` (real time) could not be ordered against."""
    import time

    stream = Stream.create("vector_stores", "1d", ("project_id",))
    before = int(time.time())
    result = sync(
        duck, [Org("main", FAKE_ADMIN_KEY, emulator_url)], (stream,), SyncOptions(since=START_90),
        clock=lambda: EMULATOR_NOW,
    )  # fmt: skip
    after = int(time.time()) + 1
    assert result.ok and result.counts.inserted and before - EMULATOR_NOW > 86400  # the injected clock is days back
    [(started, finished)] = duck.query("SELECT started_at, finished_at FROM sync_runs")
    [(last_run,)] = duck.query("SELECT last_run_at FROM streams")
    [(first_seen, last_seen)] = duck.query("SELECT min(seen_at), max(seen_at) FROM revisions")
    [(synced,)] = duck.query(f"SELECT max(synced_at) FROM {table_for(stream.endpoint).name}")
    recorded = [started, finished, last_run, first_seen, last_seen, synced]
    assert all(before <= timeutil.to_unix(t) <= after for t in recorded), (before, recorded, after)
    mark = duck.stream_states()[0].watermark  # what was read, by the injected clock: up to its day, not today's
    assert mark is not None and EMULATOR_NOW - 2 * DAY < mark <= EMULATOR_NOW


def test_plan_rereads_the_lag_window_per_bucket_width() -> None:
    """Daily streams re-read lag_days; hourly and minute streams their grace; first runs reach `since` back."""
    now = EMULATOR_NOW
    daily = Stream.create("completions", "1d")
    hourly = Stream.create("completions", "1h")
    minute = Stream.create("completions", "1m")
    options = SyncOptions(lag_days=3, hour_grace=7200, minute_grace=900)
    mark = timeutil.floor(now, "1d")
    assert plan_stream("o", daily, mark, options, now=now).start == mark - 3 * DAY
    assert (
        plan_stream("o", hourly, timeutil.floor(now, "1h"), options, now=now).start == timeutil.floor(now, "1h") - 7200
    )
    assert (
        plan_stream("o", minute, timeutil.floor(now, "1m"), options, now=now).start == timeutil.floor(now, "1m") - 900
    )
    first = plan_stream("o", daily, None, options, now=now)
    # The period rule: a first sync reaches `since = 90d` back, the 90 whole UTC days ending today.
    assert first.start == timeutil.floor(now, "1d") - 89 * DAY and first.end == now and first.moves_watermark
    assert [w.limit for w in first.windows] == [31, 31, 28]


def test_several_orgs_share_one_store(duck: BaseStore, emulator_url: str) -> None:
    """Two orgs land in the same tables, kept apart by the org column and by the daily views."""
    stream = Stream.create("costs", "1d", ("project_id", "line_item"))
    orgs = [Org("acme", FAKE_ADMIN_KEY, emulator_url), Org("beta", FAKE_ADMIN_KEY, emulator_url)]
    result = run(duck, emulator_url, streams=(stream,), orgs=orgs, since=EMULATOR_NOW - 20 * DAY)
    assert result.ok and len(result.streams) == 2
    per_org = duck.query("SELECT org, COUNT(*), SUM(amount_value) FROM costs_daily GROUP BY org ORDER BY org")
    assert [r[0] for r in per_org] == ["acme", "beta"]
    assert per_org[0][1:] == per_org[1][1:]
    assert store_totals(duck, "acme", stream) == store_totals(duck, "beta", stream)


def test_daily_views_sum_to_the_default_stream_only(duck: BaseStore, emulator_url: str) -> None:
    """With a model-grouped and an ungrouped completions stream, the daily view counts tokens once."""
    default = next(s for s in default_streams() if s.endpoint.name == "completions")
    ungrouped = Stream.create("completions", "1d", ())
    by_model = Stream.create("completions", "1d", ("model",))
    assert run(duck, emulator_url, streams=(ungrouped, by_model, default), since=EMULATOR_NOW - 15 * DAY).ok
    total = duck.query("SELECT SUM(input_tokens) FROM usage_completions WHERE stream = %s", (ungrouped.id,))[0][0]
    assert total > 0
    assert duck.query("SELECT SUM(input_tokens) FROM usage_completions") == [(3 * total,)]
    assert duck.query("SELECT SUM(input_tokens), MIN(stream), MAX(stream) FROM usage_completions_daily") == [
        (total, default.id, default.id)
    ]


def test_duckdb_and_postgres_hold_identical_data(
    synced_90: tuple[BaseStore, Snapshot], emulator_url: str, migrated_pg_url: str
) -> None:
    """The same 90-day sync into PostgreSQL gives exactly the DuckDB rows, watermarks and counts."""
    _, duck_snapshot = synced_90
    with open_store(migrated_pg_url) as pg:
        assert run(pg, emulator_url, since=START_90).ok
        assert snapshot(pg) == duck_snapshot
        again = run(pg, emulator_url)
        assert again.counts.inserted == again.counts.updated == 0
        assert snapshot(pg) == duck_snapshot


def test_a_postgres_sync_analyses_the_tables_it_wrote_that_were_never_analysed(
    migrated_pg_url: str, emulator_url: str
) -> None:
    """After the run's commits, the endpoint tables it wrote have statistics (``reltuples`` counts their rows, -1
    never analysed): a re-sync before autovacuum's first analyse planned the reconcile's delete of a changed window
    from none, a nested loop, ~9 s for 60 days of costs. Autovacuum is off on them here, so nothing else analyses
    them; a table the run did not write is left as it was."""
    streams = (Stream.create("costs", "1d", ("project_id", "line_item")), Stream.create("embeddings", "1d"))
    with open_store(migrated_pg_url) as pg:
        for t in tables():
            pg.execute(f"ALTER TABLE {t.name} SET (autovacuum_enabled = false)")
        assert run(pg, emulator_url, streams=streams, since=EMULATOR_NOW - 20 * DAY).ok
        stats = "SELECT c.reltuples, s.last_analyze FROM pg_class AS c JOIN pg_stat_user_tables AS s ON s.relid = c.oid"
        for table in ("costs", "usage_embeddings"):
            rows = pg.query(f"SELECT COUNT(*) FROM {table}")[0][0]
            [(reltuples, analysed)] = pg.query(f"{stats} WHERE c.oid = '{table}'::regclass")
            assert rows > 20 and reltuples == rows and analysed is not None, table
        assert pg.query(f"{stats} WHERE c.oid = 'usage_images'::regclass") == [(-1, None)]


def test_a_failing_stream_names_stream_and_window_and_commits_nothing(duck: BaseStore) -> None:
    """A window that fails past its retries (a 5xx every time) fails its stream loudly, naming stream and window;
    no row and no watermark is written."""
    emu = Emulator(EmulatorConfig(seed=1, days=10, now=EMULATOR_NOW, faults=FaultConfig(rate_5xx=1.0)))
    stream = Stream.create("costs", "1d")
    with run_server(emu) as url:
        result = run(duck, url, streams=(stream,), since=EMULATOR_NOW - 5 * DAY, max_retries=0)
    assert not result.ok and result.refused_orgs == ()
    (error,) = result.errors
    assert (
        "stream main/costs.1d.total, window 2026-11-15T00:00:00Z to 2026-11-20T12:00:00Z" in error
        and "HTTP 50" in error
    )
    assert duck.query("SELECT COUNT(*) FROM costs") == [(0,)]
    (state,) = duck.stream_states()
    assert state.watermark is None and state.last_status == "failed" and state.last_error == error
    assert duck.query("SELECT status FROM sync_runs") == [("failed",)]


def test_a_refused_key_stops_every_stream_of_its_org_with_one_message(duck: BaseStore) -> None:
    """A 401 is the org's key, not a window: the first one stops every stream of the org with one message (which
    org, the status, what to do) instead of one 401 per stream (twelve of them, ~5,000 characters); no more
    requests go out with the key; the streams and the run are recorded failed with that message. Another org of the
    same run, whose key is good, syncs in full."""
    right = "sk-admin-the-right-one"
    emu = Emulator(EmulatorConfig(seed=1, days=10, admin_key=right, now=EMULATOR_NOW))
    since = EMULATOR_NOW - 5 * DAY
    with run_server(emu) as url:
        refused = run(duck, url, since=since, max_retries=0, concurrency=2)
        both = run(duck, url, orgs=[Org("main", FAKE_ADMIN_KEY, url), Org("good", right, url)], since=since)
    assert not refused.ok and refused.requests <= 2, "one round of requests, then no more with a refused key"
    (error,) = refused.errors
    assert error.startswith("org 'main': the API refused the admin key (HTTP 401 invalid_api_key): it is wrong")
    assert "valid organization admin key" in error and FAKE_ADMIN_KEY not in error and len(error) < 300
    assert refused.refused_orgs == ("main",)
    assert all(s.error == error and s.key_refused and s.status == "failed" for s in refused.streams)
    assert duck.query("SELECT status, error FROM sync_runs ORDER BY started_at LIMIT 1") == [("failed", error)]
    (error_both,) = both.errors
    assert error_both == error and both.refused_orgs == ("main",)
    assert all(s.status == "ok" for s in both.streams if s.org == "good") and both.counts.inserted > 0
    states = {(s.org, s.last_status, s.last_error) for s in duck.stream_states()}
    assert states == {("main", "failed", error), ("good", "ok", None)}


def test_another_organizations_key_is_refused_before_it_overwrites_the_org(duck: BaseStore) -> None:
    """A key swapped between two orgs' variables synced gamma's usage under `alpha`, replacing alpha's rows and
    marking its whole directory deleted, in silence. An org whose stored directory has projects is refused when none
    of them is found with its key, before anything is written; its own key syncs on."""
    from usageledger.emulator.orgs import Organisations, org_key
    from usageledger.sync.directory import refresh_org

    streams = (Stream.create("costs", "1d", ("project_id", "line_item")),)
    since = EMULATOR_NOW - 5 * DAY
    with run_server(Organisations(EmulatorConfig(days=10, now=EMULATOR_NOW), 3)) as url:
        alpha = Org("alpha", org_key(1), url, key_source="KEY_ALPHA")
        assert run(duck, url, orgs=[alpha], streams=streams, since=since).ok
        refresh_org(duck, alpha, at=EMULATOR_NOW, allow_insecure_http=True)
        directory = "SELECT * FROM directory_versions ORDER BY kind, scope, id, valid_from"
        before = (snapshot(duck), duck.query(directory))
        assert before[0]["costs"] and before[1]
        swapped = Org("alpha", org_key(3), url, key_source="KEY_ALPHA")
        with pytest.raises(SyncError) as refused:
            run(duck, url, orgs=[swapped], streams=streams, since=since)
        assert (snapshot(duck), duck.query(directory)) == before
        assert duck.query("SELECT COUNT(*) FROM sync_runs")[0][0] == 1  # not even a run was recorded
        assert run(duck, url, orgs=[alpha], streams=streams).ok
    said = str(refused.value)
    assert said.startswith("org 'alpha': the admin key from KEY_ALPHA belongs to another organization: none of")
    assert said.endswith("set KEY_ALPHA to alpha's own admin key; nothing was synced") and org_key(3) not in said


def test_a_base_url_without_v1_is_said_once_for_all_the_streams(duck: BaseStore) -> None:
    """A base URL missing its /v1 makes every path a 404: the run's errors say so once for the org (how many
    streams, the base URL, the fix) instead of one 250-character 404 per stream; each stream keeps its own
    message (stream, window, request id) in the store."""
    emu = Emulator(EmulatorConfig(seed=1, days=10, now=EMULATOR_NOW))
    with run_server(emu) as url:
        bare = url.removesuffix("/v1")
        result = run(duck, bare, since=EMULATOR_NOW - 5 * DAY, max_retries=0)
    assert not result.ok and len(result.streams) > 3
    (error,) = result.errors
    assert error.startswith(f"org 'main': all {len(result.streams)} streams failed: HTTP 404 from {bare}: "), error
    assert "the API has no such path there [request id req_" in error and error.count("request id") == 1, error
    assert "Check the base URL: it must end in /v1" in error
    assert error.endswith(f"so use {url}"), error  # the URL it meant, not a generic example
    assert len(error) < 300, error
    assert all(s.error and "HTTP 404" in s.error and "window" in s.error for s in result.streams)


def test_a_host_that_cannot_be_reached_stops_the_orgs_streams_and_is_said_once(duck: BaseStore) -> None:
    """A closed port fails every stream with the same words: once one window has spent its retries without a
    connection, the org's other streams stop instead of each spending its own retries on the same host, and the
    run's errors say it once, with the number of streams (not twelve copies of "could not reach ..."). Each
    stream keeps its message in the store; a dropped connection stays its window's own (test_sync_faults)."""
    with socket.socket() as sock:  # a port bound and never listened on: connections are refused at once
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        result = run(duck, dead, since=EMULATOR_NOW - 5 * DAY, max_retries=1, concurrency=1)
    assert not result.ok and len(result.streams) > 3
    assert result.requests == 2  # the first window's attempt and its one retry; no other stream asked
    (error,) = result.errors
    assert error.startswith(f"org 'main': all {len(result.streams)} streams failed: "), error
    assert "could not reach 127.0.0.1" in error and "Check the base URL and the network" in error
    assert len(error) < 300, error
    first, *others = result.streams
    assert first.error and "window" in first.error and "could not reach" in first.error
    assert all(s.error and s.error.endswith("Check the base URL and the network") for s in others)
    states = {(s.stream, s.last_status) for s in duck.stream_states()}
    assert {status for _, status in states} == {"failed"} and len(states) == len(result.streams)


def test_one_refusal_met_by_every_stream_is_said_once(duck: BaseStore) -> None:
    """A clock ahead of the API's (a sync without --now against an emulator pinned to a past now) made every stream's
    first window a 400 `start_time must be before now`: the CLI's error was twelve copies of it, each with its own
    request id, in one line of 4,000 characters. Word for word but for the request id, it is said once, with one
    request id (support asks for one)."""
    emu = Emulator(EmulatorConfig(seed=1, days=10, now=EMULATOR_NOW))
    with run_server(emu) as url:
        result = run(duck, url, now=EMULATOR_NOW + 3 * DAY, since=EMULATOR_NOW + DAY, max_retries=0)
    assert not result.ok and len(result.streams) > 3
    (error,) = result.errors
    assert error.startswith(f"org 'main': all {len(result.streams)} streams failed: "), error
    assert "HTTP 400 invalid_request_error: start_time" in error and error.count("[request id req_") == 1, error
    assert len(error) < 400, error
    assert all(s.error and "request id" in s.error and "window" in s.error for s in result.streams)


def test_events_report_every_window(duck: BaseStore, emulator_url: str) -> None:
    """The engine emits one WindowDone per window, with counts that add up to the result."""
    events: list[Any] = []
    stream = Stream.create("vector_stores", "1d", ("project_id",))
    result = sync(
        duck,
        [Org("main", FAKE_ADMIN_KEY, emulator_url)],
        (stream,),
        SyncOptions(since=START_90),
        on_event=events.append,
        clock=lambda: EMULATOR_NOW,
    )
    done = [e for e in events if isinstance(e, WindowDone)]
    assert len(done) == 3 and sum(e.counts.inserted for e in done) == result.counts.inserted
    # The stream's first request asks the default limit (7 of the first window's 31 days) and the rest of that
    # window follows in one; the other windows wait for it and are one request each.
    assert result.requests == 4


def test_cli_sync_status_and_json_logs(tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`usageledger sync` prints a per-stream summary; --log-format json gives JSON lines; status lists streams."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", emulator_url)
    runner = CliRunner()
    args = ["sync", "--endpoint", "embeddings", "--endpoint", "costs", "--since", "20d", "--now", str(EMULATOR_NOW)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    # At the runner's 80 columns a long stream label is shortened (numbers never are), so match its start.
    assert "inserted" in first.output and "embeddings.1d" in first.output and "costs.1d." in first.output
    assert Path("usageledger.duckdb").exists()
    second = runner.invoke(app, [*args[:-4], "--now", str(EMULATOR_NOW), "--log-format", "json"])
    assert second.exit_code == 0, second.output
    lines = [json.loads(line) for line in second.stderr.splitlines() if line.startswith("{")]
    synced = [rec for rec in lines if rec["message"] == "stream synced"]
    assert {rec["stream"] for rec in synced} == {"embeddings.1d.project_id+model", "costs.1d.project_id+line_item"}
    assert all(rec["inserted"] == 0 and rec["status"] == "ok" for rec in synced)
    quiet = runner.invoke(app, [*args, "--quiet"])
    assert quiet.exit_code == 0 and quiet.stdout == ""
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0 and "costs.1d." in status.output and "ok" in status.output
    assert FAKE_ADMIN_KEY not in first.output + second.output + status.output


def test_cli_a_refused_key_is_said_once_in_one_line_naming_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync` with a key the API refuses printed one ~5,000-character line (the same 401 for each of 12 streams),
    and each failure again as an `ERROR usageledger.sync: sync failed:` log line, `-q` or not. Now it is one line
    naming the org, the variable the key came from and the fix, exit 1, no directory warning, the run failed in the
    store; a key of a config org names that org's key_env; a project key's 403 says the key may not read usage."""
    monkeypatch.chdir(tmp_path)
    emu = Emulator(EmulatorConfig(seed=1, days=10, admin_key="sk-admin-the-right-one", now=EMULATOR_NOW))
    with run_server(emu) as url:
        argv = ["sync", "--base-url", url, "--now", str(EMULATOR_NOW), "--since", "3d", "--store", "k.duckdb"]
        quiet = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, [*argv, "-q"])
        shown = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, argv)
        project = CliRunner(env={"OPENAI_ADMIN_KEY": "sk-proj-" + "p" * 20}).invoke(app, [*argv, "-q"])
        Path("u.toml").write_text('[[orgs]]\nname = "acme"\nkey_env = "ACME_ADMIN_KEY"\n')
        config = CliRunner(env={"ACME_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, [*argv, "-q", "--config", "u.toml"])
    assert quiet.exit_code == shown.exit_code == project.exit_code == config.exit_code == 1
    (line,) = quiet.stderr.splitlines()
    assert line.startswith("error: org 'default': the API refused the admin key from OPENAI_ADMIN_KEY (HTTP 401"), line
    assert line.endswith("set OPENAI_ADMIN_KEY to a valid organization admin key (sk-admin-...) and sync again")
    assert len(line) < 300 and quiet.stdout == ""
    assert [t for t in shown.stderr.splitlines() if "error" in t.lower()] == [line], shown.stderr
    assert "failed" in shown.stdout and "directory" not in shown.output
    assert (
        "the admin key from OPENAI_ADMIN_KEY may not read usage (HTTP 403 missing_scope; it lacks api.usage.read)"
        in project.stderr
    )
    assert len(project.stderr.splitlines()) == 1
    (acme,) = config.stderr.splitlines()
    assert "org 'acme': the API refused the admin key from ACME_ADMIN_KEY" in acme and "set ACME_ADMIN_KEY to" in acme
    with open_store("k.duckdb") as opened:
        runs = opened.query("SELECT status, error FROM sync_runs ORDER BY started_at")
        assert [status for status, _ in runs] == ["failed"] * 4
        # the run's command as asked: it read "sync --since=3d --until=None", naming a flag never given
        assert {c for (c,) in opened.query("SELECT command FROM sync_runs")} == {"sync --since=3d"}
        assert runs[0][1] == line.removeprefix("error: ")
        assert {s.last_status for s in opened.stream_states()} == {"failed"}
    assert FAKE_ADMIN_KEY not in quiet.output + shown.output + project.output + config.output


def test_cli_refuses_bad_flags_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown endpoints, bad widths, missing keys: one clear line; exit code 2 for bad input, 1 for a missing key."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    missing = runner.invoke(app, ["sync", "--quiet"])
    assert missing.exit_code == 1 and "OPENAI_ADMIN_KEY" in missing.stderr
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    bad = runner.invoke(app, ["sync", "--endpoint", "nope"])
    assert bad.exit_code == 2 and "unknown endpoint" in bad.stderr
    width = runner.invoke(app, ["sync", "--endpoint", "costs", "--bucket-width", "1h"])
    assert width.exit_code == 2 and "--bucket-width: costs has 1d buckets only" in width.stderr
    assert "Traceback" not in missing.output + bad.output + width.output
    assert {s.endpoint.name for s in default_streams()} == set(catalogue.ENDPOINT_NAMES)


def test_two_syncs_on_one_postgres_store_serialise(migrated_pg_url: str, emulator_url: str) -> None:
    """While one sync holds the store's lock, a second one is refused with a clear message and writes nothing."""
    from usageledger.errors import SyncError

    with open_store(migrated_pg_url) as first, open_store(migrated_pg_url) as second:
        assert first.acquire_sync_lock()
        with pytest.raises(SyncError, match="another usageledger sync"):
            run(second, emulator_url, streams=(Stream.create("costs", "1d"),), since=EMULATOR_NOW - 3 * DAY)
        assert second.query("SELECT COUNT(*) FROM costs") == [(0,)]
        first.release_sync_lock()
        assert run(second, emulator_url, streams=(Stream.create("costs", "1d"),), since=EMULATOR_NOW - 3 * DAY).ok


def test_a_run_that_fails_as_it_starts_is_recorded_failed_not_left_running(duck: BaseStore, emulator_url: str) -> None:
    """The caller's event handler raising on RunStarted (a progress display whose terminal went away): the run is
    finished as failed and its streams as interrupted, nothing written, never left `running` for the next sync."""

    def handler(event: object) -> None:
        if type(event).__name__ == "RunStarted":
            raise RuntimeError("the display went away")

    stream = Stream.create("costs", "1d", ())
    with pytest.raises(RuntimeError, match="display went away"):
        sync(
            duck,
            [Org("main", FAKE_ADMIN_KEY, emulator_url)],
            (stream,),
            SyncOptions(since=START_90),
            on_event=handler,
            clock=lambda: EMULATOR_NOW,
        )
    assert duck.query("SELECT status, error FROM sync_runs") == [("failed", "RuntimeError")]
    assert [s.last_status for s in duck.stream_states()] == ["interrupted"]  # unfinished, as after Ctrl-C
    assert duck.query("SELECT COUNT(*) FROM costs") == [(0,)]


class _PeakTransport(httpx.AsyncBaseTransport):
    """The in-process emulator behind a count of the requests on the wire (a body read counts as on the wire)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.in_flight = 0
        self.peak = 0
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.requests += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.002)  # long enough for every other worker to send what it may
            response = await self.inner.handle_async_request(request)
            await response.aread()
            return response
        finally:
            self.in_flight -= 1


def test_concurrency_bounds_the_runs_requests_across_orgs_and_paths(duck: BaseStore, emulator: Emulator) -> None:
    """`--concurrency 3` is three requests on the wire for the whole run: two orgs, hourly usage (its pages decoded
    beside the requests, by twice as many workers) and daily costs (the models' path) together never have a fourth
    out, and the run does reach three."""
    transport = _PeakTransport(emulator.transport())
    orgs = [Org("acme", FAKE_ADMIN_KEY, "http://127.0.0.1/v1"), Org("beta", FAKE_ADMIN_KEY, "http://127.0.0.1/v1")]
    hourly = Stream.create(catalogue.BY_NAME["completions"], "1h", ("project_id",))
    costs = Stream.create(catalogue.BY_NAME["costs"], "1d", ())
    result = sync(
        duck,
        orgs,
        (hourly, costs),
        SyncOptions(concurrency=3, since=EMULATOR_NOW - 60 * DAY),
        transport=transport,
        clock=lambda: EMULATOR_NOW,
    )
    assert all(s.status == "ok" for s in result.streams), result.streams
    assert transport.requests >= 20
    assert transport.peak == 3


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({"orgs": "ORG"}, "orgs: expected a list of Org, got Org"),
        ({"orgs": "ORG,ORG"}, "orgs: 'acme' is listed twice"),
        ({"streams": []}, "streams: is empty, so nothing would be synced"),
        ({"streams": "costs"}, "streams: expected a list of Stream, got str"),
        ({"streams": ["costs.1d"]}, "streams: expected Stream items, got str"),
        ({"streams": "TWICE"}, "streams: 'costs.1d.project_id+line_item' is listed twice"),
        ({"options": None}, "options: expected SyncOptions(...), got NoneType"),
        ({"store": "ledger.duckdb"}, "store: expected an open store (open_store(url)), got str"),
    ],
)
def test_wrong_sync_arguments_are_refused_before_anything_runs(
    duck: BaseStore, arguments: dict[str, Any], said: str
) -> None:
    """A single Org, a string, None options or a path for the store failed deep inside the engine ("'Org' object is
    not iterable", "'str' object has no attribute 'id'"); no streams synced nothing and returned success; a stream
    listed twice was fetched and then refused at the write. Each is now one ParameterError naming the argument."""
    org = Org("acme", FAKE_ADMIN_KEY, "http://127.0.0.1:9/v1", synthetic=True)
    costs = Stream.create("costs", "1d", ("project_id", "line_item"))
    values: dict[str, Any] = {"store": duck, "orgs": [org], "streams": [costs], "options": SyncOptions()}
    special = {"ORG": org, "ORG,ORG": [org, org], "TWICE": [costs, costs]}
    values |= {k: special.get(v, v) if isinstance(v, str) else v for k, v in arguments.items()}
    with pytest.raises(ParameterError) as caught:
        sync(values["store"], values["orgs"], values["streams"], values["options"], clock=lambda: EMULATOR_NOW)
    assert str(caught.value).startswith(said) and "\n" not in str(caught.value)
    assert duck.query("SELECT count(*) FROM sync_runs", []) == [(0,)]


def test_sync_in_a_running_event_loop_says_to_await_run_sync(duck: BaseStore, emulator_url: str) -> None:
    """`sync(...)` in a Jupyter cell (a running event loop) was asyncio's "asyncio.run() cannot be called from a
    running event loop" from deep inside, and a "coroutine 'run_sync' was never awaited" warning after it. It is one
    SyncError saying what to write there, before anything runs; `await run_sync(...)` there syncs."""
    org = Org("main", FAKE_ADMIN_KEY, emulator_url)
    costs = Stream.create("costs", "1d", ("project_id", "line_item"))
    options = SyncOptions(since=EMULATOR_NOW - 3 * DAY)

    async def notebook_cell() -> SyncResult:
        with pytest.raises(SyncError) as caught:
            sync(duck, [org], [costs], options, clock=lambda: EMULATOR_NOW)
        said = str(caught.value)
        assert said.startswith("sync() cannot run inside a running event loop") and "\n" not in said
        assert "await run_sync(...)" in said and "from usageledger.sync import run_sync" in said
        assert duck.query("SELECT count(*) FROM sync_runs", []) == [(0,)]
        return await run_sync(duck, [org], [costs], options, clock=lambda: EMULATOR_NOW)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a coroutine made and dropped would warn "was never awaited"
        result = asyncio.run(notebook_cell())
        gc.collect()
    assert result.ok, result.errors
    assert duck.query("SELECT count(*) FROM sync_runs", []) == [(1,)]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"concurrency": 0}, "concurrency: must be at least 1, got 0"),
        ({"concurrency": "4"}, "concurrency: expected a whole number, got '4'"),
        (
            {"since": "90d"},
            "since: expected Unix seconds, got '90d'; convert it with usageledger.timeutil.to_unix('90d')",
        ),
        ({"until": date(2026, 11, 1)}, "until: expected Unix seconds, got datetime.date(2026, 11, 1); convert it with"),
        ({"lag_days": -1}, "lag_days: must be at least 0, got -1"),
        ({"max_retries": True}, "max_retries: expected a whole number, got True"),
        ({"hour_final_after": 1.5}, "hour_final_after: expected a whole number, got 1.5"),
        ({"allow_insecure_http": "yes"}, "allow_insecure_http: expected True or False, got 'yes'"),
    ],
)
def test_sync_options_are_checked_when_made(options: dict[str, Any], said: str) -> None:
    """`SyncOptions(concurrency="4")`, `since="90d"` and `lag_days=-1` were kept as given and failed deep inside a
    run (a TypeError on `<`) or read past now; `concurrency=0` only when the run began. A time that is no Unix
    seconds is told the one call that converts it, as the client reads times."""
    with pytest.raises(ConfigError) as caught:
        SyncOptions(**options)
    assert str(caught.value).startswith(said) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (("", FAKE_ADMIN_KEY), "name: expected an org's name without spaces at either end, got ''"),
        ((" acme", FAKE_ADMIN_KEY), "name: expected an org's name without spaces at either end, got ' acme'"),
        ((5, FAKE_ADMIN_KEY), "name: expected an org's name without spaces at either end, got 5"),
        (("acme", None), "api_key: expected the admin key as a string, got NoneType"),
        (("acme", FAKE_ADMIN_KEY, 8080), "base_url: expected a URL string or None, got int"),
    ],
)
def test_an_org_is_checked_when_made(arguments: tuple[Any, ...], said: str) -> None:
    """`Org("", key)` and `Org(5, key)` were kept and their rows written under that org (the config refuses both); a
    None key or an int base URL failed deep inside the client."""
    with pytest.raises(ParameterError) as caught:
        Org(*arguments)
    assert str(caught.value) == said
