"""The ledger's memory, for people and programs: the store as of a time, restatements, closed months, deltas.

* :func:`as_of`: the store as it stood at a time (rebuilt from the revision log); :func:`build_report` on it gives
  exactly the report of that time.
* :func:`changes`: restatements seen in a span (an update, a vanished row as a change to zero, a row that appeared
  late), per row and metric with the old and new value and the delta; spend restated after its month was closed
  is flagged, and each closed month's figures are set against the present as adjustments.
* :func:`adjustments`: per closed month, org and project, the present spend against the closed figure.
* :func:`deltas`: per row and metric, the change over a span of seen times (negative too), for consumers that
  accumulate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from usageledger import timeutil
from usageledger._amounts import CENT, apportion
from usageledger._sections import Names
from usageledger.errors import ParameterError
from usageledger.report.formatting import format_money
from usageledger.rules import name_list
from usageledger.store import BaseStore, require_store, tables, to_datetime
from usageledger.store import history as _history
from usageledger.store._base import check_orgs, org_names
from usageledger.store.closes import ClosedLine, closed_lines, month_totals
from usageledger.timeutil import TimeInput

__all__ = [
    "Adjustment",
    "Changes",
    "Delta",
    "Restatement",
    "adjustments",
    "as_closed",
    "as_of",
    "before_the_log",
    "changes",
    "deltas",
    "watermarks_unlogged",
]

_MONEY_TABLE = "costs"
_MONEY_METRIC = "amount_value"


@contextmanager
def as_of(
    store: BaseStore, when: TimeInput, *, buckets: tuple[datetime, datetime] | None = None
) -> Iterator[BaseStore]:
    """``store`` as it stood at ``when`` (a datetime, a date, Unix seconds or the usual strings) for the block:
    :func:`usageledger.report.build_report` and every query on it read the rows of that time. With ``buckets``
    (``[start, end)``), only the buckets starting in it are rebuilt, faster on a long log: for a report, from the
    previous period's start to the period's end (``(period.previous().start, period.end)``)."""
    require_store(store)
    span = None if buckets is None else _bucket_span(buckets)
    with _history.as_of(store, timeutil.to_unix(when, param="as_of"), span) as past:
        yield past


def _bucket_span(buckets: object) -> tuple[int, int]:
    """``as_of``'s ``buckets`` as Unix seconds ``[start, end)``: a pair of times (a naive datetime is UTC, where
    ``.timestamp()`` read it in the machine's zone); the store's ``as_of`` refuses a reversed pair."""
    if not isinstance(buckets, tuple | list) or len(buckets) != 2:
        raise ParameterError("buckets", f"expected (start, end), two datetimes, got {buckets!r}")
    return timeutil.to_unix(buckets[0], param="buckets"), timeutil.to_unix(buckets[1], param="buckets")


def before_the_log(
    store: BaseStore, when: int, *, param: str = "--as-of", org: str | Sequence[str] | None = None
) -> str | None:
    """Why an as-of reading at ``when`` is empty, when it is (``None`` otherwise): the store's revision log begins
    later, at its first sync, or is empty. ``--as-of 2026-11-01`` on a store first synced on 2026-12-01 read as
    "$0.00 spent" with no word of why; the usual wish behind it is a period's spend, which ``--since`` gives. With
    ``org`` (the reading's ``--org``: a name or several), where those orgs' entries begin."""
    first = _history.first_seen(store, org)
    if first is not None and when >= first:
        return None
    names = sorted(org_names(org))
    if names:
        whose = f"org {', '.join(names)}" if len(names) == 1 else f"orgs {', '.join(names)}"
        began = (
            f"holds no entries of {whose} yet"
            if first is None
            else f"has entries of {whose} only from {timeutil.iso(first)}, the first sync of {whose}"
        )
    else:
        began = "holds no entries yet" if first is None else f"begins at {timeutil.iso(first)}, the store's first sync"
    return (
        f"{param} {timeutil.iso(when)}: the store's revision log {began}, so it held nothing then; {param} asks what"
        " the store knew at a time (for spend over a period, use --since and --until)"
    )


def watermarks_unlogged(
    store: BaseStore, when: int, *, param: str = "--as-of", org: str | Sequence[str] | None = None
) -> str | None:
    """Why an as-of reading at ``when`` may call final what was provisional then (``None``: it cannot): the store
    was upgraded to the watermark log (migration ``0012_watermark_log``) after ``when``, so where its streams'
    watermarks stood then is not known, and each is taken as the latest it can have stood. With ``org`` (the
    reading's ``--org``), only those orgs' streams count."""
    since = _history.watermarks_before_the_log(store, when, org)
    if since is None:
        return None
    return (
        f"{param} {timeutil.iso(when)}: the store has logged where its streams were synced up to only since"
        f" {timeutil.iso(since)} (its upgrade to the watermark log), so each is taken as synced as far as it can have"
        " been then; days shown final may still have been provisional"
    )


@dataclass(frozen=True, slots=True)
class Restatement:
    """One row's metric restated in the span: its value before the span's first change and after its last."""

    table: str
    org: str
    stream: str
    bucket_start: datetime
    group: tuple[tuple[str, object], ...]
    """The row's grouping values, ``(field, value)`` in the stream's ``group_by`` order."""
    metric: str
    old: Decimal | None
    new: Decimal | None
    entries: int
    last_seen: datetime
    after_close: bool = False
    """Spend of a month that was closed before this restatement was seen."""

    @property
    def delta(self) -> Decimal:
        return (self.new or Decimal(0)) - (self.old or Decimal(0))

    @property
    def is_spend(self) -> bool:
        return self.table == _MONEY_TABLE and self.metric == _MONEY_METRIC

    def group_label(self, names: Names) -> str:
        """The group's values for people (IDs named where the directory or ``names`` knows them), in the stream's
        ``group_by`` order: ``Search, gpt-4o``; ``(total)`` for an ungrouped row."""
        parts = []
        for name, value in self.group:
            shown = "-" if value is None else str(value)
            if name == "project_id" and isinstance(value, str):
                shown = names.project(value)
            elif name == "user_id" and isinstance(value, str):
                shown = names.user(value)
            elif name == "api_key_id" and isinstance(value, str):
                shown = names.api_key(value)
            parts.append(shown)
        return ", ".join(parts) or "(total)"


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A closed month's figure (an org's total, or one project's: ``project_id`` set, ``level`` ``project``) and
    what the ledger holds for it now."""

    org: str
    month: date
    level: str
    project_id: str | None
    closed: Decimal
    current: Decimal
    currency: str | None
    closed_at: datetime
    cents: tuple[Decimal, Decimal, Decimal] | None = None
    """``(closed, current, adjustment)`` to the cent as :func:`adjustments` rounds them (see :meth:`in_cents`)."""

    @property
    def amount(self) -> Decimal:
        """The adjustment: present minus closed (negative when spend was restated down)."""
        return self.current - self.closed

    def apportioned_note(self) -> str:
        """``"; apportioned so the projects add up to the total: $426.12 alone"`` when the present figure printed
        (closed + the apportioned change) is not the present spend rounded alone, as the report's project table
        prints it; else ``""``. Every line that prints :meth:`in_cents` puts it after the change."""
        alone = self.current.quantize(CENT, rounding=ROUND_HALF_UP)
        if self.in_cents()[1] == alone:
            return ""
        return f"; apportioned so the projects add up to the total: {format_money(alone, self.currency)} alone"

    def in_cents(self) -> tuple[Decimal, Decimal, Decimal]:
        """``(closed, current, adjustment)`` as every output prints them, by a statement's rule: the closed figure
        half-up to the cent, as ``close`` printed it; an org's total likewise its present figure, and the adjustment
        their difference; a project's adjustment its exact change apportioned (largest remainder) to the org's, and
        its present figure closed + adjustment. So each line subtracts and the projects' adjustments add up to the
        org's: rounding each figure on its own printed "closed at $233.71, now $256.65 (+$22.95)", and adjustments
        adding up to a cent off the total's. (Without :attr:`cents`: closed and current half-up, their difference.)"""
        if self.cents is not None:
            return self.cents
        closed, current = (v.quantize(CENT, rounding=ROUND_HALF_UP) for v in (self.closed, self.current))
        return closed, current, current - closed


@dataclass(frozen=True, slots=True)
class Changes:
    since: int | None
    until: int | None
    restatements: tuple[Restatement, ...]
    adjustments: tuple[Adjustment, ...]

    @property
    def spend_delta(self) -> Decimal:
        return sum((r.delta for r in self.restatements if r.is_spend), Decimal(0))


def adjustments(
    store: BaseStore, *, org: str | None = None, months: tuple[date, date] | None = None, nonzero: bool = True
) -> list[Adjustment]:
    """Per closed month (starting in ``[first, last)`` of ``months``), org and project: closed against present.

    With ``nonzero`` (the default) only the figures that moved since the close; an org's total comes first.
    """
    lines = closed_lines(store, org)
    by_month: dict[tuple[str, date], list[ClosedLine]] = {}
    for line in lines:
        if months is None or months[0] <= line.month < months[1]:
            by_month.setdefault((line.org, line.month), []).append(line)
    out: list[Adjustment] = []
    for (o, month), recorded in sorted(by_month.items()):
        now = {project: (amount, cur) for _, project, amount, cur in month_totals(store, month, o)}
        closed_at = recorded[0].closed_at
        projects = {line.project_id: line for line in recorded if line.level == "project"}
        total = next(line for line in recorded if line.level == "org")
        present_total = sum((a for a, _ in now.values()), Decimal(0))
        rows = [Adjustment(o, month, "org", None, total.amount, present_total, total.currency, closed_at)]
        for project in sorted(set(projects) | set(now), key=lambda p: (p is None, p or "")):
            was = projects.get(project)
            amount, cur = now.get(project, (Decimal(0), None))
            closed = Decimal(0) if was is None else was.amount
            rows.append(
                Adjustment(
                    o, month, "project", project, closed, amount, cur or (was.currency if was else None), closed_at
                )
            )
        out.extend(a for a in _in_cents(rows) if not nonzero or a.amount != 0)
    return out


def _in_cents(rows: Sequence[Adjustment]) -> list[Adjustment]:
    """One org's month, its total first, with the cents each row prints (:meth:`Adjustment.in_cents`), before any
    row is left out: the projects' adjustments are apportioned to the total's change."""
    total, projects = rows[0], rows[1:]
    closed_total, current_total, change = total.in_cents()
    moved = [a for a in projects if a.amount != 0]
    shares = dict(zip((id(a) for a in moved), apportion([a.amount for a in moved], change), strict=True))
    out = [replace(total, cents=(closed_total, current_total, change))]
    for a in projects:
        closed = a.closed.quantize(CENT, rounding=ROUND_HALF_UP)
        share = shares.get(id(a), Decimal("0.00"))
        out.append(replace(a, cents=(closed, closed + share, share)))
    return out


def changes(
    store: BaseStore, *, since: TimeInput | None = None, until: TimeInput | None = None, org: str | None = None
) -> Changes:
    """The restatements seen after ``since`` and at or before ``until`` (both optional, the usual time forms), and
    every closed month's adjustments (of ``org``)."""
    lo, hi = _span(store, since, until, org)
    sql, params = _history.restatements_sql(since=lo, until=hi, org=org)
    groups = _history.stream_group_bys(store)
    closed = {(line.org, line.month): line for line in closed_lines(store, org) if line.level == "org"}
    out: list[Restatement] = []
    for table, o, stream, start, key, metric, old, new, entries, _first, last, last_seq in store.query(sql, params):
        values = json.loads(key)
        names = groups.get(stream, ())
        group = tuple(zip(names, values, strict=False)) if len(names) == len(values) else (("group_key", key),)
        close = closed.get((o, date(start.year, start.month, 1)))
        after = (
            table == _MONEY_TABLE and metric == _MONEY_METRIC and close is not None and _after(close, last, last_seq)
        )
        out.append(Restatement(table, o, stream, start, group, metric, _dec(old), _dec(new), int(entries), last, after))
    return Changes(lo, hi, tuple(out), tuple(adjustments(store, org=org)))


def _after(close: ClosedLine, seen: datetime, seq: int) -> bool:
    """Whether a log entry (seen at ``seen``, numbered ``seq``) came after ``close``: by the log's high-water mark the
    close recorded, else (a close recorded before it) by time."""
    return seq > close.closed_seq if close.closed_seq is not None else seen > close.closed_at


@contextmanager
def as_closed(store: BaseStore, close: ClosedLine, *, buckets: tuple[datetime, datetime]) -> Iterator[BaseStore]:
    """:func:`as_of` the moment of ``close``: the log's entries up to the high-water mark it recorded (a close
    recorded before the mark was: those seen up to its ``closed_at``), the buckets starting in ``buckets`` only."""
    when = timeutil.to_unix(close.closed_at, param="closed_at")
    with _history.as_of(store, when, _bucket_span(buckets), seq=close.closed_seq) as past:
        yield past


@dataclass(frozen=True, slots=True)
class Delta:
    """One row's metric changed by ``delta`` over the span (negative when it went down or the row vanished)."""

    table: str
    org: str
    stream: str
    bucket_start: datetime
    group_key: str
    metric: str
    delta: Decimal


def deltas(
    store: BaseStore,
    *,
    since: TimeInput | None = None,
    until: TimeInput | None = None,
    org: str | None = None,
    tables: Sequence[str] = (),
) -> list[Delta]:
    """Per row and metric, the sum of the log's changes seen after ``since`` and at or before ``until``: summed from
    nothing they give the store; from a consumer's last read, what to add to what it holds. Zero sums are left out."""
    lo, hi = _span(store, since, until, org)
    tables = _table_names(tables)
    clauses: list[str] = ["TRUE"]
    params: list[object] = []
    if lo is not None:
        clauses.append("seen_at > %s")
        params.append(to_datetime(lo))
    if hi is not None:
        clauses.append("seen_at <= %s")
        params.append(to_datetime(hi))
    if org is not None:
        clauses.append("org = %s")
        params.append(org)
    if tables:
        clauses.append(f"endpoint_table IN ({', '.join(['%s'] * len(tables))})")
        params.extend(tables)
    rows = store.query(
        "SELECT endpoint_table, org, stream, bucket_start, group_key, metric,"
        " SUM(COALESCE(new_value, 0) - COALESCE(old_value, 0)) FROM revisions"
        f" WHERE {' AND '.join(clauses)} GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6",
        params,
    )
    return [Delta(r[0], r[1], r[2], r[3], r[4], r[5], Decimal(r[6])) for r in rows if Decimal(r[6]) != 0]


def _span(
    store: object, since: TimeInput | None, until: TimeInput | None, org: object
) -> tuple[int | None, int | None]:
    """The arguments :func:`changes` and :func:`deltas` share, checked: ``since``/``until`` as Unix seconds, a span
    that can hold something (a reversed one answered "no changes"), ``org`` a name (an int leaked DuckDB's
    Conversion Error) the store holds (as ``--org``: one it does not hold answered "no changes")."""
    db = require_store(store)
    if since is not None:  # one after now answered "no changes" (a year mistyped), as if none had been seen
        timeutil.seen_since_unix(since, now=timeutil.now_unix(), param="since")
    lo = None if since is None else timeutil.since_unix(since, param="since")
    hi = None if until is None else timeutil.to_unix(until, param="until")
    if lo is not None and hi is not None and hi <= lo:
        raise ParameterError(
            "until", f"{timeutil.iso(hi)} is not after since ({timeutil.iso(lo)}), so no change can be seen in it"
        )
    if org is not None and (not isinstance(org, str) or not org.strip()):
        raise ParameterError("org", f"expected an org's name, got {org!r}")
    check_orgs(db, org if isinstance(org, str) else None, param="org")
    return lo, hi


def _table_names(value: object) -> tuple[str, ...]:
    """``deltas``' ``tables``: one string is one table (``"costs"`` was read as c, o, s, t, s), and each must be one
    of the store's tables (an unknown one answered "no changes")."""
    names = name_list("tables", value)
    known = [spec.name for spec in tables()]
    for name in names:
        if name not in known:
            raise ParameterError("tables", f"{name!r} is not a table of the store", allowed=known)
    return tuple(names)


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value)) if not isinstance(value, Decimal) else value
