"""The one writer of a run: fetched windows in, batches committed in order, each in one transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, replace
from typing import Any, Final

from usageledger import rules, timeutil
from usageledger._memory import release_free_memory
from usageledger.store import BaseStore, PreparedWindow, UpsertCounts
from usageledger.sync._model import EventHandler, StreamFinished, WindowDone
from usageledger.sync._state import FetchedWindow, WindowJob

__all__ = ["Writer"]

logger = logging.getLogger("usageledger.sync")


MAX_BATCH_ROWS: Final = 200_000
"""A batch stops taking windows at this many rows: it bounds the memory a batch holds while the one before commits.

DuckDB pays ~60-80 ms a commit whatever its size (the WAL of ~20 tables, and every few commits a checkpoint that
rewrites their open row groups): a year of hourly usage took 5.6 s committed 16 windows at a time, 3.5 s at 64 and
1.4 s in one transaction (``bench/BENCHMARKS.md``). 200,000 rows of Arrow are ~20 MB.
"""

WINDOWS_PER_SLOT: Final = 8
"""A batch takes at most this many windows per fetch slot (``--concurrency``): when the store is the slower side,
the windows that arrive during one commit all go into the next, instead of queueing behind many small commits."""


@dataclass(slots=True)
class _Batch:
    """Windows that go into one transaction: their jobs, the windows (each the job's, or a piece of it), and what
    the store made of them.

    Only the converted rows are held: the decoded pages are let go as soon as a window is prepared (a batch waits
    while the one before it commits, and pages as objects take several times the memory of their columns).
    """

    jobs: list[WindowJob]
    windows: list[rules.Window]
    prepared: list[PreparedWindow]

    def full(self, max_windows: int, max_rows: int) -> bool:
        return len(self.jobs) >= max_windows or sum(p.rows for p in self.prepared) >= max_rows

    def extend(self, more: _Batch) -> None:
        self.jobs += more.jobs
        self.windows += more.windows
        self.prepared += more.prepared

    def rollback(self) -> None:
        for job, window in zip(self.jobs, self.windows, strict=True):
            job.run.rollback(job.index, window.start)


@dataclass(frozen=True, slots=True, eq=False)
class Writer:
    """Owns the prepare/commit pipeline of a run.

    A pipeline of two: while one batch commits (in the store's thread), every window that arrives is converted (CPU,
    on the event loop: its response objects are freed at once) and joins the next batch, which commits as soon as the
    one before it has. The slower the store, the bigger its transactions: DuckDB then writes whole row groups
    straight to the file instead of through its WAL, which is what keeps up with the API. Commits run one at a time
    and in order, so a batch's watermark is only written after every batch before it has committed. A batch that
    never commits rolls its windows back, whichever way the run ends.
    """

    store: BaseStore
    _: KW_ONLY
    now: int
    emit: EventHandler
    max_windows: int = 16
    max_rows: int = MAX_BATCH_ROWS

    async def run(self, queue: asyncio.Queue[FetchedWindow | None]) -> None:
        """Write every window the queue brings, until ``None``."""
        in_flight: asyncio.Task[None] | None = None
        waiting: _Batch | None = None  # prepared, not yet handed to a commit
        getter: asyncio.Future[FetchedWindow | None] | None = None
        finished = False
        try:
            while True:
                if in_flight is not None and in_flight.done():
                    task, in_flight = in_flight, None
                    task.result()  # a failed commit ends the run here
                if waiting is not None and in_flight is None:
                    in_flight, waiting = asyncio.create_task(self._commit(waiting)), None
                    continue
                if finished or (waiting is not None and waiting.full(self.max_windows, self.max_rows)):
                    if in_flight is None:
                        break  # finished, and nothing waits
                    await asyncio.wait([in_flight])
                    continue
                if getter is None:
                    getter = asyncio.ensure_future(queue.get())
                watched: list[asyncio.Future[Any]] = [getter] if in_flight is None else [getter, in_flight]
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    continue  # the commit ended first: the next one may start
                item, getter = getter.result(), None
                windows: list[FetchedWindow] = []
                held = 0 if waiting is None else len(waiting.jobs)
                while item is not None:
                    windows.append(item)
                    if queue.empty() or held + len(windows) >= self.max_windows:
                        break  # a batch never grows past max_windows, however many windows queue up
                    item = queue.get_nowait()
                else:
                    finished = True
                if windows:
                    batch = self._prepare(windows)
                    windows.clear()  # the decoded pages go now; the batch holds their columns
                    item = None
                    if waiting is None:
                        waiting = batch
                    else:
                        waiting.extend(batch)
        except BaseException:
            if getter is not None:
                getter.cancel()
            if waiting is not None:  # its windows were never committed
                waiting.rollback()
            # Nothing else may touch the store's connection while a transaction is still running in its thread.
            if in_flight is not None and not in_flight.done():
                await asyncio.wait([in_flight])
            raise

    def _prepare(self, windows: list[FetchedWindow]) -> _Batch:
        """Take windows into a batch, in order, and give each its place in its stream: whether it is fresh, the
        watermark it moves, whether it finishes the stream (every window taken: this transaction records it ``ok``,
        so a later kill cannot leave it ``running``)."""
        for fetched in windows:
            fetched.job.run.take(fetched.job.index, fetched.window.end)
            if fetched.short_at is not None:
                fetched.job.run.cut_short(fetched.short_at)
        return _Batch(
            [fetched.job for fetched in windows],
            [fetched.window for fetched in windows],
            [self._placed(fetched) for fetched in windows],
        )

    def _placed(self, fetched: FetchedWindow) -> PreparedWindow:
        run = fetched.job.run
        read = fetched.prepared
        write = replace(
            read.write,
            watermark=run.next_watermark(self.now),
            fresh=run.extent is None or read.write.lo > run.extent,
            completes_stream=run.all_taken,
        )
        return PreparedWindow(write, read.rows, read.payload)

    async def _commit(self, batch: _Batch) -> None:
        commit = asyncio.ensure_future(asyncio.to_thread(self._commit_and_release, batch.prepared))
        try:
            counts = await asyncio.shield(commit)
        except asyncio.CancelledError:
            # The transaction runs in a thread that cannot be cancelled: let it end before anything else
            # touches the connection. It either commits whole or not at all.
            await asyncio.wait([commit])
            if commit.exception() is not None:
                batch.rollback()
            raise
        except BaseException:
            batch.rollback()
            raise
        self._committed(batch, counts)

    def _commit_and_release(self, prepared: Sequence[PreparedWindow]) -> list[UpsertCounts]:
        try:
            return self.store.commit_windows(prepared)
        finally:
            release_free_memory()  # the batch's rows and the store's transaction are freed by now

    def _committed(self, batch: _Batch, counts: list[UpsertCounts]) -> None:
        for job, window, prepared, c in zip(batch.jobs, batch.windows, batch.prepared, counts, strict=True):
            run = job.run
            write = prepared.write
            finished = run.mark_committed(c, write.watermark, whole=window.end >= job.window.end)
            logger.info(
                "window committed",
                extra={
                    "org": write.org,
                    "stream": write.stream.id,
                    "window_start": timeutil.iso(window.start),
                    "window_end": timeutil.iso(window.end),
                    "inserted": c.inserted,
                    "updated": c.updated,
                    "unchanged": c.unchanged,
                    "deleted": c.deleted,
                    "watermark": None if write.watermark is None else timeutil.iso(write.watermark),
                },
            )
            self.emit(WindowDone(write.org, write.stream.id, window, c, planned=job.window))
            if finished:
                self.emit(StreamFinished(run.result()))
