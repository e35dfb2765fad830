"""The engine: bounded concurrent fetching over one AsyncClient, one writer, a transaction per batch of windows."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

import httpx

from usageledger import rules, timeutil
from usageledger._http import tls_context
from usageledger._options import key_refusal, v1_fix, with_v1_fix
from usageledger._secrets import mask_keys
from usageledger._text import counted
from usageledger.client import AsyncClient
from usageledger.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    AuthenticationError,
    Knobs,
    NotFoundError,
    ParameterError,
    PermissionDeniedError,
    StoreError,
    SyncError,
    UsageLedgerError,
    advice,
)
from usageledger.store import BaseStore, RunTotals, Stream, StreamMark, require_store
from usageledger.sync._model import (
    INTERRUPTED,
    EventHandler,
    Org,
    RequestSent,
    RunFinished,
    RunStarted,
    SyncResult,
    failure_cause,
    no_such_path,
    not_read,
    plan_stream,
    window_failure,
)
from usageledger.sync._safety import check_org_keys, check_orgs, reap_abandoned, this_process
from usageledger.sync._state import FetchedWindow, StreamRun, WindowJob, interleave
from usageledger.sync._writer import WINDOWS_PER_SLOT, Writer
from usageledger.sync_options import SyncOptions

if TYPE_CHECKING:
    from usageledger.sync._arrow import ArrowPage

logger = logging.getLogger("usageledger.sync")

P = ParamSpec("P")
R = TypeVar("R")


CLOCK_SLACK: Final = 15 * 60
"""Seconds a clock may read before a watermark without being refused: workers on several machines syncing into one
PostgreSQL keep clocks that differ by seconds, and an hourly watermark set at 18:00:30 on one machine is after
17:59:50 on another. Within it, a run re-reads as it always did (the API's buckets, not our clock, hold the data)."""


def _check_clock(store: BaseStore, orgs: Sequence[Org], streams: Sequence[Stream], now: int) -> None:
    """Refuse a clock earlier than a watermark of the streams to sync by more than :data:`CLOCK_SLACK`, before
    anything is written: the store holds buckets complete up to it, so that clock went backwards (or ``--now`` was
    mistyped). Synced on, the run re-read a lag window of finished days with an end in the middle of one, overwrote
    whole buckets with partial ones and deleted rows, and recorded a last run earlier than the one before."""
    wanted = {(org.name, stream.id) for org in orgs for stream in streams}
    ahead = [s for s in store.stream_states() if (s.org, s.stream) in wanted and (s.watermark or 0) > now + CLOCK_SLACK]
    if not ahead:
        return
    latest = max(ahead, key=lambda s: s.watermark or 0)
    mark = timeutil.iso(latest.watermark or 0)
    raise SyncError(
        f"the clock reads {timeutil.iso(now)}, before the watermark {mark} of {latest.org}/{latest.stream} (the store"
        " is synced past it already): check the system clock (or --now); nothing was synced"
    )


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


def start_decoder_import() -> None:
    """Begin importing the page decoders (pyarrow, ~0.2 s of a sync's start) in a thread of their own.

    The CLI calls it before it opens the store, so the import overlaps opening and migrating the file (DuckDB
    releases the GIL) rather than holding up the first request; a fetch worker that needs the module first waits
    on the import lock for the rest of it. Nothing imports pyarrow back, so the two imports cannot deadlock.
    """
    name = "usageledger.sync._arrow"
    if name not in sys.modules:
        threading.Thread(target=importlib.import_module, args=(name,), name="usageledger-import", daemon=True).start()


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
    leave_running: bool = False,
) -> SyncResult:
    """Sync ``streams`` of every org into ``store``. Stream failures are reported in the result, not raised.

    ``transport`` (an httpx async transport, e.g. ``emulator.transport()``) and ``clock`` are for tests and
    embedding; by default requests go over the network and now is the wall clock.

    ``leave_running``: a run that returns is left ``running`` in ``sync_runs`` (its streams marked as they ended),
    for the caller to do more under it and then end it with :func:`end_run`: ``usageledger sync`` refreshes the
    directory so, and a Ctrl-C or a kill there is the run's, as one in its streams is. A run that raises is ended
    (``interrupted``, ``failed``) all the same.
    """
    _check_arguments(store, orgs, streams, options)
    if not orgs:
        raise SyncError("no organisation to sync: set OPENAI_ADMIN_KEY or list [[orgs]] in usageledger.toml")
    if not store.acquire_sync_lock(shared=True):
        raise SyncError("another usageledger sync is writing to this store; wait for it to finish and run again")
    try:
        async with _stream_locks(store, orgs, streams):
            return await _run_locked(store, orgs, streams, options, on_event, transport, clock, command, leave_running)
    finally:
        try:
            store.release_sync_lock(shared=True)
        except StoreError as exc:  # the connection is gone: the server dropped the lock with it, and the run's
            logger.info("could not release the sync lock: %s", exc)  # own error (if any) is the one to say


