"""Showback statements: what each team or project owes for a month, adding up to the month's costs to the cent.

The month's costs are the store's ``costs_daily`` rows (each org's primary daily costs stream) of that calendar month
(UTC). Each row belongs to an owner:

* ``--by project``: its project; a row with no project is *shared*;
* ``--by team``: its project's team (:func:`usageledger.report.teams.project_teams`: the config's ``[teams]``, else
  the directory's groups); a row with no project, or whose project is in no team, is *shared*.

Shared spend is allocated by a stated rule (:data:`ALLOCATIONS`):

* ``proportional`` (the default): to each owner in proportion to its direct spend (evenly if no owner has any);
* ``even``: the same part to each owner;
* ``none``: not allocated; it is a statement of its own, ``shared (unallocated)``.

Rounding happens once, at the end, by largest remainder: the month's exact total is rounded half-up to the cent (the
invoice's figure), the statements' exact totals are floored to the cent and the cents left go to the largest
remainders, then, inside each statement, its lines are apportioned to its rounded total the same way. So the
statements add up to the month's costs to the cent, and each statement's lines add up to its total, by construction.

With a rate table (:mod:`usageledger.report.fx`) every day's amounts are converted at that day's rate before
anything is summed or rounded.

A closed month (``usageledger close``, :mod:`usageledger.store.closes`): :func:`month_statements` computes each org's
rows from the ledger as it stood when that org closed the month (:func:`usageledger.report.history.as_closed`: the
revision log up to the high-water mark the close recorded), so every line is the closed figure and the total is the
closed month's total; what the ledger holds now is set apart, per statement, as an adjustment (present minus closed).
An org that has not closed the month contributes its present rows (and no adjustment).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Final, Literal, TypedDict, Unpack, get_args

from usageledger._amounts import CENT, apportion
from usageledger.errors import ParameterError
from usageledger.report.fx import BASE_CURRENCY, FxRates
from usageledger.report.history import as_closed
from usageledger.report.queries import COSTS_VIEW, Database, day_start, line_item_model, utc_day
from usageledger.store import BaseStore, require_store
from usageledger.store._base import check_orgs
from usageledger.store.closes import closed_lines, month_bounds
from usageledger.timeutil import month_start, next_month

__all__ = [
    "ALLOCATIONS",
    "SHARED",
    "Allocation",
    "MonthStatements",
    "Statement",
    "StatementAdjustment",
    "StatementBy",
    "StatementLine",
    "StatementOptions",
    "apportion",
    "build_statements",
    "month_statements",
]

Allocation = Literal["proportional", "even", "none"]
StatementBy = Literal["team", "project"]
ALLOCATIONS: Final[tuple[Allocation, ...]] = ("proportional", "even", "none")
RULES: Final[Mapping[Allocation, str]] = {
    "proportional": "allocated in proportion to each statement's direct spend",
    "even": "allocated evenly across the statements",
    "none": "not allocated: it is its own statement",
}
SHARED: Final = "shared (unallocated)"
"""The owner of the shared spend with ``--allocate none`` (or when there is no owner to allocate it to)."""


class StatementOptions(TypedDict, total=False):
    """How :func:`build_statements` and :func:`month_statements` draw up a month's statements (each optional)."""

    by: StatementBy
    """An owner is a ``team`` (the default) or a ``project``."""
    allocation: Allocation
    """The rule that splits the shared spend (:data:`ALLOCATIONS`; default ``proportional``)."""
    teams: Mapping[str, str] | None
    """Project IDs to teams, for ``by="team"`` (default: none, so all spend is shared)."""
    org: str | None
    """One org's spend only (default: every org's)."""
    fx: FxRates | None
    """A rate table to convert every day's amounts with (default: none, USD)."""
    today: date | None
    """The day that decides whether the month is over (default: today, UTC)."""


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One line of a statement: its direct spend on one model and line item (``shared``: its part of the shared
    spend, model and line item ``None``)."""

    model: str | None
    line_item: str | None
    amount: Decimal
    """Rounded to the cent; the lines of a statement add up to its total."""
    exact: Decimal
    shared: bool = False


@dataclass(frozen=True, slots=True)
class Statement:
    owner: str
    """The team, the project ID, or :data:`SHARED`."""
    projects: tuple[str | None, ...]
    """The projects whose direct spend is on this statement (``None``: spend with no project)."""
    lines: tuple[StatementLine, ...]
    total: Decimal
    shared_fraction: Decimal | None
    """The fraction of the shared spend allocated to it (``None`` for ``--allocate none``)."""
    usd_total: Decimal | None = None
    """The same statement in USD, as billed (its direct spend and the same fraction of the shared spend, before
    conversion), apportioned to :attr:`MonthStatements.usd_total`; equal to ``total`` when not converted."""

    @property
    def direct(self) -> Decimal:
        return sum((line.amount for line in self.lines if not line.shared), Decimal("0.00"))

    @property
    def shared(self) -> Decimal:
        return sum((line.amount for line in self.lines if line.shared), Decimal("0.00"))


@dataclass(frozen=True, slots=True)
class StatementAdjustment:
    """A closed month's statement set against the present: the closed figure (exact, rounded half-up to the cent
    as ``close`` records and prints it: not the statement's largest-remainder total), and ``present`` = closed +
    the statement's change since, rounded once (see :func:`month_statements`)."""

    owner: str
    closed: Decimal
    present: Decimal

    @property
    def amount(self) -> Decimal:
        return self.present - self.closed


