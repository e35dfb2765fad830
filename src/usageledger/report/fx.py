"""Currency conversion with a per-day rate table the user supplies: the one place ``--fx`` files are read.

Costs arrive in USD. ``--currency EUR --fx rates.csv`` converts each day's amounts with that day's rate, never one
static rate that would rewrite history when it changes. The file is CSV with a header ``date,rate``: one row per UTC
day, ``rate`` = units of the target currency for one USD (``2026-10-01,0.9215`` turns $100.00 into €92.15).

Conversion is exact ``Decimal`` arithmetic; the caller rounds once, at the end, as it does for USD. A day without a
rate is an error that names the day and ``--fx``: a missing rate is never guessed from a neighbour.
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Context, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from usageledger._paths import read_user_text
from usageledger._text import counted
from usageledger.errors import ConfigError, ParameterError
from usageledger.report.queries import COSTS_VIEW, Database, day_start, utc_day
from usageledger.rows import DECIMAL_PRECISION, DECIMAL_SCALE
from usageledger.store import table_for

__all__ = [
    "BASE_CURRENCY",
    "MAX_RATE",
    "MAX_RATE_DIGITS",
    "MIN_RATE",
    "ConvertedCosts",
    "FxRates",
    "currency_code",
    "fx_document",
    "fx_note",
    "load_rates",
    "rate_problem",
    "rates_option",
]

BASE_CURRENCY: Final = "USD"
"""The currency the costs endpoint reports in (the store's ``currency`` column)."""
_CODE: Final = re.compile(r"[A-Z]{3}")
_DECIMAL_COMMA: Final = re.compile(r"\d+,\d+")
_RATE_TEXT: Final = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
"""A rate as a number is written: ASCII digits, one point, an exponent. :class:`~decimal.Decimal` reads more
(``1_0`` as 10, a full-width ``０.９２`` as 0.92): a rate nobody wrote as such, converted without a word."""

MIN_RATE: Final = Decimal("0.000001")
MAX_RATE: Final = Decimal("1000000")
"""The range of a rate (units of a currency for one USD): every currency's rate lies well inside it, and past it a
typo (``1e30``, ``1e-999``) would only make figures no store type can hold."""
_CONVERTED_USD_DIGITS: Final = 10
"""Converting stays exact up to $10 billion (10**10) of spend in one figure."""
MAX_RATE_DIGITS: Final = DECIMAL_PRECISION - DECIMAL_SCALE - _CONVERTED_USD_DIGITS
"""Significant digits a rate may have (10; published rates have 4 to 8). The store's amounts are ``DECIMAL(38,18)``
and :class:`ConvertedCosts` multiplies them by the rate exactly in SQL: the product's 38 digits hold the amount's 18
places, the rate's ``d`` digits, and ``38 - 18 - d`` digits of dollars, so with 10 any sum below $10 billion
converts without overflowing. A rate of more digits, or ``1e-999``, made a DuckDB overflow or a float column."""


_ISO_4217_CODES: Final = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
    "GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW "
    "KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN "
    "NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL "
    "SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES "
    "VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG ZWL"
)
_ISO_4217: Final = frozenset(_ISO_4217_CODES.split())
"""The ISO 4217 codes (with the funds and metals the standard lists, and ZWG and XCG of 2024-2025): the list the
FinOps Foundation's FOCUS validator checks a currency column against."""


def currency_code(value: str) -> str:
    """An ISO 4217 code from ``--currency`` (``eur`` -> ``EUR``), or a one-line error: ``EUT`` or ``XYZ`` labelled
    every converted figure with a currency that does not exist."""
    code = value.strip().upper()
    if not _CODE.fullmatch(code):
        raise ParameterError("--currency", f"{value!r} is not a three-letter currency code; write EUR, GBP, ...")
    if code not in _ISO_4217:
        codes = sorted(_ISO_4217)  # a code of the same country first (JPN: JPY), else one a letter away (EUT: EUR)
        near = [c for c in codes if c[:2] == code[:2]][:3] or difflib.get_close_matches(code, codes, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(near)}?" if near else "write EUR, GBP, JPY, ..."
        raise ParameterError("--currency", f"{value!r} is not an ISO 4217 currency code; {hint}")
    return code


@dataclass(frozen=True, slots=True)
class FxRates:
    """One USD in ``currency``, per UTC day, from ``source``."""

    currency: str
    rates: Mapping[date, Decimal]
    source: str

    def __post_init__(self) -> None:
        for day, rate in self.rates.items():
            problem = rate_problem(rate)
            if problem is not None:
                raise ParameterError("--fx", f"{self.source}: the rate of {day.isoformat()}, {problem}")
        together = _digits_together(self.rates.values())
        if together > MAX_RATE_DIGITS:
            low, high = min(self.rates.values()), max(self.rates.values())
            raise ParameterError(
                "--fx",
                f"{self.source}: rates from {low} to {high} need {together} digits side by side, and exact "
                f"conversion holds {MAX_RATE_DIGITS}; write every rate with fewer decimals",
            )

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


def rate_problem(rate: Decimal, text: str | None = None) -> str | None:
    """Why ``rate`` (written ``text``) cannot convert costs (``"'1e30' is out of range; ..."``), or ``None`` for a
    usable rate: finite, within :data:`MIN_RATE`..:data:`MAX_RATE`, at most :data:`MAX_RATE_DIGITS` significant
    digits. The one rule of :func:`load_rates` and of :class:`FxRates` made directly."""
    written = str(rate) if text is None else text
    shown = repr(written) if len(written) <= 40 else repr(written[:37]) + "..."
    if not rate.is_finite() or rate <= 0:
        return f"{shown} is not a positive rate"
    if not MIN_RATE <= rate <= MAX_RATE:
        return f"{shown} is out of range; a rate is between {MIN_RATE} and {MAX_RATE} (units for one USD)"
    digits = _digits_together([rate])
    if digits > MAX_RATE_DIGITS:
        return (
            f"{shown} has {digits} significant digits; round it to {MAX_RATE_DIGITS} or fewer "
            "(the store's decimals cannot convert more exactly)"
        )
    return None


