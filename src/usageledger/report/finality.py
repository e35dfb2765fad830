"""Which spend is final: per org, the boundary before which its primary daily costs stream's buckets are final.

A bucket is provisional until it is the finalization grace (``[sync] final_after_days``, at least the lag window)
older than its stream's watermark; then no later sync re-reads it and its value no longer moves
(:meth:`usageledger.sync_options.SyncOptions.final_until`). The reports read ``costs_daily``, one stream per org, so
each org has one boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TypeAlias, cast

from usageledger.catalogue import BucketWidth
from usageledger.report.queries import COSTS_VIEW, Database
from usageledger.sync_options import SyncOptions

__all__ = ["FinalEdges", "final_costs_until", "final_only_sql"]

FinalEdges: TypeAlias = Mapping[str, datetime]
"""``{org: boundary}``: the org's buckets starting before its boundary are final."""


def final_costs_until(db: Database, options: SyncOptions) -> dict[str, datetime]:
    """``{org: boundary}``: the org's costs buckets starting before the boundary are final. An org whose stream has
    no watermark yet has nothing final and is left out."""
    rows = db.query(
        "SELECT s.org, s.bucket_width, s.watermark FROM streams AS s"
        f" JOIN (SELECT DISTINCT org, stream FROM {COSTS_VIEW}) AS p ON s.org = p.org AND s.stream = p.stream"
    )
    out: dict[str, datetime] = {}
    for org, width, watermark in rows:
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