def _check_arguments(store: object, orgs: object, streams: object, options: object) -> None:
    """The run's arguments, checked before the store is locked: a single ``Org`` or stream, a string, ``None``
    options or a path for the store each failed deep inside (``'Org' object is not iterable``, ``'str' object has no
    attribute 'id'``); no stream synced nothing and said it succeeded; a stream or org listed twice was fetched,
    then refused at the write."""
    require_store(store)
    if not isinstance(options, SyncOptions):
        raise ParameterError("options", f"expected SyncOptions(...), got {type(options).__name__}")
    for param, items, kind, key in (("orgs", orgs, Org, "name"), ("streams", streams, Stream, "id")):
        if isinstance(items, str | kind) or not isinstance(items, Sequence):
            raise ParameterError(param, f"expected a list of {kind.__name__}, got {type(items).__name__}")
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, kind):
                raise ParameterError(param, f"expected {kind.__name__} items, got {type(item).__name__}")
            if getattr(item, key) in seen:
                raise ParameterError(param, f"{getattr(item, key)!r} is listed twice; list each once")
            seen.add(getattr(item, key))
    if not streams:
        raise ParameterError("streams", "is empty, so nothing would be synced; pass default_streams() for all")


_LOCK_POLL = 0.2
"""Seconds between two tries of a stream lock another worker holds."""


@contextlib.asynccontextmanager
async def _stream_locks(store: BaseStore, orgs: Sequence[Org], streams: Sequence[Stream]) -> AsyncIterator[None]:
    """Hold the lock of every (org, stream) of the run: workers of other orgs or streams run in parallel, two on one
    stream serialise (the later one waits, then plans from the watermark the first one left).

    Locks are taken in one global order (org, then stream id), so two workers with overlapping work never deadlock.
    """
    keys = sorted({(org.name, stream.id) for org in orgs for stream in streams})
    held: list[tuple[str, str]] = []
    try:
        for org_name, stream_id in keys:
            told = False
            while not store.try_lock_stream(org_name, stream_id):
                if not told:
                    logger.warning(
                        "waiting for stream %s of org %s: another usageledger worker is syncing it", stream_id, org_name
                    )
                    told = True
                await asyncio.sleep(_LOCK_POLL)
            held.append((org_name, stream_id))
        yield
    finally:
        for org_name, stream_id in reversed(held):
            try:
                store.unlock_stream(org_name, stream_id)
            except StoreError as exc:  # the connection is gone: the server dropped its locks with it
                logger.info("could not release the lock of %s/%s: %s", org_name, stream_id, exc)


