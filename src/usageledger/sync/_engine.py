"""The engine: bounded concurrent fetching over one AsyncClient, one writer, a transaction per batch of windows."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from usageledger import rules, timeutil
from usageledger._secrets import mask_keys
from usageledger.client import AsyncClient
from usageledger.errors import StoreError, SyncError, UsageLedgerError
from usageledger.models import Bucket
from usageledger.store import BaseStore, RunTotals, Stream, UpsertCounts, WindowWrite
from usageledger.store._types import PreparedWindow
from usageledger.sync._model import (
    EventHandler,
    Org,
    RequestSent,
    RunFinished,
    RunStarted,
    StreamFinished,
    StreamPlan,
    StreamResult,
    SyncOptions,
    SyncResult,
    WindowDone,
    plan_stream,
)
from usageledger.sync._safety import check_orgs, reap_abandoned, this_process

logger = logging.getLogger("usageledger.sync")


# --- running --------------------------------------------------------------------------------------------


class _CountingTransport(httpx.AsyncBaseTransport):
    """Counts every request the client sends (retries included) for the progress display."""

    def __init__(self, inner: httpx.AsyncBaseTransport, on_request: Callable[[], None]) -> None:
        self._inner = inner
        self._on_request = on_request

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._on_request()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(slots=True)
class _StreamRun:
    """Mutable progress of one (org, stream) during a run."""

    plan: StreamPlan
    done: list[bool]
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    watermark: int | None = None
    extent: int | None = None
    """The newest stored bucket start of the stream when the run began: later windows are fresh inserts."""
    error: str | None = None
    committed: int = 0
    """Windows whose transaction has committed (``done`` also counts the one being committed)."""

    def contiguous_end(self) -> int | None:
        """End of the finished prefix of windows, or ``None`` when the first is not finished."""
        end = None
        for finished, window in zip(self.done, self.plan.windows, strict=True):
            if not finished:
                break
            end = window.end
        return end

    def result(self) -> StreamResult:
        return StreamResult(
            org=self.plan.org,
            stream=self.plan.stream.id,
            windows=len(self.plan.windows),
            windows_done=sum(self.done),
            counts=self.counts,
            watermark=self.watermark,
            error=self.error,
        )


@dataclass(frozen=True, slots=True)
class _Job:
    run: _StreamRun
    index: int

    @property
    def window(self) -> rules.Window:
        return self.run.plan.windows[self.index]

    def where(self) -> str:
        w = self.window
        return f"stream {self.run.plan.label}, window {timeutil.iso(w.start)} to {timeutil.iso(w.end)}"


def _interleave(runs: Sequence[_StreamRun]) -> Iterator[_Job]:
    """Jobs in window order, round-robin over streams, so every stream's watermark moves early."""
    depth = max((len(r.plan.windows) for r in runs), default=0)
    for i in range(depth):
        for r in runs:
            if i < len(r.plan.windows):
                yield _Job(r, i)


async def run_sync(
    store: BaseStore,
    orgs: Sequence[Org],
    streams: Sequence[Stream],
    options: SyncOptions = SyncOptions(),
    *,
    on_event: EventHandler | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] | None = None,
    command: str = "sync",
) -> SyncResult:
    """Sync ``streams`` of every org into ``store``. Stream failures are reported in the result, not raised.

    ``transport`` (an httpx async transport, e.g. ``emulator.transport()``) and ``clock`` are for tests and
    embedding; by default requests go over the network and now is the wall clock.
    """
    if not orgs:
        raise SyncError("no organisation to sync: set OPENAI_ADMIN_KEY or list [[orgs]] in usageledger.toml")
    if options.concurrency < 1:
        raise SyncError("concurrency must be at least 1")
    if not store.acquire_sync_lock():
        raise SyncError("another usageledger sync is writing to this store; wait for it to finish and run again")
    try:
        return await _run_locked(store, orgs, streams, options, on_event, transport, clock, command)
    finally:
        store.release_sync_lock()


