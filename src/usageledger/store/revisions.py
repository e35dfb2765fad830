"""The revision log: every change a sync makes to a stored row, appended in the transaction that makes it.

``revisions`` holds one entry per changed metric of a changed row: the row's org, stream, endpoint table, bucket and
group key, what happened to the row (``insert``, ``update`` or ``delete``), the metric, its old and new value
(``DECIMAL(38,18)``: money and token counts exact; old NULL for an insert, new NULL for a delete), the sync run and
the time the window was read. A metric whose value did not change (or is NULL on both sides) has no entry, so a
re-read that changes nothing appends nothing. The log is append-only: nothing here updates or deletes it.

The entries are computed in SQL, set-based: the staged window is compared with the stored rows of the window (a
full outer join on the primary key), unpivoted over the numeric metrics, and inserted in one statement before the
window's upsert runs. Only the unpivot differs between the dialects (``%s`` placeholders in both).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from usageledger.store.schema import DECIMAL_PRECISION, DECIMAL_SCALE, Dialect, TableSpec, q, tables

__all__ = ["LOG_COLUMNS", "MIGRATION_NAME", "changes_sql", "inserts_sql", "logged_metrics", "migration_statements"]

MIGRATION_NAME: Final = "0006_revision_log"

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
    return _unpivot(spec, source, dialect, metrics, f"'{MIGRATION_NAME}', seen")


def logged_metrics(spec: TableSpec) -> tuple[str, ...]:
    """The columns the log follows: the endpoint's numeric metrics (text attributes such as ``currency`` are not)."""
    return tuple(c.name for c in spec.endpoint.metrics if c.type in ("int", "decimal"))


def _unpivot(
    spec: TableSpec, source: str, dialect: Dialect, metrics: Sequence[str] | None = None, run_seen: str = "%s, %s"
) -> str:
    """``INSERT INTO revisions`` from ``source`` (a relation with the key, ``change``, and each metric's ``o_<m>``
    and ``n_<m>`` as decimals): one entry per metric whose old and new values differ. Placeholders: run id, seen
    at, then those of ``source``.

    DuckDB's own ``UNPIVOT`` plans in a third of the time of a portable unpivot (it runs once per window, so its
    fixed cost is what a sync feels); PostgreSQL's ``LATERAL (VALUES ...)`` is its idiomatic equivalent.
    """
    metrics = logged_metrics(spec) if metrics is None else metrics
    head = (
        f"INSERT INTO revisions ({LOG_COLUMNS}) SELECT org, stream, '{spec.name}', bucket_start, bucket_end,"
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


def inserts_sql(spec: TableSpec, staged: str, dialect: Dialect) -> str:
    """The log entries of a window whose rows are all new (nothing stored in it). Placeholders: run id, seen at."""
    metrics = logged_metrics(spec)
    new = ", ".join(f"CAST(i.{q(m)} AS {_DECIMAL}) AS {q('n_' + m)}" for m in metrics)
    old = ", ".join(f"CAST(NULL AS {_DECIMAL}) AS {q('o_' + m)}" for m in metrics)
    source = (
        f"SELECT i.org, i.stream, i.bucket_start, i.bucket_end, i.group_key, 'insert' AS change, {old}, {new}"
        f" FROM {staged} AS i"
    )
    return _unpivot(spec, source, dialect)


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
