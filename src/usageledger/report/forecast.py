"""Month-end forecast, its range, and runway: pure functions over a daily spend series (``[(date, Decimal)]``).

The method, stated once here and repeated in every output's footnote (:data:`METHOD`):

1. **History.** The last :data:`WINDOW_DAYS` (56) complete UTC days up to the forecast's *as of* day (fewer when
   the store holds fewer; at least :data:`MIN_DAYS`, 7). Days without a costs row count as zero spend.
2. **Weekday factors.** With at least two weeks of history, each weekday's factor is the mean spend of that
   weekday in the history divided by the mean of the seven means (so the factors average 1); with less, every
   factor is 1.
3. **Trend and level.** On the weekday-adjusted spend (spend / factor; weekdays whose factor is 0 left out), the
   slope is the Theil-Sen slope (the median of the slopes between every pair of days, so a spike or a quiet week
   barely moves it), damped to a quarter (:data:`DAMPING`: extrapolating a full month of a noisy slope did worse in
   the backtest); the level at *as of* is the mean of ``adjusted - slope * t`` over the last :data:`LEVEL_DAYS`
   (21) days (the whole slope: it only moves the mean to *as of*; the damping is for the days ahead).
4. **Forecast.** Each day after *as of* is ``max(0, level + slope * t) * factor(weekday)``; the month end is the
   spend of the month's days up to *as of* plus the sum of the forecast of its other days, corrected by the median
   of the errors of step 5 (``sum * (1 + median error)``), so it sits in the middle of its range.
5. **Range.** Out of sample: from each of the last 182 days with 28 days of history before it and ``h`` after it
   (``h`` = the days left to forecast), the method is fitted on the days before and its forecast of the next ``h``
   days' sum compared with the actual sum (``actual / forecast - 1``). The 10th and 90th percentiles of those
   errors (linear interpolation) applied to the forecast part (``sum * (1 + error)``) give the range, meant as an
   80% interval; with fewer than 5 such runs, the in-sample error over runs of ``h`` days is used. The backtest in
   ``bench/BENCHMARKS.md`` measures how often it holds.

**Runway** is the first day on which the month's cumulative spend (actual, then forecast) is strictly above the
budget, as budgets fire in ``check``; ``None`` when the forecast stays at or below it through the month's end.
A **credit runway** is the first day the forecast spend from a given day on exceeds a balance (within a year), each
day's forecast corrected by the median error over runs of 30 days.

Every figure is ``Decimal``; the month-end figures are rounded to the cent.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

from usageledger._amounts import CENT
from usageledger.errors import UsageLedgerError

__all__ = [
    "HISTORY_DAYS",
    "METHOD",
    "MIN_DAYS",
    "WINDOW_DAYS",
    "DayValue",
    "Forecast",
    "Model",
    "credit_runway",
    "fill_days",
    "fit",
    "forecast_month",
    "month_days",
    "quantile",
    "runway",
    "runway_words",
]

WINDOW_DAYS: Final = 56
"""Days of history the method fits (8 weeks)."""
MIN_DAYS: Final = 7
"""The fewest days of history it forecasts from."""
LEVEL_DAYS: Final = 21
"""The level is the mean weekday-adjusted spend of the last 21 days (trend removed)."""
DAMPING: Final = Decimal("0.25")
"""The share of the Theil-Sen slope the forecast extrapolates (a damped trend)."""
ERROR_ORIGINS: Final = 182
"""How many past days the range's out-of-sample test starts from (at most)."""
HISTORY_DAYS: Final = WINDOW_DAYS + ERROR_ORIGINS + 31
"""The days of history a forecast reads: the fit's window before each of the range's origins and a month after."""
ERROR_MIN_HISTORY: Final = 28
"""The fewest days of history an origin of the range's test needs (a fit on one week is not the method at work)."""
MIN_ERRORS: Final = 5
"""The fewest out-of-sample errors the range is taken from; with fewer, the in-sample error is used."""
WEEKDAY_MIN_DAYS: Final = 14
"""The fewest days of history for weekday factors (two of each weekday)."""
LOW_QUANTILE: Final = Decimal("0.1")
HIGH_QUANTILE: Final = Decimal("0.9")
MID_QUANTILE: Final = Decimal("0.5")
CREDIT_HORIZON_DAYS: Final = 366
CREDIT_RUN_DAYS: Final = 30
"""A credit runway's forecast is corrected by the method's median error over runs of 30 days."""
MICRO: Final = Decimal("0.000001")