async def _run_locked(
    store: BaseStore,
    orgs: Sequence[Org],
    streams: Sequence[Stream],
    options: SyncOptions,
    on_event: EventHandler | None,
    transport: httpx.AsyncBaseTransport | None,
    clock: Callable[[], float] | None,
    command: str,
) -> SyncResult:
    wall = clock or time.time
    now = int(wall())
    emit: EventHandler = on_event or (lambda _event: None)
    run_id = uuid.uuid4().hex
    started = time.perf_counter()
    runs: list[_StreamRun] = []
    check_orgs(store, orgs, at=int(time.time()))
    reap_abandoned(store, at=int(time.time()), holding_sync_lock=True)
    for org in orgs:
        for stream in streams:
            state = store.register_stream(org.name, stream)
            plan = plan_stream(org.name, stream, state.watermark, options, now=now)
            extent = store.stream_extent(org.name, stream)
            runs.append(_StreamRun(plan, [False] * len(plan.windows), watermark=state.watermark, extent=extent))
    store.begin_run(run_id, at=now, command=command, owner=this_process())
    for r in runs:
        # A stream with nothing to read is finished already; the others are `running` until their last commit.
        status = "running" if r.plan.windows else "ok"
        store.mark_stream(r.plan.org, r.plan.stream.id, run_id=run_id, at=now, status=status)
    emit(RunStarted(run_id, tuple(r.plan for r in runs)))

    requests = 0

    def count_request() -> None:
        nonlocal requests
        requests += 1
        emit(RequestSent(requests))

    inner = transport or httpx.AsyncHTTPTransport(retries=0)
    counting = _CountingTransport(inner, count_request)
    status = "interrupted"
    error: str | None = None
    clients: dict[str, AsyncClient] = {}
    try:
        for org in orgs:
            clients[org.name] = AsyncClient(
                api_key=org.api_key,
                base_url=org.base_url,
                max_concurrency=options.concurrency,
                max_retries=options.max_retries,
                allow_insecure_http=options.allow_insecure_http,
                transport=counting,
                clock=wall,
            )
        await _execute(store, runs, clients, options, run_id, now, emit)
        status = "ok" if all(r.result().status == "ok" for r in runs) else "failed"
    except BaseException as exc:
        error = str(exc) if isinstance(exc, UsageLedgerError) else type(exc).__name__
        status = "failed" if isinstance(exc, Exception) else "interrupted"
        raise
    finally:
        for client in clients.values():
            await client.aclose()
        await inner.aclose()
        result = SyncResult(run_id, tuple(r.result() for r in runs), requests, time.perf_counter() - started)
        try:
            _finish(store, runs, run_id, now, status, error, result)
        except StoreError as exc:
            logger.warning("could not record the end of run %s: %s", run_id, exc)
    emit(RunFinished(result))
    return result


def _finish(
    store: BaseStore,
    runs: Sequence[_StreamRun],
    run_id: str,
    now: int,
    status: str,
    error: str | None,
    result: SyncResult,
) -> None:
    for r in runs:
        s = r.result()
        store.mark_stream(r.plan.org, r.plan.stream.id, run_id=run_id, at=now, status=s.status, error=s.error)
    totals = RunTotals(
        streams=len(runs),
        windows=sum(s.windows_done for s in result.streams),
        requests=result.requests,
        counts=result.counts,
    )
    store.finish_run(
        run_id, at=int(time.time()), status=status, totals=totals, error=error or "; ".join(result.errors) or None
    )


