"""The store's tables, derived from the endpoint catalogue, for both SQL dialects.

One table per endpoint (``usage_<name>``, and ``costs``):
``org, stream, bucket_start, bucket_end, group_key, <dimensions>, <metrics>, synced_at`` with the primary key
``(org, stream, bucket_start, group_key)``. Money and billed quantities are ``DECIMAL(38,18)`` /
``NUMERIC(38,18)``; nothing is ever a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from usageledger import catalogue
from usageledger.catalogue import Endpoint
from usageledger.rows import DECIMAL_PRECISION, DECIMAL_SCALE, ArrowColumnType, arrow_type

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DECIMAL_PRECISION",
    "DECIMAL_SCALE",
    "KEY_COLUMNS",
    "Dialect",
    "TableSpec",
    "daily_view_name",
    "primary_daily_streams_sql",
    "primary_finer_streams_sql",
    "primary_streams_sql",
    "table_for",
    "tables",
]

Dialect = Literal["duckdb", "postgres"]

KEY_COLUMNS: Final = ("org", "stream", "bucket_start", "group_key")

_SQL_TYPES: Final[dict[Dialect, dict[ArrowColumnType, str]]] = {
    "duckdb": {
        "int": "BIGINT",
        "str": "VARCHAR",
        "bool": "BOOLEAN",
        "decimal": f"DECIMAL({DECIMAL_PRECISION},{DECIMAL_SCALE})",
        "time": "TIMESTAMPTZ",
    },
    "postgres": {
        "int": "BIGINT",
        "str": "TEXT",
        "bool": "BOOLEAN",
        "decimal": f"NUMERIC({DECIMAL_PRECISION},{DECIMAL_SCALE})",
        "time": "TIMESTAMPTZ",
    },
}


def q(name: str) -> str:
    """A quoted SQL identifier (catalogue names are plain, but quoting keeps keywords like ``size`` safe)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class TableSpec:
    """The table of one endpoint."""

    endpoint: Endpoint

    @property
    def name(self) -> str:
        return "costs" if self.endpoint.is_costs else f"usage_{self.endpoint.name}"

    @property
    def data_columns(self) -> tuple[catalogue.Column, ...]:
        """Dimensions then metrics, in catalogue order."""
        return self.endpoint.columns

    @property
    def incoming_columns(self) -> tuple[tuple[str, ArrowColumnType], ...]:
        """The columns a write carries, in table order (everything but ``synced_at``)."""
        return (
            ("org", "str"),
            ("stream", "str"),
            ("bucket_start", "time"),
            ("bucket_end", "time"),
            ("group_key", "str"),
            *((c.name, c.type) for c in self.data_columns),
        )

    @property
    def column_names(self) -> tuple[str, ...]:
        return (*(n for n, _ in self.incoming_columns), "synced_at")

    @property
    def value_columns(self) -> tuple[str, ...]:
        """The columns an update may change: ``bucket_end`` and the data columns."""
        return ("bucket_end", *(c.name for c in self.data_columns))

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of a write batch."""
        import pyarrow as pa

        return pa.schema([pa.field(n, arrow_type(t), nullable=n not in KEY_COLUMNS) for n, t in self.incoming_columns])

    def sql_type(self, dialect: Dialect, column: str) -> str:
        types = dict(self.incoming_columns)
        if column == "synced_at":
            return _SQL_TYPES[dialect]["time"]
        return _SQL_TYPES[dialect][types[column]]

    def create_sql(self, dialect: Dialect) -> str:
        """The table, keyed on :data:`KEY_COLUMNS`.

        PostgreSQL holds the key as a primary key, whose index every write and range read walks. DuckDB holds no
        index: its primary key (an ART index) cost half the insert time, two thirds of the file and memory that
        grew with the table, while DuckDB finds a window's rows by row-group min/max anyway. There the key is
        checked at commit instead (:meth:`BaseStore.commit_windows`), over the ranges each transaction wrote.
        DuckDB stores created before keep their primary key, and get the same check.
        """
        cols = [
            f"{q(n)} {self.sql_type(dialect, n)}{' NOT NULL' if n in KEY_COLUMNS else ''}" for n in self.column_names
        ]
        if dialect == "postgres":
            cols.append(f"PRIMARY KEY ({', '.join(KEY_COLUMNS)})")
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n  " + ",\n  ".join(cols) + "\n)"

    @property
    def daily_view(self) -> str:
        return daily_view_name(self.endpoint)

    def daily_view_sql(self) -> str:
        """The view of a day of this endpoint's usage per org (same SQL in both dialects): the org's primary daily
        stream, else (an org synced only hourly, or by the minute) its primary finer stream summed to UTC days.

        Primary: the default stream when the org syncs it, else unfiltered streams before filtered ones, then
        the stream id (hourly before by the minute, for the finer ones). Only one stream per org is ever visible,
        so groupings are never mixed, and an org with a daily stream is read from that alone, never twice.
        """
        data = ", ".join(f"t.{q(c.name)}" for c in self.data_columns)
        daily = (
            f"SELECT t.org, t.stream, t.bucket_start, t.bucket_end, {data}\n"
            f"FROM {self.name} AS t\n"
            f"JOIN (\n{primary_daily_streams_sql(self.endpoint.name)}\n) AS p ON t.org = p.org AND t.stream = p.stream"
        )
        if "1h" not in self.endpoint.bucket_widths:  # costs: daily buckets only
            return f"CREATE VIEW {self.daily_view} AS\n{daily}"
        return f"CREATE VIEW {self.daily_view} AS\n{daily}\nUNION ALL\n{self._finer_days_sql()}"

    def _finer_days_sql(self) -> str:
        """The rows of each org with no daily stream of this endpoint: its primary finer stream's buckets summed to
        UTC days (``bucket_start``/``bucket_end`` of the day), one row per day and group.

        Counts add up, and a day's hours (or minutes) make up the day, as the API's daily buckets are UTC days. A
        level (:attr:`catalogue.Column.level`) is the day's last bucket's, as a bucket reports the level at its end;
        so is an attribute. A sum keeps the column's type (``SUM`` of a ``BIGINT`` is wider in both dialects)."""
        dims = [q(c.name) for c in self.endpoint.dimensions]
        group = ", ".join(["t.org", "t.stream", _UTC_DAY, *(f"t.{d}" for d in dims)])
        inner: list[str] = [f"t.{d}" for d in dims]
        outer: list[str] = [f"h.{d}" for d in dims]
        for c in self.endpoint.metrics:
            name = q(c.name)
            if c.role == "metric" and not c.level:
                inner.append(f"t.{name}")
                outer.append(f"CAST(SUM(h.{name}) AS {self.sql_type('postgres', c.name)}) AS {name}")
            else:
                last = f"PARTITION BY {group} ORDER BY t.bucket_start DESC"
                inner.append(f"FIRST_VALUE(t.{name}) OVER ({last}) AS {name}")
                outer.append(f"MAX(h.{name}) AS {name}")
        hours = (
            f"SELECT t.org, t.stream, {_UTC_DAY} AS day, {', '.join(inner)}\n"
            f"  FROM {self.name} AS t\n"
            f"  JOIN (\n{primary_finer_streams_sql(self.endpoint.name)}\n  ) AS p ON t.org = p.org"
            " AND t.stream = p.stream"
        )
        return (
            f"SELECT h.org, h.stream, h.day, h.day + INTERVAL '24 hours', {', '.join(outer)}\n"
            f"FROM (\n{hours}\n) AS h\n"
            f"GROUP BY h.org, h.stream, h.day{''.join(f', h.{d}' for d in dims)}"
        )


