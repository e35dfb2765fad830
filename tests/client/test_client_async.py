"""AsyncClient: concurrent windows yielded in order, bounded concurrency, and one shared 429 backoff."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import warnings
from decimal import Decimal

import httpx
import pytest

from usageledger import AsyncClient, RetryPolicy
from usageledger.errors import BadRequestError, ClientClosedError, PaginationError, ParameterError
from usageledger.models import UsageResponse, decode_page

from fixtures.data import EXAMPLES, FAKE_ADMIN_KEY
from fixtures.paging import DAY, NOW, START, PagedServer, expected_starts, starts_of


class VirtualTime:
    """A monotonic clock that moves only when a task sleeps; a sleeper lets other tasks run before time moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.someone_paused = asyncio.Event()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        start = self.now
        self.sleeps.append(seconds)
        self.someone_paused.set()
        for _ in range(200):  # let every other ready task reach its own gate first
            await asyncio.sleep(0)
        self.now = max(self.now, start + seconds)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(sleep=lambda s: None, async_sleep=self.sleep, monotonic=self.monotonic, random=lambda: 0.0)


async def test_windows_and_pages_come_back_in_order() -> None:
    """Concurrent windows over several pages each still yield every bucket once, in order."""
    server = PagedServer(page_size=10)
    start = START + 77
    async with server.async_client(max_concurrency=3) as client:
        query = client.query("completions", start_time=start, end_time=start + 150 * DAY)
        buckets = [b async for b in query]
    assert len(query.windows) == 5
    assert starts_of(buckets) == expected_starts(start, start + 150 * DAY, "1d")


async def test_fetch_range_is_the_whole_range() -> None:
    """fetch_range returns the same buckets as iterating the query, for hourly buckets over many windows."""
    server = PagedServer()
    async with server.async_client() as client:
        buckets = await client.fetch_range("embeddings", start_time=START, end_time=START + 30 * DAY, bucket_width="1h")
    assert starts_of(buckets) == expected_starts(START, START + 30 * DAY, "1h")
    assert len(buckets) == 720


async def test_concurrency_is_real_and_bounded() -> None:
    """With max_concurrency=3 and six windows, exactly three requests are in flight at the peak."""
    server = PagedServer()
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(20):
            await asyncio.sleep(0)
        in_flight -= 1
        return server.handler(request)

    client = AsyncClient(FAKE_ADMIN_KEY, transport=httpx.MockTransport(handler), clock=lambda: NOW, max_concurrency=3)
    async with client:
        buckets = await client.fetch_range("completions", start_time=START, end_time=START + 6 * 31 * DAY)
    assert peak == 3
    assert len(buckets) == 6 * 31


async def test_a_callers_slot_is_held_while_a_request_is_out_not_while_its_page_decodes() -> None:
    """The sync's run-wide bound on requests (``slot``) covers each request on the wire; the page's decoding, in a
    worker thread, happens with the slot free for the next request."""
    server = PagedServer(page_size=10)
    slot = asyncio.Semaphore(1)
    held: list[bool] = []
    on_the_wire: list[bool] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        on_the_wire.append(slot.locked())
        return server.handler(request)

    def decode(body: bytes) -> UsageResponse:
        held.append(slot.locked())
        return decode_page(body)

    client = AsyncClient(FAKE_ADMIN_KEY, transport=httpx.MockTransport(handler), clock=lambda: NOW)
    async with client:
        pages = await client._fetch_pages("completions", decode, start_time=START, end_time=START + 31 * DAY, slot=slot)
    assert len(pages) == 4 and len(held) == 4
    assert on_the_wire == [True] * 4 and held == [False] * 4