METHOD: Final = (
    "Forecast: weekday factors (mean spend per weekday over up to 56 days, over their mean) x the mean "
    "weekday-adjusted spend of the last 21 days, with a Theil-Sen trend damped to a quarter; the method's own "
    "out-of-sample error over past runs of as many days as are left gives the range (its 10th-90th percentile, "
    "meant as an 80% interval) and corrects the figure (its median); backtest in bench/BENCHMARKS.md."
)
"""The method in one footnote."""


@dataclass(frozen=True, slots=True)
class DayValue:
    """One day of a forecast's series: the stored spend up to the as-of day, the forecast after it."""

    day: date
    amount: Decimal
    actual: bool
    """True for a day up to the forecast's *as of* day (its stored spend), False for a forecast day."""


@dataclass(frozen=True, slots=True)
class Model:
    """A fitted forecast: weekday factors (Monday first), the level at ``origin`` and the slope per day."""

    origin: date
    factors: tuple[Decimal, ...]
    level: Decimal
    slope: Decimal
    days_used: int
    errors: tuple[Decimal, ...]
    """Relative in-sample errors of runs of ``run_days`` consecutive days (``actual / fitted - 1``)."""
    run_days: int

    def predict(self, day: date) -> Decimal:
        """The forecast of one day's spend (never negative), to a millionth."""
        t = (day - self.origin).days
        value = max(Decimal(0), self.level + self.slope * t) * self.factors[day.weekday()]
        return value.quantize(MICRO, rounding=ROUND_HALF_EVEN)

    def path(self, first: date, days: int) -> list[tuple[date, Decimal]]:
        return [(first + timedelta(days=i), self.predict(first + timedelta(days=i))) for i in range(days)]


@dataclass(frozen=True, slots=True)
class Forecast:
    """Where a month ends: ``month_end`` within ``[low, high]``; ``actual_to_date`` through ``as_of``."""

    month: date
    """The month's first day."""
    as_of: date
    """The last day whose spend is taken as actual."""
    actual_to_date: Decimal
    month_end: Decimal
    low: Decimal
    high: Decimal
    days_used: int
    """Days of history the method fitted (0 for a month that is over: its figures are actual)."""
    days: tuple[DayValue, ...]
    """Every day of the month, actual or forecast."""
    method: str

    @property
    def label(self) -> str:
        return f"{self.month:%Y-%m}"


