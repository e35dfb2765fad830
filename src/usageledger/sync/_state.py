"""A run's state: each stream's progress (its state changes are its methods), the jobs, and a fetched window."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from usageledger import rules, timeutil
from usageledger._text import counted
from usageledger.catalogue import BUCKET_SECONDS
from usageledger.models import Bucket
from usageledger.store import BaseStore, PreparedWindow, UpsertCounts, WindowWrite
from usageledger.store.schema import table_for
from usageledger.sync._model import StreamPlan, StreamResult

if TYPE_CHECKING:
    from usageledger.sync._arrow import ArrowPage

__all__ = ["PAGE_RESULTS", "FetchedWindow", "StreamRun", "WindowJob", "interleave"]

PAGE_RESULTS: Final = 50_000
"""About the most results a sync asks for in one request (:meth:`StreamRun.request_span`): a page of 50,000 costs
results is ~14 MB of JSON and ~32 MB as objects for the moment it is decoded. Also about the most a window holds
before it is written in pieces (:meth:`StreamRun.fits`)."""


@dataclass(slots=True)
class StreamRun:
    """The progress of one (org, stream) during a run.

    A window is *taken* when the writer puts it into a batch, *committed* when that batch's transaction commits,
    and *rolled back* when the batch never commits. The watermark may cover taken windows: it is written in the
    same transaction as them, and each commit waits for the one before it.
    """

    plan: StreamPlan
    taken: list[int]
    """Per window, where its part in batches being written or committed ends: the window's start while none of it
    is, its end once all of it is. A window holding many results is taken in pieces, in order (see
    :meth:`fits`); each piece is a window of its own, of whole buckets."""
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    watermark: int | None = None
    extent: int | None = None
    """The newest stored bucket start of the stream when the run began: later windows are fresh inserts."""
    error: str | None = None
    cause: str | None = None
    """A failure's cause when other streams may share it word for word (see :meth:`fail`)."""
    request_id: str | None = None
    """The request id of the failed response, when the API answered one."""
    advice: str | None = None
    """What to do about the failure, the end of ``error`` and ``cause``, when it has such advice."""
    committed: int = 0
    """Windows whose transaction has committed."""
    finished: bool = False
    """Every window committed, and announced once."""
    key_refused: bool = False
    """The stream stopped because the API refused the org's key (see :meth:`stop`)."""
    api_end: int | None = None
    """The end of the last bucket the API gave for a window it cut short (it refuses an end after its own now, and
    the client asks again without one): the API's clock is behind ours there, so the watermark stops at that
    bucket's start (see :meth:`cut_short`)."""
    density: int | None = None
    """The most results a bucket of the stream has held in a page so far this run (see :meth:`request_span`)."""
    sized: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the stream's first request has answered (or failed): its other windows wait for it rather than
    each ask the default limit first (see :meth:`reading`)."""
    sizing: bool = False
    """A window of the stream is asking its first request."""

    @classmethod
    def start(cls, plan: StreamPlan, *, watermark: int | None, extent: int | None) -> StreamRun:
        return cls(plan, [w.start for w in plan.windows], watermark=watermark, extent=extent)

    def request_span(self, start: int, end: int) -> int:
        """Where the request for ``[start, end)`` of a window ends: after as many buckets as hold about
        :data:`PAGE_RESULTS` results at the stream's :attr:`density`, or, before any page has said it, the
        endpoint's default ``limit`` (the page the API gives when asked for none); never before one bucket.

        The API puts every bucket asked for in one page: 60 days of a 300-project org's costs were one 173 MB body
        of 638,087 results, decoded at once. Asked in spans, a page stays about the size of the budget, however big
        the org, and a small org's window is still one request after the first.
        """
        width = self.plan.stream.bucket_width
        limit = self.plan.stream.endpoint.limit_for(width)
        buckets = limit.default if self.density is None else PAGE_RESULTS // max(self.density, 1)
        step = BUCKET_SECONDS[width]
        return min(end, timeutil.floor(start, width) + max(1, min(buckets, limit.maximum)) * step)

    def learn(self, results: int, lo: int | None, hi: int | None) -> None:
        """A page of ``results`` results over the buckets in ``[lo, hi)`` came in: the stream's density rises to
        its results per bucket."""
        if lo is None or hi is None or hi <= lo:
            return
        buckets = -(-(hi - lo) // BUCKET_SECONDS[self.plan.stream.bucket_width])
        per_bucket = -(-results // buckets)
        self.density = per_bucket if self.density is None else max(self.density, per_bucket)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        """A window's turn to read its pages: the stream's first request is asked by one window at a time, and its
        other windows wait for what it says (:attr:`sized`) rather than each ask the endpoint's default limit first,
        so a small org's window is still one request, not a default page and the rest. A first request that fails
        or finds no bucket lets the others go on, each asking the default limit itself."""
        first = self.density is None and not self.sizing
        if first:
            self.sizing = True
        elif self.density is None:
            await self.sized.wait()
        try:
            yield
        finally:
            if first:
                self.sized.set()

    def fits(self, results: int, start: int, end: int) -> bool:
        """Whether a piece of a window already holding ``results`` results may take the span ``[start, end)`` too:
        their results, the span's at the stream's :attr:`density`, stay within :data:`PAGE_RESULTS`.

        A window is written in pieces of whole buckets, each about :data:`PAGE_RESULTS` results: the 60 days of a
        300-project org's costs held ~170 MB of rows, twice that while made a batch, until one transaction took
        them all. A small org's window still fits whole, and is one piece."""
        buckets = rules.count_buckets(start, end, self.plan.stream.bucket_width)
        return results + (self.density or 0) * buckets <= PAGE_RESULTS

    def take(self, index: int, end: int) -> None:
        """Window ``index``, up to ``end`` (its end, or a piece's), enters a batch: it counts for the watermark of
        that batch."""
        self.taken[index] = end

    def cut_short(self, hi: int) -> None:
        """The API answered a taken window with buckets only up to ``hi``, short of the window's end: its now is
        before ours (a clock ahead, or ``--now`` in the future). The watermark must not pass what it has given, or
        the days between would never be read (the next run, at the right time, re-reads only its lag window)."""
        self.api_end = hi if self.api_end is None else min(self.api_end, hi)

    def rollback(self, index: int, start: int) -> None:
        """The batch holding window ``index`` from ``start`` (its start, or a piece's) will never commit: that part
        is to be written again by a later run."""
        self.taken[index] = min(self.taken[index], start)

    def fail(
        self, message: str, *, cause: str | None = None, request_id: str | None = None, advice: str | None = None
    ) -> None:
        """A window could not be fetched: the stream stops here (windows already taken still commit). ``cause``,
        when given, is the failure without its stream, window and request id, for a cause other streams may meet
        (a base URL the API has no such path under, a 429 on every try): the run's errors then say it once for all
        of them, with one ``request_id``, and ``advice`` (the end of both) once for every failure that shares it."""
        self.error, self.cause, self.request_id, self.advice = message, cause, request_id, advice

    def stop(
        self, message: str, *, cause: str | None = None, advice: str | None = None, key_refused: bool = False
    ) -> bool:
        """The org failed as a whole (the API refused its key, or no attempt reached its host): the stream stops
        here with ``message`` unless it has failed already or has every window written; True when it stopped."""
        if self.error is not None or self.all_taken:
            return False
        self.error, self.cause, self.advice, self.key_refused = message, cause, advice, key_refused
        return True

    @property
    def all_taken(self) -> bool:
        """Every window is committed or in a batch being written: that batch finishes the stream."""
        return self.windows_taken == len(self.taken)

    @property
    def windows_taken(self) -> int:
        """The windows taken whole (their last piece too)."""
        return sum(end >= window.end for end, window in zip(self.taken, self.plan.windows, strict=True))

    def next_watermark(self, now: int) -> int | None:
        """The watermark the next batch may store: the end of the taken prefix, floored to a bucket; ``None`` when
        it would not move forward (or the run is a bounded backfill)."""
        if not self.plan.moves_watermark:
            return None
        end = None
        for taken, window in zip(self.taken, self.plan.windows, strict=True):
            if taken > window.start:
                end = taken
            if taken < window.end:
                break
        if end is None:
            return None
        limit = min(end, now) if self.api_end is None else min(end, now, self.api_end - 1)
        candidate = timeutil.floor(limit, self.plan.stream.bucket_width)
        return candidate if self.watermark is None or candidate > self.watermark else None

    def mark_committed(self, counts: UpsertCounts, watermark: int | None, *, whole: bool = True) -> bool:
        """A window's transaction committed with ``counts`` (and ``watermark``, when it moved one); ``whole``: the
        window, or its last piece. True the first time this makes the stream finished."""
        self.counts += counts
        if watermark is not None and (self.watermark is None or watermark > self.watermark):
            self.watermark = watermark
        if not whole:
            return False
        self.committed += 1
        if self.committed == len(self.plan.windows) and not self.finished:
            self.finished = True
            return True
        return False

    def check_written(self) -> None:
        """At the end of a run: a stream without an error must have taken every window."""
        if self.error is None and not self.all_taken:  # pragma: no cover - every job commits or records an error
            missing = len(self.taken) - self.windows_taken
            self.error = f"stream {self.plan.label}: {counted(missing, 'window')} not written"

    def result(self) -> StreamResult:
        return StreamResult(
            org=self.plan.org,
            stream=self.plan.stream.id,
            windows=len(self.plan.windows),
            windows_done=self.windows_taken,
            counts=self.counts,
            watermark=self.watermark,
            error=self.error,
            key_refused=self.key_refused,
            cause=self.cause,
            request_id=self.request_id,
            advice=self.advice,
        )


