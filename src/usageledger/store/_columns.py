"""A window's rows as checked column lists: from result structs (the sync's fast path) or from flat rows."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import msgspec

from usageledger.catalogue import Endpoint
from usageledger.errors import StoreError
from usageledger.models import Bucket
from usageledger.store._types import WindowWrite
from usageledger.store.schema import TableSpec
from usageledger.store.streams import encode_group_key

__all__ = ["columns_of", "group_twice", "outside_window", "result_columns"]

logger = logging.getLogger("usageledger.store")

_KEY_ENCODE = msgspec.json.Encoder().encode


def group_twice(write: WindowWrite) -> StoreError:
    """The refusal of a window whose read holds a group twice in one bucket (both conversion paths raise it)."""
    return StoreError(
        f"{write.stream.id}: the API returned the same group twice in one bucket; refusing to write the window"
    )


def outside_window(write: WindowWrite, start: int) -> StoreError:
    """The refusal of a window whose read holds a bucket outside it (both conversion paths raise it)."""
    return StoreError(f"{write.stream.id}: a bucket starting at {start} lies outside the window it was read for")


def result_columns(
    endpoint: Endpoint, buckets: Sequence[Bucket], where: str
) -> tuple[list[int], list[int], list[Sequence[Any]]]:
    """Buckets' results as columns: every result's bucket start and end, and the endpoint's data columns in catalogue
    order (one attrgetter call per result and one transpose, no per-row dicts). Results of another type are skipped
    with one warning naming ``where``."""
    names = [c.name for c in endpoint.columns]
    getter = attrgetter(*names)
    result_type = endpoint.result_type
    starts: list[int] = []
    ends: list[int] = []
    values: list[tuple[Any, ...]] = []
    skipped = 0
    for bucket in buckets:
        results = bucket.results
        if set(map(type, results)) - {result_type}:  # rare: another endpoint's or an unknown result (C-level check)
            results = [r for r in results if type(r) is result_type]
            skipped += len(bucket.results) - len(results)
        starts += [bucket.start_time] * len(results)
        ends += [bucket.end_time] * len(results)
        values += map(getter, results) if len(names) > 1 else ((getter(r),) for r in results)
    if skipped:
        logger.warning("%s: skipped %d result(s) that are not %s results", where, skipped, endpoint.name)
    return starts, ends, list(zip(*values, strict=True)) if values else [() for _ in names]


def _bucket_columns(spec: TableSpec, write: WindowWrite) -> dict[str, list[Any]]:
    """Columns straight from result structs (:func:`result_columns`)."""
    names = [c.name for c in spec.data_columns]
    starts, ends, transposed = result_columns(spec.endpoint, write.buckets, write.stream.id)
    n = len(starts)
    cols: dict[str, list[Any]] = {
        "org": [write.org] * n,
        "stream": [write.stream.id] * n,
        "bucket_start": starts,
        "bucket_end": ends,
    }
    group_columns = [transposed[names.index(g)] for g in write.stream.group_by]
    if not group_columns:
        cols["group_key"] = [encode_group_key(())] * n
    elif n:
        # One encode per row, then a single decode and split (JSON text never holds a raw newline): the same
        # keys as encode_group_key, without a Python call per row.
        cols["group_key"] = b"\n".join(map(_KEY_ENCODE, zip(*group_columns, strict=True))).decode().split("\n")
    else:
        cols["group_key"] = []
    for name, column in zip(names, transposed, strict=True):
        cols[name] = column  # type: ignore[assignment]  # a tuple: Arrow and COPY read any sequence
    return cols


def columns_of(spec: TableSpec, write: WindowWrite) -> dict[str, list[Any]]:
    if write.buckets:
        cols = _bucket_columns(spec, write)
    else:
        rows = write.rows
        group_by = write.stream.group_by
        cols = {
            "org": [write.org] * len(rows),
            "stream": [write.stream.id] * len(rows),
            "bucket_start": [r["bucket_start"] for r in rows],
            "bucket_end": [r["bucket_end"] for r in rows],
            "group_key": [encode_group_key([r.get(g) for g in group_by]) for r in rows],
        }
        for c in spec.data_columns:
            cols[c.name] = [r.get(c.name) for r in rows]
    n = len(cols["group_key"])
    keys = set(zip(cols["bucket_start"], cols["group_key"], strict=True))
    if len(keys) != n:
        raise group_twice(write)
    starts = cols["bucket_start"]
    if starts and not (write.lo <= min(starts) and max(starts) < write.hi):
        raise outside_window(write, next(s for s in starts if not write.lo <= s < write.hi))
    return cols
