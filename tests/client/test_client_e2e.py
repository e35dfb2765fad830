"""End to end over loopback: Client, AsyncClient and UsageApi against the emulator's real HTTP server."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from usageledger import AsyncClient, Client, RetryPolicy, UsageApi, catalogue, rules
from usageledger.emulator import Emulator, EmulatorConfig, FaultConfig, run_server
from usageledger.errors import AuthenticationError

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_CONFIG, EMULATOR_NOW

if TYPE_CHECKING:
    import pandas as pd

DAY = 86_400
END = EMULATOR_NOW - EMULATOR_NOW % DAY  # midnight before the emulator's "now"
START = END - 40 * DAY


def client(url: str, **kw: object) -> Client:
    return Client(FAKE_ADMIN_KEY, url, clock=lambda: EMULATOR_NOW, **kw)  # type: ignore[arg-type]


def test_hourly_range_over_windows_is_complete_and_ordered(emulator_url: str) -> None:
    """240 hourly buckets (two windows) come back gap-free, ascending and once each."""
    with client(emulator_url) as c:
        query = c.query("completions", start_time=END - 10 * DAY, end_time=END, bucket_width="1h", group_by=["model"])
        buckets = list(query)
    assert len(query.windows) == 2
    assert [b.start_time for b in buckets] == rules.bucket_starts(END - 10 * DAY, END, "1h")
    assert all(b.end_time - b.start_time == 3600 for b in buckets)


def test_paging_inside_a_window_follows_the_servers_cursor(emulator_url: str) -> None:
    """A small limit makes the server page; following next_page by hand and by query() agree."""
    with client(emulator_url) as c:
        first = c.page("embeddings", start_time=START, end_time=START + 5 * DAY, limit=2)
        assert first.has_more and first.next_page
        starts = [b.start_time for b in first.data]
        page = first
        while page.has_more:
            page = c.page("embeddings", start_time=START, end_time=START + 5 * DAY, limit=2, page=page.next_page)
            starts += [b.start_time for b in page.data]
        assert starts == [b.start_time for b in c.query("embeddings", start_time=START, end_time=START + 5 * DAY)]
    assert starts == [START + i * DAY for i in range(5)]


@pytest.mark.parametrize("array_format", ["brackets", "repeat", "comma"])
def test_every_array_format_reads_the_same_rows(emulator_url: str, array_format: str) -> None:
    """The emulator accepts every spelling; grouped and filtered rows are identical across them."""
    kwargs = {"start_time": START, "end_time": START + 3 * DAY, "group_by": ["project_id", "model"]}
    with client(emulator_url) as c:
        reference = list(c.query("completions", **kwargs).rows())  # type: ignore[arg-type]
        project = reference[0]["project_id"]
        with c.with_options(array_format=array_format) as other:  # type: ignore[arg-type]
            assert list(other.query("completions", **kwargs).rows()) == reference  # type: ignore[arg-type]
            narrowed = list(other.query("completions", project_ids=[project], **kwargs).rows())  # type: ignore[arg-type]
    assert narrowed and {r["project_id"] for r in narrowed} == {project}


async def test_async_client_matches_the_sync_client(emulator_url: str) -> None:
    """AsyncClient.fetch_range over loopback returns exactly what the sync client iterates."""
    with client(emulator_url) as c:
        expected = c.fetch_range("costs", start_time=START - 200 * DAY, end_time=END, group_by=["line_item"])
    async with AsyncClient(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW, max_concurrency=3) as ac:
        got = await ac.fetch_range("costs", start_time=START - 200 * DAY, end_time=END, group_by=["line_item"])
    assert got == expected
    assert any(isinstance(r.amount_value, Decimal) for b in got for r in b.results)  # type: ignore[union-attr]


@pytest.mark.parametrize("endpoint", catalogue.ENDPOINTS, ids=lambda e: e.name)
def test_usage_api_reads_every_endpoint(emulator_url: str, endpoint: catalogue.Endpoint) -> None:
    """Each UsageApi method returns one typed page from the emulator."""
    api = UsageApi(access_token=FAKE_ADMIN_KEY, base_url=emulator_url, clock=lambda: EMULATOR_NOW)
    with api:
        page = getattr(api, endpoint.seed_method)(start_time=START, end_time=START + 3 * DAY, limit=3)
    assert [b.start_time for b in page.data] == [START, START + DAY, START + 2 * DAY]
    assert all(type(r) is endpoint.result_type for b in page.data for r in b.results)


def test_faults_are_retried_through_over_loopback() -> None:
    """With 429s and 5xx injected, a range still comes back whole (retries honour Retry-After, no real waits)."""
    faults = FaultConfig(rate_429=0.4, rate_5xx=0.2, retry_after=1, seed=3)
    config = EmulatorConfig(
        seed=EMULATOR_CONFIG.seed, days=60, projects=2, users=3, models=2, now=EMULATOR_NOW, faults=faults
    )
    waits: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    policy = RetryPolicy(max_retries=8, sleep=sleep, random=lambda: 0.5, monotonic=lambda: clock[0])
    with run_server(Emulator(config)) as url, client(url, retry=policy) as c:
        buckets = c.fetch_range("completions", start_time=START, end_time=END, bucket_width="1h")
    assert [b.start_time for b in buckets] == rules.bucket_starts(START, END, "1h")
    assert 1.0 in waits  # a 429's Retry-After: 1 was honoured
    assert 0.25 in waits  # a 5xx backed off: half (the jitter) of the first 0.5 s step


def test_a_429_with_retry_after_ms_is_waited_out_in_milliseconds_not_a_second() -> None:
    """The emulator's `retry_after_ms` puts `retry-after-ms` on each 429, which the client honours before the whole
    second of `retry-after`: the same 429s (same fault seed) are each waited 20 ms instead of 1 s."""
    waits: dict[int | None, list[float]] = {}
    for retry_after_ms in (None, 20):
        faults = FaultConfig(rate_429=0.4, retry_after_ms=retry_after_ms, seed=3)
        config = EmulatorConfig(
            seed=EMULATOR_CONFIG.seed, days=60, projects=2, users=3, models=2, now=EMULATOR_NOW, faults=faults
        )
        paused = waits[retry_after_ms] = []
        # a clock that stands still: a wait is counted as asked, not less the time the request took
        policy = RetryPolicy(max_retries=8, sleep=paused.append, random=lambda: 0.5, monotonic=lambda: 0.0)
        with run_server(Emulator(config)) as url, client(url, retry=policy) as c:
            buckets = c.fetch_range("completions", start_time=START, end_time=END, bucket_width="1h")
        assert [b.start_time for b in buckets] == rules.bucket_starts(START, END, "1h")
    assert len(waits[None]) >= 3 and len(waits[20]) == len(waits[None])
    assert set(waits[None]) == {1.0} and set(waits[20]) == {0.02}


def test_wrong_key_is_an_authentication_error(emulator: Emulator) -> None:
    """An emulator that accepts only one key answers 401 to another; the error says what to do."""
    strict = Emulator(
        EmulatorConfig(seed=1, days=10, projects=1, users=1, models=1, now=EMULATOR_NOW, admin_key="sk-admin-right")
    )
    with run_server(strict) as url, client(url) as c, pytest.raises(AuthenticationError, match="OPENAI_ADMIN_KEY"):
        c.page("completions", start_time=END - DAY)


def test_key_stays_out_of_every_debug_log_over_a_real_socket(
    emulator_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With every logger at DEBUG (ours, httpx, httpcore), a real request logs plenty and never the key."""
    caplog.set_level(logging.DEBUG)
    with client(emulator_url) as c:
        c.page("completions", start_time=END - DAY)
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert FAKE_ADMIN_KEY not in caplog.text
    assert all(FAKE_ADMIN_KEY not in str(r.args) for r in caplog.records)


