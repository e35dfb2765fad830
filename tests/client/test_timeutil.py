"""Time inputs are read once, at the edges, with errors that name the parameter."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from usageledger.errors import ParameterError
from usageledger.timeutil import (
    MAX_UNIX,
    back_from,
    ceil,
    floor,
    iso,
    parse_duration,
    parse_month,
    since_unix,
    to_unix,
)

NOW = 1_795_176_000  # 2026-11-20T12:00:00Z


def test_every_kind_of_time_input() -> None:
    """datetimes (aware and naive), dates, ints, digit strings, ISO strings and spans all convert."""
    assert to_unix(datetime(2026, 11, 20, 12, tzinfo=UTC)) == NOW
    assert to_unix(datetime(2026, 11, 20, 12)) == NOW
    assert to_unix(datetime(2026, 11, 20, 13, tzinfo=timezone(timedelta(hours=1)))) == NOW
    assert to_unix(date(2026, 11, 20)) == NOW - 12 * 3600
    assert to_unix(NOW) == NOW and to_unix(str(NOW)) == NOW and to_unix(float(NOW) + 0.7) == NOW
    assert to_unix("2026-11-20T12:00:00Z") == NOW and to_unix("2026-11-20") == NOW - 12 * 3600
    assert to_unix("90d", now=NOW) == NOW - 90 * 86400
    assert to_unix("now", now=NOW) == NOW and to_unix("today", now=NOW) == NOW - 12 * 3600


def test_bad_time_names_the_parameter_and_the_fix() -> None:
    """An unreadable time says which parameter and what forms are accepted."""
    with pytest.raises(ParameterError, match=r"^since: cannot read 'yesterday-ish'.*ISO date") as info:
        to_unix("yesterday-ish", param="since")
    assert info.value.param == "since"
    with pytest.raises(ParameterError, match="start_time"):
        to_unix(True)
    with pytest.raises(ParameterError, match="before 1970"):
        to_unix(-5)


def test_durations() -> None:
    """Durations read ms, s, m, h, d and w; bad ones are refused."""
    assert parse_duration("100ms") == pytest.approx(0.1)
    assert [parse_duration(x) for x in ("15m", "36h", "3d", "2w", "7s")] == [900, 129600, 259200, 1209600, 7]
    with pytest.raises(ParameterError, match="latency"):
        parse_duration("fast", param="latency")


def test_back_from_counts_back_from_now_and_refuses_before_1970() -> None:
    """The one step behind every flag that counts back: exact spans, whole days by the period rule, a timedelta; a
    start before 1970 names the parameter (a date minus `99999999d` was an OverflowError)."""
    assert back_from(NOW, "36h", param="--as-of") == NOW - 36 * 3600
    assert back_from(NOW, "2d", param="--since", whole_days=True) == NOW - 12 * 3600 - 86400
    assert back_from(NOW, timedelta(days=90), param="stale_keys") == NOW - 90 * 86400
    assert back_from(NOW, f"{NOW}s", param="x") == 0
    for span in (f"{NOW + 1}s", "99999999d", "9999999999999999999999w", timedelta(days=999_999_999), 1e300):
        with pytest.raises(ParameterError, match=r"^--stale-keys: .* reaches back before 1970; pass a shorter span$"):
            back_from(NOW, span, param="--stale-keys")
    for reads in (lambda: to_unix("99999999d", now=NOW, param="--as-of"), lambda: since_unix("99999999h", now=NOW)):
        with pytest.raises(ParameterError, match="reaches back before 1970"):
            reads()


def test_a_duration_longer_than_1970_to_9999_is_refused() -> None:
    """Every duration becomes a timedelta somewhere: `9999999999d` overflowed it (an OverflowError traceback)."""
    assert parse_duration(f"{MAX_UNIX}s") == MAX_UNIX
    for text in (f"{MAX_UNIX + 1}s", "9999999999d", "99999999999w"):
        with pytest.raises(ParameterError, match=r"^--unused-after: .* is longer than 2,932,896 days, the span from"):
            parse_duration(text, param="--unused-after")


SPAN = re.compile(r"\b\d+(?:\.\d+)?(?:ms|s|m|h|d|w)\b")
READERS: dict[str, Callable[[str], object]] = {
    "since_unix": lambda v: since_unix(v, now=NOW),
    "to_unix": lambda v: to_unix(v, now=NOW),
    "parse_duration": lambda v: parse_duration(v),
    "parse_duration, minimum 1m": lambda v: parse_duration(v, units=("m", "h"), minimum=60),
    "parse_duration, minimum 1d": lambda v: parse_duration(v, minimum=86400),
}


ZEROS = ("0d", "0.0d", "0s", "0h", "0w", "0ms")
FORMAT_HELP = "e.g. 100ms, 15m, 36h, 90d"
"""The duration format's examples: how to write a span, not a value suggested for this parameter."""


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("value", ["0", "00", *ZEROS, "-1d", "0.5d", "5", "36.5", "5s", "90d", "1.5"])
def test_no_refusal_suggests_a_value_the_same_reader_refuses(reader: str, value: str) -> None:
    """`--since 0` suggested `0d`, which was then refused as "not a whole number of days": every span a refusal
    suggests is now one the same reader accepts, and a zero span, where refused, says it holds nothing."""
    read = READERS[reader]
    try:
        read(value)
    except ParameterError as exc:
        message = str(exc)
        for suggested in SPAN.findall(message.replace(FORMAT_HELP, "")):
            if suggested != value:
                read(suggested)  # raises if the suggestion is itself refused
        if value in ZEROS:
            assert "a span of zero, which holds nothing; write 1" in message, message
            assert "whole number" not in message, message


