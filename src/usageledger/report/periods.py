"""The period rule of every reading command, in one place: ``--since``/``--until`` to whole UTC days.

``until`` is exclusive (a datetime inside a day includes that day); ``since 30d`` and the default are both the 30
days ending today. ``report``, ``reconcile``, the MCP tools and the web app all read periods through here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final

from usageledger.report.queries import Period
from usageledger.timeutil import since_unix, to_unix

__all__ = ["DEFAULT_DAYS", "period_day", "report_period"]

DEFAULT_DAYS: Final = 30


def period_day(value: str, *, now: int, param: str, end: bool, since: bool = False) -> date:
    """The UTC day ``value`` names; with ``since``, a span of days follows the period rule (:func:`since_unix`)."""
    ts = since_unix(value, now=now, param=param) if since else to_unix(value, now=now, param=param)
    moment = datetime.fromtimestamp(ts, UTC)
    day = moment.date()
    if end and moment != datetime(day.year, day.month, day.day, tzinfo=UTC):
        day += timedelta(days=1)
    return day


def report_period(
    since: str | None, until: str | None, *, now: datetime, since_param: str = "--since", until_param: str = "--until"
) -> Period:
    """Whole UTC days: ``until`` is exclusive (a datetime inside a day includes that day); ``since 30d`` and the
    default are both the 30 days ending today. Errors name ``since_param``/``until_param``."""
    ts = int(now.timestamp())
    until_day = period_day(until, now=ts, param=until_param, end=True) if until else now.date() + timedelta(days=1)
    since_day = (
        period_day(since, now=ts, param=since_param, end=False, since=True)
        if since
        else until_day - timedelta(days=DEFAULT_DAYS)
    )
    return Period(since_day, until_day)
