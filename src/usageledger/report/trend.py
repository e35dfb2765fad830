"""A period's daily series, summarised for display: by day up to 90 days, by week up to two years, then by month.

A sparkline or chart of 5 years by day is 1,826 points no one can read; by month it is 60. The figures stay exact:
a week's or month's value is the ``Decimal`` sum of its days. Weeks start on Monday (ISO), months on the 1st; the
first and last point may cover fewer days when the period starts or ends inside a week or month, and each point is
labelled with the first day of the period it covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Final, Literal

from usageledger.report.queries import DailyValue, Period

__all__ = [
    "MONTHLY_AFTER_DAYS",
    "WEEKLY_AFTER_DAYS",
    "Grain",
    "Trend",
    "bucket_starts",
    "grain_for",
    "rebucket",
    "summarise",
]

Grain = Literal["day", "week", "month"]
WEEKLY_AFTER_DAYS: Final = 90
"""Periods longer than this many days are summarised by week."""
MONTHLY_AFTER_DAYS: Final = 731
"""Periods longer than this many days (two years) are summarised by month."""


@dataclass(frozen=True, slots=True)
class Trend:
    """A series at one grain: ``points`` are (first day covered, sum of its days), in order."""

    grain: Grain
    points: tuple[tuple[date, Decimal], ...]


def grain_for(days: int) -> Grain:
    """The grain a period of ``days`` days is shown at."""
    if days > MONTHLY_AFTER_DAYS:
        return "month"
    if days > WEEKLY_AFTER_DAYS:
        return "week"
    return "day"


def _bucket(day: date, grain: Grain) -> date:
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    return day


def summarise(daily: Sequence[tuple[date, Decimal]], grain: Grain | None = None) -> Trend:
    """``daily`` (one value per day, in order) summed by ``grain``, by default the one :func:`grain_for` picks."""
    chosen = grain or grain_for(len(daily))
    points: list[tuple[date, Decimal]] = []
    current: date | None = None
    for day, value in daily:
        key = _bucket(day, chosen)
        if key == current:
            first, total = points[-1]
            points[-1] = (first, total + value)
        else:
            points.append((day, value))
            current = key
    return Trend(chosen, tuple(points))


def bucket_starts(period: Period, grain: Grain | None = None) -> list[date]:
    """The first day of each point a chart of ``period`` shows: every day, or each week's or month's first day in
    the period (the period's first day begins the first point)."""
    chosen = grain or grain_for(period.days)
    return [p for p, _ in summarise([(d, Decimal(0)) for d in period.each_day()], chosen).points]


def rebucket(values: Sequence[DailyValue], period: Period, grain: Grain | None = None) -> tuple[DailyValue, ...]:
    """Per-day values of several keys summed into the points :func:`bucket_starts` gives, key by key."""
    starts = bucket_starts(period, grain)
    chosen = grain or grain_for(period.days)
    first = {_bucket(s, chosen): s for s in starts}
    sums: dict[tuple[date, str | None], Decimal] = {}
    for v in values:
        key = (first[_bucket(v.day, chosen)], v.key)
        sums[key] = sums.get(key, Decimal(0)) + v.value
    return tuple(DailyValue(day, key, value) for (day, key), value in sums.items())
