"""``usageledger statement``'s outputs: the terminal tables, the JSON document, the CSV lines and the HTML page.

Every output states the allocation rule, says that the statements add up to the month's costs (and to how much),
and, when converted, the currency and the day rates used. For a closed month, it says the figures are those closed
(and when), and lists the later adjustments apart: per statement, present minus closed.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from usageledger import timeutil
from usageledger._amounts import cents
from usageledger._csv import CsvWriter
from usageledger._text import counted
from usageledger.report.formatting import format_money
from usageledger.report.fx import BASE_CURRENCY
from usageledger.report.jsonout import decimal_string
from usageledger.report.months import month_span
from usageledger.report.names import Names, shown_names, with_id
from usageledger.report.queries import day_start
from usageledger.report.statement import SHARED, MonthStatements, Statement, StatementLine
from usageledger.report.tables import DataTable, label, number

__all__ = ["render_statements", "statement_csv", "statement_document", "statement_html", "statement_summary"]


def _owner_name(statements: MonthStatements, names: Names, *, shown: bool = True) -> Callable[[str], str]:
    """A statement's owner's name: the team's, or the project's (``shown``: with its ID, for a table, a page or a
    CSV line; else as it is, for the JSON, which gives the ID as ``owner`` beside it)."""

    def name(owner: str) -> str:
        if statements.by == "project" and owner != SHARED:
            return with_id(names.project(owner), owner) if shown else names.project(owner)
        return owner

    return name


def _line_label(line: StatementLine, statements: MonthStatements) -> tuple[str, str]:
    if line.shared:
        return "", f"shared spend, {statements.rule}"
    item = line.line_item or "(no line item)"
    if line.model and item.startswith(f"{line.model}, "):
        item = item[len(line.model) + 2 :]  # the model has its own column
    return line.model or "", item


def _fraction(s: Statement) -> str:
    return "" if s.shared_fraction is None else f"{(s.shared_fraction * 100).quantize(Decimal('0.1'))}%"


def _usd(amount: Decimal | None) -> str:
    return "" if amount is None else format_money(amount, BASE_CURRENCY)


def _when(at: datetime) -> str:
    return timeutil.iso(int(at.timestamp()))


def _closes(statements: MonthStatements) -> str:
    return "; ".join(f"{_when(at)} ({org})" for org, at in statements.closes)


def _closed_sentences(statements: MonthStatements) -> list[str]:
    cur = statements.currency
    if not statements.closed:
        return []
    said = [
        f"{statements.month:%Y-%m} is closed: these statements use the figures closed at {_closes(statements)}; "
        f"the month total recorded by close is {format_money(statements.closed_total or Decimal(0), BASE_CURRENCY)} "
        f"({'matches' if statements.matches_close else 'DOES NOT match'} the ledger as of the close).",
        f"Later adjustments, listed apart (present minus closed): "
        f"{format_money(statements.adjustment_total, cur)} in all; the month's costs now are "
        f"{format_money(statements.present_total or Decimal(0), cur)} (closed + adjustments).",
    ]
    if statements.open_orgs:
        said.append(f"Not closed by {', '.join(statements.open_orgs)}: their present figures are on the statements.")
    return said


def statement_summary(statements: MonthStatements, names: Names | None = None) -> list[str]:
    """The sentences every output carries: what adds up to what, the rule, the rates, whether the month is over."""
    cur = statements.currency
    names = names or Names()
    shared_from = ", ".join(names.project(p) if p is not None else "no project" for p in statements.shared_projects)
    total = format_money(statements.total, cur)
    count = len(statements.statements)
    costs = "as closed" if statements.closed else "in the store"
    said = [
        # the month said once, as a UTC month (every output carries this sentence; the CSV has a month column)
        f"The {count} statement{'s' if count != 1 else ''} of {month_span(statements.month)} add up to {total}, the "
        f"month's costs {costs} to the cent "
        f"({'yes' if statements.adds_up else 'NO'}; largest-remainder rounding of the exact amounts).",
        f"Shared spend (no project{', or a project in no team' if statements.by == 'team' else ''}): "
        f"{format_money(statements.shared_total, cur)}{f' (from {shared_from})' if shared_from else ''}, "
        f"{statements.rule}.",
    ]
    if statements.rates:
        rates = [r for _, r in statements.rates]
        said.append(
            f"Converted from USD to {cur} at each day's rate: {counted(len(rates), 'day')},"
            f" {min(rates)} to {max(rates)} "
            f"{cur} per USD (the JSON and CSV list every day's rate). In USD, as billed, the statements add up to "
            f"{format_money(statements.usd_total, BASE_CURRENCY)}, each one's beside it."
        )
    said += _closed_sentences(statements)
    if not statements.complete:
        said.append(f"{statements.month:%Y-%m} is not over: these statements cover the days synced so far.")
    return said


def render_statements(statements: MonthStatements, names: Names) -> RenderableType:
    cur = statements.currency
    name = _owner_name(statements, names)
    parts: list[RenderableType] = []
    converted = cur != BASE_CURRENCY
    for s in statements.statements:
        table = DataTable(
            f"Statement {statements.month:%Y-%m}: {statements.by} {name(s.owner)}",
            label("model"),
            label("line item"),
            number("amount"),
            # converted: the total in USD, as billed, beside it (a number column, so never shortened as a label is)
            *([number("in USD")] if converted else []),
        )
        for line in s.lines:
            model, item = _line_label(line, statements)
            table.add_row(model, item, format_money(line.amount, cur), *([""] if converted else []))
        table.add_row("total", "", format_money(s.total, cur), *([_usd(s.usd_total)] if converted else []))
        parts += [table, Text("")]
    summary = DataTable(
        f"Statements {statements.month:%Y-%m} by {statements.by}",
        label(statements.by),
        number("direct"),
        number("shared"),
        number("share of shared"),
        number("total"),
        *([number("total in USD")] if converted else []),
    )
    for s in statements.statements:
        summary.add_row(
            name(s.owner), format_money(s.direct, cur), format_money(s.shared, cur), _fraction(s),
            format_money(s.total, cur), *([_usd(s.usd_total)] if converted else []),
        )  # fmt: skip
    summary.add_row("total", "", format_money(statements.shared_total, cur), "", format_money(statements.total, cur),
                    *([_usd(statements.usd_total)] if converted else []))  # fmt: skip
    parts.append(summary)
    if statements.closed:
        later = DataTable(
            f"Adjustments to {statements.month:%Y-%m} since its close ({_closes(statements)})",
            label(statements.by),
            number("closed"),
            number("present"),
            number("adjustment"),
        )
        for a in statements.adjustments:
            later.add_row(name(a.owner), format_money(a.closed, cur), format_money(a.present, cur),
                          format_money(a.amount, cur))  # fmt: skip
        later.add_row(
            "total",
            format_money(statements.total, cur),
            format_money(statements.present_total or Decimal(0), cur),
            format_money(statements.adjustment_total, cur),
        )
        parts += [Text(""), later]
    parts += [Text(line) for line in statement_summary(statements, names)]
    return Group(*parts)


def statement_document(statements: MonthStatements, names: Names, *, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """``statement --format json``: money as decimal strings (serialised by ``jsonout.dumps``); ``warnings``, the
    lines the command printed on stderr (days of the month the store lacks), as ``report``'s JSON carries its own."""
    name = _owner_name(statements, names, shown=False)
    return {
        "month": f"{statements.month:%Y-%m}",
        "warnings": list(warnings),
        "first_day": statements.first_day,
        "until": statements.until,
        # the month's edges as UTC timestamps: its days are UTC days, as a report period's are (``period.start``)
        "start": day_start(statements.first_day),
        "end": day_start(statements.until),
        "complete": statements.complete,
        "by": statements.by,
        "currency": statements.currency,
        "allocation": {"rule": statements.allocation, "description": statements.rule},
        # the figures rounded to the cent (which add up) keep their two places; the exact ones are trimmed
        "total": cents(statements.total),
        "total_usd": cents(statements.usd_total),
        "exact_total": statements.exact_total,
        "shared_total": cents(statements.shared_total),
        "shared_projects": list(statements.shared_projects),
        "adds_up": statements.adds_up,
        "statements": [
            {
                "owner": s.owner,
                "name": name(s.owner),
                "projects": [{"project_id": p, "name": names.project(p)} for p in s.projects],
                "direct": cents(s.direct),
                "shared": cents(s.shared),
                "shared_fraction": s.shared_fraction,
                "total": cents(s.total),
                "total_usd": None if s.usd_total is None else cents(s.usd_total),
                "lines": [
                    {
                        "model": line.model,
                        "line_item": line.line_item,
                        "shared": line.shared,
                        "amount": cents(line.amount),
                        "exact": line.exact,
                    }
                    for line in s.lines
                ],
            }
            for s in statements.statements
        ],
        "rates": [{"day": d, "rate": r} for d, r in statements.rates],
        "closed": None
        if not statements.closed
        else {
            "closes": [{"org": o, "closed_at": at} for o, at in statements.closes],
            "closed_total": statements.closed_total,
            # close records USD: said, as a statement converted to EUR gives every other figure in EUR
            "closed_total_currency": BASE_CURRENCY,
            "matches_close": statements.matches_close,
            "open_orgs": list(statements.open_orgs),
            "present_total": None if statements.present_total is None else cents(statements.present_total),
            "adjustment_total": cents(statements.adjustment_total),
        },
        "adjustments": [
            {
                "owner": a.owner,
                "name": name(a.owner),
                "closed": cents(a.closed),
                "present": cents(a.present),
                "amount": cents(a.amount),
            }
            for a in statements.adjustments
        ],
        # the terminal's sentences, naming projects as it does: a name as it is could break a sentence in two
        "notes": statement_summary(statements, shown_names(names)),
    }


