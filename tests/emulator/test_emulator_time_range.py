"""The emulator's time range over loopback HTTP, as the live API treats it (reference §3.1, §10): a future
end_time is a 400, never clamped, as are an end at or before the start and a range starting in the future; the
client and the sync, whose clock may run ahead of the API's, still read up to the API's now."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from usageledger import AsyncClient, Client, catalogue
from usageledger.store import Stream, open_store
from usageledger.sync import Org, SyncOptions, sync

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

DAY = 86400
TODAY = EMULATOR_NOW - EMULATOR_NOW % DAY
PATH = catalogue.get("completions").path


@pytest.fixture(scope="module")
def http(emulator_url: str) -> Iterator[httpx.Client]:
    """Plain HTTP to the shared emulator on loopback (its clock fixed at EMULATOR_NOW)."""
    headers = {"Authorization": f"Bearer {FAKE_ADMIN_KEY}"}
    with httpx.Client(base_url=emulator_url, headers=headers) as client:
        yield client


def _error(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize("ahead", [1, 3600, TODAY + DAY - EMULATOR_NOW, 30 * DAY], ids=["1s", "1h", "eod", "30d"])
def test_a_future_end_time_is_refused_not_clamped(http: httpx.Client, ahead: int) -> None:
    """The live API fails on an end_time in the future (one a day ahead, at the end of today, included); the
    emulator clamped it to now and answered 200, so a client that sent one passed against it and failed for real."""
    end = EMULATOR_NOW + ahead
    error = _error(http.get(PATH, params={"start_time": TODAY - 3 * DAY, "end_time": end}))
    assert error["param"] == "end_time"
    assert (
        error["message"] == f"end_time ({end}) must not be in the future (now: {EMULATOR_NOW}); omit it to end at now."
    )


def test_an_end_time_of_now_or_none_ends_at_now(http: httpx.Client) -> None:
    """end_time = now is accepted and reads as no end_time: buckets up to today's, which is partial."""
    at_now = http.get(PATH, params={"start_time": TODAY - 3 * DAY, "end_time": EMULATOR_NOW})
    open_ended = http.get(PATH, params={"start_time": TODAY - 3 * DAY})
    assert at_now.status_code == open_ended.status_code == 200, at_now.text
    assert at_now.json()["data"] == open_ended.json()["data"]
    assert open_ended.json()["data"][-1]["start_time"] == TODAY


@pytest.mark.parametrize("end", [TODAY - 4 * DAY, TODAY - 3 * DAY], ids=["before", "equal"])
def test_an_end_time_at_or_before_the_start_is_refused(http: httpx.Client, end: int) -> None:
    """An empty or reversed range is a 400 naming end_time, with both values."""
    start = TODAY - 3 * DAY
    error = _error(http.get(PATH, params={"start_time": start, "end_time": end}))
    assert error["param"] == "end_time"
    assert error["message"] == f"end_time ({end}) must be greater than start_time ({start})."


def test_a_start_time_in_the_future_is_refused_with_an_end_time(http: httpx.Client) -> None:
    """A range that starts at or after now, with an end after its start, is a 400 naming start_time (it said an
    end_time "clamped to now"); without an end_time, of which the reference says nothing, it holds no buckets."""
    for start in (EMULATOR_NOW, EMULATOR_NOW + 3600):
        error = _error(http.get(PATH, params={"start_time": start, "end_time": start + 2 * 3600}))
        assert error["param"] == "start_time"
        assert error["message"] == f"start_time ({start}) must be before now ({EMULATOR_NOW})."
        open_ended = http.get(PATH, params={"start_time": start})
        assert open_ended.status_code == 200 and open_ended.json()["data"] == [], open_ended.text


def test_a_client_whose_clock_is_ahead_reads_up_to_the_apis_now(emulator_url: str, tmp_path: Path) -> None:
    """A clock two days ahead of the API's sends an end_time the API refuses as future: the client and its async
    twin ask again without it and get the buckets up to the API's today; a sync at that clock keeps its watermark
    at the API's today, as when the API clamped."""
    ahead = EMULATOR_NOW + 2 * DAY
    since = TODAY - 3 * DAY
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: ahead) as client:
        buckets = client.fetch_range("completions", start_time=since, bucket_width="1h")
    assert buckets[0].start_time == since and buckets[-1].end_time == EMULATOR_NOW  # the API's last hour

    async def read() -> list[Any]:
        async with AsyncClient(FAKE_ADMIN_KEY, emulator_url, clock=lambda: ahead) as ac:
            return await ac.fetch_range("completions", start_time=since, bucket_width="1h")

    assert asyncio.run(read()) == buckets
    stream = Stream.create("completions", "1d", ("project_id", "model"))
    with open_store(tmp_path / "s.duckdb") as store:
        result = sync(
            store,
            [Org("main", FAKE_ADMIN_KEY, emulator_url)],
            (stream,),
            SyncOptions(since=since),
            clock=lambda: ahead,
        )
        assert result.ok, result.errors
        assert [s.watermark for s in store.stream_states()] == [TODAY]


def test_a_clock_ahead_by_more_than_a_window_reads_the_range_up_to_the_apis_now(
    emulator_url: str, tmp_path: Path
) -> None:
    """A range whose later windows start after the API's now (a clock ahead by more than a window: a day of
    minutes) failed on the API's 400 on their start_time, after the first window had been read up to its now.
    Those windows hold nothing yet: the client and its twin read the range up to the API's now, and a sync of it
    succeeds with its watermark there."""
    ahead = EMULATOR_NOW + 2 * DAY
    since = EMULATOR_NOW - 6 * 3600
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: ahead) as client:
        buckets = client.fetch_range("completions", start_time=since, bucket_width="1m")
    assert buckets[0].start_time == since and buckets[-1].end_time == EMULATOR_NOW

    async def read() -> list[Any]:
        async with AsyncClient(FAKE_ADMIN_KEY, emulator_url, clock=lambda: ahead) as ac:
            return await ac.fetch_range("completions", start_time=since, bucket_width="1m")

    assert asyncio.run(read()) == buckets
    stream = Stream.create("completions", "1m", ("project_id",))
    with open_store(tmp_path / "s.duckdb") as store:
        result = sync(
            store, [Org("main", FAKE_ADMIN_KEY, emulator_url)], (stream,), SyncOptions(since=since), clock=lambda: ahead
        )
        assert result.ok, result.errors
        [state] = store.stream_states()
        assert state.watermark is not None and since < state.watermark < EMULATOR_NOW


def test_a_costs_sync_with_a_clock_ahead_by_more_than_a_window_reads_up_to_the_apis_now(
    emulator_url: str, tmp_path: Path
) -> None:
    """A costs sync whose later windows start after the API's now (a clock ahead by more than a costs window: 180
    days) failed the stream on the API's 400 on their start_time, as the usage streams did before they read such a
    window as empty: costs now read it as empty too, and the sync succeeds with its watermark at the API's today."""
    ahead = EMULATOR_NOW + 200 * DAY
    since = TODAY - 3 * DAY
    stream = Stream.create("costs", "1d", ("project_id", "line_item"))
    with open_store(tmp_path / "s.duckdb") as store:
        result = sync(
            store, [Org("main", FAKE_ADMIN_KEY, emulator_url)], (stream,), SyncOptions(since=since), clock=lambda: ahead
        )
        assert result.ok, result.errors
        assert [s.watermark for s in store.stream_states()] == [TODAY]