_UTC_DAY: Final = "to_timestamp(floor(CAST(extract(epoch FROM t.bucket_start) AS DOUBLE PRECISION) / 86400) * 86400)"
"""The start of the UTC day a bucket starts in, a ``TIMESTAMPTZ`` (the same SQL in DuckDB and PostgreSQL, whatever
the session's zone; a UTC day is 86,400 seconds, so its end is 24 hours later). Every hourly row's day is computed
per query (a filter on the view's ``bucket_start`` is one on this expression), so it is the cheapest that runs in
both, over 500,000 rows: arithmetic on the Unix time as a double, 8 ms in DuckDB and 290 ms in PostgreSQL, where
``date_trunc`` of the time ``AT TIME ZONE 'UTC'`` took 59-128 ms and 171 ms, and the same arithmetic on PostgreSQL's
``NUMERIC`` epoch 405 ms."""


def primary_daily_streams_sql(endpoint: str, columns: str = "org, stream") -> str:
    """``columns`` of each org's primary daily stream of ``endpoint`` in ``streams`` (the daily views' choice)."""
    return primary_streams_sql(endpoint, columns)


def primary_finer_streams_sql(endpoint: str, columns: str = "org, stream") -> str:
    """``columns`` of the primary finer stream of ``endpoint`` (hourly before by the minute) of each org that has no
    daily stream of it: the stream the daily view sums to days for that org."""
    daily = f"SELECT org FROM streams WHERE endpoint = '{endpoint}' AND bucket_width = '1d'"
    return primary_streams_sql(
        endpoint, columns, where=f"bucket_width <> '1d' AND org NOT IN ({daily})", first="(bucket_width = '1h') DESC"
    )


def primary_streams_sql(
    endpoint: str, columns: str = "org, stream", *, where: str = "bucket_width = '1d'", first: str = ""
) -> str:
    """``columns`` of each org's primary stream of ``endpoint`` among those ``where`` picks, by the daily views'
    rule (the default stream, else an unfiltered one, else the first by name), ``first`` (an ``ORDER BY`` term)
    before it: the finer streams rank hourly before by the minute."""
    order = "is_default DESC, (filters <> '{}') ASC, stream ASC"
    return (
        f"  SELECT {columns} FROM (\n"
        f"    SELECT {columns}, ROW_NUMBER() OVER (\n"
        f"      PARTITION BY org ORDER BY {first + ', ' if first else ''}{order}\n"
        "    ) AS rn\n"
        f"    FROM streams WHERE endpoint = '{endpoint}' AND {where}\n"
        "  ) AS ranked WHERE rn = 1"
    )


def daily_view_name(endpoint: Endpoint) -> str:
    """``costs_daily`` or ``usage_<name>_daily``."""
    return f"{TableSpec(endpoint).name}_daily"


def table_for(endpoint: Endpoint | str) -> TableSpec:
    return TableSpec(endpoint if isinstance(endpoint, Endpoint) else catalogue.get(endpoint))


def tables() -> tuple[TableSpec, ...]:
    """Every endpoint's table, in catalogue order."""
    return tuple(TableSpec(ep) for ep in catalogue.ENDPOINTS)
