"""Time inputs, converted once at the edges: datetimes, dates, Unix seconds, ISO strings and relative spans.

Everything inside the package works in integer Unix seconds, UTC. A naive datetime is taken as UTC.
"""

from __future__ import annotations

import math
import numbers
import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import Final

from usageledger.catalogue import BUCKET_SECONDS, BucketWidth
from usageledger.errors import ParameterError

TimeInput = datetime | date | int | float | str
"""What users may pass wherever a point in time is expected."""

_DAY: Final = 86400
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS_HELP: Final = "units: ms, s, m (minutes), h, d, w"
_DURATION_HELP: Final = "a number and a unit: ms, s, m (minutes), h, d or w, e.g. 100ms, 15m, 36h, 90d"
_BARE_NUMBER: Final = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
MAX_UNIX: Final = 253402300799
"""9999-12-31T23:59:59Z: the last second a ``datetime`` (and an ISO string) can name."""
_MAX_DIGITS: Final = len(str(MAX_UNIX))
_MIN_DIGITS: Final = 10
"""A time given as a digit string has at least ten digits (September 2001 on); shorter is a span missing its unit."""


def parse_duration(
    text: object, *, param: str = "duration", units: tuple[str, str] = ("h", "d"), minimum: float = 0
) -> float:
    """Seconds in a span such as ``100ms``, ``15m``, ``36h``, ``90d`` or ``2w``.

    The only duration parser: config keys and CLI flags all come here. A bare number (``90``, ``"36"``) is
    refused, because whether it meant seconds, hours or days cannot be told; the refusal suggests the number in
    ``units``, the two a value of ``param`` is usually written in (``("ms", "s")`` for a latency). A span shorter
    than ``minimum`` seconds is refused naming the shortest (``--sync-every 0m``: "write 1m or more"), and no
    refusal suggests a span this call would refuse. A span longer than 1970 to 9999 is refused too: no two times
    are that far apart (and a ``timedelta`` of it overflows).
    """
    value = _read_duration(text, param=param, units=units, minimum=minimum)
    if value < minimum:
        raise ParameterError(param, _too_short(_shown(text), value, span_text(minimum)))
    if value > MAX_UNIX:
        # `keys --unused-after 9999999999d` was an OverflowError traceback, making its timedelta.
        raise ParameterError(
            param,
            f"{_shown(text)} is longer than {MAX_UNIX // _DAY:,} days, the span from 1970 to 9999; pass a shorter span",
        )
    return value