def _plain(rate: Decimal) -> Decimal:
    """``rate`` without trailing zeros after the point (``0.92150000`` is ``0.9215``) and never in exponent form
    (``1e6`` is ``1000000``): the fewest digits the SQL literal, and the product's scale, need."""
    # normalize() rounds to the context's 28 digits: a rate of 30 decimals became 0.9215 there, passed the digit
    # limit and converted as a rate nobody wrote; a context as wide as the rate keeps every digit it has.
    normal = rate.normalize(Context(prec=max(len(rate.as_tuple().digits), 1)))
    exponent = normal.as_tuple().exponent
    return normal.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else normal


def _digits_together(rates: Iterable[Decimal]) -> int:
    """The digits of the largest rate written with the most decimals any rate has: what one SQL column of the rates
    (a ``VALUES`` list has one DECIMAL type) needs. For a single rate, its significant digits."""
    values = [_plain(r) for r in rates]
    if not values:
        return 0
    scale = max(-min(int(v.as_tuple().exponent), 0) for v in values)  # finite: rate_problem came first
    return len(str(int(max(values).scaleb(scale))))


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
    # blank lines are no lines, above the header too: one there was an IndexError traceback
    lines = enumerate(csv.reader(text.splitlines()), start=1)
    numbered = [(number, row) for number, row in lines if any(c.strip() for c in row)]
    rows = [row for _, row in numbered]
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if header[:2] != ["date", "rate"]:
        semicolons = " (comma-separated: this file uses semicolons)" if rows and ";" in rows[0][0] else ""
        raise ParameterError("--fx", f"{source} must start with the header line date,rate{semicolons}")
    rates: dict[date, Decimal] = {}
    for number, row in numbered[1:]:
        if len(row) < 2:
            raise ParameterError("--fx", f"{source} line {number}: expected date,rate, got {','.join(row)!r}")
        if len(_trimmed(row)) > len(_trimmed(rows[0])):  # `2026-10-01,1,23` was read as a rate of 1
            raise ParameterError("--fx", f"{source} line {number}: {_extra_values(row, len(_trimmed(rows[0])))}")
        day_text, rate_text = row[0].strip(), row[1].strip()
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            raise ParameterError("--fx", f"{source} line {number}: {day_text!r} is not a date (YYYY-MM-DD)") from None
        try:
            rate = Decimal(rate_text)
        except InvalidOperation:
            rate = Decimal("NaN")
        problem = rate_problem(rate, rate_text)
        if problem is None and not _RATE_TEXT.fullmatch(rate_text):
            problem = f"{rate_text!r} is not a number of ASCII digits and a point; write it like 0.9215"
        if problem is not None and _DECIMAL_COMMA.fullmatch(rate_text):  # a quoted "1,05"
            problem += f"; write it with a decimal point ({rate_text.replace(',', '.')}), not a comma"
        if problem is not None:
            raise ParameterError("--fx", f"{source} line {number}: {problem}")
        if day in rates and rates[day] != rate:
            raise ParameterError("--fx", f"{source} line {number}: {day_text} has two different rates")
        rates[day] = rate
    if not rates:
        raise ParameterError("--fx", f"{source} holds no rates: add lines date,rate under the header")
    return FxRates(code, rates, source)


def _trimmed(cells: Sequence[str]) -> list[str]:
    """``cells`` without the empty ones at the end (``2026-10-01,0.92,`` has two values)."""
    out = list(cells)
    while out and not out[-1].strip():
        out.pop()
    return out


def _extra_values(row: Sequence[str], columns: int) -> str:
    """Why a line with more values than the header's ``columns`` is refused: never read as its first two."""
    values = _trimmed(row)
    said = f"{','.join(values)!r} has {len(values)} values and the header {columns}"
    if len(values) == 3 and all(v.strip().isdigit() for v in values[1:]):
        return f"{said}; write the rate with a decimal point ({values[1].strip()}.{values[2].strip()}), not a comma"
    return f"{said}; write one date and one rate per line"


def rates_option(currency: str | None, fx: Path | None) -> FxRates | None:
    """The CLI's pair: both or neither of ``--currency`` and ``--fx``."""
    if currency is None and fx is None:
        return None
    if fx is None:
        # the code first: `--currency USD` was sent looking for a rate table it can never need, `EURO` for one too
        if currency is not None and currency_code(currency) == BASE_CURRENCY:
            raise ParameterError("--currency", f"costs are already in {BASE_CURRENCY}; leave out --currency")
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
        code = self.fx.currency
        select = []
        for c in columns:
            if c == "amount_value":
                select.append("c.amount_value * r.rate AS amount_value")
            elif c == "currency":
                select.append(f"'{code}' AS currency")
            else:
                select.append(f"c.{c}")
        # Dates and rates are parsed values (a date, a finite Decimal), written as literals: nothing from the user
        # reaches the SQL as text. A literal's digits are its DECIMAL's: with at most MAX_RATE_DIGITS of them the
        # product of DECIMAL(38,18) amounts stays a DECIMAL that holds any sum below $10 billion.
        values = ", ".join(
            f"(CAST('{day_start(d).isoformat()}' AS TIMESTAMPTZ), {rate:f})"
            for d, rate in ((d, _plain(self.fx.rate(d))) for d in self.days)
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
