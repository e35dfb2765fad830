"""The prepaid credit balance: top-ups (``usageledger credit add``) minus the costs since the first top-up, and the
day it runs out at the forecast rate (:func:`usageledger.report.forecast.credit_runway`).

Rule: costs count from the UTC day of the earliest top-up on (of the org, or of every org without one); the balance
is the top-ups' sum minus those costs, as synced (a day still open counts what it holds so far). The runway starts
from the balance at the forecast's *as of* day (:func:`usageledger.report.forecasting.data_as_of`) and adds the
forecast day by day: the first day the balance would go below zero. ``None`` when it lasts beyond a year or the
store holds under 7 days of costs to forecast from (``runway_note`` says which). A balance already below zero
has run out: its runway is the day it went below zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from usageledger.errors import UsageLedgerError
from usageledger.report.forecast import CREDIT_HORIZON_DAYS, HISTORY_DAYS, credit_runway, fill_days
from usageledger.report.forecasting import daily_spend, data_as_of
from usageledger.report.queries import COSTS_VIEW, Database, Scope, day_start, utc_day
from usageledger.store._base import check_orgs
from usageledger.store.credit import TopUp, list_topups
from usageledger.timeutil import utc_moment

__all__ = ["CreditBalance", "credit_balance"]


@dataclass(frozen=True, slots=True)
class CreditBalance:
    org: str | None
    topups: Decimal
    """The sum of the top-ups."""
    count: int
    first_day: date
    """The day of the earliest top-up: costs count from it on."""
    spent: Decimal
    """Costs from ``first_day`` on, every synced bucket (today's so far, when synced)."""
    as_of: date | None
    """The day the runway's forecast starts from (:func:`usageledger.report.forecasting.data_as_of`: the last day
    the synced costs cover in full, yesterday after a sync today); ``spent`` may reach past it, see
    ``spent_through``."""
    runway: date | None
    """The first day the balance would be below zero at the forecast rate; ``None``: see ``runway_note``."""
    runway_note: str
    gone_by: bool = False
    """The runway is a day before today's: the store's costs end before it (not synced since), and at their rate the
    balance has run out already."""
    spent_through: date | None = None
    """The UTC day of the last costs ``spent`` counts (today's, still open, after a sync today: a day past
    ``as_of``); ``None`` when no costs are synced from ``first_day`` on."""

    @property
    def balance(self) -> Decimal:
        return self.topups - self.spent

    @property
    def outlook(self) -> str:
        """The runway in words: ``runs out on DAY``, ``ran out on DAY`` for a balance already below zero (a day
        gone by, which "runs out" read as still to come), ``may have run out on DAY`` for a runway before today (the
        store not synced since: `credit list` on 3 December said "runs out on 2026-11-23"), else ``runway_note``."""
        if self.runway is None or self.balance < 0 or self.gone_by:
            return self.runway_note
        return f"runs out on {self.runway}"


def _spent(db: Database, first: date, last: date | None, org: str | None) -> tuple[Decimal, date | None]:
    """The costs from ``first`` through ``last`` (``None``: every synced bucket), and the day of the last of them."""
    sql = f"SELECT SUM(amount_value), MAX(bucket_start) FROM {COSTS_VIEW} WHERE bucket_start >= %s"
    params: list[object] = [day_start(first)]
    if last is not None:
        sql += " AND bucket_start < %s"
        params.append(day_start(last + timedelta(days=1)))
    if org is not None:
        sql += " AND org = %s"
        params.append(org)
    value, through = db.query(sql, params)[0]
    return (Decimal(0), None) if value is None else (Decimal(value), utc_day(through))


def _ran_out(topups: list[TopUp], series: list[tuple[date, Decimal]], first: date, as_of: date) -> date:
    """The first day from ``first`` through ``as_of`` on which the top-ups so far minus the spend so far went below
    zero (the balance is below zero at ``as_of``)."""
    spent = Decimal(0)
    for day, amount in series:
        if day < first:
            continue
        spent += amount
        if sum((t.amount for t in topups if t.day <= day), Decimal(0)) - spent < 0:
            return day
    return as_of


def credit_balance(db: Database, *, now: datetime, org: str | None = None) -> CreditBalance | None:
    """The balance and its runway; ``None`` when no top-up is recorded (for ``org``) on or before ``now``'s UTC day.

    A top-up dated after that day is not bought yet and counts from its day on, never in an earlier balance."""
    check_orgs(db, org, param="org")  # an org the store does not hold read as one with no top-up
    today = utc_moment(now).date()  # a naive now is UTC, not the machine's zone
    topups = [t for t in list_topups(db, org=org) if t.day <= today]
    if not topups:
        return None
    total = sum((t.amount for t in topups), Decimal(0))
    first = min(t.day for t in topups)
    spent, through = _spent(db, first, None, org)
    as_of = data_as_of(db, now=now, org=org)
    runway: date | None = None
    if as_of is None:
        note = "no costs synced yet to forecast from"
    else:
        left = total - _spent(db, first, as_of, org)[0] if as_of >= first else total
        first_data = db.query(
            f"SELECT MIN(bucket_start) FROM {COSTS_VIEW}" + (" WHERE org = %s" if org is not None else ""),
            [org] if org is not None else [],
        )[0][0]
        start = max(utc_day(first_data), min(first, as_of - timedelta(days=HISTORY_DAYS - 1)))
        series = fill_days(daily_spend(db, start, as_of, Scope(org=org)).get(None, []), start, as_of)
        if left < 0:
            runway = _ran_out(topups, series, first, as_of)
            note = f"ran out on {runway}"
            return CreditBalance(org, total, len(topups), first, spent, as_of, runway, note, spent_through=through)
        try:
            runway = credit_runway(series, left, as_of=max(as_of, first - timedelta(days=1)))
        except UsageLedgerError as exc:
            note = str(exc)
        else:
            note = (
                f"at the forecast rate from {as_of}"
                if runway is not None
                else f"lasts beyond {CREDIT_HORIZON_DAYS} days at the forecast rate"
            )
            if runway is not None and runway < today:
                note = (
                    f"may have run out on {runway}, at the forecast rate from {as_of}, the store's last costs:"
                    " run `usageledger sync` for today's balance"
                )
                return CreditBalance(
                    org, total, len(topups), first, spent, as_of, runway, note, gone_by=True, spent_through=through
                )
    return CreditBalance(org, total, len(topups), first, spent, as_of, runway, note, spent_through=through)