@dataclass(frozen=True, slots=True)
class WindowJob:
    """One window of one stream to fetch."""

    run: StreamRun
    index: int

    @property
    def window(self) -> rules.Window:
        return self.run.plan.windows[self.index]

    def piece(self, start: int, end: int) -> rules.Window:
        """The part ``[start, end)`` of the job's window (whole buckets, or the window's own partial first one), a
        window of its own."""
        return rules.Window(start, end, rules.count_buckets(start, end, self.run.plan.stream.bucket_width))

    def write(self, window: rules.Window, lo: int | None, hi: int | None, run_id: str) -> WindowWrite:
        """The write of ``window`` (the job's, or a piece of it), read now, spanning ``[lo, hi)`` as its buckets do
        (``None``: none) and at least ``window`` itself."""
        plan = self.run.plan
        low = window.start if lo is None else min(lo, window.start)
        high = window.end if hi is None else max(hi, window.end)
        return WindowWrite(plan.org, plan.stream, (), low, high, run_id, int(time.time()))


@dataclass(frozen=True, slots=True)
class FetchedWindow:
    """A window with all its pages in, already converted for the store: its rows as the store loads them, the span
    ``[lo, hi)`` they cover (at least the window), and when it was read. The decoded pages are not kept: a window
    waiting for the writer holds its columns, a fraction of the memory of the pages as objects.

    ``window`` is the job's window, or a piece of it (:meth:`StreamRun.fits`): whole buckets, contiguous with the
    pieces before it, so it is written, checked and deleted from exactly as a window is."""

    job: WindowJob
    window: rules.Window
    prepared: PreparedWindow
    short_at: int | None = None
    """The end of the last bucket when the API's answer stopped short of the window's end (see
    :meth:`StreamRun.cut_short`), else ``None``."""

    @classmethod
    def read(cls, job: WindowJob, buckets: list[Bucket], store: BaseStore, run_id: str) -> FetchedWindow:
        """Check and convert a window's buckets (pure CPU: :meth:`BaseStore.prepare`); a ``StoreError`` names what
        is wrong with them."""
        lo = min((b.start_time for b in buckets), default=None)
        hi = max((b.end_time for b in buckets), default=None)
        window = job.window
        prepared = store.prepare(replace(job.write(window, lo, hi, run_id), buckets=buckets))
        return cls(job, window, prepared, _short(window, hi))

    @classmethod
    def from_pages(
        cls, job: WindowJob, window: rules.Window, pages: Sequence[ArrowPage], store: BaseStore, run_id: str
    ) -> FetchedWindow:
        """The same for ``window`` (the job's, or a piece of it) read into Arrow pages (the fast path): checked and
        converted by Arrow kernels, which run without the GIL, so a worker thread can do it beside the event loop."""
        from usageledger.sync._arrow import window_table  # pyarrow: only where pages are converted

        lo = min((p.lo for p in pages if p.lo is not None), default=None)
        hi = max((p.hi for p in pages if p.hi is not None), default=None)
        write = job.write(window, lo, hi, run_id)
        prepared = store.prepare_table(write, window_table(table_for(write.stream.endpoint), write, pages))
        return cls(job, window, prepared, _short(window, hi))


def _short(window: rules.Window, hi: int | None) -> int | None:
    """``hi``, the end of a window's last bucket, when it falls short of the window's end."""
    return hi if hi is not None and hi < window.end else None


def interleave(runs: Sequence[StreamRun]) -> Iterator[WindowJob]:
    """Jobs in window order, round-robin over streams, so every stream's watermark moves early."""
    depth = max((len(r.plan.windows) for r in runs), default=0)
    for i in range(depth):
        for r in runs:
            if i < len(r.plan.windows):
                yield WindowJob(r, i)
