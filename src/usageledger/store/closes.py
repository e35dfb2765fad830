"""Closed months: the spend a month held, per org and per project, when someone closed it (``usageledger close``).

``closed_months`` holds, per closed (org, month), one ``org`` line (the org's total, zero when it had no spend) and
one ``project`` line per project (``project_id`` NULL for spend without one), all read from ``costs_daily`` (each
org's primary daily costs stream, what reports read) at the moment of closing. Later restatements leave these lines
as they are: reports compare the present with them and show the difference as an adjustment. Reopening a month
deletes its lines; closing it again records the figures of that moment.

Each line also records where the revision log stood at the close (``closed_seq``, migration ``0011_close_seq``):
the log's entries up to that sequence number are what the close saw, every later one came after it. Reading the
month back as closed (statements, ``after_close``) selects entries by it, not by time: the log's seen times are
whole seconds, so a sync in the close's own second could not be told from the close. A close recorded before the
migration has no ``closed_seq`` and is read by ``closed_at``, as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Final

from usageledger import catalogue
from usageledger.rows import iso_currency
from usageledger.store._types import to_datetime
from usageledger.store.directory import BaseStore  # the Protocol: _base runs this module's migration
from usageledger.store.revisions import LOG_WRITES
from usageledger.store.schema import DECIMAL_PRECISION, DECIMAL_SCALE, Dialect, daily_view_name
from usageledger.timeutil import next_month

__all__ = [
    "MIGRATION_NAME",
    "SEQ_MIGRATION",
    "ClosedLine",
    "close_month",
    "closed_lines",
    "migration_statements",
    "month_bounds",
    "month_totals",
    "reopen_month",
    "seq_migration_statements",
]

MIGRATION_NAME: Final = "0008_closed_months"
SEQ_MIGRATION: Final = "0011_close_seq"
_COSTS: Final = daily_view_name(catalogue.get("costs"))
"""What reports read: each org's primary daily costs stream."""


def migration_statements(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    decimal = "DECIMAL" if dialect == "duckdb" else "NUMERIC"
    return [
        f"""CREATE TABLE IF NOT EXISTS closed_months (
  org TEXT NOT NULL,
  month DATE NOT NULL,
  level TEXT NOT NULL,
  project_id TEXT,
  amount {decimal}({DECIMAL_PRECISION},{DECIMAL_SCALE}) NOT NULL,
  currency TEXT,
  closed_at TIMESTAMPTZ NOT NULL
)"""
    ]


def seq_migration_statements(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """Migration ``0011_close_seq``: ``closed_seq``, the revision log's high-water mark at the close (NULL for the
    closes recorded before it, which are read by ``closed_at``)."""
    if "closed_seq" in existing.get("closed_months", ()):
        return []
    return ["ALTER TABLE closed_months ADD COLUMN closed_seq BIGINT"]


@dataclass(frozen=True, slots=True)
class ClosedLine:
    """One recorded figure of a closed month: the org's total (``level`` ``org``) or one project's."""

    org: str
    month: date
    level: str
    project_id: str | None
    amount: Decimal
    currency: str | None
    closed_at: datetime
    closed_seq: int | None = None
    """The revision log's high-water mark at the close: its entries with a ``seq`` up to it are what the close saw
    (``None``: a close recorded before migration ``0011_close_seq``, read by ``closed_at``)."""

    @property
    def mark(self) -> tuple[int | None, datetime]:
        """What tells one close's reading of the log from another's: ``(closed_seq, closed_at)``."""
        return (self.closed_seq, self.closed_at)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The first instant of the month ``month`` falls in and of the next, in UTC (a close's and a statement's month,
    the FOCUS rows' billing period)."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    following = next_month(month)
    end = datetime(following.year, following.month, 1, tzinfo=UTC)
    return start, end


def month_totals(
    store: BaseStore, month: date, org: str | None = None
) -> list[tuple[str, str | None, Decimal, str | None]]:
    """``(org, project_id, amount, currency)`` of the month as the store holds it now, per org and project."""
    start, end = month_bounds(month)
    where = "bucket_start >= %s AND bucket_start < %s"
    params: list[object] = [start, end]
    if org is not None:
        where += " AND org = %s"
        params.append(org)
    rows = store.query(
        f"SELECT org, project_id, SUM(amount_value), MIN(currency) FROM {_COSTS} WHERE {where}"
        " GROUP BY org, project_id ORDER BY org, project_id",
        params,
    )
    return [(r[0], r[1], Decimal(r[2] or 0), iso_currency(r[3])) for r in rows]


def closed_lines(store: BaseStore, org: str | None = None) -> list[ClosedLine]:
    """Every recorded line of every closed month (of ``org``), by org, month, level and project."""
    where, params = ("", []) if org is None else (" WHERE org = %s", [org])
    rows = store.query(
        "SELECT org, month, level, project_id, amount, currency, closed_at, closed_seq FROM closed_months"
        f"{where} ORDER BY org, month, level, project_id",
        params,
    )
    return [
        ClosedLine(
            r[0], _date(r[1]), r[2], r[3], Decimal(r[4]), iso_currency(r[5]), r[6], None if r[7] is None else int(r[7])
        )
        for r in rows
    ]


def close_month(store: BaseStore, month: date, orgs: Sequence[str], *, at: int) -> list[ClosedLine]:
    """Record the month's figures for each of ``orgs`` (none of them may have it closed), closed at ``at``; the
    lines recorded.

    Each line records the revision log's high-water mark (``closed_seq``): the close draws the next number of the
    log's sequence, so every entry written before it has a lower one and every entry written after it a higher one.
    What the month held is read back by it (statements, ``after_close``). It was read back by ``at`` before, and the
    log's seen times are whole seconds: a sync in the close's second (``close 2026-10 && sync``) counted as closed
    unless the close waited that second out."""
    start, _ = month_bounds(month)
    with store.transaction():
        # No sync's write in flight while the month is read and the mark drawn (PostgreSQL: two writers at once): an
        # uncommitted restatement whose log entry already had its number would be under the mark, read "as closed",
        # though the figures recorded here never saw it. New writes wait for this transaction.
        store.lock_in_transaction(*LOG_WRITES)
        drawn = store.query("SELECT nextval('revisions_seq')")[0][0]
        mark = int(drawn) - 1
        for org in orgs:
            totals = month_totals(store, month, org)
            total = sum((t[2] for t in totals), Decimal(0))
            currency = next((t[3] for t in totals if t[3] is not None), None)
            lines = [("org", None, total, currency), *(("project", t[1], t[2], t[3]) for t in totals)]
            for level, project, amount, cur in lines:
                store.execute(
                    "INSERT INTO closed_months (org, month, level, project_id, amount, currency, closed_at, closed_seq)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (org, start.date(), level, project, amount, cur, to_datetime(at), mark),
                )
    return [line for line in closed_lines(store) if line.month == start.date() and line.org in orgs]


def reopen_month(store: BaseStore, month: date, orgs: Sequence[str]) -> int:
    """Delete the recorded lines of the month for ``orgs``; how many orgs had it closed."""
    start, _ = month_bounds(month)
    with store.transaction():
        closed = {line.org for line in closed_lines(store) if line.month == start.date() and line.org in orgs}
        for org in closed:
            store.execute("DELETE FROM closed_months WHERE org = %s AND month = %s", (org, start.date()))
    return len(closed)


def _date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise TypeError(f"expected a DATE, got {value!r}")
