"""The revision log: every change a sync makes to a stored row, appended in the transaction that makes it.

``revisions`` reads as one entry per changed metric of a changed row: the row's org, stream, endpoint table,
bucket and group key, what happened to the row (``insert``, ``update`` or ``delete``), the metric, its old and new
value (``DECIMAL(38,18)``: money and token counts exact; old NULL for an insert, new NULL for a delete), the sync run
and the time the window was read. A metric whose value did not change (or is NULL on both sides) has no entry, so a
re-read that changes nothing appends nothing. The log is append-only: nothing here updates or deletes it.

Where the entries live (migration ``0009_revision_inserts``): ``revisions`` is a view over two kinds of table.

* ``revisions_<endpoint table>`` (``revisions_costs``, ``revisions_usage_completions``, ...): the rows of *fresh*
  windows (a stream's first read of its buckets, the bulk of any first sync), one row per inserted row with its
  logged metrics as columns. Unpivoted in the view, each gives one ``insert`` entry per non-NULL metric, as if it
  had been written narrow; kept wide, it costs about what the row itself costs to write (the narrow form was one
  log row per metric: nine to seventeen per data row, and 80 % of a first sync's store time).
* ``revision_entries``: everything else, narrow: the updates, deletes and late inserts of re-read windows, and the
  baseline of a store that predates the log.

The entries are computed in SQL, set-based: a fresh window's staged rows are copied as they are; a re-read window is
compared with the stored rows of the window (a full outer join on the primary key), unpivoted over the numeric
metrics, and inserted in one statement before the window's upsert runs. Only the unpivot differs between the
dialects (``%s`` placeholders in both). ``seq`` orders the log: each narrow entry, and each row of a fresh window,
takes the next value of ``revisions_seq``, so the entries of one inserted row share theirs (they differ by metric).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from usageledger.store.schema import DECIMAL_PRECISION, DECIMAL_SCALE, Dialect, TableSpec, q, tables

__all__ = [
    "ENTRIES",
    "INSERTS_MIGRATION",
    "LOG_COLUMNS",
    "LOG_WRITES",
    "MIGRATION_NAME",
    "changes_sql",
    "insert_table",
    "inserts_migration_statements",
    "inserts_sql",
    "log_tables",
    "log_tables_statements",
    "logged_metrics",
    "migration_statements",
]

LOG_WRITES: Final = ("revision log", "writes")
"""The transaction lock (``BaseStore.lock_in_transaction``) that a write to the log holds shared and ``close``
exclusive: a close reads the month and draws its mark (``closes.close_month``) with no write in flight, so every
entry under the mark had been committed when the close read. Every other draw of ``revisions_seq`` that a close's
mark is compared with holds it too: a sync's commit (its entries and its watermark log lines, one transaction),
``set_watermark`` and a stream's registration (``registered_seq``)."""

MIGRATION_NAME: Final = "0006_revision_log"
INSERTS_MIGRATION: Final = "0009_revision_inserts"
ENTRIES: Final = "revision_entries"
"""The narrow table behind the ``revisions`` view (named ``revisions`` itself until migration 0009)."""

LOG_COLUMNS: Final = (
    "org, stream, endpoint_table, bucket_start, bucket_end, group_key, change, metric, old_value, new_value,"
    " run_id, seen_at"
)
"""The columns every log insert writes (``seq`` comes from its sequence)."""

_DECIMAL: Final = f"DECIMAL({DECIMAL_PRECISION},{DECIMAL_SCALE})"