async def _run_locked(
    store: BaseStore,
    orgs: Sequence[Org],
    streams: Sequence[Stream],
    options: SyncOptions,
    on_event: EventHandler | None,
    transport: httpx.AsyncBaseTransport | None,
    clock: Callable[[], float] | None,
    command: str,
    leave_running: bool,
) -> SyncResult:
    wall = clock or time.time
    now = int(wall())
    _check_clock(store, orgs, streams, now)
    emit: EventHandler = on_event or (lambda _event: None)
    run_id = uuid.uuid4().hex
    started = time.perf_counter()
    runs: list[StreamRun] = []
    # The certificates are loaded (once a process) before anything is recorded: ones that cannot be end the sync with
    # a CertificateError and nothing written, not with a run left `running`.
    if transport is None:
        tls_context()
    check_orgs(store, orgs, at=int(time.time()))

    def client_for(org: Org, via: httpx.AsyncBaseTransport | None, **more: Any) -> AsyncClient:
        """An org's client with the run's retries, HTTP rule and clock (the key check's, then the run's own)."""
        return AsyncClient(
            api_key=org.api_key,
            base_url=org.base_url,
            max_retries=options.max_retries,
            allow_insecure_http=options.allow_insecure_http,
            transport=via,
            clock=wall,
            **more,
        )

    await check_org_keys(store, orgs, lambda org: client_for(org, transport))
    reap_abandoned(store, at=int(time.time()), holding_sync_lock=True)
    pairs = [(org.name, stream) for org in orgs for stream in streams]
    for (org_name, stream), state in zip(pairs, store.register_streams(pairs), strict=True):
        plan = plan_stream(org_name, stream, state.watermark, options, now=now)
        extent = store.stream_extent(org_name, stream)
        runs.append(StreamRun.start(plan, watermark=state.watermark, extent=extent))
    requests = 0

    def count_request() -> None:
        nonlocal requests
        requests += 1
        emit(RequestSent(requests))

    inner = transport or httpx.AsyncHTTPTransport(retries=0, verify=tls_context())
    counting = _CountingTransport(inner, count_request)
    status = "interrupted"
    error: str | None = None
    returned = False
    clients: dict[str, AsyncClient] = {}
    # What the store records of the run (started, last run, finished; rows' synced_at and the revision log's seen_at)
    # is on the wall clock, never `now`, the clock `clock` (--now) injects for what the run reads: see
    # docs/CONTRACTS.md, "Two clocks". A run under --now started in the past and ended today, and its last run
    # read weeks old to the dashboard and to Prometheus.
    begun = int(time.time())
    store.begin_run(run_id, at=begun, command=command, owner=this_process())
    try:  # from here on, whatever happens, the run is finished (`finally`): never left `running`
        # A stream with nothing to read is finished already; the others are `running` until their last commit.
        marks = [StreamMark(r.plan.org, r.plan.stream.id, "running" if r.plan.windows else "ok") for r in runs]
        store.mark_streams(marks, run_id=run_id, at=begun)
        emit(RunStarted(run_id, tuple(r.plan for r in runs)))
        for org in orgs:
            clients[org.name] = client_for(org, counting, max_concurrency=options.concurrency)
        with store.sync_settings():
            await _execute(store, runs, {org.name: org for org in orgs}, clients, options, run_id, now, emit)
        status = "ok" if all(r.result().status == "ok" for r in runs) else "failed"
        returned = True
    except BaseException as exc:
        status = "failed" if isinstance(exc, Exception) else "interrupted"
        # An interruption (Ctrl-C, SIGTERM: the loop cancels the run) was recorded as `CancelledError`: say what it is.
        error = (
            str(exc) if isinstance(exc, UsageLedgerError) else type(exc).__name__ if status == "failed" else INTERRUPTED
        )
        raise
    finally:
        for client in clients.values():
            await client.aclose()
        await inner.aclose()
        result = SyncResult(run_id, tuple(r.result() for r in runs), requests, time.perf_counter() - started)
        try:
            _finish(store, runs, run_id, begun, status, error, result, end=not (leave_running and returned))
        except StoreError as exc:
            # When the run already ends with an error (a full disk fails the commit and then this), that error is
            # the one line the user sees; the next sync finds the run abandoned and says so.
            log = logger.warning if error is None else logger.info
            log("could not record the end of run %s: %s", run_id, exc)
        if status != "interrupted":
            # Once, after every commit (statistics of the whole run's rows, not of its first window's), never inside
            # a transaction; an interrupted run ends at once instead.
            store.analyse_new_tables()
    emit(RunFinished(result))
    return result


