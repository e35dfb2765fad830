"""Currency conversion with a per-day rate table the user supplies: the one place ``--fx`` files are read.

Costs arrive in USD. ``--currency EUR --fx rates.csv`` converts each day's amounts with that day's rate, never one
static rate that would rewrite history when it changes. The file is CSV with a header ``date,rate``: one row per UTC
day, ``rate`` = units of the target currency for one USD (``2026-10-01,0.9215`` turns $100.00 into €92.15).

Conversion is exact ``Decimal`` arithmetic; the caller rounds once, at the end, as it does for USD. A day without a
rate is an error that names the day and ``--fx``: a missing rate is never guessed from a neighbour.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from usageledger._paths import read_user_text
from usageledger._text import counted
from usageledger.errors import ConfigError, ParameterError
from usageledger.report.queries import COSTS_VIEW, Database, utc_day
from usageledger.store import table_for

__all__ = [
    "BASE_CURRENCY",
    "ConvertedCosts",
    "FxRates",
    "currency_code",
    "fx_document",
    "fx_note",
    "load_rates",
    "rates_option",
]

BASE_CURRENCY: Final = "USD"
"""The currency the costs endpoint reports in (the store's ``currency`` column)."""
_CODE: Final = re.compile(r"[A-Z]{3}")


def currency_code(value: str) -> str:
    """An ISO 4217 code from ``--currency`` (``eur`` -> ``EUR``), or a one-line error."""
    code = value.strip().upper()
    if not _CODE.fullmatch(code):
        raise ParameterError("--currency", f"{value!r} is not a three-letter currency code; write EUR, GBP, ...")
    return code


@dataclass(frozen=True, slots=True)
class FxRates:
    """One USD in ``currency``, per UTC day, from ``source``."""

    currency: str
    rates: Mapping[date, Decimal]
    source: str

    def rate(self, day: date) -> Decimal:
        """That day's rate; a day the file lacks is a one-line error naming the day and ``--fx``."""
        try:
            return self.rates[day]
        except KeyError:
            raise ParameterError(
                "--fx",
                f"{self.source} has no {self.currency} rate for {day.isoformat()}: add a line "
                f"{day.isoformat()},RATE (every day converted needs its own rate)",
            ) from None

    def require(self, days: Iterable[date]) -> None:
        """Fail on the first day of ``days`` without a rate, before anything is converted or written."""
        for day in sorted(set(days)):
            self.rate(day)

    def convert(self, amount: Decimal, day: date) -> Decimal:
        """``amount`` USD spent on ``day`` in ``currency``, exact (rounded by the caller, once)."""
        return amount * self.rate(day)

    def used(self, days: Iterable[date]) -> list[tuple[date, Decimal]]:
        """``(day, rate)`` for each of ``days``, sorted: what an output shows as the rates it used."""
        return [(d, self.rate(d)) for d in sorted(set(days))]


def load_rates(path: Path | str, currency: str) -> FxRates:
    """Read a ``date,rate`` CSV (see the module's docstring). Any bad line is a one-line error naming ``--fx``."""
    code = currency_code(currency)
    if code == BASE_CURRENCY:
        raise ParameterError("--currency", f"costs are already in {BASE_CURRENCY}; leave out --currency and --fx")
    source = str(path)
    try:
        text = read_user_text(path)
    except OSError as exc:
        raise ParameterError("--fx", f"cannot read {source}: {exc.strerror or exc}") from None
    except ConfigError as exc:  # not UTF-8
        raise ParameterError("--fx", str(exc)) from None
    rows = list(csv.reader(text.splitlines()))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if header[:2] != ["date", "rate"]:
        raise ParameterError("--fx", f"{source} must start with the header line date,rate")
    rates: dict[date, Decimal] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) < 2:
            raise ParameterError("--fx", f"{source} line {number}: expected date,rate, got {','.join(row)!r}")
        day_text, rate_text = row[0].strip(), row[1].strip()
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            raise ParameterError("--fx", f"{source} line {number}: {day_text!r} is not a date (YYYY-MM-DD)") from None
        try:
            rate = Decimal(rate_text)
        except InvalidOperation:
            rate = Decimal("NaN")
        if not rate.is_finite() or rate <= 0:
            raise ParameterError("--fx", f"{source} line {number}: {rate_text!r} is not a positive rate")
        if day in rates and rates[day] != rate:
            raise ParameterError("--fx", f"{source} line {number}: {day_text} has two different rates")
        rates[day] = rate
    if not rates:
        raise ParameterError("--fx", f"{source} holds no rates: add lines date,rate under the header")
    return FxRates(code, rates, source)


