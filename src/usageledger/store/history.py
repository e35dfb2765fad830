"""What the revision log answers: the rows as they stood at any time, per-key deltas, and restatements.

Everything here reads ``revisions`` (:mod:`usageledger.store.revisions`) and is one SQL text for both dialects, bar
the JSON access that decodes a group key.

* :func:`as_of_sql`: an endpoint table as it stood at a time: per key, the latest entry seen at or before it decides
  whether the row existed (a ``delete`` means it did not), and each metric is the ``new_value`` of its latest entry.
  Grouping columns are decoded from the group key (a JSON array in the stream's ``group_by`` order); the attribute
  columns the log does not follow (``currency``, ``quantity_unit``) come from the stored row with the same key,
  and are NULL for a row that has vanished since.
* :func:`deltas_sql`: per key, each metric's change over a span of seen times (negative too), for consumers that
  accumulate: summed from nothing, the deltas give the table.
* :func:`as_of` shadows the endpoint tables and their daily and named views, for one connection, with temporary
  tables of the rows as they stood (and views over them), and ``streams`` with each watermark as the watermark log
  (:mod:`usageledger.store.watermarks`) has it then: every report query then reads the past unchanged.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final, cast

from usageledger import timeutil
from usageledger.catalogue import BucketWidth
from usageledger.store import directory, watermarks
from usageledger.store._base import BaseStore, org_names
from usageledger.store._types import to_datetime, to_unix
from usageledger.store.revisions import ENTRIES, insert_table, log_tables, logged_metrics
from usageledger.store.schema import Dialect, TableSpec, q, tables
from usageledger.timeutil import check_range

__all__ = [
    "as_of",
    "as_of_sql",
    "deltas_sql",
    "first_seen",
    "real_table",
    "restatements_sql",
    "stream_group_bys",
    "watermarks_before_the_log",
]

KEY: Final = ("org", "stream", "bucket_start", "group_key")


def real_table(store: BaseStore, spec: TableSpec) -> str:
    """The endpoint table's fully qualified name: what a temporary view of the same name cannot shadow."""
    database, schema = store.query("SELECT current_database(), current_schema()")[0]
    return f"{q(database)}.{q(schema)}.{spec.name}"


def stream_group_bys(store: BaseStore) -> dict[str, tuple[str, ...]]:
    """``{stream id: group_by}`` of every stream the store knows (a stream id fixes its grouping)."""
    return {
        s: tuple(g for g in gb.split(",") if g)
        for s, gb in store.query("SELECT DISTINCT stream, group_by FROM streams")
    }


def _dimension(spec: TableSpec, name: str, groups: dict[str, tuple[str, ...]], dialect: Dialect, alias: str) -> str:
    """The SQL of one grouping column, decoded from ``<alias>.group_key`` by each stream's ``group_by``."""
    cases = []
    for stream, group_by in sorted(groups.items()):
        if name not in group_by:
            continue
        i = group_by.index(name)
        text = (
            f"json_extract_string({alias}.group_key, '$[{i}]')"
            if dialect == "duckdb"
            else f"(CAST({alias}.group_key AS jsonb) ->> {i})"
        )
        literal = stream.replace("'", "''")
        cases.append(f"WHEN '{literal}' THEN {text}")
    sql_type = spec.sql_type(dialect, name)
    if not cases:
        return f"CAST(NULL AS {sql_type})"
    return f"CAST(CASE {alias}.stream {' '.join(cases)} END AS {sql_type})"