def _read_duration(text: object, *, param: str, units: tuple[str, str] = ("h", "d"), minimum: float = 0) -> float:
    """:func:`parse_duration` without its range checks (:func:`back_from` says "before 1970" instead)."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ParameterError(param, f"expected a duration, got {_shown(text)}; use {_DURATION_HELP}")
    if not isinstance(text, str):
        raise ParameterError(param, _no_unit(_shown(text), units, minimum))
    stripped = text.strip()
    match = _DURATION.match(stripped)
    if match is None:
        if _BARE_NUMBER.match(stripped):
            raise ParameterError(param, _no_unit(_shown(stripped)[1:-1], units, minimum))
        raise ParameterError(param, f"cannot read {_shown(text)} as a duration; use {_DURATION_HELP}")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(value):
        # A 400-digit number overflows to inf; it is no usable span.
        raise ParameterError(param, f"{_shown(text)} is not a finite duration; use {_DURATION_HELP}")
    return value


def _no_unit(number: str, units: tuple[str, str], minimum: float = 0) -> str:
    """The message for a number given where a duration is expected: which unit it was meant in is unknowable. It
    suggests the number in each of ``units`` that would be accepted (``0`` where ``minimum`` is above zero gets the
    shortest span instead: `--since 0` suggested `0d`, itself refused)."""
    first, second = units
    generic = f"{number} has no unit; write a number and a unit ({_UNITS_HELP}), e.g. 36{first} or 90{second}"
    if len(number) > 20 or not re.fullmatch(r"\d+(\.\d+)?", number):
        return generic
    amount = float(number)
    fits = unit_suggestions(number, units, minimum)
    if not fits:
        if amount == 0:
            return f"{number} has no unit, and a span of zero holds nothing; write {span_text(minimum)} or more"
        if amount * _UNITS[first] < minimum:
            return f"{number} has no unit; write {span_text(minimum)} or more ({_UNITS_HELP})"
        return generic
    return f"{number} has no unit; write {' or '.join(fits)} ({_UNITS_HELP})"


def unit_suggestions(number: str, units: tuple[str, str], minimum: float = 0) -> list[str]:
    """``number`` in each of ``units`` that :func:`parse_duration` would accept with ``minimum``: the fixes a refusal
    of a bare number may suggest (the config writes them in TOML quotes)."""
    if len(number) > 20 or not re.fullmatch(r"\d+(\.\d+)?", number):
        return []
    amount = float(number)
    return [f"{number}{unit}" for unit in units if minimum <= amount * _UNITS[unit] <= MAX_UNIX]


def _too_short(shown: str, seconds: float, least: str) -> str:
    """Why a span below the shortest a value takes is refused, and the fix: zero holds nothing."""
    if seconds == 0:
        return f"{shown} is a span of zero, which holds nothing; write {least} or more"
    return f"{shown} is shorter than {least}; write {least} or more"


def span_text(seconds: float) -> str:
    """``seconds`` as the span a user would type: ``60`` is ``1m``, ``86400`` is ``1d``, ``1209600`` is ``2w``."""
    for unit in ("w", "d", "h", "m", "s", "ms"):
        count = seconds / _UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"


def integer(value: object) -> int | None:
    """``value`` as an ``int`` when it is a whole number of any integer type (numpy's ``int64`` from a DataFrame,
    which is no ``int``), else ``None``; never a ``bool``. The one reading of a count or a time in seconds given
    from Python: ``limit=np.int64(5)`` was refused as "expected an integer, got np.int64(5)"."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def now_unix(clock: float | None = None) -> int:
    return int(time.time() if clock is None else clock)


def to_unix(value: TimeInput, *, now: float | None = None, param: str = "start_time") -> int:
    """Unix seconds for ``value``.

    Accepts an aware or naive (= UTC) ``datetime``, a ``date`` (its midnight UTC), Unix seconds, a string of
    digits, an ISO 8601 date or datetime, ``now``, ``today`` or ``yesterday`` (the start of that UTC day), or a
    relative span back from now (``90d``).
    """
    if isinstance(value, bool):
        raise ParameterError(param, f"expected a time, got {value!r}; pass a datetime, a date or Unix seconds")
    if isinstance(value, datetime):
        result = _datetime_unix(value, param)
    elif isinstance(value, date):
        result = int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())
    elif (whole := integer(value)) is not None:  # numpy's int64 too: `df["ts"].max()` is Unix seconds
        result = whole
    elif isinstance(value, numbers.Real):  # numpy's float32 is no float
        if not math.isfinite(value):
            raise ParameterError(param, f"expected a time, got {value!r}; pass a datetime, a date or Unix seconds")
        result = math.floor(value)  # the second it falls in: int() read -0.5 as 0, a time before 1970 as 1970
    elif isinstance(value, str):
        result = _parse_time_string(value, now=now, param=param)
    else:
        raise ParameterError(
            param, f"expected a time, got {type(value).__name__}; pass a datetime, a date, Unix seconds or a string"
        )
    if result < 0:
        raise ParameterError(param, f"{_shown(value)} is before 1970; pass a time after the Unix epoch")
    if result > MAX_UNIX:
        # only a number can be milliseconds; a date after 9999 is just too late
        number = isinstance(value, numbers.Real) or (isinstance(value, str) and value.strip().isdecimal())
        fix = "pass Unix seconds, not milliseconds" if number else "pass an earlier time"
        raise ParameterError(param, f"{_shown(value)} is after the year 9999; {fix}")
    return result


def since_unix(value: TimeInput, *, now: float | None = None, param: str = "--since") -> int:
    """The start of a period given as ``--since``: the one rule for every command that takes one.

    A span of whole days (``30d``, ``2w``) means that many whole UTC days ending today, today included: ``30d``
    starts at midnight UTC 29 days before today, so ``[today - 29, tomorrow)`` is 30 days. Any other value (a date,
    a datetime, ``36h``) is read as :func:`to_unix` reads it.
    """
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match is not None:
            seconds = _read_duration(value, param=param)
            if seconds == 0:  # `0d` was "not a whole number of days", `0h` a period of today
                raise ParameterError(param, _too_short(_shown(value), 0, "1d"))
            if match.group(2) in ("d", "w"):
                if seconds % _DAY:
                    raise ParameterError(
                        param,
                        f"{_shown(value)} is not a whole number of days; a period counts whole days (1d, 30d, 2w)",
                    )
                return back_from(now_unix(now), value, param=param, whole_days=True)
    return to_unix(value, now=now, param=param)


