"""Pages straight into Arrow: the sync's fast path from a response body to a store that loads Arrow (DuckDB).

A page body is parsed by Arrow's JSON reader against the endpoint's schema, read from its result model, so that
no Python object is made per result and the work runs without the GIL, beside the event loop. The fast path only
takes a page it can read exactly as :func:`~usageledger.models.decode_page` would: every result of the endpoint's
own ``object``, every required field there, no seed-era spelling. Any other page is decoded by ``decode_page``
itself (an unknown result kept aside with a warning, an undecodable body a :class:`ResponseDecodeError` that the
attempt loop retries), so both paths give the same rows, and the same errors, for every body. Costs, which holds
money, has no Arrow reader: each of its pages is decoded by the models and made columns at once.

A window's pages then become one write batch: the grouping key, the check that no group comes twice in a bucket
and that every bucket lies in the window, and the store's column types, all by Arrow kernels.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from usageledger import rows
from usageledger._arrays import array_of
from usageledger.catalogue import Endpoint
from usageledger.models import decode_page
from usageledger.store import WindowWrite
from usageledger.store._columns import group_twice, outside_window, result_columns
from usageledger.store.schema import TableSpec
from usageledger.store.streams import encode_group_key

__all__ = ["ArrowPage", "arrow_readable", "page_decoder", "window_table"]

_UNIX_MAX = 2**40
"""The largest bucket time the models accept (``UnixTime``)."""
_SCALARS: dict[type, pa.DataType] = {
    msgspec.inspect.IntType: pa.int64(),
    msgspec.inspect.StrType: pa.string(),
    msgspec.inspect.BoolType: pa.bool_(),
}
_NEEDS_ESCAPE = r'["\\\x00-\x1f]'
"""What a JSON string escapes: a grouping value holding one gets its key from :func:`encode_group_key` itself."""


@dataclass(frozen=True, slots=True)
class ArrowPage:
    """One decoded page: its cursor, its results as a flat table (``bucket_start``, ``bucket_end``, then the
    endpoint's columns), and the span its buckets cover (``None`` for a page without buckets)."""

    has_more: bool
    next_page: str | None
    rows: pa.Table
    lo: int | None
    hi: int | None


@dataclass(frozen=True, slots=True)
class _Shape:
    schema: pa.Schema
    tag: str
    required: tuple[str, ...]
    aliases: tuple[str, ...]
    """Fields of the model that are not columns (``sessions``, the old name of ``num_sessions``): the model
    rewrites them, so a page that sends one takes the model path."""


def _shape(endpoint: Endpoint) -> _Shape | None:
    """The Arrow schema of ``endpoint``'s page, from its result model; ``None`` when a field is not a plain
    integer, string or boolean (money, nested objects): such endpoints take the model path."""
    return _shape_of(endpoint.result_type, tuple(c.name for c in endpoint.columns))


@functools.cache
def _shape_of(result_type: type, columns: tuple[str, ...]) -> _Shape | None:
    info = msgspec.inspect.type_info(result_type)
    assert isinstance(info, msgspec.inspect.StructType) and isinstance(info.tag, str)
    fields: list[pa.Field] = [pa.field("object", pa.string())]
    required: list[str] = []
    for f in info.fields:
        kinds = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        scalars = [k for k in kinds if not isinstance(k, msgspec.inspect.NoneType)]
        if len(scalars) != 1 or type(scalars[0]) not in _SCALARS:
            return None
        fields.append(pa.field(f.encode_name, _SCALARS[type(scalars[0])]))
        if f.required:
            required.append(f.encode_name)
    bucket = pa.struct(
        [
            ("object", pa.string()),
            ("start_time", pa.int64()),
            ("end_time", pa.int64()),
            ("results", pa.list_(pa.struct(fields))),
            ("result", pa.list_(pa.null())),  # the seed-era name: present (even empty) means the model path
        ]
    )
    schema = pa.schema(
        [("object", pa.string()), ("data", pa.list_(bucket)), ("has_more", pa.bool_()), ("next_page", pa.string())]
    )
    aliases = tuple(f.encode_name for f in info.fields if f.encode_name not in columns)
    return _Shape(schema, info.tag, tuple(required), aliases)


def arrow_readable(endpoint: Endpoint) -> bool:
    """Whether Arrow's JSON reader can read ``endpoint``'s pages (every usage endpoint; not costs, which holds money:
    its pages are decoded by the models, and made columns page by page)."""
    return _shape(endpoint) is not None


@functools.lru_cache(maxsize=256)
def _text(value: str) -> pa.Scalar:
    """A string scalar made from its bytes. ``pa.scalar``, ``pa.array`` and ``pa.table`` on Python objects make
    pyarrow import pandas, where installed, to ask whether the object is one of its types: 50 MB and 0.4 s of
    CPU in a sync that never uses pandas. The hot path below only hands Arrow objects to Arrow."""
    data = value.encode()
    offsets = pa.py_buffer(struct.pack("<2i", 0, len(data)))
    return pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(data)])[0]


