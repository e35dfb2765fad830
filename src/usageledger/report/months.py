"""Which days of a month the store's costs cover: one rule for every command that takes a month (``close``,
``statement``, ``forecast --month``).

The costs start on the first day ``costs_daily`` holds (:func:`first_cost_day`: what ``forecast`` calls "the store's
costs start on ...") and reach the day the org's primary daily costs stream is synced up to, its watermark
(:func:`synced_until`). :func:`check_month` refuses a month that starts after today or ends before the costs start
(:func:`check_covered`, the latter alone); :func:`missing_days` says which days of a month are outside that span, per
org, for ``close`` to refuse (or, told so, to warn about) and ``statement`` to warn about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from usageledger.errors import ParameterError
from usageledger.report.queries import Database, costs_synced_until, first_cost_days
from usageledger.timeutil import month_start, next_month, utc_moment

__all__ = [
    "Gap",
    "check_covered",
    "check_month",
    "first_cost_day",
    "gaps_text",
    "missing_days",
    "month_span",
    "synced_until",
]


def month_span(month: date) -> str:
    """``2026-10 (2026-10-01 to 2026-10-31 UTC)``: a month as ``statement`` and ``close`` say it once, its days and
    that they are UTC days, as ``report``'s period says its own (``2026-10-01 to 2026-10-30 UTC (30 days)``); a
    reader in another zone would otherwise take the month for their own."""
    last = next_month(month) - timedelta(days=1)
    return f"{month:%Y-%m} ({month.isoformat()} to {last.isoformat()} UTC)"


def first_cost_day(db: Database, org: str | None = None, project: str | None = None) -> date | None:
    """The first day of the store's daily costs (of ``org``, of ``project``); ``None`` when it holds none."""
    return min(first_cost_days(db, org, project).values(), default=None)


def synced_until(db: Database, org: str) -> date | None:
    """The day the org's primary daily costs stream is synced up to (exclusive: the days before it are in the store);
    ``None`` when it has no watermark yet."""
    return costs_synced_until(db).get(org)


def check_month(db: Database, month: date, *, today: date, org: str | None = None, param: str = "MONTH") -> None:
    """Refuse a month that has not started (after ``today``) or that ends before the store's costs (of ``org``)
    start, in a :class:`ParameterError` naming ``param``; a store without costs passes (its commands say so)."""
    month = month_start(month, param=param)
    if isinstance(today, datetime):  # a datetime is a date too, and comparing it with one is a TypeError
        today = utc_moment(today, param="today").date()
    if month > today:
        raise ParameterError(
            param,
            f"{month:%Y-%m} has not started yet (today is {today.isoformat()}): give this month or an earlier one",
        )
    check_covered(db, month, org=org, param=param)


def check_covered(db: Database, month: date, *, org: str | None = None, param: str = "MONTH") -> None:
    """Refuse a month that ends before the store's costs (of ``org``) start, in a :class:`ParameterError` naming
    ``param`` (``forecast --month``, which may name next month, checks only this)."""
    month = month_start(month, param=param)
    first = first_cost_day(db, org)
    if first is not None and next_month(month) <= first:
        raise ParameterError(
            param,
            f"{month:%Y-%m} ends before the store's costs start on {first.isoformat()}: give {first:%Y-%m} or a later "
            f"month, or sync that month first (usageledger sync --since {month.isoformat()})",
        )


@dataclass(frozen=True, slots=True)
class Gap:
    """Days of a month (``first`` to ``last``, inclusive) an org's costs in the store do not cover, and why."""

    org: str
    first: date
    last: date
    reason: str

    def describe(self) -> str:
        days = self.first.isoformat() if self.first == self.last else f"{self.first} to {self.last}"
        return f"{days} for {self.org} ({self.reason})"


def missing_days(db: Database, month: date, orgs: Sequence[str], *, today: date) -> list[Gap]:
    """Per org, the days of ``month`` up to ``today`` (exclusive) before its costs start or after its costs stream is
    synced up to: what a close or a statement of the month would leave out."""
    end = min(next_month(month), today)
    gaps: list[Gap] = []
    for org in orgs:
        first = first_cost_day(db, org)
        if first is None:
            gaps.append(Gap(org, month, end - timedelta(days=1), "the store holds no costs of it"))
            continue
        if first > month:
            gaps.append(Gap(org, month, min(first, end) - timedelta(days=1), f"its costs start on {first}"))
        until = synced_until(db, org)
        if until is not None and until < end:
            start = max(until, month)
            synced = until - timedelta(days=1)
            gaps.append(Gap(org, start, end - timedelta(days=1), f"its costs are synced through {synced}"))
    return [g for g in gaps if g.first <= g.last]


def gaps_text(gaps: Sequence[Gap]) -> str:
    """The gaps in one line: ``2026-10-01 to 2026-10-03 for default (its costs start on 2026-10-04)``."""
    return "; ".join(g.describe() for g in gaps)