def past_unix(
    value: TimeInput,
    *,
    now: float,
    param: str = "--as-of",
    refusal: str = "the ledger answers as of a past time: pass an earlier one, or leave {param} out for now",
) -> int:
    """A moment in the past or now, as :func:`to_unix` reads it: the one rule for ``--as-of``, which asks what the
    ledger held then, and for ``--changed-since`` (:func:`seen_since_unix`). A later time is refused, naming
    ``param``, with ``refusal`` after it: the ledger holds nothing after now, and a report stamped "as of
    2099-01-01" would show today's figures under a date nobody has seen yet."""
    result = to_unix(value, now=now, param=param)
    if result > now:
        said = refusal.format(param=param)
        raise ParameterError(param, f"{_shown(value)} is {iso(result)}, after now ({iso(int(now))}); {said}")
    return result


def seen_since_unix(value: TimeInput, *, now: float, param: str = "--changed-since") -> int:
    """The time after which changes are asked for (``export --deltas --changed-since``, the library's ``deltas`` and
    ``changes``), by the rule of :func:`past_unix`: the revision log holds no change seen after now, so a year
    mistyped (2027 for 2026) gave an empty export, "Exported 0 rows", without a word."""
    refusal = "no change has been seen after it yet: pass an earlier time, or leave {param} out for every change"
    return past_unix(value, now=now, param=param, refusal=refusal)


def span_unit(value: str) -> str | None:
    """The unit of ``value`` when it is a span back from now (``15m``: ``"m"``), else ``None`` (a date, a datetime,
    Unix seconds): read by the one duration pattern, so a rule about spans never re-parses one its own way."""
    match = _DURATION.match(value)
    return None if match is None else match.group(2)


def back_from(now: float, span: str | float | timedelta, *, param: str, whole_days: bool = False) -> int:
    """Unix seconds ``span`` before ``now``: the start of a span back from now, the one step behind every flag that
    counts back (``--since 30d``, ``--as-of 2d``, ``--start 36h``, ``check --stale-keys 90d``).

    ``span`` is text (``"36h"``, read by :func:`parse_duration`), seconds or a ``timedelta``. With ``whole_days`` a
    span of whole days follows the period rule (:func:`span_start`); otherwise it counts back from ``now`` exactly.
    A start before 1970 is a :class:`~usageledger.errors.ParameterError` naming ``param``: there is no time there
    to start from (``99999999d`` was an ``OverflowError`` traceback where a date was subtracted)."""
    if isinstance(span, str):
        seconds = _read_duration(span, param=param)
        shown = _shown(span)
    else:
        seconds = span.total_seconds() if isinstance(span, timedelta) else float(span)
        shown = f"a span of {seconds / _DAY:,.0f} days" if seconds >= _DAY else f"a span of {seconds:,.0f} seconds"
    if seconds > MAX_UNIX:
        start = -1
    elif whole_days:
        start = span_start(int(now), int(seconds))
    else:
        start = int(now) - int(seconds)
    if start < 0:
        raise ParameterError(param, f"{shown} reaches back before 1970; pass a shorter span")
    return start


def span_start(now: int, seconds: int) -> int:
    """Where a span back from ``now`` starts by the period rule: whole days are that many UTC days ending today
    (``90d`` starts at midnight 89 days ago); any other span counts back from ``now``."""
    if seconds >= _DAY and seconds % _DAY == 0:
        return floor(now, "1d") - seconds + _DAY
    return now - seconds