async def test_a_429_pauses_every_worker_of_the_client() -> None:
    """After one worker gets 429 Retry-After: 5, no request of any worker goes out before t=5."""
    clock = VirtualTime()
    server = PagedServer(page_size=20)
    log: list[tuple[float, int, bool, int]] = []  # (time, window start, has page, status)
    first_window = START
    throttled = False

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal throttled
        window = int(request.url.params["start_time"])
        if window != first_window:
            await clock.someone_paused.wait()  # the other window answers only once the 429 has been handled
        if window == first_window and not throttled:
            throttled = True
            log.append((clock.now, window, "page" in request.url.params, 429))
            body = {"error": {"type": "rate_limit_exceeded", "message": "slow down", "param": None, "code": None}}
            return httpx.Response(429, json=body, headers={"retry-after": "5"})
        log.append((clock.now, window, "page" in request.url.params, 200))
        return server.handler(request)

    client = AsyncClient(
        FAKE_ADMIN_KEY,
        transport=httpx.MockTransport(handler),
        clock=lambda: NOW,
        max_concurrency=2,
        retry=clock.policy(),
    )
    async with client:
        buckets = await client.fetch_range("completions", start_time=START, end_time=START + 40 * DAY)
    assert starts_of(buckets) == expected_starts(START, START + 40 * DAY, "1d")
    index_of_429 = next(i for i, entry in enumerate(log) if entry[3] == 429)
    after = log[index_of_429 + 1 :]
    assert any(entry[1] != first_window for entry in after)  # the other worker did send after the 429 ...
    assert all(entry[0] >= 5.0 for entry in after)  # ... and neither sent anything before the pause ended
    assert clock.sleeps.count(5.0) >= 2  # both workers waited, not only the one that was told to


async def test_async_429_is_retried_through() -> None:
    """A single page survives two 429s with Retry-After."""
    clock = VirtualTime()
    raw = (EXAMPLES / "costs.json").read_bytes()
    answers = [
        httpx.Response(429, headers={"retry-after": "1"}),
        httpx.Response(429, headers={"retry-after": "2"}),
        httpx.Response(200, content=raw),
    ]
    client = AsyncClient(FAKE_ADMIN_KEY, transport=httpx.MockTransport(lambda r: answers.pop(0)), retry=clock.policy())
    async with client:
        page = await client.page("costs", start_time=1730419200)
    assert page.data[0].results[0].amount_value == Decimal("0.06")  # type: ignore[union-attr]
    assert clock.sleeps == [1.0, 2.0] and clock.now == 3.0


async def test_an_error_in_one_window_fails_the_query_and_cancels_the_rest() -> None:
    """A 400 in one window raises; the other windows' tasks do not linger."""
    server = PagedServer()

    async def handler(request: httpx.Request) -> httpx.Response:
        if int(request.url.params["start_time"]) > START:  # (a later window's start_time refused is the API's
            # now before it: that window is empty, see test_emulator_time_range; any other 400 fails the query)
            body = {"error": {"type": "invalid_request_error", "message": "no", "param": "group_by", "code": None}}
            return httpx.Response(400, json=body)
        await asyncio.sleep(0)
        return server.handler(request)

    client = AsyncClient(FAKE_ADMIN_KEY, transport=httpx.MockTransport(handler), clock=lambda: NOW)
    async with client:
        with pytest.raises(BadRequestError) as info:
            await client.fetch_range("completions", start_time=START, end_time=START + 120 * DAY)
    assert info.value.param == "group_by"
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()


async def test_stopping_early_cancels_pending_windows() -> None:
    """Leaving the iteration early (under aclosing) cancels windows fetched ahead."""
    server = PagedServer()
    async with server.async_client(max_concurrency=4) as client:
        query = client.query("completions", start_time=START, end_time=START + 200 * DAY)
        async with contextlib.aclosing(query.pages()) as pages:
            async for page in pages:
                assert page.data[0].start_time == START
                break
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()
    assert len(server.requests) <= 4


async def test_async_pagination_errors() -> None:
    """A repeated cursor raises PaginationError in the async client too."""
    page = {"object": "page", "data": [], "has_more": True, "next_page": "page_loop"}
    client = AsyncClient(
        FAKE_ADMIN_KEY, transport=httpx.MockTransport(lambda r: httpx.Response(200, json=page)), clock=lambda: NOW
    )
    async with client:
        with pytest.raises(PaginationError):
            await client.fetch_range("completions", start_time=START, end_time=START + DAY)


