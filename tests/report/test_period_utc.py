"""A period is whole UTC days, and says so wherever it is written: a user in Los Angeles at 17:00 on 30 November
asking for today gets 1 December, the store's (UTC) day, and must be able to tell."""

from __future__ import annotations

from datetime import UTC, date, datetime

from usageledger.report.period import report_period
from usageledger.report.queries import Period

LA_EVENING = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 2026-11-30 17:00 in Los Angeles


def test_a_period_written_out_names_its_days_as_utc() -> None:
    """`Usage & costs 2026-12-01 to 2026-12-01 (1 day)` read as the user's own day; the text says UTC."""
    assert str(Period(date(2026, 11, 2), date(2026, 12, 2))) == "2026-11-02 to 2026-12-01 UTC (30 days)"


def test_today_is_the_utc_day_whatever_the_local_day() -> None:
    """`--since today` (and `now`, and `1d`) at 17:00 in Los Angeles on 30 November is 1 December UTC, labelled so."""
    for since in ("today", "now", "1d"):
        period = report_period(since, None, now=LA_EVENING)
        assert period == Period(date(2026, 12, 1), date(2026, 12, 2)), since
        assert str(period) == "2026-12-01 to 2026-12-01 UTC (1 day)", since


def test_yesterday_is_the_utc_day_before_today() -> None:
    """`--since yesterday` was "cannot read 'yesterday' as a time"; it is the UTC day before today's, and today."""
    assert report_period("yesterday", None, now=LA_EVENING) == Period(date(2026, 11, 30), date(2026, 12, 2))
    assert report_period("yesterday", "today", now=LA_EVENING) == Period(date(2026, 11, 30), date(2026, 12, 1))


def test_a_time_with_an_offset_starts_on_the_utc_day_it_falls_in() -> None:
    """Midnight in Kolkata (+05:30) on 1 November is 18:30 UTC on 31 October: the period starts on that UTC day."""
    period = report_period("2026-11-01T00:00+05:30", None, now=LA_EVENING)
    assert period.since == date(2026, 10, 31)
