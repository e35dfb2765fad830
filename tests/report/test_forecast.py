"""The forecast method (pure): weekday factors, trend, range, runway and credit runway on constructed series."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from usageledger.errors import UsageLedgerError
from usageledger.report.forecast import (
    METHOD,
    credit_runway,
    fill_days,
    fit,
    forecast_month,
    month_days,
    quantile,
    runway,
)

START = date(2026, 8, 3)  # a Monday


def _flat(days: int, weekday: str = "100", weekend: str = "40") -> list[tuple[date, Decimal]]:
    """``days`` days from START: ``weekday`` on Monday to Friday, ``weekend`` on Saturday and Sunday."""
    out = []
    for i in range(days):
        d = START + timedelta(days=i)
        out.append((d, Decimal(weekend if d.weekday() >= 5 else weekday)))
    return out


def test_a_constant_weekly_pattern_is_forecast_exactly() -> None:
    """100 on weekdays, 40 at weekends since August: November ends at 21 x 100 + 9 x 40, with no range."""
    series = _flat((date(2026, 11, 10) - START).days + 1)
    fc = forecast_month(series, date(2026, 11, 1), as_of=date(2026, 11, 10))
    assert fc.actual_to_date == Decimal("820.00")  # Nov 1-10: 7 weekdays, 3 weekend days
    assert fc.month_end == Decimal("2460.00")
    assert fc.low == fc.high == fc.month_end
    assert fc.days_used == 56 and fc.method == METHOD
    assert [d.actual for d in fc.days].count(True) == 10 and len(fc.days) == 30


def test_the_weekday_factors_follow_the_pattern() -> None:
    model = fit(_flat(56))
    assert model.factors[0] == model.factors[4] and model.factors[5] == model.factors[6]
    assert (model.factors[0] / model.factors[5]).quantize(Decimal("0.000001")) == Decimal("2.5")
    assert model.slope == 0


def test_a_rising_series_is_forecast_higher_than_its_run_rate() -> None:
    """Spend rising 2 a day: the damped trend carries the month end above spend so far x days (flat would not)."""
    series = [(START + timedelta(days=i), Decimal(100 + 2 * i)) for i in range(70)]
    as_of = series[-1][0]
    month = (as_of + timedelta(days=1)).replace(day=1)
    fc = forecast_month(series, month, as_of=as_of)
    model = fit(series)
    assert Decimal("0.45") < model.slope < Decimal("0.55")  # about a quarter of the true 2 a day
    run_rate = fc.actual_to_date / as_of.day * len(month_days(month))
    assert fc.month_end > run_rate


def test_a_noisy_series_has_a_range_around_the_forecast() -> None:
    series = [(d, v * (Decimal("0.8") if i % 3 == 0 else Decimal("1.1"))) for i, (d, v) in enumerate(_flat(115))]
    as_of = series[-1][0]
    month = as_of.replace(day=1)
    fc = forecast_month(series, month, as_of=as_of)
    assert fc.low < fc.month_end < fc.high
    assert fc.low >= fc.actual_to_date
    # The days (actual, then forecast corrected by the median error) are what the month end adds up, as runway
    # reads them.
    assert sum(d.amount for d in fc.days).quantize(Decimal("0.01")) == fc.month_end
    errors = fit(series, horizon=len([d for d in fc.days if not d.actual])).errors
    assert len(errors) >= 5  # out of sample, from the origins with 28 days of history


def test_a_month_that_is_over_is_its_actual_spend() -> None:
    series = _flat(90)
    fc = forecast_month(series, date(2026, 9, 1), as_of=series[-1][0])
    september = sum(v for d, v in series if d.month == 9)
    assert fc.month_end == fc.low == fc.high == fc.actual_to_date == september
    assert fc.days_used == 0


def test_a_future_month_is_all_forecast() -> None:
    series = _flat(60)
    fc = forecast_month(series, date(2026, 12, 1), as_of=series[-1][0])
    assert fc.actual_to_date == 0 and not any(d.actual for d in fc.days)
    assert fc.month_end == Decimal(23 * 100 + 8 * 40)


def test_runway_is_the_day_the_budget_is_crossed() -> None:
    """100 a weekday, 40 a weekend day, as of 10 November (820 spent): a 1500 budget is crossed on 19 November.

    Cumulative: Nov 10 = 820; 11-13 (Wed-Fri) +300 = 1120; 14-15 (weekend) +80 = 1200; 16-18 +300 = 1500, which
    is not above 1500; Thursday 19 November makes 1600.
    """
    series = _flat((date(2026, 11, 10) - START).days + 1)
    fc = forecast_month(series, date(2026, 11, 1), as_of=date(2026, 11, 10))
    assert runway(fc, Decimal("1500")) == date(2026, 11, 19)
    assert runway(fc, Decimal("1499.99")) == date(2026, 11, 18)
    assert runway(fc, Decimal("800")) == date(2026, 11, 10)  # crossed already, in the actual days
    assert runway(fc, Decimal("2460")) is None  # the month ends exactly on it: never above


def test_credit_runway_counts_from_the_day_after() -> None:
    series = _flat(60)  # ends on a Thursday, 2026-10-01
    as_of = series[-1][0]
    assert as_of.weekday() == 3
    # Fri 100, Sat 40, Sun 40, Mon 100: 279 is crossed on Monday; 280 is not above until Tuesday.
    assert credit_runway(series, Decimal("279"), as_of=as_of) == as_of + timedelta(days=4)
    assert credit_runway(series, Decimal("280"), as_of=as_of) == as_of + timedelta(days=5)
    assert credit_runway(series, Decimal("-1"), as_of=as_of) == as_of
    assert credit_runway(series, Decimal("1000000"), as_of=as_of) is None


def test_too_short_a_history_is_refused_in_words() -> None:
    with pytest.raises(UsageLedgerError, match="at least 7 days"):
        forecast_month(_flat(5), date(2026, 8, 1), as_of=START + timedelta(days=4))


def test_fill_days_puts_zero_on_missing_days() -> None:
    filled = fill_days([(START, Decimal(1)), (START + timedelta(days=2), Decimal(2))], START, START + timedelta(3))
    assert [v for _, v in filled] == [1, 0, 2, 0]


def test_quantile_interpolates() -> None:
    values = [Decimal(v) for v in (1, 2, 3, 4, 5)]
    assert quantile(values, Decimal("0.1")) == Decimal("1.4")
    assert quantile(values, Decimal("0.9")) == Decimal("4.6")