def _shown(value: object) -> str:
    """``repr(value)``, cut short: a 5,000-digit number is not worth echoing in full."""
    if isinstance(value, int) and abs(value) >= 10**30:
        return "a number of more than 30 digits"  # str() of a 5,000-digit int raises
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_time_string(text: str, *, now: float | None, param: str) -> int:
    s = text.strip()
    current = now_unix(now)
    if s.isdecimal():
        # isdecimal, not isdigit: "²" is a digit int() cannot read. A number too long to be a time would also
        # hit Python's 4,300-digit conversion limit, so it is refused by its length.
        if len(s) > _MAX_DIGITS:
            raise ParameterError(param, f"{_shown(s)} is after the year 9999; pass Unix seconds, not milliseconds")
        if len(s) < _MIN_DIGITS:
            # `--since 90` meant 90 days, not 1970: Unix seconds of fewer than ten digits fall before September
            # 2001, long before any usage data, so a short bare number is a missing unit, as in a duration.
            # The suggestion is one this parameter takes: `--since 0` suggested `0d`, itself refused as empty.
            span = (
                f"; for a span back from now write {int(s)}d or {int(s)}h"
                if int(s)
                else (", and a span of zero holds nothing; for a span back from now write 1d or more")
            )
            raise ParameterError(param, f"{s} read as Unix seconds is {iso(int(s))}{span}, or give a date (2026-11-01)")
        return int(s)
    if s == "now":
        return current
    if s == "today":
        return floor(current, "1d")
    if s == "yesterday":  # the UTC day before today's, as `today` is today's UTC day
        return floor(current, "1d") - _DAY
    if _DURATION.match(s):
        return back_from(current, s, param=param)
    try:
        parsed = datetime.fromisoformat(s)
    except ValueError:
        raise ParameterError(
            param,
            f"cannot read {text!r} as a time; use an ISO date (2026-11-01), a datetime "
            "(2026-11-01T12:00:00Z), Unix seconds, today, yesterday, or a span back from now (90d, 36h)",
        ) from None
    return _datetime_unix(parsed, param)  # to_unix range-checks it, quoting the text typed (not the datetime's repr)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)