def _finish(
    store: BaseStore,
    runs: Sequence[StreamRun],
    run_id: str,
    begun: int,
    status: str,
    error: str | None,
    result: SyncResult,
    *,
    end: bool,
) -> None:
    """Each stream's last run (``begun``: the run's start on the wall clock, as ``begin_run`` recorded it) and
    status; with ``end``, the run's totals, finished now (the wall clock)."""
    results = [(r, r.result()) for r in runs]
    store.mark_streams(
        [StreamMark(r.plan.org, r.plan.stream.id, s.status, s.error) for r, s in results], run_id=run_id, at=begun
    )
    if end:
        _record_end(store, result, status, error or "; ".join(result.errors) or None)


def _record_end(store: BaseStore, result: SyncResult, status: str, error: str | None) -> None:
    totals = RunTotals(
        streams=len(result.streams),
        windows=sum(s.windows_done for s in result.streams),
        requests=result.requests,
        counts=result.counts,
    )
    store.finish_run(result.run_id, at=int(time.time()), status=status, totals=totals, error=error)


def end_run(store: BaseStore, result: SyncResult, *, status: str | None = None, error: str | None = None) -> None:
    """End the run that :func:`run_sync` left ``running`` (``leave_running=True``) and returned as ``result``, once
    the caller's work under it is done: its status is its streams' (``ok``, ``failed``) unless ``status`` says
    otherwise (``interrupted``: stopped in the caller's work); ``error``, what that work met, follows the streams'
    errors in the run's."""
    _record_end(
        store,
        result,
        status or ("ok" if result.ok else "failed"),
        "; ".join([*result.errors, *filter(None, [error])]) or None,
    )


def _key_refusal(org: Org, exc: APIStatusError) -> str:
    """The one message for an org whose key the API refused: :func:`key_refusal`'s, which ``query`` says too."""
    return f"org {org.name!r}: {key_refusal(exc, org.key_source, 'sync')}"


FETCH_WORKERS_PER_SLOT: Final = 2
"""Fetching workers per request slot (``--concurrency``). A worker also decodes and converts the window it fetched,
which takes a few milliseconds a page; the slots bound the requests out (one semaphore for the run, all orgs) and
are let go while a page decodes, so with twice the workers a slot is not idle while its last page is decoded: a
year's hourly sync went from a mean of 11.50 s to 11.13 s over eleven pairs, peak RSS +6 MB
(``bench/BENCHMARKS.md``)."""


class _Stopped(Exception):
    """The job's stream was stopped (its org's key refused, its host unreachable) while the job waited for a slot."""


class _Slot:
    """One of the run's request slots, for one job: taken only while the job's stream is still going, so a job that
    waited while another found the org's key refused or its host unreachable sends nothing (:class:`_Stopped`)."""

    def __init__(self, slots: asyncio.Semaphore, run: StreamRun) -> None:
        self._slots = slots
        self._run = run

    async def __aenter__(self) -> None:
        await self._slots.acquire()
        if self._run.error is not None:
            self._slots.release()
            raise _Stopped

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()


