"""Buckets to flat rows, and rows to Arrow, pandas and polars.

A row is a ``dict``: ``endpoint``, ``bucket_start`` and ``bucket_end`` (Unix seconds), then the endpoint's
catalogue columns (grouping dimensions, then metrics). Money and billed quantities stay ``Decimal``.
pyarrow, pandas and polars are imported only when a table is asked for.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, Literal, overload

from usageledger.catalogue import ColumnType, Endpoint
from usageledger.models import Bucket

if TYPE_CHECKING:
    import pandas
    import polars
    import pyarrow

__all__ = [
    "DECIMAL_PRECISION",
    "DECIMAL_SCALE",
    "ArrowColumnType",
    "Row",
    "arrow_schema",
    "arrow_type",
    "flatten",
    "iso_currency",
    "pandas_frame",
    "row_keys",
    "to_arrow",
    "to_pandas",
    "to_polars",
]

logger = logging.getLogger("usageledger.rows")

Row = dict[str, Any]

DECIMAL_PRECISION: Final = 38
DECIMAL_SCALE: Final = 18
"""Money and billed quantities are decimal(38, 18) everywhere: in Arrow here, and in the store's SQL tables."""


@overload
def iso_currency(stored: str) -> str: ...
@overload
def iso_currency(stored: None) -> None: ...
@overload
def iso_currency(stored: str | None) -> str | None: ...
def iso_currency(stored: str | None) -> str | None:
    """A stored currency as every output shows it: its ISO 4217 code, upper-case (the API's ``usd`` is ``USD``).

    The store keeps the API's own value; readers pass it through here, so one JSON document never says ``usd`` in
    one place and ``USD`` or ``EUR`` in another, and ``usd`` beside ``USD`` is one currency, not two."""
    return None if stored is None else stored.strip().upper()


ArrowColumnType = ColumnType | Literal["time"]
"""A catalogue column type, or ``time``: a bucket's start or end (UTC seconds)."""


def row_keys(endpoint: Endpoint) -> tuple[str, ...]:
    """The keys of every row of ``endpoint``, in order."""
    return ("endpoint", "bucket_start", "bucket_end", *(c.name for c in endpoint.columns))


def flatten(endpoint: Endpoint, buckets: Iterable[Bucket]) -> Iterator[Row]:
    """One row per result, carrying its bucket's start and end.

    Results of another type (an :class:`~usageledger.models.OpaqueResult`, say) have no columns here; they
    are skipped with a warning rather than turned into a row of nulls.
    """
    names = tuple(c.name for c in endpoint.columns)
    getter = attrgetter(*names)
    single = len(names) == 1
    result_type = endpoint.result_type
    skipped = 0
    for bucket in buckets:
        head = (endpoint.name, bucket.start_time, bucket.end_time)
        for result in bucket.results:
            if type(result) is not result_type:
                skipped += 1
                continue
            values = (getter(result),) if single else getter(result)
            row: Row = {"endpoint": head[0], "bucket_start": head[1], "bucket_end": head[2]}
            row.update(zip(names, values, strict=True))
            yield row
    if skipped:
        logger.warning("skipped %d result(s) that are not %s results", skipped, endpoint.name)


@functools.cache
def arrow_type(column_type: ArrowColumnType) -> pyarrow.DataType:
    """The one Arrow type of a column type, for rows and for the store's write batches alike."""
    import pyarrow as pa

    return {
        "int": pa.int64(),
        "str": pa.string(),
        "bool": pa.bool_(),
        "decimal": pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
        "time": pa.timestamp("s", tz="UTC"),
    }[column_type]


def arrow_schema(endpoint: Endpoint) -> pyarrow.Schema:
    """The Arrow schema of ``endpoint``'s rows: UTC second timestamps, exact decimals."""
    import pyarrow as pa

    head: tuple[tuple[str, ArrowColumnType], ...] = (
        ("endpoint", "str"),
        ("bucket_start", "time"),
        ("bucket_end", "time"),
    )
    columns = (*head, *((c.name, c.type) for c in endpoint.columns))
    return pa.schema([pa.field(name, arrow_type(kind)) for name, kind in columns])


def to_arrow(endpoint: Endpoint, rows: Iterable[Row]) -> pyarrow.Table:
    """A pyarrow Table of ``rows`` with :func:`arrow_schema`."""
    import pyarrow as pa

    schema = arrow_schema(endpoint)
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    appenders = [(name, columns[name].append) for name in schema.names]
    for row in rows:
        for name, append in appenders:
            append(row.get(name))
    from usageledger._arrays import array_of  # not pa.array: it imports pandas where installed

    arrays = [array_of(columns[f.name], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise ImportError("to_pandas needs pandas: pip install 'usageledger[pandas]'") from exc
    return pandas


def pandas_frame(table: pyarrow.Table) -> pandas.DataFrame:
    """``table`` as a pandas DataFrame whose dtypes follow its Arrow schema alone, never the data in it.

    Whole numbers are ``Int64`` and booleans ``boolean``, pandas' nullable dtypes, with ``<NA>`` for a null: by
    pandas' default a whole-number column was ``int64`` until a null made it ``float64``, and ``batch`` was ``bool``
    until a null made it ``object``, so an empty result and a full one (or two days) had other dtypes and a
    ``pd.concat`` or a comparison of them tripped. Money and billed quantities stay ``Decimal`` objects (``object``),
    times ``datetime64[s, UTC]`` and text pandas' own string dtype, as pandas gives them whatever the rows hold."""
    pd = _pandas()
    import pyarrow as pa

    nullable = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=nullable.get)


def to_pandas(endpoint: Endpoint, rows: Iterable[Row]) -> pandas.DataFrame:
    """A pandas DataFrame (needs the ``usageledger[pandas]`` extra) with dtypes by :func:`pandas_frame`: the same
    for an empty result as for a full one; money columns hold ``Decimal``."""
    _pandas()  # before the rows are read, which may be requests
    return pandas_frame(to_arrow(endpoint, rows))


def to_polars(endpoint: Endpoint, rows: Iterable[Row]) -> polars.DataFrame:
    """A polars DataFrame (needs the ``usageledger[polars]`` extra); money columns are exact decimals."""
    try:
        import polars as pl
    except ImportError as exc:
        raise ImportError("to_polars needs polars: pip install 'usageledger[polars]'") from exc
    frame = pl.from_arrow(to_arrow(endpoint, rows))
    assert isinstance(frame, pl.DataFrame)
    return frame