def _datetime_unix(value: datetime, param: str) -> int:
    """Unix seconds of an aware or naive (= UTC) datetime, unchecked (:func:`to_unix` checks the range): the second
    it falls in, counted exactly (``timestamp()`` is a float, which rounded 9999-12-31T23:59:59.999999 up to 10000).
    Pandas' ``NaT`` is a datetime that names no time (its ``timestamp()`` was a ValueError from deep inside): a
    :class:`ParameterError` naming ``param``."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    seconds: object = (aware - _EPOCH) // _SECOND
    if not isinstance(seconds, int):
        raise ParameterError(param, f"{_shown(value)} names no time; pass a datetime, a date or Unix seconds")
    return seconds


def floor(ts: int, width: BucketWidth) -> int:
    """The start of the UTC-aligned bucket of ``width`` that holds ``ts``."""
    step = BUCKET_SECONDS[width]
    return ts - ts % step


def ceil(ts: int, width: BucketWidth) -> int:
    """The first bucket boundary at or after ``ts``."""
    step = BUCKET_SECONDS[width]
    return -(-ts // step) * step


def check_range(
    start: int | None,
    end: int | None,
    *,
    now: float,
    start_param: str = "start_time",
    end_param: str = "end_time",
    stored: bool = False,
) -> None:
    """Refuse a time range that can hold nothing: reversed or empty (``end`` at or before ``start``), or wholly in
    the future (``start`` at or after ``now``). The one check behind ``query``, ``sync`` and ``export``; the error
    names the parameter to change (a flag such as ``--since`` when the caller passes one) and shows ISO times.

    ``stored``: the range is read from the store (``export``, ``changes``), whose answer up to now may be empty: a
    start at ``now`` itself is then answered, and only a later one refused. ``--since 1d`` (today) or today's date,
    run by cron at 00:00:00 UTC, starts at that very second: it was refused as holding nothing yet, and answered
    one second later."""
    if start is not None and end is not None and end <= start:
        what = "the same time as" if end == start else "before"
        raise ParameterError(
            end_param,
            f"{iso(end)} is {what} the start ({iso(start)}), so the range is empty; pass an end after the start",
        )
    # In whole seconds, as the range is sent: a start within the current second (`--start now`) left an empty
    # [start, now) to the API's own rule, which blamed the end the user never gave. (`now=math.inf`: no bound.)
    current = now if math.isinf(now) else int(now)
    if start is not None and (start > current if stored else start >= current):
        raise ParameterError(
            start_param,
            f"{iso(start)} is not before now ({iso(int(now))}), so the range holds nothing yet; pick an earlier start",
        )


_MONTH: Final = re.compile(r"(\d{4})-(\d{2})")
_LAST: Final = "last"
_THIS: Final = ("this", "current")


def parse_month(value: str, *, param: str = "MONTH", today: date | None = None, current: bool = True) -> date:
    """The first day of the month ``value`` names (``forecast --month``, ``statement``, ``close``), or a one-line
    :class:`~usageledger.errors.ParameterError` naming ``param``: ``YYYY-MM``, or ``last`` (the whole UTC month
    before ``today``'s, default the wall clock's) or ``this``/``current`` (``today``'s), so a command written down
    (the README's ``statement last``, a cron line) never ages. ``current=False`` is a command that never takes the
    current month (``close``): its hint leaves ``this`` out, and the command refuses it with its own reason."""
    text = value.strip()
    word = text.lower()
    if word == _LAST or word in _THIS:
        if isinstance(today, datetime):  # a datetime is a date too: its UTC day, as every reader of one takes it
            today = utc_moment(today, param="today").date()
        this = (today if today is not None else datetime.now(UTC).date()).replace(day=1)
        return this if word in _THIS else (this - timedelta(days=1)).replace(day=1)
    match = _MONTH.fullmatch(text)
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1970:
        words = "`last`" if not current else "`last` or `this`"
        raise ParameterError(param, f"{value!r} is not a month; write it as YYYY-MM, like 2026-10, or {words}")
    return date(int(match.group(1)), int(match.group(2)), 1)


def utc_moment(value: object, *, param: str = "now") -> datetime:
    """``value`` as an aware UTC datetime: an aware one converted, a naive one read as UTC (the package's one rule,
    as :func:`to_unix` reads it; ``astimezone`` alone read it in the machine's zone); else a ParameterError."""
    if not isinstance(value, datetime):
        raise ParameterError(param, f"expected a datetime, got {type(value).__name__}")
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC)


def month_start(value: object, *, param: str = "month", today: date | None = None) -> date:
    """The first day of the month ``value`` falls in: a ``date``, a ``datetime`` (naive = UTC) or text
    (:func:`parse_month`: ``YYYY-MM``, ``last`` or ``this`` as of ``today``, default the wall clock's); the one
    reader of a month that forecasts, statements and closes take from Python."""
    if isinstance(value, datetime):
        return utc_moment(value, param=param).date().replace(day=1)
    if isinstance(value, date):
        return value.replace(day=1)
    if isinstance(value, str):
        return parse_month(value, param=param, today=today)
    raise ParameterError(param, f"expected a date or YYYY-MM, got {type(value).__name__}")


def next_month(month: date) -> date:
    """The first day of the month after the one ``month`` falls in: the one step every month's end is taken from
    (a statement's, a close's, the FOCUS billing period's, a forecast's horizon)."""
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


_ISO: Final = "%Y-%m-%dT%H:%M:%SZ"


def iso(ts: int) -> str:
    """``ts`` as an ISO 8601 UTC string, for messages and reports."""
    return datetime.fromtimestamp(ts, UTC).strftime(_ISO)


def iso_moment(value: datetime) -> str:
    """A time as ``2026-11-20T00:00:00Z`` (a naive one is UTC, :func:`utc_moment`): the one text of a time that
    JSON documents, CSV cells and exports write."""
    return utc_moment(value).strftime(_ISO)


def months(first: int, last: int) -> list[tuple[str, int, int]]:
    """Every UTC calendar month from the one holding ``first`` to the one holding ``last``, as (``YYYY-MM``, start,
    end) with ``end`` exclusive: the partitions of a Delta export."""
    out: list[tuple[str, int, int]] = []
    at = datetime.fromtimestamp(first, UTC)
    year, month = at.year, at.month
    while True:
        start = int(datetime(year, month, 1, tzinfo=UTC).timestamp())
        if start > last:
            return out
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        out.append(
            (
                f"{datetime.fromtimestamp(start, UTC):%Y-%m}",
                start,
                int(datetime(year, month, 1, tzinfo=UTC).timestamp()),
            )
        )
