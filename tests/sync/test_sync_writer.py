"""The sync engine's pieces on their own: a stream run's state changes, and the Writer over a real DuckDB store.

The buckets are real: fetched from the in-process emulator. A failing commit is a real one too (the ``streams``
table is gone), so the rollback path runs as it would in a broken store.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from usageledger import catalogue, timeutil
from usageledger.client import Client
from usageledger.emulator import Emulator
from usageledger.errors import StoreError
from usageledger.store import BaseStore, Stream, UpsertCounts, open_store
from usageledger.sync import StreamFinished, SyncEvent, SyncOptions, WindowDone, plan_stream
from usageledger.sync._state import FetchedWindow, StreamRun, WindowJob
from usageledger.sync._writer import Writer

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

STREAM = Stream.create(catalogue.get("completions"), "1d", ["model"], {})
SINCE = timeutil.floor(EMULATOR_NOW - 40 * 86400, "1d")


def _run(watermark: int | None = None) -> StreamRun:
    plan = plan_stream("acme", STREAM, watermark, SyncOptions(since=SINCE), now=EMULATOR_NOW)
    assert len(plan.windows) == 2
    return StreamRun.start(plan, watermark=watermark, extent=None)


def test_a_stream_run_moves_its_watermark_over_taken_windows_and_finishes_once() -> None:
    """take/rollback decide the watermark's prefix; mark_committed reports the stream finished exactly once."""
    run = _run()
    first, second = run.plan.windows
    assert run.next_watermark(EMULATOR_NOW) is None
    run.take(1, second.end)
    assert run.next_watermark(EMULATOR_NOW) is None  # window 0 is not taken: no prefix yet
    run.take(0, first.end)
    assert run.all_taken and run.next_watermark(EMULATOR_NOW) == timeutil.floor(second.end, "1d")
    run.rollback(1, second.start)
    assert not run.all_taken and run.next_watermark(EMULATOR_NOW) == first.end
    run.take(1, second.end)
    assert run.mark_committed(UpsertCounts(inserted=3), first.end) is False
    assert run.mark_committed(UpsertCounts(updated=2), None) is True
    assert run.mark_committed(UpsertCounts(), None) is False
    assert (run.counts, run.watermark, run.result().status) == (UpsertCounts(3, 2), first.end, "ok")
    behind = _run(watermark=second.end)
    behind.take(0, first.end)
    assert behind.next_watermark(EMULATOR_NOW) is None  # never backwards


def test_a_window_taken_in_pieces_moves_the_watermark_to_each_piece_and_never_past_it() -> None:
    """A window taken in pieces: the watermark moves to the end of the pieces taken, a rolled-back piece takes it
    back to that piece's start, and the window counts as done (and the stream finished) with its last piece only."""
    run = _run()
    first, second = run.plan.windows
    middle = first.start + 10 * 86400
    run.take(1, second.end)  # the second window whole, before the first: no prefix yet
    assert run.next_watermark(EMULATOR_NOW) is None
    run.take(0, middle)
    assert run.next_watermark(EMULATOR_NOW) == middle and not run.all_taken and run.result().windows_done == 1
    run.take(0, first.end)
    assert run.all_taken and run.next_watermark(EMULATOR_NOW) == timeutil.floor(second.end, "1d")
    run.rollback(0, middle)  # the batch of the first window's last piece never commits
    assert run.taken[0] == middle and not run.all_taken and run.next_watermark(EMULATOR_NOW) == middle
    run.rollback(0, first.start)
    assert run.next_watermark(EMULATOR_NOW) is None
    run.take(0, middle)
    assert run.mark_committed(UpsertCounts(inserted=5), middle, whole=False) is False
    assert run.mark_committed(UpsertCounts(inserted=1), None) is False  # the second window
    assert (run.committed, run.watermark, run.result().status) == (1, middle, "interrupted")
    run.take(0, first.end)
    assert run.mark_committed(UpsertCounts(inserted=2), timeutil.floor(second.end, "1d"), whole=True) is True
    assert (run.counts, run.committed, run.result().status) == (UpsertCounts(inserted=8), 2, "ok")


def _fetched(emulator: Emulator, run: StreamRun, store: BaseStore) -> list[FetchedWindow]:
    with Client(api_key=FAKE_ADMIN_KEY, transport=emulator.transport()) as client:
        out = []
        for index, window in enumerate(run.plan.windows):
            buckets = client.fetch_range(
                STREAM.endpoint, start_time=window.start, end_time=window.end, group_by=STREAM.group_by
            )
            out.append(FetchedWindow.read(WindowJob(run, index), buckets, store, "r1"))
    return out


def _write(store: BaseStore, fetched: list[FetchedWindow]) -> list[SyncEvent]:
    events: list[SyncEvent] = []
    queue: asyncio.Queue[FetchedWindow | None] = asyncio.Queue()
    for item in (*fetched, None):
        queue.put_nowait(item)
    asyncio.run(Writer(store, now=EMULATOR_NOW, emit=events.append).run(queue))
    return events


def test_the_writer_commits_every_window_and_records_the_stream_ok(tmp_path: Path, emulator: Emulator) -> None:
    """Two windows in: both committed in one batch, one WindowDone each, one StreamFinished, the stream `ok`."""
    run = _run()
    with open_store(tmp_path / "w.duckdb") as store:
        fetched = _fetched(emulator, run, store)
        store.register_stream("acme", STREAM)
        store.mark_stream("acme", STREAM.id, run_id="r1", at=EMULATOR_NOW, status="running")
        events = _write(store, fetched)
        rows = store.query("SELECT COUNT(*) FROM usage_completions")[0][0]
        state = store.stream_state("acme", STREAM.id)
    assert [type(e) for e in events] == [WindowDone, WindowDone, StreamFinished]
    assert rows > 0 and run.counts == UpsertCounts(inserted=rows)
    assert state is not None and state.last_status == "ok"
    assert state.watermark == run.watermark == timeutil.floor(run.plan.windows[1].end, "1d")


def test_a_batch_that_fails_to_commit_rolls_its_windows_back(tmp_path: Path, emulator: Emulator) -> None:
    """A commit that fails raises from the writer, leaves no window taken and no row, and moves no watermark."""
    run = _run()
    with open_store(tmp_path / "broken.duckdb") as store:
        fetched = _fetched(emulator, run, store)
        store.execute("DROP TABLE streams")  # the rows insert, then the stream's watermark update fails
        with pytest.raises(StoreError, match="streams"):
            _write(store, fetched)
        rows = store.query("SELECT COUNT(*) FROM usage_completions")[0][0]
    assert run.taken == [w.start for w in run.plan.windows] and run.committed == 0 and run.watermark is None
    assert rows == 0  # the transaction rolled back whole