def test_a_zero_span_for_since_names_its_own_fix() -> None:
    """The messages the tester met: `--since 0` and `--since 0d` each say a span of zero holds nothing, write 1d."""
    with pytest.raises(ParameterError, match=r"^--since: 0 read as .*a span of zero holds nothing; .*write 1d or more"):
        since_unix("0", now=NOW)
    with pytest.raises(
        ParameterError, match=r"^--since: '0d' is a span of zero, which holds nothing; write 1d or more$"
    ):
        since_unix("0d", now=NOW)
    assert since_unix("1d", now=NOW) == NOW - 12 * 3600
    with pytest.raises(ParameterError, match=r"^--sync-every: '5s' is shorter than 1m; write 1m or more$"):
        parse_duration("5s", param="--sync-every", minimum=60)


@pytest.mark.parametrize("bare", [36, "36", " 36 ", 36.0, "36.5", "0", 0])
def test_a_duration_without_a_unit_is_refused(bare: object) -> None:
    """A bare number (int, float or numeric string) is no duration: the error names the parameter and the fix."""
    with pytest.raises(ParameterError) as info:
        parse_duration(bare, param="--stale-after")
    assert info.value.param == "--stale-after"
    assert "has no unit" in str(info.value) and "h or " in str(info.value)
    assert "\n" not in str(info.value)


def test_floor_ceil_iso() -> None:
    """Buckets are UTC-aligned."""
    assert floor(NOW + 59, "1m") == NOW and ceil(NOW + 1, "1h") == NOW + 3600 and ceil(NOW, "1d") == NOW + 43200
    assert iso(NOW) == "2026-11-20T12:00:00Z"


@pytest.mark.parametrize(
    "text", ["2026-13", "2026", "26-12", "2026-1", "december", "2026-12-01", "10-2026", "2026/10", "1969-12", ""]
)
def test_a_bad_month_names_the_parameter_and_the_form(text: str) -> None:
    """One month parser for `forecast --month`, `statement MONTH` and `close MONTH`."""
    with pytest.raises(ParameterError, match=r"--month: .* YYYY-MM"):
        parse_month(text, param="--month")


def test_a_month_parses_to_its_first_day() -> None:
    assert parse_month("2026-12") == date(2026, 12, 1)
    assert parse_month(" 2026-10 ", param="MONTH") == date(2026, 10, 1)


def test_last_and_this_month_are_read_from_today() -> None:
    """`statement last` (a README line, a cron line) never ages as `statement 2026-10` does: `last` is the whole UTC
    month before today's, across a year's end too; `this` and `current` are today's. A command that never takes the
    current month (`close`) does not offer `this` in its hint."""
    january = date(2027, 1, 15)
    assert parse_month("last", today=january) == date(2026, 12, 1)
    assert parse_month(" Last ", today=date(2026, 3, 31)) == date(2026, 2, 1)
    assert [parse_month(w, today=january) for w in ("this", "current", "THIS")] == [date(2027, 1, 1)] * 3
    with pytest.raises(ParameterError) as caught:
        parse_month("lats", today=january)
    assert str(caught.value) == "MONTH: 'lats' is not a month; write it as YYYY-MM, like 2026-10, or `last` or `this`"
    with pytest.raises(ParameterError) as caught:
        parse_month("previous", today=january, current=False)
    assert str(caught.value).endswith("write it as YYYY-MM, like 2026-10, or `last`")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0001-01-01", "'0001-01-01' is before 1970; pass a time after the Unix epoch"),
        ("1969-12-31T23:59:59Z", "'1969-12-31T23:59:59Z' is before 1970"),
        ("9999-12-31T23:00:00-05:00", "'9999-12-31T23:00:00-05:00' is after the year 9999; pass an earlier time"),
    ],
)
def test_a_date_out_of_range_is_quoted_as_typed(text: str, says: str) -> None:
    """`changes --since 0001-01-01` (and the dashboard's and MCP tools' `since`) said `datetime.datetime(1, 1, 1, 0, 0)
    is before 1970`: the parsed value's repr, not what was typed. A date after 9999 is not told to drop milliseconds."""
    for read in (to_unix, since_unix):
        with pytest.raises(ParameterError) as info:
            read(text, now=NOW, param="--since")
        assert str(info.value).startswith(f"--since: {says}")
        assert "datetime" not in str(info.value) and "milliseconds" not in str(info.value)