def statement_csv(statements: MonthStatements, names: Names) -> str:
    """One CSV line per statement line and one ``total`` line per statement; the rates used follow as ``rate``
    lines (``line_item`` holds the day, ``currency`` says ``EUR per USD``), so the file alone shows how it was
    converted."""
    name = _owner_name(statements, names)
    out = io.StringIO()
    # the one CSV writer: names come from the API and from files, so text a spreadsheet would run as a formula
    # (`=cmd|...`) is written after an apostrophe; amounts are Decimals, numbers a spreadsheet adds (`-0.08` too)
    writer = CsvWriter(out, decimal=decimal_string)
    # amount_usd: a statement's total in USD, as billed, on its `total` line (converted or not), so a converted
    # file keeps the invoice's figures beside its own; the column adds up to the month's costs in USD
    writer.header(["month", "by", "owner", "name", "kind", "model", "line_item", "amount", "currency", "amount_usd"])
    month = f"{statements.month:%Y-%m}"
    for s in statements.statements:
        for line in s.lines:
            kind = "shared" if line.shared else "direct"
            writer.writerow(
                [month, statements.by, s.owner, name(s.owner), kind, line.model or "", line.line_item or "",
                 line.amount, statements.currency, ""]
            )  # fmt: skip
        writer.writerow([month, statements.by, s.owner, name(s.owner), "total", "", "", s.total, statements.currency,
                         "" if s.usd_total is None else s.usd_total])  # fmt: skip
    for a in statements.adjustments:  # apart from the closed figures: present minus closed, per statement
        since = "since the close at " + _closes(statements)
        writer.writerow([month, statements.by, a.owner, name(a.owner), "adjustment", "", since, a.amount,
                         statements.currency, ""])  # fmt: skip
    # a rate is no amount in USD: "USD" there let a sum of the file's USD amounts add up the rates
    per = f"{statements.currency} per {BASE_CURRENCY}"
    for day, rate in statements.rates:
        writer.writerow([month, statements.by, "", "", "rate", "", day.isoformat(), rate, per, ""])
    return out.getvalue()


