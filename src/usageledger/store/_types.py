"""The store's records: what a write carries, what it did, and a stream's state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from usageledger.errors import StoreError
from usageledger.models import Bucket
from usageledger.store.streams import Stream

DEMO_STORE: Final = "usageledger-demo.duckdb"
"""Where the demo writes by default: a store of its own, never the real one."""

__all__ = [
    "DEMO_ORG",
    "OrgRecord",
    "PreparedWindow",
    "RunOwner",
    "RunTotals",
    "RunningRun",
    "StreamMark",
    "StreamState",
    "UpsertCounts",
    "WindowWrite",
    "to_datetime",
    "to_unix",
]


def to_datetime(ts: int) -> datetime:
    """A Unix time as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


def to_unix(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp())
    raise StoreError(f"unexpected timestamp value {value!r} in the store")


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    """What one write did: rows inserted, updated (a value changed), unchanged, and deleted (vanished)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.deleted + other.deleted,
        )

    @property
    def rows(self) -> int:
        """Rows read from the API."""
        return self.inserted + self.updated + self.unchanged


@dataclass(frozen=True, slots=True)
class RunTotals:
    """The totals of one sync run, recorded in ``sync_runs``."""

    streams: int = 0
    windows: int = 0
    requests: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)


@dataclass(frozen=True, slots=True)
class StreamMark:
    """A stream's status at a run's start or end (:meth:`BaseStore.mark_streams`)."""

    org: str
    stream_id: str
    status: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StreamState:
    """A row of ``streams``: one stream of one org, and where its syncs have got to."""

    org: str
    stream: str
    """The stream's id (:attr:`usageledger.store.streams.Stream.id`), e.g. ``completions.1d.project_id+model``."""
    endpoint: str
    bucket_width: str
    group_by: tuple[str, ...]
    filters: str
    """The filters as canonical JSON (:attr:`usageledger.store.streams.Stream.filters_json`)."""
    is_default: bool
    """The endpoint's default stream: daily, the catalogue's default grouping, unfiltered."""
    watermark: int | None
    """The start of the first bucket not yet known to be complete (Unix time); ``None``: not set yet."""
    last_run_id: str | None
    last_run_at: int | None
    last_status: str | None
    """``running``, ``ok``, ``failed``, ``interrupted`` or ``abandoned``; ``None``: no run yet."""
    last_error: str | None
    row_count: int
    last_counts: UpsertCounts
    """What the last run wrote to the stream."""


@dataclass(frozen=True, slots=True)
class WindowWrite:
    """The fresh read of one window of one stream, to be written in one transaction.

    ``rows`` are flattened rows (``bucket_start``/``bucket_end`` as Unix ints, then the endpoint's columns).
    ``lo``/``hi`` bound the buckets the read covered: stored rows of the stream in ``[lo, hi)`` that the read no
    longer contains are deleted. ``watermark``, when set, is stored with the rows.
    """

    org: str
    stream: Stream
    rows: Sequence[Mapping[str, Any]]
    lo: int
    hi: int
    run_id: str
    synced_at: int
    watermark: int | None = None
    fresh: bool = False
    """Set by a caller that knows the stream holds no row at or after ``lo``: the rows are simply inserted."""
    buckets: Sequence[Bucket] = ()
    """The decoded buckets, instead of ``rows``: read straight into columns, the fast path the sync engine uses."""
    completes_stream: bool = False
    """Set on the last window a run writes for its stream: the stream's ``last_status`` becomes ``ok`` in the same
    transaction, so a run killed afterwards leaves that stream's state true."""


@dataclass(frozen=True, slots=True)
class PreparedWindow:
    """A checked window, its row count and its rows converted for the back end's bulk load."""

    write: WindowWrite
    rows: int
    payload: Any


DEMO_ORG: Final = "demo"
"""The org ``usageledger demo`` syncs its synthetic data as (and the name migration 0003 took for the demo's)."""


@dataclass(frozen=True, slots=True)
class OrgRecord:
    """A row of ``orgs``: whether an org's data is synthetic (the demo, the emulator) or real, and why."""

    org: str
    synthetic: bool
    source: str
    """``demo``, ``emulator`` (a plain ``http://`` loopback base URL), ``api``, or ``migrated`` (recorded by the
    migration that added the registry, from the org's name: the demo's ``demo`` is synthetic, any other real)."""
    registered_at: int | None


@dataclass(frozen=True, slots=True)
class RunOwner:
    """The process that runs a sync: its pid, host name and (when the platform tells, Linux) its start time.

    The start time tells a live process from a later one that was given the same pid.
    """

    pid: int
    host: str
    started: int | None = None


@dataclass(frozen=True, slots=True)
class RunningRun:
    """A ``sync_runs`` row still marked ``running``, with the process that wrote it (``None``: not recorded)."""

    run_id: str
    owner: RunOwner | None