@dataclass(frozen=True, slots=True)
class MonthStatements:
    month: date
    by: StatementBy
    allocation: Allocation
    currency: str
    statements: tuple[Statement, ...]
    total: Decimal
    """The month's costs rounded to the cent (half-up): what the statements add up to."""
    exact_total: Decimal
    shared_total: Decimal
    """The shared spend, rounded to the cent."""
    shared_projects: tuple[str | None, ...]
    """The projects whose spend was shared (``None``: spend with no project)."""
    rates: tuple[tuple[date, Decimal], ...]
    """The day rates used (empty in USD)."""
    usd_total: Decimal
    """The month's costs in USD, as billed, rounded half-up to the cent: what the statements' ``usd_total`` add up
    to (``total`` itself when not converted), so a converted statement keeps the invoice's figure beside its own."""
    complete: bool
    """``False`` when the month is not over yet (its statement covers the days so far)."""
    closes: tuple[tuple[str, datetime], ...] = ()
    """``(org, closed_at)`` of each org whose closed figures the statements use (empty: an open month)."""
    open_orgs: tuple[str, ...] = ()
    """Orgs with spend in a closed month that have not closed it themselves: their present figures are used."""
    closed_total: Decimal | None = None
    """The closed orgs' month total recorded by ``close`` (in USD), for a closed month."""
    closed_exact: Decimal | None = None
    """The same orgs' month total as read from the ledger as of their close (in USD): equal to ``closed_total``."""
    present_total: Decimal | None = None
    """The month's costs as the ledger holds them now, to the cent, for a closed month."""
    adjustments: tuple[StatementAdjustment, ...] = ()
    """Per statement, present minus closed (a closed month only; zero ones included)."""

    @property
    def first_day(self) -> date:
        return self.month

    @property
    def until(self) -> date:
        return next_month(self.month)

    @property
    def adds_up(self) -> bool:
        return sum((s.total for s in self.statements), Decimal(0)) == self.total

    @property
    def rule(self) -> str:
        return RULES[self.allocation]

    @property
    def closed(self) -> bool:
        return bool(self.closes)

    @property
    def matches_close(self) -> bool:
        """The rows read as of the close add up to the month total ``close`` recorded (USD, exact)."""
        return self.closed_total is not None and self.closed_exact == self.closed_total

    @property
    def adjustment_total(self) -> Decimal:
        return sum((a.amount for a in self.adjustments), Decimal("0.00"))