async def _fetch(
    jobs: Iterator[WindowJob],
    runs: Sequence[StreamRun],
    orgs: Mapping[str, Org],
    clients: dict[str, AsyncClient],
    queue: asyncio.Queue[FetchedWindow | None],
    store: BaseStore,
    run_id: str,
    slots: asyncio.Semaphore,
    knobs: Knobs,
) -> None:
    """A fetching worker: take the next job, read every page of its window, convert it, hand it to the writer: a
    window holding many results in pieces of whole buckets, each handed over before the next is asked
    (:func:`_read_window`).

    ``slots`` bounds the run's requests out (``--concurrency``, across every org); a worker lets its slot go while
    a page decodes.

    Converting here, as soon as the pages are in, lets the pages go before the window waits for the writer. A
    window the store refuses (a group twice in a bucket, a bucket outside the window) fails its stream only; the
    pieces of it handed over before still commit, as windows taken do when a stream fails. A key
    the API refuses (401, 403) is the org's, not the window's: every stream of the org stops at once with one
    message, and nothing more is asked with that key. A failure's advice names the settings of ``knobs`` (the
    run's ``SyncOptions.knobs``) and where the org's base URL came from.
    """
    from usageledger.sync._arrow import page_decoder  # pyarrow: only when a sync fetches

    async def hand_over(job: WindowJob, window: rules.Window, pages: list[ArrowPage]) -> None:
        # Each body is read into Arrow columns in a worker thread (by Arrow kernels without the GIL; costs by the
        # models, its objects let go as soon as its page is columns), then the window (or piece) is checked and
        # made its store's batch there too; the queue's bound holds the worker back while the writer is behind.
        fetched = await asyncio.to_thread(FetchedWindow.from_pages, job, window, pages, store, run_id)
        pages.clear()
        await queue.put(fetched)

    for job in jobs:
        if job.run.error is not None:
            continue
        plan = job.run.plan
        filters: dict[str, Any] = plan.stream.query_filters()
        endpoint = plan.stream.endpoint
        client = clients[plan.org]
        first = plan.windows[0].start  # a later window starting after the API's now is empty, for every stream
        try:
            decode = page_decoder(endpoint)
            await _read_window(client, job, decode, _Slot(slots, job.run), first, filters, hand_over)
        except _Stopped:
            continue
        except (AuthenticationError, PermissionDeniedError) as exc:
            refusal = mask_keys(_key_refusal(orgs[plan.org], exc))
            stopped = [r.plan.label for r in runs if r.plan.org == plan.org and r.stop(refusal, key_refused=True)]
            if stopped:  # said once, by the worker that stopped them (the result and the store hold it too)
                logger.info("%s (stopped %s)", refusal, counted(len(stopped), "stream"))
            continue
        except NotFoundError as exc:  # no such path: every stream of the org meets it under a wrong base URL
            base = clients[plan.org].base_url
            source = orgs[plan.org].base_url_source  # the fix names where the URL came from (no /v1, say)
            fix = mask_keys(v1_fix(base, source) or exc.hint)
            job.run.fail(
                mask_keys(window_failure(plan.label, job.window, with_v1_fix(exc, base, source))),
                cause=mask_keys(no_such_path(fix, base)),
                request_id=exc.request_id,
                advice=fix,
            )
            logger.info("stream failed: %s", job.run.error)
            continue
        except UsageLedgerError as exc:  # a fetch that failed, or a window the store refuses (StoreError)
            fix = _advice(exc, replace(knobs, base_url=orgs[plan.org].base_url_source))
            told = mask_keys(exc.advised(fix) if isinstance(exc, APIError) and fix else str(exc))
            unreachable = _host_unreachable(exc, told)
            request_id = exc.request_id if isinstance(exc, APIStatusError) else None
            cause = unreachable or failure_cause(told, request_id)
            job.run.fail(
                window_failure(plan.label, job.window, told), cause=cause, request_id=request_id, advice=fix or None
            )
            # Info, not an error: the failure is in the result, which the caller reports (the CLI's one error line).
            logger.info("stream failed: %s", job.run.error)
            if unreachable is not None:  # every attempt and retry failed to connect: the org's other streams stop
                for r in runs:
                    if r.plan.org == plan.org:
                        r.stop(not_read(r.plan.label, unreachable), cause=unreachable, advice=fix or None)
            continue


HandOver = Callable[[WindowJob, rules.Window, list["ArrowPage"]], Awaitable[None]]
"""Where :func:`_read_window` sends a job's window, or a piece of it, with its pages."""


async def _read_window(
    client: AsyncClient,
    job: WindowJob,
    decode: Callable[[bytes], ArrowPage],
    slot: _Slot,
    first: int,
    filters: Mapping[str, Any],
    hand_over: HandOver,
) -> None:
    """Every page of a job's window, asked in spans of about :data:`PAGE_RESULTS` results each
    (:meth:`StreamRun.request_span`, each span's density learnt before the next is asked), each span's pages read
    into columns before the next is asked: a window's results are never objects all at once. The spans are whole
    buckets, so the window's buckets, and so its rows, are the same as one request's.

    The pages are handed over in pieces of whole buckets holding about :data:`PAGE_RESULTS` results
    (:meth:`StreamRun.fits`), each before the next span is asked, so a window's rows are never held all at once
    either: each piece is a window of its own, written in its own turn, and the watermark moves over it as over a
    window. A window that fits is one piece, itself. The stream's first request is asked by one window at a time
    (:meth:`StreamRun.reading`).
    """
    run = job.run
    stream = run.plan.stream
    window = job.window
    async with run.reading():
        pages: list[ArrowPage] = []
        held = 0  # the results of `pages`, the piece from `piece` on
        piece = start = window.start
        while start < window.end:
            end = run.request_span(start, window.end)
            if held and not run.fits(held, start, end):
                await hand_over(job, job.piece(piece, start), pages)
                pages, held, piece = [], 0, start
            got = await client._fetch_pages(
                stream.endpoint,
                decode,
                start_time=start,
                end_time=end,
                bucket_width=stream.bucket_width,
                group_by=stream.group_by,
                slot=slot,
                range_start=first,
                **filters,
            )
            for page in got:
                run.learn(page.rows.num_rows, page.lo, page.hi)
            run.sized.set()
            pages += got
            held += sum(page.rows.num_rows for page in got)
            start = end
        await hand_over(job, job.piece(piece, window.end), pages)