def rates_option(currency: str | None, fx: Path | None) -> FxRates | None:
    """The CLI's pair: both or neither of ``--currency`` and ``--fx``."""
    if currency is None and fx is None:
        return None
    if fx is None:
        raise ParameterError("--fx", "--currency needs a per-day rate table: --fx rates.csv with lines date,rate")
    if currency is None:
        raise ParameterError("--currency", "--fx needs the currency its rates convert to, such as --currency EUR")
    return load_rates(fx, currency)


_COSTS_FROM: Final = re.compile(rf"\bFROM {COSTS_VIEW}\b(?!_)")


class ConvertedCosts:
    """The store as the report reads it, with ``costs_daily`` in the rates' currency: each row's ``amount_value``
    times its day's rate, ``currency`` the target's code. Every figure the report computes from costs (totals,
    tables, daily series, the previous period, cost per 1M tokens) is then converted day by day, in SQL that both
    DuckDB and PostgreSQL run.

    ``start``/``end`` bound the days read (the report's previous period through its end): each day with costs in
    them needs a rate, and the first one without is a one-line error naming it, before any figure is computed.
    """

    def __init__(self, db: Database, fx: FxRates, *, start: datetime, end: datetime, org: str | None) -> None:
        sql = f"SELECT DISTINCT bucket_start FROM {COSTS_VIEW} WHERE bucket_start >= %s AND bucket_start < %s"
        params: list[object] = [start, end]
        if org is not None:
            sql += " AND org = %s"
            params.append(org)
        days = sorted({utc_day(d) for (d,) in db.query(sql, params)})
        fx.require(days)
        self._db = db
        self.fx = fx
        self.days = tuple(days)
        self._view = self._converted_view() if days else None

    def _converted_view(self) -> str:
        spec = table_for("costs")
        columns = ["org", "stream", "bucket_start", "bucket_end", *(c.name for c in spec.data_columns)]
        code = self.fx.currency.lower()
        select = []
        for c in columns:
            if c == "amount_value":
                select.append("c.amount_value * r.rate AS amount_value")
            elif c == "currency":
                select.append(f"'{code}' AS currency")
            else:
                select.append(f"c.{c}")
        # Dates and rates are parsed values (a date, a finite Decimal), written as literals: nothing from the user
        # reaches the SQL as text.
        values = ", ".join(
            f"(CAST('{datetime(d.year, d.month, d.day, tzinfo=UTC).isoformat()}' AS TIMESTAMPTZ), {self.fx.rate(d):f})"
            for d in self.days
        )
        return (
            f"(SELECT {', '.join(select)} FROM {COSTS_VIEW} AS c "
            f"JOIN (VALUES {values}) AS r(day, rate) ON c.bucket_start = r.day) AS {COSTS_VIEW}"
        )

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._view is not None:
            view = self._view
            sql = _COSTS_FROM.sub(lambda _: f"FROM {view}", sql)
        return self._db.query(sql, params)

    def used(self) -> list[tuple[date, Decimal]]:
        return self.fx.used(self.days)


def fx_note(rates: FxRates, used: list[tuple[date, Decimal]]) -> str:
    """The line that says which rates converted an output."""
    if not used:
        return f"Converted to {rates.currency} with {rates.source}: no day with costs, so no rate was used."
    values = [r for _, r in used]
    return (
        f"Converted from USD to {rates.currency} at each day's rate from {rates.source}: {counted(len(used), 'day')}, "
        f"{used[0][0]} to {used[-1][0]}, {min(values)} to {max(values)} {rates.currency} per USD."
    )


def fx_document(rates: FxRates, used: list[tuple[date, Decimal]]) -> dict[str, object]:
    return {"currency": rates.currency, "source": rates.source, "rates": [{"day": d, "rate": r} for d, r in used]}