@pytest.mark.parametrize("endpoint", catalogue.ENDPOINTS, ids=lambda e: e.name)
def test_to_pandas_gives_an_empty_result_the_dtypes_of_a_full_one(
    emulator_url: str, endpoint: catalogue.Endpoint
) -> None:
    """`to_pandas()` gave `batch` as `bool` when grouped by it, `object` when not (all null) and `bool` when empty, and
    a whole-number column with a null `float64`: a notebook concatenating results tripped. Its dtypes are now the
    endpoint's schema alone (nullable `Int64` and `boolean`), empty, ungrouped or grouped by every field; async too."""
    days = {"start_time": START, "end_time": START + 3 * DAY}
    with client(emulator_url) as c:
        empty = c.query(endpoint.name, start_time=END - 1000 * DAY, end_time=END - 999 * DAY).to_pandas()
        plain = c.query(endpoint.name, **days).to_pandas()  # type: ignore[arg-type]
        grouped = c.query(endpoint.name, group_by=list(endpoint.group_by), **days).to_pandas()  # type: ignore[arg-type]

    async def fetch() -> pd.DataFrame:
        async with AsyncClient(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as ac:
            return await ac.query(endpoint.name, group_by=list(endpoint.group_by), **days).to_pandas()  # type: ignore[arg-type]

    awaited = asyncio.run(fetch())
    assert empty.empty and len(plain) and len(grouped) and len(awaited) == len(grouped)
    dtypes = {name: str(dtype) for name, dtype in empty.dtypes.items()}
    for frame in (plain, grouped, awaited):
        assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == dtypes
    kinds = {c.name: c.type for c in endpoint.columns}
    assert {name for name, dtype in dtypes.items() if dtype == "Int64"} == {n for n, k in kinds.items() if k == "int"}
    assert {name for name, dtype in dtypes.items() if dtype == "boolean"} == {
        n for n, k in kinds.items() if k == "bool"
    }
    if "batch" in kinds:  # null when not grouped by it: <NA>, not None in an object column
        assert plain["batch"].isna().all() and set(grouped["batch"]) == {True, False}
    if endpoint.is_costs:
        assert all(isinstance(v, Decimal) for v in grouped["amount_value"])  # money stays exact
