"""The report's period rule, one place for ``report``, ``reconcile`` and the dashboard's API.

Whole UTC days: the end is exclusive (a datetime inside a day includes that day) and at the latest the end of today
(a later one ends with today: the days to come hold nothing); a start of ``30d`` and the default are both the 30 days
ending today.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final

from usageledger.errors import ParameterError
from usageledger.report.queries import Period, day_start
from usageledger.timeutil import since_unix, span_unit, to_unix, utc_moment

__all__ = ["DEFAULT_DAYS", "report_day", "report_period"]

DEFAULT_DAYS: Final = 30
_BELOW_AN_HOUR: Final = frozenset({"m", "s", "ms"})
"""Span units a period refuses: ``1m`` is one minute (``m`` is minutes wherever a span is read), so a report
``--since 1m``, meant as a month, covered today alone and said nothing."""


def report_day(value: str, *, now: int, param: str, end: bool, since: bool = False) -> date:
    """The UTC day ``value`` names; with ``since``, a span of days follows the period rule (:func:`since_unix`).
    An ``end`` inside the last day a date holds (9999-12-31) is that day: the day after it is no date, and such an
    end is long after today, which ends every period."""
    ts = since_unix(value, now=now, param=param) if since else to_unix(value, now=now, param=param)
    moment = datetime.fromtimestamp(ts, UTC)
    day = moment.date()
    if end and moment != day_start(day) and day < date.max:
        day += timedelta(days=1)
    return day


def report_period(
    since: str | None,
    until: str | None,
    *,
    now: datetime,
    since_param: str = "--since",
    until_param: str = "--until",
) -> Period:
    """The period ``since``/``until`` name (either may be left out), judged at ``now``; a bad value is a
    :class:`~usageledger.errors.ParameterError` naming ``since_param`` or ``until_param``."""
    now = utc_moment(now)  # a naive one is UTC, not the machine's zone
    ts = int(now.timestamp())
    tomorrow = now.date() + timedelta(days=1)
    asked = report_day(until, now=ts, param=until_param, end=True) if until else tomorrow
    # Days to come hold no spend: an end after today ends with today (`--until 2027-01-01` for "this month"), so the
    # period and the one it is compared with are the days that can hold spend, not "the previous 1,157 days".
    until_day = min(asked, tomorrow)
    since_day = (
        report_day(since, now=ts, param=since_param, end=False, since=True)
        if since
        else until_day - timedelta(days=DEFAULT_DAYS)
    )
    # after the span is read, so a zero (`0s`) is refused as a zero, naming the least span
    if since and span_unit(since) in _BELOW_AN_HOUR:  # `--since 1m` meant a month and got today alone, silently
        raise ParameterError(
            since_param,
            f"{since.strip()} is a span of minutes or seconds, and a report counts whole UTC days, so it would be"
            f" today alone; for a month give 30d or its first day ({now.date().replace(day=1)}), for today 1d",
        )
    if until_day <= since_day:  # named as the caller spells them: --until for the CLI, until for the web and MCP
        if until is None or since_day < asked:  # the start is at or after the end of today
            raise ParameterError(
                since_param,
                f"the period is empty: {since} is after today ({now.date()}), and days to come hold no spend yet;"
                " pass an earlier start",
            )
        raise ParameterError(
            until_param,
            f"the period is empty: {until} is not after {since_param} {since}; pass an end after the start",
        )
    return Period(since_day, until_day)
