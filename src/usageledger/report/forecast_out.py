"""The forecast and the prepaid credit balance as JSON documents and terminal lines: ``forecast``, ``credit``,
``report`` and ``status`` show them alike; and a closed month's adjustment as one line (the terminal and the HTML
report word it alike)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from usageledger._amounts import cents
from usageledger.report.credit import CreditBalance
from usageledger.report.forecast import Forecast
from usageledger.report.forecasting import ForecastReport
from usageledger.report.formatting import format_money, format_signed_money
from usageledger.report.history import Adjustment
from usageledger.report.names import Names

__all__ = [
    "adjustment_line",
    "credit_document",
    "credit_line",
    "forecast_document",
    "forecast_figures",
    "forecast_line",
    "to_date_words",
]


def forecast_figures(fc: Forecast) -> dict[str, Any]:
    """A forecast's figures, rounded to the cent (they keep their two places in JSON: :func:`cents`)."""
    return {
        "actual_to_date": cents(fc.actual_to_date),
        "month_end": cents(fc.month_end),
        "low": cents(fc.low),
        "high": cents(fc.high),
        "days_used": fc.days_used,
    }


def forecast_document(report: ForecastReport, names: Names | None = None) -> dict[str, Any]:
    """``forecast --format json`` (and the report's ``forecast`` key): decimal strings, dates, the method."""
    names = names or Names()
    fc = report.total
    groups = []
    for g in report.groups:
        row: dict[str, Any] = {report.by or "key": g.key}
        if report.by == "project":
            row["name"] = names.project(g.key)
        row.update(forecast_figures(g.forecast))
        groups.append(row)
    return {
        "month": fc.label,
        "as_of": fc.as_of,
        "scope": {"org": report.org, "project": report.project},
        "currency": report.currency,
        **forecast_figures(fc),
        "budget": report.budget,
        "runway": report.runway,
        "by": report.by,
        "groups": groups,
        "method": fc.method,
    }


def credit_document(balance: CreditBalance | None) -> dict[str, Any] | None:
    if balance is None:
        return None
    return {
        "org": balance.org,
        "topups": balance.topups,
        "count": balance.count,
        "since": balance.first_day,
        "spent": balance.spent,
        "spent_through": balance.spent_through,  # `as_of` is the forecast's day: spent reaches past it after a sync
        "balance": balance.balance,
        "as_of": balance.as_of,
        "runway": balance.runway,
        "runway_note": balance.runway_note,
    }


def to_date_words(fc: Forecast, currency: str | None) -> str:
    """The month's spend so far in words: ``$1,234.56 through 2026-11-19``, or, before a day of the month is over
    (the 1st, as of the day before), that none is: "$0.00 through 2026-11-30" on 1 December read as November's."""
    if fc.as_of < fc.month:
        return f"no day of {fc.label} over yet"
    return f"{format_money(fc.actual_to_date, currency)} through {fc.as_of}"


def forecast_line(report: ForecastReport) -> Text:
    """One line for the terminal report: where this month ends, its range, and the method in brief."""
    fc, cur = report.total, report.currency
    return Text.assemble(
        (f"Forecast {fc.label} ", "bold"),
        format_money(fc.month_end, cur),
        f" (range {format_money(fc.low, cur)} to {format_money(fc.high, cur)}; "
        f"{to_date_words(fc, cur)}; see `usageledger forecast`)",
    )


def credit_line(balance: CreditBalance, currency: str | None) -> Text:
    """The balance in one line: what was spent from the first top-up through the last day of synced costs, the
    JSON's ``spent_through`` ("so far" when that day is past ``as_of``, the last the costs cover in full: today's,
    after a sync today). "spent since" left the reader to guess whether today's costs were in it, or how old the
    store was."""
    runs_out = balance.outlook
    last, full = balance.spent_through, balance.as_of
    through = "" if last is None else f" through {last}{' so far' if full is not None and last > full else ''}"
    return Text.assemble(
        ("Prepaid credit ", "bold"),
        format_money(balance.balance, currency),
        f" left ({format_money(balance.topups, currency)} topped up, {format_money(balance.spent, currency)} spent "
        f"from {balance.first_day}{through}); {runs_out}",
    )


def adjustment_line(adj: Adjustment, names: Names) -> Text:
    """A closed month's figure against the present, ``!``-marked: it was restated after the month was closed.

    In the adjustment's own currency, the store's USD: a report converted with ``--currency EUR`` printed these USD
    figures with the report's euro sign (the JSON said ``usd``), so $1,125.97 read as EUR 1,125.97."""
    whose = "total" if adj.project_id is None else f"project {names.project(adj.project_id)}"
    currency = adj.currency
    closed, current, amount = adj.in_cents()
    # a project's change is apportioned to the total's, so its `now` (closed + that) can be a cent off its present
    # spend rounded alone, as the report's project table prints it ($426.13 here, $426.12 there): said on the line
    apart = adj.apportioned_note()
    return Text(
        f"! adjustment: {adj.month:%Y-%m} {adj.org} {whose} closed at {format_money(closed, currency)}, now"
        f" {format_money(current, currency)} ({format_signed_money(amount, currency)} restated after the"
        f" close{apart}; see `usageledger changes`)",
        style="bold red",
    )