def as_of_sql(
    spec: TableSpec,
    when: int,
    dialect: Dialect,
    groups: dict[str, tuple[str, ...]],
    table: str | None = None,
    buckets: tuple[int, int] | None = None,
    seq: int | None = None,
) -> tuple[str, list[Any]]:
    """A SELECT of the table's columns (``synced_at``: the last time the row changed) as they stood at ``when``.

    ``table`` is the stored table the attributes are read from (default: ``spec.name``); ``buckets`` (Unix
    seconds, ``[start, end)``) keeps the rows whose bucket starts in it, and reads only their entries. With ``seq``
    (a closed month's high-water mark), the entries up to that sequence number are read instead of those seen up
    to ``when``: exact where seen times, whole seconds, cannot tell a close from a sync in its second.
    """
    table = table or spec.name
    metrics = logged_metrics(spec)
    keys = ", ".join(KEY)
    pivot = ", ".join(
        f"CAST(MAX(CASE WHEN metric = '{m}' THEN new_value END) AS {spec.sql_type(dialect, m)}) AS {q(m)}"
        for m in metrics
    )
    columns = _data_columns(spec, metrics, groups, dialect, "r")
    span, extra = "", []
    if buckets is not None:
        span, extra = " AND bucket_start >= %s AND bucket_start < %s", [to_datetime(b) for b in buckets]
    upto, bound = ("seen_at <= %s", to_datetime(when)) if seq is None else ("seq <= %s", seq)
    # Per key and metric its latest entry; per key, the row existed unless its latest entry of all is a delete (a
    # delete logs every metric the row had, so the key's latest entry is the latest of some metric's).
    sql = (
        f"WITH v AS (SELECT {keys}, bucket_end, change, metric, new_value, seen_at, seq FROM (SELECT {keys},"
        " bucket_end, change, metric, new_value, seen_at, seq, ROW_NUMBER() OVER"
        f" (PARTITION BY {keys}, metric ORDER BY seq DESC) AS rn FROM revisions"
        f" WHERE endpoint_table = '{spec.name}' AND {upto}{span}) AS x WHERE rn = 1),"
        f" r AS (SELECT {keys}, MAX(bucket_end) AS bucket_end, MAX(seen_at) AS seen_at, {pivot} FROM v"
        f" GROUP BY {keys} HAVING MAX(seq) = MAX(CASE WHEN change <> 'delete' THEN seq END))"
        f" SELECT r.org, r.stream, r.bucket_start, r.bucket_end, r.group_key, {', '.join(columns)},"
        " r.seen_at AS synced_at FROM r"
        f" LEFT JOIN {table} AS cur ON cur.org = r.org AND cur.stream = r.stream AND cur.bucket_start = r.bucket_start"
        " AND cur.group_key = r.group_key"
    )
    return sql, [bound, *extra]


def _data_columns(
    spec: TableSpec, metrics: Sequence[str], groups: dict[str, tuple[str, ...]], dialect: Dialect, alias: str
) -> list[str]:
    """The table's data columns in order: dimensions and logged metrics from ``alias`` (the rebuilt rows), the
    rest (currency, units) from the stored row ``cur``."""
    columns: list[str] = []
    for c in spec.data_columns:
        if c.role == "dimension":
            columns.append(f"{_dimension(spec, c.name, groups, dialect, alias)} AS {q(c.name)}")
        elif c.name in metrics:
            columns.append(f"{alias}.{q(c.name)}")
        else:
            columns.append(f"cur.{q(c.name)}")
    return columns


def _seen(since: int | None, until: int | None, column: str = "seen_at") -> tuple[str, list[Any]]:
    clauses, params = ["TRUE"], []
    if since is not None:
        clauses.append(f"{column} > %s")
        params.append(to_datetime(since))
    if until is not None:
        clauses.append(f"{column} <= %s")
        params.append(to_datetime(until))
    return " AND ".join(clauses), params