def migration_statements(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """``revisions`` and the sequence that orders it (migration ``0006_revision_log``), then a baseline: each row
    a store already holds is logged as an ``insert`` (run ``0006_revision_log``, seen at its ``synced_at``), so the
    log explains an upgraded store from its first entry on."""
    decimal = _DECIMAL if dialect == "duckdb" else f"NUMERIC({DECIMAL_PRECISION},{DECIMAL_SCALE})"
    return [
        "CREATE SEQUENCE IF NOT EXISTS revisions_seq",
        f"""CREATE TABLE IF NOT EXISTS revisions (
  seq BIGINT NOT NULL DEFAULT nextval('revisions_seq'),
  org TEXT NOT NULL,
  stream TEXT NOT NULL,
  endpoint_table TEXT NOT NULL,
  bucket_start TIMESTAMPTZ NOT NULL,
  bucket_end TIMESTAMPTZ NOT NULL,
  group_key TEXT NOT NULL,
  change TEXT NOT NULL,
  metric TEXT NOT NULL,
  old_value {decimal},
  new_value {decimal},
  run_id TEXT NOT NULL,
  seen_at TIMESTAMPTZ NOT NULL
)""",
        *(_baseline(spec, dialect, existing[spec.name]) for spec in tables() if spec.name in existing),
    ]


def _baseline(spec: TableSpec, dialect: Dialect, columns: Sequence[str]) -> str:
    """Log the stored rows of one endpoint table as inserts (the metrics the table has so far)."""
    metrics = [m for m in logged_metrics(spec) if m in columns]
    new = ", ".join(f"CAST(i.{q(m)} AS {_DECIMAL}) AS {q('n_' + m)}" for m in metrics)
    old = ", ".join(f"CAST(NULL AS {_DECIMAL}) AS {q('o_' + m)}" for m in metrics)
    source = (
        f"SELECT i.org, i.stream, i.bucket_start, i.bucket_end, i.group_key, 'insert' AS change,"
        " COALESCE(i.synced_at, i.bucket_end) AS seen,"
        f" {old}, {new} FROM {spec.name} AS i"
    )
    return _unpivot(spec, source, dialect, metrics, f"'{MIGRATION_NAME}', seen", target="revisions")


def logged_metrics(spec: TableSpec) -> tuple[str, ...]:
    """The columns the log follows: the endpoint's numeric metrics (text attributes such as ``currency`` are not)."""
    return tuple(c.name for c in spec.endpoint.metrics if c.type in ("int", "decimal"))


def _unpivot(
    spec: TableSpec,
    source: str,
    dialect: Dialect,
    metrics: Sequence[str] | None = None,
    run_seen: str = "%s, %s",
    target: str = ENTRIES,
) -> str:
    """``INSERT INTO <target>`` (the narrow log) from ``source`` (a relation with the key, ``change``, and each
    metric's ``o_<m>`` and ``n_<m>`` as decimals): one entry per metric whose old and new values differ.
    Placeholders: run id, seen at, then those of ``source``.

    DuckDB's own ``UNPIVOT`` plans in a third of the time of a portable unpivot (it runs once per window, so its
    fixed cost is what a sync feels); PostgreSQL's ``LATERAL (VALUES ...)`` is its idiomatic equivalent.
    """
    metrics = logged_metrics(spec) if metrics is None else metrics
    head = (
        f"INSERT INTO {target} ({LOG_COLUMNS}) SELECT org, stream, '{spec.name}', bucket_start, bucket_end,"
        f" group_key, change, metric, old_value, new_value, {run_seen} FROM "
    )
    if dialect == "duckdb":
        pairs = ", ".join(f"({q('o_' + m)}, {q('n_' + m)}) AS {q(m)}" for m in metrics)
        # INCLUDE NULLS: the default drops a pair with one NULL, i.e. every insert and delete.
        body = f"(FROM ({source}) AS d UNPIVOT INCLUDE NULLS ((old_value, new_value) FOR metric IN ({pairs}))) AS e"
    else:
        values = ", ".join(f"('{m}', d.{q('o_' + m)}, d.{q('n_' + m)})" for m in metrics)
        body = f"({source}) AS d CROSS JOIN LATERAL (VALUES {values}) AS e(metric, old_value, new_value)"
    return head + body + " WHERE old_value IS DISTINCT FROM new_value"


def insert_table(spec: TableSpec) -> str:
    """The wide log table of an endpoint table's fresh inserts: ``revisions_<table>``."""
    return f"revisions_{spec.name}"


_ROW_KEY: Final = ("org", "stream", "bucket_start", "bucket_end", "group_key")
_INSERT_KEY: Final = ("seq", "run_id", "seen_at", *_ROW_KEY)


def _insert_columns(spec: TableSpec) -> tuple[str, ...]:
    return (*_INSERT_KEY, *logged_metrics(spec))


def inserts_sql(spec: TableSpec, staged: str) -> str:
    """Log a fresh window's rows (nothing stored in their buckets) as they are, in ``revisions_<table>``.

    Placeholders: run id, seen at. One statement, no unpivot: the view does that when the log is read. Each row
    takes the next ``seq``; its metrics' entries share it.
    """
    metrics = ", ".join(f"i.{q(m)}" for m in logged_metrics(spec))
    columns = ", ".join(q(c) for c in _insert_columns(spec))
    return (
        f"INSERT INTO {insert_table(spec)} ({columns}) SELECT nextval('revisions_seq'), %s, %s, i.org, i.stream,"
        f" i.bucket_start, i.bucket_end, i.group_key, {metrics} FROM {staged} AS i"
    )


def log_tables() -> tuple[str, ...]:
    """Every table the log is kept in (what deleting an org's history clears)."""
    return (ENTRIES, *(insert_table(spec) for spec in tables()))


def log_tables_statements(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """Bring the wide insert tables in line with the catalogue (create, add columns) and (re)create the
    ``revisions`` view over them and ``revision_entries``: run by migration 0009 and by every catalogue step."""
    decimal = _DECIMAL if dialect == "duckdb" else f"NUMERIC({DECIMAL_PRECISION},{DECIMAL_SCALE})"
    out: list[str] = []
    types = {"seq": "BIGINT", "run_id": "TEXT", "seen_at": "TIMESTAMPTZ"}
    for spec in tables():
        table = insert_table(spec)
        columns = {c: types.get(c) or spec.sql_type(dialect, c) for c in _insert_columns(spec)}
        have = existing.get(table)
        if have is None:
            body = ",\n  ".join(f"{q(c)} {t}{' NOT NULL' if c in _INSERT_KEY else ''}" for c, t in columns.items())
            out.append(f"CREATE TABLE IF NOT EXISTS {table} (\n  {body}\n)")
        else:
            out += [f"ALTER TABLE {table} ADD COLUMN {q(c)} {t}" for c, t in columns.items() if c not in have]
    branches = [f"SELECT seq, {LOG_COLUMNS} FROM {ENTRIES}"]
    branches += [
        f"SELECT seq, org, stream, '{spec.name}' AS endpoint_table, bucket_start, bucket_end, group_key,"
        f" 'insert' AS change, metric, CAST(NULL AS {decimal}) AS old_value, new_value, run_id, seen_at"
        f" FROM {_as_entries(spec, dialect, decimal)} AS e"
        for spec in tables()
    ]
    out.append("DROP VIEW IF EXISTS revisions")
    out.append("CREATE VIEW revisions AS\n" + "\nUNION ALL\n".join(branches))
    return out


def _as_entries(spec: TableSpec, dialect: Dialect, decimal: str) -> str:
    """A wide insert table as narrow entries: its rows' ``seq, run_id, seen_at``, key, ``metric`` and
    ``new_value``, one per non-NULL metric (as the narrow log wrote them)."""
    metrics = logged_metrics(spec)
    if dialect == "duckdb":  # UNPIVOT leaves out NULLs by default
        cast = ", ".join(f"CAST({q(m)} AS {decimal}) AS {q(m)}" for m in metrics)
        source = f"(SELECT seq, run_id, seen_at, {', '.join(_ROW_KEY)}, {cast} FROM {insert_table(spec)})"
        return f"(UNPIVOT {source} ON {', '.join(q(m) for m in metrics)} INTO NAME metric VALUE new_value)"
    values = ", ".join(f"('{m}', CAST(d.{q(m)} AS {decimal}))" for m in metrics)
    return (
        f"(SELECT d.seq, d.run_id, d.seen_at, {', '.join('d.' + k for k in _ROW_KEY)}, e.metric, e.new_value"
        f" FROM {insert_table(spec)} AS d CROSS JOIN LATERAL (VALUES {values}) AS e(metric, new_value)"
        " WHERE e.new_value IS NOT NULL)"
    )


def inserts_migration_statements(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """Migration ``0009_revision_inserts``: the narrow table becomes ``revision_entries`` (its entries stay), the
    wide insert tables are created and ``revisions`` becomes the view over all of them."""
    out = [] if ENTRIES in existing else [f"ALTER TABLE revisions RENAME TO {ENTRIES}"]
    return out + log_tables_statements(dialect, {k: v for k, v in existing.items() if k != "revisions"})


def changes_sql(spec: TableSpec, staged: str, in_window: str, key_match: str, dialect: Dialect) -> str:
    """The log entries of a re-read window: the staged rows against the stored rows in ``in_window``.

    Placeholders: run id, seen at, then the four of ``in_window`` (org, stream, window start, window end).
    """
    metrics = logged_metrics(spec)
    key = ("org", "stream", "bucket_start", "group_key")
    keys = ", ".join(f"COALESCE(i.{c}, t.{c}) AS {c}" for c in key)
    values = ", ".join(
        f"CAST(t.{q(m)} AS {_DECIMAL}) AS {q('o_' + m)}, CAST(i.{q(m)} AS {_DECIMAL}) AS {q('n_' + m)}" for m in metrics
    )
    source = (
        f"SELECT {keys}, COALESCE(i.bucket_end, t.bucket_end) AS bucket_end,"
        " CASE WHEN t.group_key IS NULL THEN 'insert' WHEN i.group_key IS NULL THEN 'delete' ELSE 'update' END"
        f" AS change, {values}"
        f" FROM (SELECT * FROM {spec.name} AS t WHERE {in_window}) AS t FULL OUTER JOIN {staged} AS i ON {key_match}"
    )
    return _unpivot(spec, source, dialect)
