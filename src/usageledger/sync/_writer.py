"""The one writer of a run: fetched windows in, batches committed in order, each in one transaction."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from usageledger import timeutil
from usageledger.store import BaseStore, PreparedWindow, UpsertCounts, WindowWrite
from usageledger.sync._model import EventHandler, StreamFinished, WindowDone
from usageledger.sync._state import FetchedWindow

__all__ = ["Writer"]

logger = logging.getLogger("usageledger.sync")


@dataclass(frozen=True, slots=True)
class _Batch:
    """Fetched windows that go into one transaction, with what the store made of them."""

    windows: list[FetchedWindow]
    writes: list[WindowWrite]
    prepared: list[PreparedWindow]

    def rollback(self) -> None:
        for fetched in self.windows:
            fetched.job.run.rollback(fetched.job.index)


class Writer:
    """Owns the prepare/commit pipeline of a run.

    A pipeline of two: the next batch is converted (CPU, on the event loop) while the previous one commits (in the
    store's thread). Commits run one at a time and in order, so a batch's watermark is only written after every
    batch before it has committed. Whatever is already waiting in the queue joins the batch: fewer commits, same
    atomicity. A batch that never commits rolls its windows back, whichever way the run ends.
    """

    def __init__(self, store: BaseStore, *, run_id: str, now: int, emit: EventHandler) -> None:
        self._store = store
        self._run_id = run_id
        self._now = now
        self._emit = emit

    async def run(self, queue: asyncio.Queue[FetchedWindow | None]) -> None:
        """Write every window the queue brings, until ``None``."""
        in_flight: asyncio.Task[None] | None = None
        waiting: _Batch | None = None  # prepared, not yet handed to a commit
        finished = False
        try:
            while not finished:
                item = await queue.get()
                if item is None:
                    break
                windows = [item]
                while not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        finished = True
                        break
                    windows.append(more)
                waiting = self._prepare(windows)
                if in_flight is not None:
                    await in_flight
                in_flight = asyncio.create_task(self._commit(waiting))
                waiting = None
            if in_flight is not None:
                await in_flight
        except BaseException:
            if waiting is not None:  # its windows were never committed
                waiting.rollback()
            # Nothing else may touch the store's connection while a transaction is still running in its thread.
            if in_flight is not None and not in_flight.done():
                await asyncio.wait([in_flight])
            raise

    def _prepare(self, windows: list[FetchedWindow]) -> _Batch:
        for fetched in windows:
            fetched.job.run.take(fetched.job.index)
        synced_at = int(time.time())
        writes = [self._write(fetched, synced_at) for fetched in windows]
        # Converting rows is CPU work that holds the GIL: doing it here, between awaits, rather than in the writer
        # thread keeps the two threads from convoying on the GIL (which delays every response the loop handles).
        try:
            prepared = [self._store.prepare(w) for w in writes]
        except BaseException:
            for fetched in windows:
                fetched.job.run.rollback(fetched.job.index)
            raise
        return _Batch(windows, writes, prepared)

    def _write(self, fetched: FetchedWindow, synced_at: int) -> WindowWrite:
        run = fetched.job.run
        plan = run.plan
        return WindowWrite(
            plan.org,
            plan.stream,
            (),
            fetched.lo,
            fetched.hi,
            self._run_id,
            synced_at,
            run.next_watermark(self._now),
            fresh=run.extent is None or fetched.lo > run.extent,
            buckets=fetched.buckets,
            # Every window of the stream is committed, in the commit before this one, or in this batch: this
            # transaction finishes the stream and records it `ok` (a later kill cannot leave it `running`).
            completes_stream=run.all_taken,
        )

    async def _commit(self, batch: _Batch) -> None:
        commit = asyncio.ensure_future(asyncio.to_thread(self._store.commit_windows, batch.prepared))
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
        self._committed(batch.windows, batch.writes, counts)

    def _committed(
        self, windows: Sequence[FetchedWindow], writes: Sequence[WindowWrite], counts: list[UpsertCounts]
    ) -> None:
        for fetched, write, c in zip(windows, writes, counts, strict=True):
            run = fetched.job.run
            window = fetched.job.window
            finished = run.mark_committed(c, write.watermark)
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
            self._emit(WindowDone(write.org, write.stream.id, window, c))
            if finished:
                self._emit(StreamFinished(run.result()))
