"""Which spend is final: per org, the boundary before which its primary daily costs stream's buckets are final.

A bucket is provisional until it is the finalization grace (``[sync] final_after_days``, at least the lag window)
older than its stream's watermark; then no later sync re-reads it and its value no longer moves
(:meth:`usageledger.sync_options.SyncOptions.final_until`). The reports read ``costs_daily``, one stream per org, so
each org has one boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TypeAlias, cast

from usageledger.catalogue import BucketWidth
from usageledger.report.queries import Database
from usageledger.store.schema import primary_daily_streams_sql
from usageledger.sync_options import SyncOptions

__all__ = ["FinalEdges", "final_costs_until", "final_only_sql", "first_provisional", "provisional_from"]

FinalEdges: TypeAlias = Mapping[str, datetime]
"""``{org: boundary}``: the org's buckets starting before its boundary are final."""


def final_costs_until(db: Database, options: SyncOptions) -> dict[str, datetime]:
    """``{org: boundary}``: the org's costs buckets starting before the boundary are final. An org whose stream has
    no watermark yet has nothing final and is left out."""
    # The stream `costs_daily` shows per org, chosen as the view chooses it, from `streams` alone (no data scan).
    rows = db.query(primary_daily_streams_sql("costs", "org, stream, bucket_width, watermark"))
    out: dict[str, datetime] = {}
    for org, _, width, watermark in rows:
        mark = None if watermark is None else int(watermark.timestamp())
        edge = options.final_until(cast(BucketWidth, width), mark)
        if edge is not None:
            out[org] = datetime.fromtimestamp(edge, UTC)
    return out


def final_only_sql(final: FinalEdges) -> tuple[str, list[object]]:
    """An ``AND ...`` condition on ``org``/``bucket_start`` that keeps final buckets only (none when no org has any)."""
    if not final:
        return "AND FALSE", []
    parts = " OR ".join("(org = %s AND bucket_start < %s)" for _ in final)
    return f"AND ({parts})", [v for org, edge in sorted(final.items()) for v in (org, edge)]


def provisional_from(final: FinalEdges, org: str | None = None) -> date | None:
    """The first day that is provisional for ``org`` (else for any org: the earliest boundary); ``None`` when the
    store holds no synced costs stream to judge by."""
    edges = [edge for o, edge in final.items() if org is None or o == org]
    return min(edges).date() if edges else None


def first_provisional(starts: Sequence[date], first: date | None, until: date) -> int:
    """Of points starting at ``starts`` (a day, week or month each; the last ends at ``until``), the index of the
    first that covers a provisional day; ``len(starts)`` when none does or ``first`` is not known."""
    if first is None:
        return len(starts)
    ends = [*starts[1:], until]
    return next((i for i, end in enumerate(ends) if end > first), len(starts))
