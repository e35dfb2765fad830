"""Prepaid credit top-ups: the ``credit_topups`` table (migration ``0007_credit_topups``) and its three operations.

The API has no endpoint for a prepaid balance, so the top-ups are recorded by hand (``usageledger credit add``); the
balance is derived from them and the costs (:mod:`usageledger.report.credit`). IDs come from a sequence, as the
revision log's do, in both dialects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final, Protocol

from usageledger.errors import ParameterError
from usageledger.rows import DECIMAL_PRECISION, DECIMAL_SCALE
from usageledger.store.schema import Dialect

__all__ = ["MIGRATION_NAME", "TopUp", "add_topup", "list_topups", "migration_statements", "remove_topup"]

MIGRATION_NAME: Final = "0007_credit_topups"


class _Db(Protocol):
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class _Writable(_Db, Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...


@dataclass(frozen=True, slots=True)
class TopUp:
    id: int
    org: str
    day: date
    """The UTC day the credit was bought: costs from this day on draw on it."""
    amount: Decimal
    note: str | None
    added_at: datetime


def migration_statements(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """``credit_topups`` and the sequence that numbers it."""
    decimal = "DECIMAL" if dialect == "duckdb" else "NUMERIC"
    return [
        "CREATE SEQUENCE IF NOT EXISTS credit_topups_seq",
        f"""CREATE TABLE IF NOT EXISTS credit_topups (
  id BIGINT NOT NULL DEFAULT nextval('credit_topups_seq') PRIMARY KEY,
  org TEXT NOT NULL,
  day DATE NOT NULL,
  amount {decimal}({DECIMAL_PRECISION},{DECIMAL_SCALE}) NOT NULL,
  note TEXT,
  added_at TIMESTAMPTZ NOT NULL
)""",
    ]


_COLUMNS: Final = "id, org, day, amount, note, added_at"


def _topup(row: tuple[Any, ...]) -> TopUp:
    day = row[2]
    day = day.date() if isinstance(day, datetime) else day
    amount = row[3] if isinstance(row[3], Decimal) else Decimal(row[3])
    return TopUp(int(row[0]), row[1], day, amount, row[4], row[5].astimezone(UTC))


NOTE_MAX: Final = 200
"""The most characters a top-up's note holds: an invoice number or a line, never a pasted file (5,000 characters
were kept, and `credit list` printed them as 80 lines of the table)."""


def check_note(note: str | None, param: str = "note") -> str | None:
    """A top-up's note as it is kept: one printable line (a newline would split the row of every listing, an escape
    sequence would drive the terminal) of at most :data:`NOTE_MAX` characters, else :class:`ParameterError` naming
    ``param``."""
    if note is not None and not note.isprintable():
        raise ParameterError(param, f"{note!r} holds a newline or a control character; give one line of text")
    if note is not None and len(note) > NOTE_MAX:
        raise ParameterError(
            param, f"the note has {len(note):,} characters; keep it to {NOTE_MAX} (an invoice number, a line)"
        )
    return note


def add_topup(
    db: _Writable, *, org: str, day: date, amount: Decimal, note: str | None, now: datetime | None = None
) -> TopUp:
    """Record a top-up; the stored record (with its new ID). A note that is not one printable line is refused
    (:func:`check_note`)."""
    check_note(note)
    rows = db.query(
        "INSERT INTO credit_topups (org, day, amount, note, added_at) VALUES (%s, %s, %s, %s, %s)"
        f" RETURNING {_COLUMNS}",
        [org, day, amount, note, now or datetime.now(UTC)],
    )
    return _topup(rows[0])


def list_topups(db: _Db, *, org: str | None = None) -> list[TopUp]:
    """The top-ups (of ``org``, or of every org), by org, then day, then ID."""
    where, params = ("WHERE org = %s", [org]) if org is not None else ("", [])
    return [_topup(r) for r in db.query(f"SELECT {_COLUMNS} FROM credit_topups {where} ORDER BY org, day, id", params)]


def remove_topup(db: _Writable, topup_id: int) -> TopUp | None:
    """Delete one top-up by ID; the record deleted, or ``None`` when no top-up has that ID."""
    rows = db.query(f"SELECT {_COLUMNS} FROM credit_topups WHERE id = %s", [topup_id])
    if not rows:
        return None
    db.execute("DELETE FROM credit_topups WHERE id = %s", [topup_id])
    return _topup(rows[0])