def _only(array: pa.Array | pa.ChunkedArray, value: str) -> bool:
    """Every entry is ``value`` or missing."""
    text = _text(value)
    return bool(pc.all(pc.equal(array.fill_null(text), text)).as_py() is not False)


def _table(columns: dict[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    return pa.Table.from_arrays(list(columns.values()), names=list(columns))


def _fast(endpoint: Endpoint, shape: _Shape, body: bytes) -> ArrowPage | None:
    """The page read by Arrow, or ``None`` when it is not one the fast path reads exactly like the models."""
    try:
        table = pj.read_json(
            pa.BufferReader(body),  # the body's own bytes: a Python file would copy them, and read under the GIL
            read_options=pj.ReadOptions(use_threads=False, block_size=len(body) + 1),
            parse_options=pj.ParseOptions(explicit_schema=shape.schema, unexpected_field_behavior="ignore"),
        )
    except pa.ArrowException:  # not JSON, a value of another type, out of range...: the models say what is wrong
        return None
    if table.num_rows != 1 or table.column("data").null_count or not _only(table.column("object"), "page"):
        return None
    buckets = pc.list_flatten(table.column("data").combine_chunks())
    starts, ends = buckets.field("start_time"), buckets.field("end_time")
    if starts.null_count or ends.null_count or not _only(buckets.field("object"), "bucket"):
        return None
    if buckets.field("result").null_count != len(buckets):
        return None
    lo = hi = None
    if len(buckets):
        lo, top = pc.min_max(starts).values()
        low_end, hi = pc.min_max(ends).values()
        lo, top, low_end, hi = lo.as_py(), top.as_py(), low_end.as_py(), hi.as_py()
        if min(lo, low_end) < 0 or max(top, hi) > _UNIX_MAX:
            return None
    results_lists = buckets.field("results")
    parents = pc.list_parent_indices(results_lists)
    results = pc.list_flatten(results_lists)
    if results.null_count:
        return None
    if len(results) and not _only(results.field("object").fill_null(_text("")), shape.tag):
        return None
    if any(results.field(name).null_count for name in shape.required):
        return None
    if any(results.field(name).null_count != len(results) for name in shape.aliases):
        return None
    columns: dict[str, pa.Array] = {
        "bucket_start": pc.take(starts, parents),
        "bucket_end": pc.take(ends, parents),
    }
    for c in endpoint.columns:
        columns[c.name] = results.field(c.name)
    has_more = table.column("has_more")[0].as_py()
    if has_more is None:  # missing means False to the models, but null is refused: let them say which
        return None
    return ArrowPage(has_more, table.column("next_page")[0].as_py(), _table(columns), lo, hi)


def _from_models(endpoint: Endpoint, body: bytes) -> ArrowPage:
    """The page through :func:`decode_page`, the exact reference (raises its ``ResponseDecodeError``), made columns
    at once: a page's results as objects take several times the memory of their columns (a 638,087-result costs
    page: 412 MB of objects from a 173 MB body), so they go as soon as the page is read, not when its window is."""
    page = decode_page(body)
    starts, ends, values = result_columns(endpoint, page.data, endpoint.name)
    columns = {"bucket_start": array_of(starts, pa.int64()), "bucket_end": array_of(ends, pa.int64())}
    columns.update(
        (c.name, array_of(column, rows.arrow_type(c.type))) for c, column in zip(endpoint.columns, values, strict=True)
    )
    lo = min((b.start_time for b in page.data), default=None)
    hi = max((b.end_time for b in page.data), default=None)
    return ArrowPage(page.has_more, page.next_page, _table(columns), lo, hi)


def page_decoder(endpoint: Endpoint) -> Callable[[bytes], ArrowPage]:
    """The decode function of ``endpoint``'s pages for the attempt loop: the Arrow path where the endpoint has one
    (:func:`arrow_readable`), else, and for a page it does not read, the models'."""
    shape = _shape(endpoint)
    if shape is None:
        return functools.partial(_from_models, endpoint)

    def decode(body: bytes) -> ArrowPage:
        return _fast(endpoint, shape, body) or _from_models(endpoint, body)

    return decode


def _group_keys(table: pa.Table, group_by: Sequence[str]) -> pa.Array:
    """:func:`encode_group_key` of every row, by string kernels (a value JSON would escape: the function itself)."""
    n = table.num_rows
    if not group_by:
        return pa.repeat(_text(encode_group_key(())), n)
    parts: list[pa.Array] = []
    for name in group_by:
        column = table.column(name)
        if pa.types.is_boolean(column.type):
            part = pc.if_else(column, _text("true"), _text("false"))
        elif pa.types.is_string(column.type) and not pc.any(pc.match_substring_regex(column, _NEEDS_ESCAPE)).as_py():
            part = pc.binary_join_element_wise(_text('"'), column, _text('"'), _text(""))
        else:
            values = zip(*(table.column(g).to_pylist() for g in group_by), strict=True)
            return pa.array([encode_group_key(v) for v in values], pa.string())
        parts.append(part.fill_null(_text("null")))
    joined = pc.binary_join_element_wise(*parts, _text(",")) if len(parts) > 1 else parts[0]
    return pc.binary_join_element_wise(_text("["), joined, _text("]"), _text("")).combine_chunks()


def window_table(spec: TableSpec, write: WindowWrite, pages: Sequence[ArrowPage]) -> pa.Table:
    """A window's pages as one write batch in ``spec``'s Arrow schema, checked as :func:`columns_of` checks rows:
    no group twice in a bucket, every bucket inside ``[write.lo, write.hi)``."""
    flat = pa.concat_tables([p.rows for p in pages]) if pages else None
    n = 0 if flat is None else flat.num_rows
    schema = spec.arrow_schema()
    if flat is None or n == 0:
        return schema.empty_table()
    keys = _group_keys(flat, write.stream.group_by)
    starts = flat.column("bucket_start")
    # (start, key) pairs as text ("<digits>|[...]": unambiguous); Acero's group_by would import pyarrow.dataset,
    # and pandas with it.
    pairs = pc.binary_join_element_wise(pc.cast(starts, pa.string()), keys, _text("|"))
    if pc.count_distinct(pairs).as_py() != n:
        raise group_twice(write)
    low, high = (v.as_py() for v in pc.min_max(starts).values())
    if not (write.lo <= low and high < write.hi):
        outside_mask = pc.or_(pc.less(starts, write.lo), pc.greater_equal(starts, write.hi))
        raise outside_window(write, starts[pc.index(outside_mask, True).as_py()].as_py())
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "org": pa.repeat(_text(write.org), n),
        "stream": pa.repeat(_text(write.stream.id), n),
        "group_key": keys,
    }
    arrays = [columns[f.name] if f.name in columns else flat.column(f.name).cast(f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)