async def test_async_rows_and_tables() -> None:
    """rows(), to_arrow(), to_pandas() and to_polars() give one row per result."""
    server = PagedServer()
    async with server.async_client() as client:
        query = client.web_search_calls(start_time=START, end_time=START + 4 * DAY, context_levels=["high"])
        rows = [r async for r in query.rows()]
        table = await query.to_arrow()
        frame = await query.to_pandas()
        polars_frame = await query.to_polars()
    assert [r["bucket_start"] for r in rows] == [START + i * DAY for i in range(4)]
    assert table.num_rows == len(frame) == polars_frame.height == 4
    assert server.requests[0].url.params.get_list("context_levels[]") == ["high"]


async def test_async_preflight_sends_nothing() -> None:
    """Validation errors are raised before any request, as in the sync client."""
    seen: list[httpx.Request] = []
    client = AsyncClient(FAKE_ADMIN_KEY, transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(500)))
    async with client:
        with pytest.raises(ParameterError, match="bucket_width"):
            await client.page("costs", start_time=START, bucket_width="1h")
        with pytest.raises(ParameterError, match="limit"):
            client.query("costs", start_time=START, end_time=START + DAY, limit=5)
    assert seen == []


async def test_async_page_matches_the_example() -> None:
    """An async page decodes the completions example with its cursor intact."""
    raw = (EXAMPLES / "completions.json").read_bytes()
    client = AsyncClient(FAKE_ADMIN_KEY, transport=httpx.MockTransport(lambda r: httpx.Response(200, content=raw)))
    async with client:
        page = await client.page("completions", start_time=1730419200)
    assert page.next_page == json.loads(raw)["next_page"] and page.has_more is True


def test_async_client_refuses_a_sync_transport() -> None:
    """Handing a sync transport to AsyncClient is a clear ConfigError, not a hang."""
    from usageledger.errors import ConfigError

    with pytest.raises(ConfigError, match="async transport"):
        AsyncClient(FAKE_ADMIN_KEY, transport=httpx.HTTPTransport())


def test_one_client_serves_one_asyncio_run_after_another(emulator_url: str) -> None:
    """A script calling asyncio.run twice with one AsyncClient got `RuntimeError: Event loop is closed` the second
    time: its pool's kept-alive connections belonged to the first, ended loop (the client already kept a semaphore
    per loop). The pool is renewed for the new loop; closing it from a later loop works too, and then the client is
    closed. The abandoned connections' sockets are freed with them (their loop is gone: no graceful close)."""
    client = AsyncClient(FAKE_ADMIN_KEY, emulator_url, clock=lambda: 1795176000)

    async def use() -> tuple[int, int]:
        buckets = await client.costs(start_time="40d").buckets()
        return len(buckets), len((await client.page("completions", start_time="2d")).data)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the first loop's sockets, closed by the collector
        assert asyncio.run(use()) == asyncio.run(use()) == (41, 3)
        asyncio.run(client.aclose())
        with pytest.raises(ClientClosedError):
            asyncio.run(use())
        gc.collect()


def test_loops_in_several_threads_keep_one_semaphore_each() -> None:
    """Threads, each with its own `asyncio.run`, share one client: each loop gets its semaphore once and keeps it.
    The map was rebuilt (live entries copied, then assigned), which dropped an entry another thread had just added:
    that loop's next request made a second semaphore, up to twice `max_concurrency` at once. The interpreter is made
    to switch threads every microsecond so the interleaving happens (1 to 5 loops in 1,200 lost theirs before)."""
    import sys
    import threading

    client = AsyncClient(api_key=FAKE_ADMIN_KEY, base_url="http://127.0.0.1:9/v1")
    lost: list[int] = []

    async def one_loop() -> None:
        first = client._semaphore()
        for _ in range(20):
            await asyncio.sleep(0)
            if client._semaphore() is not first:
                lost.append(1)
                return

    def worker() -> None:
        for _ in range(400):
            asyncio.run(one_loop())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads)
    assert lost == []
    assert len(client._semaphores) <= 6  # the closed loops' semaphores are let go