def _advice(exc: UsageLedgerError, knobs: Knobs) -> str:
    """What the run's user is told to do about ``exc``: an API error's advice naming the settings of ``knobs``
    (:func:`~usageledger.errors.advice`); ``""`` when it has none."""
    return advice(exc, knobs) if isinstance(exc, APIError) else ""


def _host_unreachable(exc: UsageLedgerError, told: str) -> str | None:
    """The failure (``told``: ``exc`` as the user is told it) as the org's when no attempt connected at all, retries
    included (refused, no such host): the org's streams stop rather than each spend its own retries on the same
    host, and the run's errors say it once. A connection dropped or a page that failed stops its stream only (its
    error names its window); the run's errors say it once for the streams it failed word for word
    (:func:`~usageledger.sync._model.failure_cause`)."""
    if isinstance(exc, APIConnectionError) and isinstance(exc.__cause__, httpx.ConnectError):
        return mask_keys(told)
    return None


async def _execute(
    store: BaseStore,
    runs: Sequence[StreamRun],
    orgs: Mapping[str, Org],
    clients: dict[str, AsyncClient],
    options: SyncOptions,
    run_id: str,
    now: int,
    emit: EventHandler,
) -> None:
    jobs = interleave(runs)
    # Fetched windows wait here for the one writer; the bound keeps memory flat however long the range.
    queue: asyncio.Queue[FetchedWindow | None] = asyncio.Queue(maxsize=options.concurrency)
    # A transaction takes up to eight fetch rounds of windows (and at most MAX_BATCH_ROWS rows): a commit costs
    # DuckDB tens of milliseconds whatever its size, so few big ones keep up with the API; the rows cap keeps memory
    # flat.
    writer = Writer(store, now=now, emit=emit, max_windows=WINDOWS_PER_SLOT * options.concurrency)
    writer_task = asyncio.create_task(writer.run(queue))
    slots = asyncio.Semaphore(options.concurrency)
    workers = [
        asyncio.create_task(_fetch(jobs, runs, orgs, clients, queue, store, run_id, slots, options.knobs))
        for _ in range(FETCH_WORKERS_PER_SLOT * options.concurrency)
    ]
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
        r.check_written()


def _blocking(run: Callable[P, Coroutine[Any, Any, R]], name: str) -> Callable[P, R]:
    """``name``, the blocking face of the coroutine function ``run``: its parameters, run to the end in a new loop."""

    @functools.wraps(run)
    def blocking(*args: P.args, **kwargs: P.kwargs) -> R:
        # In a running loop (a Jupyter cell, an async function) asyncio.run raised "cannot be called from a running
        # event loop" from deep inside, after the coroutine was made, so a "was never awaited" warning followed.
        # Asked before the coroutine exists: one line saying what to write there instead.
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(run(*args, **kwargs))
        raise SyncError(
            f"{name}() cannot run inside a running event loop (a notebook cell, an async function); there, write"
            f" `await {run.__name__}(...)` with the same arguments (from usageledger.sync import {run.__name__})"
        )

    blocking.__name__ = blocking.__qualname__ = name
    blocking.__doc__ = f"The blocking face of :func:`{run.__name__}`."
    return blocking


sync = _blocking(run_sync, "sync")
