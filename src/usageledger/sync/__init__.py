"""The incremental sync engine: streams of the Usage & Costs API into the store, idempotently.

How a run works (dlt-style, see ``docs/STORE.md``):

* Each (org, stream) has a **watermark**: the start of the first bucket not yet known to be complete.
* A run reads ``[watermark - lag, now)``: the trailing **lag window** is re-read every time because recent buckets
  are revised (``lag_days`` for daily streams, ``hour_grace``/``minute_grace`` for hourly and minute streams). A
  stream with no watermark starts ``since`` back (``90d`` by default).
* The range is split into **windows** (one request's worth of buckets, every page). Windows of every stream are
  fetched concurrently by a bounded pool of workers over one :class:`~usageledger.client.AsyncClient`, whose 429
  backoff is shared by all of them. One writer commits each window in **one transaction**: the rows are upserted on
  ``(org, stream, bucket_start, group_key)``, rows of the window's buckets that the fresh read no longer holds are
  deleted (the re-read is authoritative), and the watermark moves to the end of the contiguous run of finished
  windows. A crash at any point loses at most uncommitted windows, which the next run reads again.
* ``--since``/``--until`` backfills never move a watermark backwards, and a bounded one (``until``) not at all.

Library code never prints: progress goes to the ``on_event`` callback as :class:`SyncEvent` records.
"""

from __future__ import annotations

from usageledger.sync._engine import end_run, run_sync, start_decoder_import, sync
from usageledger.sync._model import (
    EventHandler,
    Org,
    RequestSent,
    RunFinished,
    RunStarted,
    StreamFinished,
    StreamPlan,
    StreamResult,
    SyncEvent,
    SyncResult,
    WindowDone,
    plan_stream,
)
from usageledger.sync_options import DEFAULT_SINCE, SyncOptions

__all__ = [
    "DEFAULT_SINCE",
    "EventHandler",
    "Org",
    "RequestSent",
    "RunFinished",
    "RunStarted",
    "StreamFinished",
    "StreamPlan",
    "StreamResult",
    "SyncEvent",
    "SyncOptions",
    "SyncResult",
    "WindowDone",
    "end_run",
    "plan_stream",
    "run_sync",
    "start_decoder_import",
    "sync",
]