def _month_rows(
    db: Database, first: date, until: date, org: str | None
) -> list[tuple[date, str | None, str | None, Decimal]]:
    sql = (
        f"SELECT bucket_start, project_id, line_item, SUM(amount_value) FROM {COSTS_VIEW}"
        " WHERE bucket_start >= %s AND bucket_start < %s"
    )
    params: list[object] = [day_start(first), day_start(until)]
    if org is not None:
        sql += " AND org = %s"
        params.append(org)
    # Ordered, so the projects a statement lists come in the same order from DuckDB and PostgreSQL.
    sql += " GROUP BY bucket_start, project_id, line_item"
    sql += " ORDER BY bucket_start, project_id NULLS FIRST, line_item NULLS FIRST"
    return [(utc_day(d), p, li, Decimal(a or 0)) for d, p, li, a in db.query(sql, params)]


def build_statements(db: Database, month: date, **options: Unpack[StatementOptions]) -> MonthStatements:
    """The month's statements (see the module's docstring and :class:`StatementOptions`)."""
    _check_options(options)
    first = month_start(month, today=options.get("today"))
    check_orgs(db, options.get("org"), param="org")  # an org the store does not hold had statements of $0.00
    rows = _month_rows(db, first, next_month(first), options.get("org"))
    return _from_rows(rows, first, options)


def _check_options(options: Mapping[str, object]) -> None:
    """Each option known and of its kind: an unknown one (``allocate=``, the flag's word) was ignored, ``by="owner"``
    drew statements by no rule, and ``teams=["search"]`` or ``today="2026-12-04"`` failed deep inside."""
    known = tuple(StatementOptions.__annotations__)
    for name in options:
        if name not in known:
            raise ParameterError(name, "is not an option of the statements", allowed=known)
    by = options.get("by", "team")
    if by not in get_args(StatementBy):
        raise ParameterError("by", f"unknown owner {by!r}", allowed=get_args(StatementBy))
    teams = options.get("teams")
    if teams is not None and not isinstance(teams, Mapping):
        raise ParameterError("teams", f"expected a mapping of project IDs to teams, got {type(teams).__name__}")
    today = options.get("today")
    if today is not None and (isinstance(today, datetime) or not isinstance(today, date)):
        raise ParameterError("today", f"expected a date, got {type(today).__name__}")


