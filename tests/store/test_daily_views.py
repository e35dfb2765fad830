"""The daily views are the one answer to "a day of usage": an org's primary daily stream, else (an org synced only
hourly) its primary hourly stream summed to UTC days, on both back ends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from usageledger.store import BaseStore, Stream, open_store, table_for
from usageledger.sync import Org, SyncOptions, sync

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

DAY = 86400
TODAY = EMULATOR_NOW - EMULATOR_NOW % DAY
SINCE = TODAY - 6 * DAY
HOURLY = (
    Stream.create("completions", "1h", ("project_id", "model")),
    Stream.create("vector_stores", "1h", ("project_id",)),
)
DAILY = (
    Stream.create("completions", "1d", ("project_id", "model")),
    Stream.create("vector_stores", "1d", ("project_id",)),
)
ORGS = {"hourly": HOURLY, "daily": DAILY, "both": (*DAILY, *HOURLY)}
"""Three orgs of the same emulator: synced only hourly, only daily, and both."""


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def synced(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, emulator_url: str
) -> Iterator[BaseStore]:
    """A store holding the same six days of the emulator, for each org of :data:`ORGS`."""
    if request.param == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
    else:
        url = str(tmp_path_factory.mktemp("daily-views") / "s.duckdb")
    with open_store(url) as store:
        if store.dialect == "postgres":
            store.execute("SET TIME ZONE 'America/Los_Angeles'")  # the day is cut in UTC whatever the session's zone
        for org, streams in ORGS.items():
            done = sync(
                store,
                [Org(org, FAKE_ADMIN_KEY, emulator_url)],
                streams,
                SyncOptions(since=SINCE),
                clock=lambda: EMULATOR_NOW,
            )
            assert done.ok, done.errors
        yield store


def _days(store: BaseStore, endpoint: str, org: str) -> list[tuple[object, ...]]:
    """The org's rows of the endpoint's daily view, but the stream, in order."""
    spec = table_for(endpoint)
    cols = ", ".join(["bucket_start", "bucket_end", *(c.name for c in spec.data_columns)])
    return store.query(f"SELECT {cols} FROM {spec.daily_view} WHERE org = %s ORDER BY {cols}", [org])


@pytest.mark.parametrize("endpoint", ["completions", "vector_stores"])
def test_an_org_synced_only_hourly_has_the_days_of_a_daily_sync(synced: BaseStore, endpoint: str) -> None:
    """An org synced only at `--bucket-width 1h` had nothing in the daily views (nor their named twins: a reader of
    them saw no usage). Its hours are now summed to UTC days there: the same rows, to the token, as a daily sync of
    the same range; vector stores' `usage_bytes` is a level, the day's last hour, not 24 hours summed."""
    hourly, daily = _days(synced, endpoint, "hourly"), _days(synced, endpoint, "daily")
    assert daily and hourly == daily
    first, last = hourly[0][0], hourly[-1][0]
    assert first == datetime.fromtimestamp(SINCE, UTC) and last == datetime.fromtimestamp(TODAY, UTC)
    view = table_for(endpoint).daily_view
    streams = synced.query(f"SELECT DISTINCT stream FROM {view} WHERE org = 'hourly'")
    assert streams == [(next(s.id for s in HOURLY if s.endpoint.name == endpoint),)]
    named = synced.query(f"SELECT COUNT(*) FROM {view}_named WHERE org = 'hourly'")  # the named twin reads the view
    assert named == [(len(hourly),)]


@pytest.mark.parametrize("endpoint", ["completions", "vector_stores"])
def test_an_org_with_a_daily_and_an_hourly_stream_is_read_from_its_daily_one(synced: BaseStore, endpoint: str) -> None:
    """An org that syncs an endpoint both daily and hourly is read from its daily stream alone, never twice."""
    spec = table_for(endpoint)
    streams = synced.query(f"SELECT DISTINCT stream FROM {spec.daily_view} WHERE org = 'both'")
    assert [s for (s,) in streams] == [next(s.id for s in DAILY if s.endpoint.name == endpoint)]
    assert _days(synced, endpoint, "both") == _days(synced, endpoint, "daily")


def test_a_days_sums_keep_the_columns_types(synced: BaseStore) -> None:
    """A summed day's tokens read as the integers a daily stream's do (SUM of a BIGINT is wider in both SQL
    dialects), and its start and end are the UTC day's."""
    ((start, end, tokens),) = synced.query(
        "SELECT bucket_start, bucket_end, SUM(input_tokens) FROM usage_completions_daily"
        " WHERE org = 'hourly' AND bucket_start = %s GROUP BY bucket_start, bucket_end",
        [datetime.fromtimestamp(SINCE, UTC)],
    )
    rows = synced.query("SELECT input_tokens FROM usage_completions_daily WHERE org = 'hourly'")
    assert all(isinstance(v, int) for (v,) in rows)
    assert start == datetime.fromtimestamp(SINCE, UTC) and end - start == timedelta(days=1) and tokens > 0