def deltas_sql(
    spec: TableSpec,
    dialect: Dialect,
    groups: dict[str, tuple[str, ...]],
    *,
    since: int | None = None,
    until: int | None = None,
    table: str | None = None,
) -> tuple[str, list[Any]]:
    """A SELECT of the table's columns where each metric is its change over entries seen after ``since`` and at or
    before ``until`` (a key no entry of the span touches is left out; a vanished row's deltas are negative)."""
    table = table or spec.name
    metrics = logged_metrics(spec)
    keys = ", ".join(KEY)
    where, params = _seen(since, until)
    sums = ", ".join(
        f"CAST(SUM(CASE WHEN metric = '{m}' THEN COALESCE(new_value, 0) - COALESCE(old_value, 0) ELSE 0 END)"
        f" AS {spec.sql_type(dialect, m)}) AS {q(m)}"
        for m in metrics
    )
    columns = _data_columns(spec, metrics, groups, dialect, "d")
    sql = (
        f"WITH d AS (SELECT {keys}, MAX(bucket_end) AS bucket_end, MAX(seen_at) AS seen_at, {sums} FROM revisions"
        f" WHERE endpoint_table = '{spec.name}' AND {where} GROUP BY {keys})"
        f" SELECT d.org, d.stream, d.bucket_start, d.bucket_end, d.group_key, {', '.join(columns)},"
        " d.seen_at AS synced_at FROM d"
        f" LEFT JOIN {table} AS cur ON cur.org = d.org AND cur.stream = d.stream AND cur.bucket_start = d.bucket_start"
        " AND cur.group_key = d.group_key"
    )
    return sql, params


def restatements_sql(
    *, since: int | None = None, until: int | None = None, org: str | None = None
) -> tuple[str, list[Any]]:
    """Each (row, metric) restated by entries seen in the span, one line each: ``endpoint_table, org, stream,
    bucket_start, group_key, metric, old (before the span's first entry), new (after its last), entries, first
    seen, last seen, last seq`` (the last entry's place in the log: after a close or not, see ``closes``).

    A restatement is an update, a delete (a vanished row: new NULL), or an insert into a bucket the log already
    held from an earlier run (a row that appeared late). A bucket's first read is not one.
    """
    where, params = _seen(since, until, "e.seen_at")
    if org is not None:
        where += " AND e.org = %s"
        params.append(org)
    keys = "endpoint_table, org, stream, bucket_start, group_key, metric"
    bucket = "endpoint_table, org, stream, bucket_start"
    # The run that first logged each bucket (one pass and a hash join: a correlated lookup per entry is quadratic
    # without an index on the log). Each (row, metric)'s first old value and last new value are window functions
    # over one pass of its entries, not joins back to them: PostgreSQL guesses the filtered entries at one row and
    # so nested-looped such joins, re-sorting every entry once per entry (4.5 s for 2,000 restatements).
    window = f"OVER (PARTITION BY {keys})"
    sql = (
        f"WITH b AS (SELECT {bucket}, run_id FROM (SELECT {bucket}, run_id, ROW_NUMBER() OVER"
        f" (PARTITION BY {bucket} ORDER BY seq) AS rn FROM revisions) AS x WHERE rn = 1),"
        " e AS (SELECT e.* FROM revisions AS e JOIN b ON b.endpoint_table = e.endpoint_table AND b.org = e.org"
        " AND b.stream = e.stream AND b.bucket_start = e.bucket_start"
        f" WHERE {where} AND (e.change <> 'insert' OR e.run_id <> b.run_id)),"
        f" w AS (SELECT {keys},"
        f" FIRST_VALUE(old_value) OVER (PARTITION BY {keys} ORDER BY seq) AS old_value,"
        f" FIRST_VALUE(new_value) OVER (PARTITION BY {keys} ORDER BY seq DESC) AS new_value,"
        f" COUNT(*) {window} AS entries, MIN(seen_at) {window} AS first_seen, MAX(seen_at) {window} AS last_seen,"
        f" MAX(seq) {window} AS last_seq, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY seq) AS rn FROM e)"
        f" SELECT {keys}, old_value, new_value, entries, first_seen, last_seen, last_seq FROM w WHERE rn = 1"
        f" ORDER BY {keys}"
    )
    return sql, params