def _from_rows(
    rows: Sequence[tuple[date, str | None, str | None, Decimal]], first: date, options: StatementOptions
) -> MonthStatements:
    """The statements of ``rows`` (already limited to ``options``' org); the options' defaults are set here."""
    by = options.get("by", "team")
    allocation = options.get("allocation", "proportional")
    fx = options.get("fx")
    today = options.get("today")
    if allocation not in ALLOCATIONS:
        raise ParameterError("--allocate", f"unknown rule {allocation!r}", allowed=ALLOCATIONS)
    until = next_month(first)
    if fx is not None:
        fx.require(day for day, _, _, _ in rows)
    team_of = options.get("teams") or {}
    direct: dict[str, dict[tuple[str | None, str | None], Decimal]] = {}
    members: dict[str, list[str | None]] = {}
    shared_exact = Decimal(0)
    shared_projects: list[str | None] = []
    total_exact = Decimal(0)
    usd_direct: dict[str, Decimal] = {}
    usd_shared = Decimal(0)
    usd_exact = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = 50
        for day, project, line_item, amount in rows:
            value = fx.convert(amount, day) if fx is not None else amount
            total_exact += value
            usd_exact += amount
            owner = project if by == "project" else (team_of.get(project) if project is not None else None)
            if owner is None:
                shared_exact += value
                usd_shared += amount
                if project not in shared_projects:
                    shared_projects.append(project)
                continue
            lines = direct.setdefault(owner, {})
            key = (line_item_model(line_item), line_item)
            lines[key] = lines.get(key, Decimal(0)) + value
            usd_direct[owner] = usd_direct.get(owner, Decimal(0)) + amount
            if project not in members.setdefault(owner, []):
                members[owner].append(project)
        owners = sorted(direct)
        direct_totals = {o: sum(direct[o].values(), Decimal(0)) for o in owners}
        fractions = _fractions(owners, direct_totals, allocation)
        allocated = _allocate(shared_exact, fractions)
        unallocated = shared_exact if not fractions else Decimal(0)
        exact_totals = [direct_totals[o] + allocated.get(o, Decimal(0)) for o in owners]
        # the same statements in USD: each owner's direct spend and the same fraction of the shared spend
        usd_allocated = _allocate(usd_shared, fractions)
        usd_totals = [usd_direct[o] + usd_allocated.get(o, Decimal(0)) for o in owners]
        owned: list[tuple[str, list[StatementLine]]] = []
        for o in owners:
            lines_o = [StatementLine(m, li, Decimal(0), v) for (m, li), v in sorted(direct[o].items(), key=_line_order)]
            if o in allocated:
                lines_o.append(StatementLine(None, None, Decimal(0), allocated[o], shared=True))
            owned.append((o, lines_o))
        if unallocated != 0 or (not owners and shared_projects):
            exact_totals.append(unallocated)
            usd_totals.append(usd_shared if not fractions else Decimal(0))
            owned.append((SHARED, [StatementLine(None, None, Decimal(0), unallocated, shared=True)]))
    total = total_exact.quantize(CENT, rounding=ROUND_HALF_UP)
    rounded_totals = apportion(exact_totals, total)
    usd_total = usd_exact.quantize(CENT, rounding=ROUND_HALF_UP)
    usd_rounded = rounded_totals if fx is None else apportion(usd_totals, usd_total)
    statements: list[Statement] = []
    for (owner, lines_o), statement_total, statement_usd in zip(owned, rounded_totals, usd_rounded, strict=True):
        amounts = apportion([line.exact for line in lines_o], statement_total)
        rounded = tuple(
            StatementLine(line.model, line.line_item, a, line.exact, line.shared)
            for line, a in zip(lines_o, amounts, strict=True)
        )
        statements.append(
            Statement(
                owner,
                tuple(members.get(owner, shared_projects if owner == SHARED else [])),
                rounded,
                statement_total,
                fractions.get(owner) if fractions else None,
                statement_usd,
            )
        )
    statements.sort(key=lambda s: (s.owner == SHARED, -s.total, s.owner))
    used = tuple(fx.used(day for day, _, _, _ in rows)) if fx is not None else ()
    now = today or datetime.now(UTC).date()
    return MonthStatements(
        month=first,
        by=by,
        allocation=allocation,
        currency=fx.currency if fx is not None else BASE_CURRENCY,
        statements=tuple(statements),
        total=total,
        exact_total=total_exact,
        shared_total=sum((s.shared for s in statements), Decimal("0.00")),
        shared_projects=tuple(shared_projects),
        rates=used,
        usd_total=usd_total,
        complete=now >= until,
    )