def statement_html(statements: MonthStatements, names: Names) -> str:
    """A self-contained page: one table per statement, the summary, and the sentences of :func:`statement_summary`.

    Money is right-aligned in figures of one width (``num`` cells), so the columns read down; a name or model too
    long for the screen wraps inside its cell, and the page declares the device's width, so a phone draws it at its
    own width rather than shrinking a 980 px page to a third."""
    cur = statements.currency
    name = _owner_name(statements, names)
    esc = html.escape

    def head(*labels: str, money_from: int) -> str:
        cells = (f'<th class="num">{esc(c)}</th>' if i >= money_from else f"<th>{esc(c)}</th>" for i, c in
                 enumerate(labels))  # fmt: skip
        return "<table><tr>" + "".join(cells) + "</tr>"

    def row(first: str, texts: Sequence[str], amounts: Sequence[str], *, total: bool = False) -> str:
        lead = f"<th>{esc(first)}</th>" if total else f"<td>{esc(first)}</td>"
        return (
            "<tr>" + lead + "".join(f"<td>{esc(c)}</td>" for c in texts)
            + "".join(f'<td class="num">{esc(a)}</td>' for a in amounts) + "</tr>"
        )  # fmt: skip

    title = f"Statements {statements.month:%Y-%m} by {statements.by}"
    body: list[str] = [f"<h1>{esc(title)}</h1>"]
    body += [f"<p>{esc(line)}</p>" for line in statement_summary(statements, names)]
    converted = cur != BASE_CURRENCY
    body.append(head(statements.by, "direct", "shared", "total", *(["total in USD"] if converted else []),
                     money_from=1))  # fmt: skip
    for s in statements.statements:
        usd = [_usd(s.usd_total)] if converted else []
        body.append(row(name(s.owner), [], [*(format_money(v, cur) for v in (s.direct, s.shared, s.total)), *usd]))
    usd = [_usd(statements.usd_total)] if converted else []
    body.append(row("total", [], ["", "", format_money(statements.total, cur), *usd], total=True) + "</table>")
    for s in statements.statements:
        body.append(f"<h2>{esc(statements.by)} {esc(name(s.owner))}</h2>")
        body.append(head("model", "line item", "amount", money_from=2))
        for line in s.lines:
            model, item = _line_label(line, statements)
            body.append(row(model, [item], [format_money(line.amount, cur)]))
        body.append(row("total", [""], [format_money(s.total, cur)], total=True) + "</table>")
    if statements.closed:
        body.append(f"<h2>Adjustments since the close ({esc(_closes(statements))})</h2>")
        body.append(head(statements.by, "closed", "present", "adjustment", money_from=1))
        for a in statements.adjustments:
            body.append(row(name(a.owner), [], [format_money(v, cur) for v in (a.closed, a.present, a.amount)]))
        totals = (statements.total, statements.present_total or Decimal(0), statements.adjustment_total)
        body.append(row("total", [], [format_money(v, cur) for v in totals], total=True) + "</table>")
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1,h2,p{overflow-wrap:anywhere}"
        "table{border-collapse:collapse;margin:1em 0;max-width:100%}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;overflow-wrap:anywhere}"
        ".num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}"
        "@media (max-width:480px){body{margin:1em .5em}td,th{padding:.25em .3em;font-size:.85em}}"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