def median(values: Sequence[Decimal]) -> Decimal:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of nothing")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def quantile(values: Sequence[Decimal], q: Decimal) -> Decimal:
    """The ``q`` quantile with linear interpolation between order statistics (numpy's default, type 7)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("quantile of nothing")
    pos = q * (len(ordered) - 1)
    lower = int(pos)
    frac = pos - lower
    if lower + 1 >= len(ordered):
        return ordered[-1]
    return ordered[lower] + (ordered[lower + 1] - ordered[lower]) * frac


def fill_days(series: Sequence[tuple[date, Decimal]], first: date, last: date) -> list[tuple[date, Decimal]]:
    """The series over every day from ``first`` through ``last``: missing days are zero, equal days summed."""
    by_day: dict[date, Decimal] = {}
    for day, amount in series:
        by_day[day] = by_day.get(day, Decimal(0)) + amount
    return [
        (first + timedelta(days=i), by_day.get(first + timedelta(days=i), Decimal(0)))
        for i in range((last - first).days + 1)
    ]


def month_days(month: date) -> list[date]:
    first = month.replace(day=1)
    return [first + timedelta(days=i) for i in range(calendar.monthrange(first.year, first.month)[1])]


def _mean(values: Sequence[Decimal]) -> Decimal:
    return sum(values, Decimal(0)) / len(values)


def _weekday_factors(history: Sequence[tuple[date, Decimal]]) -> tuple[Decimal, ...]:
    if len(history) < WEEKDAY_MIN_DAYS:
        return (Decimal(1),) * 7
    means = [_mean([v for d, v in history if d.weekday() == w]) for w in range(7)]
    overall = _mean(means)
    if overall <= 0:
        return (Decimal(1),) * 7
    return tuple(m / overall for m in means)


def _theil_sen_slope(points: Sequence[tuple[int, Decimal]]) -> Decimal:
    """The median of the slopes between every pair of points."""
    slopes = [(y2 - y1) / (t2 - t1) for i, (t1, y1) in enumerate(points) for (t2, y2) in points[i + 1 :] if t2 != t1]
    return median(slopes) if slopes else Decimal(0)


def _fit_line(series: Sequence[tuple[date, Decimal]]) -> Model:
    """Factors, level and damped slope from the last :data:`WINDOW_DAYS` of ``series`` (no range yet)."""
    history = list(series[-WINDOW_DAYS:])
    origin = history[-1][0]
    factors = _weekday_factors(history)
    points = [((d - origin).days, v / factors[d.weekday()]) for d, v in history if factors[d.weekday()] > 0]
    if not points:
        return Model(origin, factors, Decimal(0), Decimal(0), len(history), (), 0)
    slope = _theil_sen_slope(points)
    level = _mean([y - slope * t for t, y in points if t > -LEVEL_DAYS])  # today's level, on the whole slope
    return Model(origin, factors, level, slope * DAMPING, len(history), (), 0)


def _run_errors(series: Sequence[tuple[date, Decimal]], run: int) -> tuple[Decimal, ...]:
    """Out-of-sample errors: from every origin in the last :data:`ERROR_ORIGINS` days that has
    :data:`ERROR_MIN_HISTORY` days of history before it and ``run`` days after it, the method's forecast of those
    days' sum against their actual sum (``actual / forecast - 1``)."""
    errors = []
    for i in range(max(ERROR_MIN_HISTORY, len(series) - run - ERROR_ORIGINS + 1), len(series) - run + 1):
        model = _fit_line(series[:i])
        forecast = sum((model.predict(d) for d, _ in series[i : i + run]), Decimal(0))
        if forecast > 0:
            errors.append(sum((v for _, v in series[i : i + run]), Decimal(0)) / forecast - 1)
    return tuple(errors)