def first_seen(store: BaseStore, org: str | Sequence[str] | None = None) -> int | None:
    """When the store's revision log begins (its first entry's ``seen_at``, Unix seconds), ``None`` for an empty log:
    before it, an as-of reading holds nothing. Read from each log table's own minimum, not the ``revisions`` view.
    With ``org`` (a name or several), where the log of those orgs begins: another org synced earlier holds nothing
    of theirs (a demo org beside a real one, or an org added later)."""
    names = org_names(org)
    where, params = "", list(names)
    if names:
        where = f" WHERE org IN ({', '.join(['%s'] * len(names))})"
    tables_ = [ENTRIES, *(insert_table(spec) for spec in tables())]
    union = " UNION ALL ".join(f"SELECT MIN(seen_at) AS s FROM {t}{where}" for t in tables_)
    value = store.query(f"SELECT MIN(s) FROM ({union}) AS m", params * len(tables_))[0][0]
    return to_unix(value)


@contextlib.contextmanager
def as_of(
    store: BaseStore, when: int, buckets: tuple[int, int] | None = None, *, seq: int | None = None
) -> Iterator[BaseStore]:
    """``store``, whose endpoint tables and daily (and named) views read, until the block ends, as they stood at
    ``when`` (with ``seq``, as they stood when the log's sequence was there: :func:`as_of_sql`): temporary tables
    and views of this connection shadow them (nothing is written to the store).

    Only this connection's own queries see the past: a DuckDB cursor (``iter_batches``) is another connection, so
    an export passes ``as_of`` to :func:`usageledger.export.export` instead. ``buckets`` (``[start, end)``, Unix
    seconds) rebuilds only the buckets starting in it (what a report of a period reads), the rest are empty; a
    reversed or empty one (which read as a store with no rows) is a ``ParameterError`` naming ``buckets``.
    """
    if buckets is not None:
        check_range(buckets[0], buckets[1], now=math.inf, start_param="buckets", end_param="buckets")
    groups = stream_group_bys(store)
    created: list[str] = []
    try:
        _streams_then(store, when, seq)
        created.append("streams")
        for spec in tables():
            sql, params = as_of_sql(spec, when, store.dialect, groups, real_table(store, spec), buckets, seq)
            # Materialised once (a temporary table), so each report query reads rows, not the log.
            store.execute(f"CREATE TEMPORARY TABLE {spec.name} AS {_inline(sql, params, store.dialect)}")
            created.append(spec.name)
            if store.dialect == "postgres":
                store.execute(f"ANALYZE pg_temp.{spec.name}")
            store.execute(spec.daily_view_sql().replace("CREATE VIEW", "CREATE TEMPORARY VIEW", 1))
            created.append(spec.daily_view)
            named = directory.named_view_sql(spec)
            if named is not None:
                store.execute(named.replace("CREATE VIEW", "CREATE TEMPORARY VIEW", 1))
                created.append(directory.named_view(spec))
        yield store
    finally:
        schema = "temp" if store.dialect == "duckdb" else "pg_temp"
        for name in reversed(created):
            kind = "TABLE" if name in {"streams", *(spec.name for spec in tables())} else "VIEW"
            store.execute(f"DROP {kind} IF EXISTS {schema}.{name}")