async def _execute(
    store: BaseStore,
    runs: Sequence[_StreamRun],
    clients: dict[str, AsyncClient],
    options: SyncOptions,
    run_id: str,
    now: int,
    emit: EventHandler,
) -> None:
    jobs = _interleave(runs)
    # Fetched windows wait here for the one writer; the bound keeps memory flat however long the range.
    queue: asyncio.Queue[tuple[_Job, list[Bucket], int, int] | None] = asyncio.Queue(maxsize=options.concurrency)

    async def worker() -> None:
        for job in jobs:
            if job.run.error is not None:
                continue
            plan = job.run.plan
            window = job.window
            filters: dict[str, Any] = plan.stream.query_filters()
            try:
                buckets = await clients[plan.org].fetch_range(
                    plan.stream.endpoint,
                    start_time=window.start,
                    end_time=window.end,
                    bucket_width=plan.stream.bucket_width,
                    group_by=plan.stream.group_by,
                    **filters,
                )
            except UsageLedgerError as exc:
                job.run.error = mask_keys(f"{job.where()}: {exc}")
                logger.error("sync failed: %s", job.run.error)
                continue
            lo = min((b.start_time for b in buckets), default=window.start)
            hi = max((b.end_time for b in buckets), default=window.end)
            await queue.put((job, buckets, min(lo, window.start), max(hi, window.end)))

    announced: set[int] = set()

    async def writer() -> None:
        # A pipeline of two: the next batch is converted (CPU, on the loop) while the previous one commits (in the
        # store's thread). Commits still run one at a time and in order, so a batch's watermark is only written
        # after every batch before it has committed.
        in_flight: asyncio.Task[None] | None = None
        waiting: list[tuple[_Job, list[Bucket], int, int]] | None = None  # prepared, not yet handed to a commit
        finished = False
        try:
            while not finished:
                item = await queue.get()
                if item is None:
                    break
                batch = [item]
                # Whatever else is already waiting goes into the same transaction: fewer commits, same atomicity.
                while not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        finished = True
                        break
                    batch.append(more)
                writes, prepared = _prepare_batch(batch)
                waiting = batch
                if in_flight is not None:
                    await in_flight
                in_flight = asyncio.create_task(_commit_batch(batch, writes, prepared))
                waiting = None
            if in_flight is not None:
                await in_flight
        except BaseException:
            if waiting is not None:  # its windows were never committed
                for job, *_ in waiting:
                    job.run.done[job.index] = False
            # Nothing else may touch the store's connection while a transaction is still running in its thread.
            if in_flight is not None and not in_flight.done():
                await asyncio.wait([in_flight])
            raise

    def _prepare_batch(
        batch: list[tuple[_Job, list[Bucket], int, int]],
    ) -> tuple[list[WindowWrite], list[PreparedWindow]]:
        for job, *_ in batch:
            job.run.done[job.index] = True
        writes: list[WindowWrite] = []
        synced_at = int(time.time())
        for job, buckets, lo, hi in batch:
            run = job.run
            plan = run.plan
            watermark = None
            end = run.contiguous_end()
            if plan.moves_watermark and end is not None:
                candidate = timeutil.floor(min(end, now), plan.stream.bucket_width)
                if run.watermark is None or candidate > run.watermark:
                    watermark = candidate
            fresh = run.extent is None or lo > run.extent
            # Every window of the stream is committed, in the commit before this one, or in this batch: this
            # transaction finishes the stream, and records it `ok` (a later kill cannot leave it `running`).
            writes.append(
                WindowWrite(
                    plan.org,
                    plan.stream,
                    (),
                    lo,
                    hi,
                    run_id,
                    synced_at,
                    watermark,
                    fresh,
                    buckets=buckets,
                    completes_stream=all(run.done),
                )
            )
        # Converting rows is CPU work that holds the GIL: doing it here, between awaits, rather than in the writer
        # thread keeps the two threads from convoying on the GIL (which delays every response the loop handles).
        try:
            prepared = [store.prepare(w) for w in writes]
        except BaseException:
            for job, *_ in batch:
                job.run.done[job.index] = False
            raise
        return writes, prepared

    async def _commit_batch(
        batch: list[tuple[_Job, list[Bucket], int, int]],
        writes: list[WindowWrite],
        prepared: list[PreparedWindow],
    ) -> None:
        commit = asyncio.ensure_future(asyncio.to_thread(store.commit_windows, prepared))
        try:
            counts = await asyncio.shield(commit)
        except asyncio.CancelledError:
            # The transaction runs in a thread that cannot be cancelled: let it end before anything else
            # touches the connection. It either commits whole or not at all.
            await asyncio.wait([commit])
            if commit.exception() is not None:
                for job, *_ in batch:
                    job.run.done[job.index] = False
            raise
        except BaseException:
            for job, *_ in batch:
                job.run.done[job.index] = False
            raise
        for (job, *_), write, c in zip(batch, writes, counts, strict=True):
            run = job.run
            run.counts += c
            if write.watermark is not None and (run.watermark is None or write.watermark > run.watermark):
                run.watermark = write.watermark
            logger.info(
                "window committed",
                extra={
                    "org": write.org,
                    "stream": write.stream.id,
                    "window_start": timeutil.iso(job.window.start),
                    "window_end": timeutil.iso(job.window.end),
                    "inserted": c.inserted,
                    "updated": c.updated,
                    "unchanged": c.unchanged,
                    "deleted": c.deleted,
                    "watermark": None if write.watermark is None else timeutil.iso(write.watermark),
                },
            )
            emit(WindowDone(write.org, write.stream.id, job.window, c))
            run.committed += 1
            if run.committed == len(run.plan.windows) and id(run) not in announced:
                announced.add(id(run))
                emit(StreamFinished(run.result()))

    writer_task = asyncio.create_task(writer())
    workers = [asyncio.create_task(worker()) for _ in range(options.concurrency)]
    fetching = asyncio.gather(*workers)
    try:
        watched: list[asyncio.Future[Any]] = [writer_task, fetching]
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if writer_task in done:  # the writer only ends early by failing
            writer_task.result()
            raise SyncError("the store writer stopped early")
        await fetching
        await queue.put(None)
        await writer_task
    finally:
        for task in (*workers, writer_task):
            task.cancel()
        await asyncio.gather(*workers, writer_task, fetching, return_exceptions=True)
    for r in runs:
        if r.error is not None:
            continue
        if not all(r.done):  # pragma: no cover - every job either commits or records an error
            r.error = f"stream {r.plan.label}: {len(r.done) - sum(r.done)} window(s) were not written"


def sync(
    store: BaseStore,
    orgs: Sequence[Org],
    streams: Sequence[Stream],
    options: SyncOptions = SyncOptions(),
    *,
    on_event: EventHandler | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] | None = None,
    command: str = "sync",
) -> SyncResult:
    """The blocking face of :func:`run_sync`."""
    return asyncio.run(
        run_sync(store, orgs, streams, options, on_event=on_event, transport=transport, clock=clock, command=command)
    )
