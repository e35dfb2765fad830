"""The report's period rule, one place for ``report``, ``reconcile`` and the dashboard's API.

Whole UTC days: the end is exclusive (a datetime inside a day includes that day) and at the latest the end of today
(a later one is refused: the days to come hold nothing); a start of ``30d`` and the default are both the 30 days
ending today.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final

from usageledger.errors import ParameterError
from usageledger.report.queries import Period
from usageledger.timeutil import since_unix, to_unix

__all__ = ["DEFAULT_DAYS", "report_day", "report_period"]

DEFAULT_DAYS: Final = 30


def report_day(value: str, *, now: int, param: str, end: bool, since: bool = False) -> date:
    """The UTC day ``value`` names; with ``since``, a span of days follows the period rule (:func:`since_unix`)."""
    ts = since_unix(value, now=now, param=param) if since else to_unix(value, now=now, param=param)
    moment = datetime.fromtimestamp(ts, UTC)
    day = moment.date()
    if end and moment != datetime(day.year, day.month, day.day, tzinfo=UTC):
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
    ts = int(now.timestamp())
    tomorrow = now.astimezone(UTC).date() + timedelta(days=1)
    until_day = report_day(until, now=ts, param=until_param, end=True) if until else tomorrow
    if until_day > tomorrow:
        # Days to come hold no spend: `--until 2030-01-01` compared a few weeks with "the previous 1,157 days".
        raise ParameterError(
            until_param,
            f"{until} is after today ({tomorrow - timedelta(days=1)}), and days to come hold no spend yet; leave it "
            f"out to end with today, or pass an end up to {tomorrow} (exclusive)",
        )
    since_day = (
        report_day(since, now=ts, param=since_param, end=False, since=True)
        if since
        else until_day - timedelta(days=DEFAULT_DAYS)
    )
    if until_day <= since_day:  # named as the caller spells them: --until for the CLI, until for the web and MCP
        if until is None:  # only a start was given, at or after the default end (today included)
            raise ParameterError(
                since_param,
                f"the period is empty: {since} is after today ({now.date()}), where the period ends by default;"
                " pass an earlier start",
            )
        raise ParameterError(
            until_param,
            f"the period is empty: {until} is not after {since_param} {since}; pass an end after the start",
        )
    return Period(since_day, until_day)