def _streams_then(store: BaseStore, when: int, seq: int | None = None) -> None:
    """Shadow ``streams`` (a temporary copy) with the streams registered by ``when`` (up to ``seq``, when given),
    each with its watermark as it stood then, so that each org's primary stream and what is final
    (``report.finality``) are judged as of then: an ``--as-of`` report took today's streams and watermarks, and
    called final the days that were provisional then.

    Read from the watermark log (:mod:`usageledger.store.watermarks`): the stream's last move up to then, none if it
    had not moved yet. For a time before a stream's log began (a store upgraded to it: its baseline is later), the
    rule from before the log: the latest the watermark can have stood, no later than the bucket ``when`` falls in
    (a sync never sets one past its own clock) nor than the baseline (one never moves back), and none at all if the
    revision log has no entry of the stream by then (it had not been synced: capped instead, ``--as-of`` a time
    before the first sync called the store's costs whole through the day before it)."""
    database, schema = store.query("SELECT current_database(), current_schema()")[0]
    store.execute(f"CREATE TEMPORARY TABLE streams AS SELECT * FROM {q(database)}.{q(schema)}.streams")
    temp = "temp.streams" if store.dialect == "duckdb" else "pg_temp.streams"
    then = watermarks.standing(store, when, seq)
    _drop_later_streams(store, temp, when, seq, then)
    marks = dict(then.logged)  # a stream's baseline is its first line: none of these is before its log
    if then.before_log:
        seen = _synced_by(store, when, seq)
        for org, stream, width in store.query(f"SELECT org, stream, bucket_width FROM {temp}"):
            if (org, stream) in then.before_log and (org, stream) in seen:
                cap = timeutil.floor(when, cast(BucketWidth, width))
                marks[(org, stream)] = min(then.before_log[(org, stream)][0], cap)
    store.execute(f"UPDATE {temp} SET watermark = NULL")
    if marks:
        row = "(CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS TIMESTAMPTZ))"
        store.execute(
            f"UPDATE {temp} AS t SET watermark = v.mark FROM (VALUES {', '.join([row] * len(marks))})"
            " AS v(org, stream, mark) WHERE t.org = v.org AND t.stream = v.stream",
            [x for (org, stream), mark in marks.items() for x in (org, stream, to_datetime(mark))],
        )


def _drop_later_streams(store: BaseStore, temp: str, when: int, seq: int | None, then: watermarks.Standing) -> None:
    """Take out of ``temp`` (the copy of ``streams``) the streams registered after the reading: a stream added later
    (the default costs stream beside a filtered one) took over each org's primary stream at times it did not exist.
    A stream either log has a line of by then existed then, whatever its registration says (a time set by hand, or a
    store's estimate from before migration 0014)."""
    bound = [to_datetime(when)] if seq is None else [seq, to_datetime(when)]
    later = {(org, stream) for org, stream in store.query(watermarks.registered_after_sql(temp, seq), bound)}
    if not later:
        return
    gone = sorted(later - set(then.logged) - _synced_by(store, when, seq))
    if gone:
        pairs = " OR ".join(["(org = %s AND stream = %s)"] * len(gone))
        store.execute(f"DELETE FROM {temp} WHERE {pairs}", [v for pair in gone for v in pair])


def _synced_by(store: BaseStore, when: int, seq: int | None = None) -> set[tuple[str, str]]:
    """The ``(org, stream)`` pairs the revision log has an entry of by ``when`` (up to ``seq``, when given)."""
    upto, bound = ("seen_at <= %s", to_datetime(when)) if seq is None else ("seq <= %s", seq)
    logged = " UNION ".join(f"SELECT DISTINCT org, stream FROM {t} WHERE {upto}" for t in log_tables())
    return {(org, stream) for org, stream in store.query(logged, [bound] * len(log_tables()))}


def watermarks_before_the_log(store: BaseStore, when: int, org: str | Sequence[str] | None = None) -> int | None:
    """When the watermark log begins to know every stream an as-of reading at ``when`` finds synced (``None``: it
    knows them all then). Until then, :func:`as_of` takes such a stream's watermark as the latest it can have stood
    (see ``_streams_then``), not where it stood: a store upgraded to the log (migration ``0012_watermark_log``).
    With ``org`` (a name or several), only those orgs' streams count: a reading of one org is not told of
    another's (the demo's beside a real org's)."""
    names = org_names(org)
    before = {k: v for k, v in watermarks.standing(store, when).before_log.items() if not names or k[0] in names}
    if not before:
        return None
    seen = _synced_by(store, when)
    since = [start for key, (_, start) in before.items() if key in seen]
    return max(since, default=None)


def _inline(sql: str, params: list[Any], dialect: Dialect) -> str:
    """``sql`` with its time (and sequence) placeholders written out (a view's definition takes no parameters)."""
    for value in params:
        if isinstance(value, int):
            sql = sql.replace("%s", str(int(value)), 1)
            continue
        assert isinstance(value, datetime)
        sql = sql.replace("%s", f"CAST('{value.isoformat()}' AS TIMESTAMPTZ)", 1)
    return sql