def fit(series: Sequence[tuple[date, Decimal]], *, horizon: int = 1, as_of: date | None = None) -> Model:
    """Fit the method to a contiguous daily series (oldest first; use :func:`fill_days`) ending on its *as of* day.

    ``horizon``: how many days will be forecast, the length of the runs the range is measured on; ``as_of``: the
    day an empty series ends on, for the refusal of too short a one.
    """
    if len(series) < MIN_DAYS:
        last = series[-1][0] if series else as_of
        raise UsageLedgerError(
            f"a forecast needs at least {MIN_DAYS} days of costs, the store holds {len(series)} up to "
            f"{last if last is not None else 'the day forecast from'}: sync more history first"
        )
    model = _fit_line(series)
    run = max(1, horizon)
    errors = _run_errors(series, run)
    if len(errors) < MIN_ERRORS:  # too short a history to test the method on: its in-sample error instead
        run = max(1, min(horizon, model.days_used - 4))
        history = list(series[-WINDOW_DAYS:])
        fitted = [model.predict(d) for d, _ in history]
        errors = tuple(
            sum((v for _, v in history[i : i + run]), Decimal(0)) / f - 1
            for i in range(len(history) - run + 1)
            if (f := sum(fitted[i : i + run], Decimal(0))) > 0
        )
    return replace(model, errors=errors, run_days=run)


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def forecast_month(series: Sequence[tuple[date, Decimal]], month: date, *, as_of: date) -> Forecast:
    """The forecast of ``month`` from the daily ``series`` (any days; missing ones are zero) as of ``as_of``.

    A month over by ``as_of`` is its actual spend (low = high = month end); a month after ``as_of`` is all forecast.
    """
    days = month_days(month)
    first = days[0]
    known = [(d, v) for d, v in series if d <= as_of]
    if days[-1] <= as_of:
        actual = fill_days(known, first, days[-1])
        total = _cents(sum((v for _, v in actual), Decimal(0)))
        return Forecast(
            first,
            as_of,
            total,
            total,
            total,
            total,
            0,
            tuple(DayValue(d, v, True) for d, v in actual),
            "The month is over: its figures are the stored spend.",
        )
    # No day held up to *as of* is none, not one of zero (costs starting the day after it said "holds 1").
    history = fill_days(known, min(d for d, _ in known), as_of) if known else []
    todo = [d for d in days if d > as_of]
    model = fit(history, horizon=len(todo), as_of=as_of)
    in_month = [(d, v) for d, v in history if d >= first]
    actual_sum = sum((v for _, v in in_month), Decimal(0))
    raw = [(d, model.predict(d)) for d in todo]
    rest = sum((v for _, v in raw), Decimal(0))
    low_err = quantile(model.errors, LOW_QUANTILE) if model.errors else Decimal(0)
    high_err = quantile(model.errors, HIGH_QUANTILE) if model.errors else Decimal(0)
    bias = 1 + (quantile(model.errors, MID_QUANTILE) if model.errors else Decimal(0))
    predicted = [(d, (v * bias).quantize(MICRO, rounding=ROUND_HALF_EVEN)) for d, v in raw]
    point = actual_sum + sum((v for _, v in predicted), Decimal(0))
    low = min(point, actual_sum + max(Decimal(0), rest * (1 + low_err)))
    high = max(point, actual_sum + rest * (1 + high_err))
    return Forecast(
        first,
        as_of,
        _cents(actual_sum),
        _cents(point),
        _cents(low),
        _cents(high),
        model.days_used,
        tuple([DayValue(d, v, True) for d, v in in_month] + [DayValue(d, v, False) for d, v in predicted]),
        METHOD,
    )


def runway(forecast: Forecast, budget: Decimal) -> date | None:
    """The first day of the month on which cumulative spend (actual, then forecast) is above ``budget``."""
    total = Decimal(0)
    for day in forecast.days:
        total += day.amount
        if total > budget:
            return day.day
    return None


def runway_words(forecast: Forecast, day: date | None) -> str:
    """The runway ``day`` (:func:`runway`) of ``forecast`` in words, as of its *as of*: ``was crossed on DAY`` for a
    day the spend to date crossed the budget (``forecast --budget`` on 20 November said "is crossed on 2026-11-01 at
    this rate", a day gone by, as if still to come), ``is crossed on DAY at this rate`` for a day to come; a month
    that is over ``was not crossed in MONTH``, else ``is not crossed in MONTH at this rate``."""
    if day is not None:
        return f"was crossed on {day}" if day <= forecast.as_of else f"is crossed on {day} at this rate"
    over = forecast.as_of >= forecast.month.replace(
        day=calendar.monthrange(forecast.month.year, forecast.month.month)[1]
    )
    return f"was not crossed in {forecast.label}" if over else f"is not crossed in {forecast.label} at this rate"


def credit_runway(
    series: Sequence[tuple[date, Decimal]], balance: Decimal, *, as_of: date, horizon: int = CREDIT_HORIZON_DAYS
) -> date | None:
    """The first day after ``as_of`` on which the forecast spend from then on is above ``balance``; ``as_of`` itself
    when the balance is already below zero; ``None`` when it lasts beyond ``horizon`` days."""
    if balance < 0:
        return as_of
    known = [(d, v) for d, v in series if d <= as_of]
    history = fill_days(known, min(d for d, _ in known), as_of) if known else []  # none held: none, not one of zero
    model = fit(history, horizon=CREDIT_RUN_DAYS, as_of=as_of)
    bias = 1 + (quantile(model.errors, MID_QUANTILE) if model.errors else Decimal(0))
    total = Decimal(0)
    for day, amount in model.path(as_of + timedelta(days=1), horizon):
        total += amount * bias
        if total > balance:
            return day
    return None