def month_statements(store: BaseStore, month: date, **options: Unpack[StatementOptions]) -> MonthStatements:
    """:func:`build_statements`, but for a month closed by the org(s) in question (``org``, else every org with
    spend in it or a close of it): the figures closed, and the later adjustments per statement (module docstring)."""
    require_store(store)
    _check_options(options)
    first = month_start(month, today=options.get("today"))
    until = next_month(first)
    org = options.get("org")
    present = build_statements(store, first, **options)
    recorded = [line for line in closed_lines(store, org) if line.month == first and line.level == "org"]
    if not recorded:
        return present
    closes = {line.org: line.closed_at for line in recorded}
    rows: list[tuple[date, str | None, str | None, Decimal]] = []
    closed_exact = Decimal(0)
    # One reading of the log per close: the entries up to the high-water mark it recorded (by time: an older close).
    by_mark = {line.mark: line for line in recorded}
    for mark in sorted(by_mark, key=lambda m: (m[1], m[0] is not None, m[0] or 0)):
        with as_closed(store, by_mark[mark], buckets=month_bounds(first)) as past:
            for o in sorted(line.org for line in recorded if line.mark == mark):
                got = _month_rows(past, first, until, o)
                closed_exact += sum((amount for _, _, _, amount in got), Decimal(0))
                rows += got
    orgs_now = store.query(
        f"SELECT DISTINCT org FROM {COSTS_VIEW} WHERE bucket_start >= %s AND bucket_start < %s"
        + ("" if org is None else " AND org = %s")
        + " ORDER BY org",
        [*month_bounds(first), *([] if org is None else [org])],
    )
    open_orgs = tuple(o for (o,) in orgs_now if o not in closes)
    for o in open_orgs:
        rows += _month_rows(store, first, until, o)
    # One order whichever org a row came from, so the projects a statement lists come in the query's order.
    rows.sort(key=lambda r: (r[0], r[1] is not None, r[1] or "", r[2] is not None, r[2] or ""))
    closed = _from_rows(rows, first, options)
    return replace(
        closed,
        closes=tuple(sorted(closes.items())),
        open_orgs=open_orgs,
        closed_total=sum((line.amount for line in recorded), Decimal(0)),
        closed_exact=closed_exact,
        present_total=present.total,
        adjustments=_adjustments(closed, present),
    )


def _adjustments(closed: MonthStatements, present: MonthStatements) -> tuple[StatementAdjustment, ...]:
    """Per statement, present minus closed, rounded once: each statement's exact change, apportioned (largest
    remainder) to the change of the month's rounded total. Subtracting two apportioned totals instead gave a
    statement whose spend did not change an adjustment of a cent, moved there by the other statements' rounding;
    a statement with no change now has none, and closed + adjustments is the present total to the cent."""
    was = {s.owner: s for s in closed.statements}
    now = {s.owner: s for s in present.statements}
    owners = [*was, *(o for o in now if o not in was)]

    def exact(statement: Statement | None) -> Decimal:
        return Decimal(0) if statement is None else sum((line.exact for line in statement.lines), Decimal(0))

    with localcontext() as ctx:
        ctx.prec = 50
        closed_exact = {o: exact(was.get(o)) for o in owners}
        changes = {o: exact(now.get(o)) - closed_exact[o] for o in owners}
    moved = [o for o in owners if changes[o] != 0]
    amounts = dict(zip(moved, apportion([changes[o] for o in moved], present.total - closed.total), strict=True))
    adjustments = []
    for o in owners:
        # The closed figure as `close` recorded and printed it (the exact figure, half-up to the cent), not the
        # statement's share of the month by largest remainder: a project's $576.604 showed as $576.61 closed here
        # where `close` said $576.60. (So the closed column, like `close`'s project lines, may differ from the
        # month's total by the cents rounding moved; the adjustments add up to its change.)
        before = closed_exact[o].quantize(CENT, rounding=ROUND_HALF_UP)
        adjustments.append(StatementAdjustment(o, before, before + amounts.get(o, Decimal("0.00"))))
    return tuple(adjustments)


def _line_order(item: tuple[tuple[str | None, str | None], Decimal]) -> tuple[str, str]:
    (model, line_item), _ = item
    return (model or "~", line_item or "")


def _fractions(owners: Sequence[str], direct: Mapping[str, Decimal], allocation: Allocation) -> dict[str, Decimal]:
    """Each owner's fraction of the shared spend; empty when nothing is allocated (``none``, or no owner)."""
    if allocation == "none" or not owners:
        return {}
    total = sum(direct.values(), Decimal(0))
    if allocation == "even" or total <= 0:
        return {o: Decimal(1) / len(owners) for o in owners}
    return {o: direct[o] / total for o in owners}


def _allocate(shared: Decimal, fractions: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """``shared`` split by ``fractions``, exact: the last owner takes what is left, so the parts add up to it."""
    if not fractions:
        return {}
    names = list(fractions)
    parts = {o: shared * fractions[o] for o in names[:-1]}
    parts[names[-1]] = shared - sum(parts.values(), Decimal(0))
    return parts
