"""The HTML report: one self-contained file that opens offline.

The template, stylesheet and script ship as package data next to this module (``template.html``, ``report.css``,
``report.js``) and are inlined into the output, charts included as HTML with inline SVG, so the file needs no
network, no CDN and no other file. A Content-Security-Policy in the page forbids loading anything from elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from importlib import resources
from string import Template
from typing import Final

from usageledger import __version__
from usageledger._text import counted
from usageledger.report.chart_html import render_chart
from usageledger.report.charts import report_charts
from usageledger.report.credit import CreditBalance
from usageledger.report.folding import RowLimit
from usageledger.report.forecast_out import adjustment_line, credit_line, forecast_figures, forecast_line
from usageledger.report.forecasting import ForecastReport
from usageledger.report.formatting import format_count, format_money, format_ratio, format_signed_money
from usageledger.report.history import Adjustment
from usageledger.report.jsonout import json_decimal
from usageledger.report.names import Names
from usageledger.report.queries import Mover, ReportData

__all__ = ["outlook", "render_html"]


@dataclass(frozen=True, slots=True)
class _Cell:
    text: str
    value: Decimal | int | None = None
    """The exact number behind the text, used for sorting."""
    href: str | None = None
    """Where the text links to (a project's drill-down on the dashboard), if anywhere."""


def _asset(name: str) -> str:
    return resources.files("usageledger.report").joinpath(name).read_text(encoding="utf-8")


def _table(table_id: str, title: str, headers: Sequence[str], rows: Sequence[Sequence[_Cell]], note: str = "") -> str:
    numeric = [i > 0 for i in range(len(headers))]
    head = "".join(
        f'<th scope="col"{" class=num" if numeric[i] else ""}>{escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            attrs = ' class="num"' if numeric[i] else ""
            if cell.value is not None:
                attrs += f' data-value="{cell.value}"'
            text = escape(cell.text)
            if cell.href is not None:
                text = f'<a href="{escape(cell.href)}">{text}</a>'
            cells.append(f"<td{attrs}>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    empty = f'<tr><td colspan="{len(headers)}">No data in this period</td></tr>' if not rows else ""
    extra = f'<p class="note">{escape(note)}</p>' if note else ""
    return (
        f'<section class="panel"><h2>{escape(title)}</h2>'
        f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}{empty}</tbody></table>{extra}</section>"
    )


def _money(amount: Decimal, currency: str | None, places: int = 2) -> _Cell:
    return _Cell(format_money(amount, currency, places=places), amount)


def _count(value: int | Decimal) -> _Cell:
    return _Cell(format_count(value), value)


def _share(part: Decimal, total: Decimal) -> _Cell:
    if total == 0:
        return _Cell("-")
    share = (part * 100 / total).quantize(Decimal("0.1"))
    return _Cell(f"{share}%", share)


def _mover_rows(movers: Sequence[Mover], currency: str | None, names: Names | None) -> list[list[_Cell]]:
    rows = []
    for m in movers:
        key = names.project(m.key) if names is not None else (m.key or "(no model)")
        ratio = m.change_ratio
        rows.append(
            [
                _Cell(key),
                _money(m.current, currency),
                _money(m.previous, currency),
                _Cell(format_signed_money(m.change, currency), m.change),
                _Cell(format_ratio(ratio), None if ratio is None else ratio.quantize(Decimal("0.0001"))),
            ]
        )
    return rows


def _card(label: str, value: str, sub: str = "") -> str:
    return (
        f'<div class="card"><div class="label">{escape(label)}</div><div class="value">{escape(value)}</div>'
        f'<div class="sub">{escape(sub)}</div></div>'
    )


def outlook(
    forecast: ForecastReport | None,
    credit: CreditBalance | None,
    currency: str | None,
    adjustments: Sequence[Adjustment] = (),
    names: Names | None = None,
) -> str:
    """The "This month" card (this month's forecast, the prepaid credit balance in ``currency``) and its sibling, the
    closed months' adjustments (each in its own currency, the store's), in the words of the terminal report; each
    card only when it has a line.

    Each line carries its exact figures as ``data-*`` decimal strings, as ``--format json`` writes them."""
    names = names or Names()
    items = []
    if forecast is not None:
        fc = forecast.total
        figures = {key: json_decimal(value) for key, value in forecast_figures(fc).items() if key != "days_used"}
        items.append(
            f'<li id="outlook-forecast" data-month="{escape(fc.label)}" '
            f'data-month-end="{figures["month_end"]}" data-low="{figures["low"]}" '
            f'data-high="{figures["high"]}">{_prose(forecast_line(forecast).plain)}</li>'
        )
    if credit is not None:
        items.append(
            f'<li id="outlook-credit" data-balance="{json_decimal(credit.balance)}">'
            f"{_prose(credit_line(credit, currency).plain)}</li>"
        )
    restated = [
        f'<li class="adjustment" data-month="{adj.month:%Y-%m}" data-amount="{json_decimal(adj.amount)}">'
        f"{_prose(adjustment_line(adj, names).plain)}</li>"
        for adj in adjustments
    ]
    parts = []
    if items:
        parts.append(
            f'<section class="panel outlook" id="outlook"><h2>This month</h2><ul>{"".join(items)}</ul></section>'
        )
    if restated:
        parts.append(
            '<section class="panel outlook" id="adjustments"><h2>Closed months restated</h2>'
            f"<ul>{''.join(restated)}</ul></section>"
        )
    return "\n".join(parts)


_COMMAND: Final = re.compile(r"`([^`]+)`")


def _prose(text: str) -> str:
    """A line of the terminal report as HTML: escaped, and a command in backticks (`usageledger forecast`) set as
    code, as the terminal's Markdown-ish backticks would read as stray marks on a page."""
    return _COMMAND.sub(r"<code>\1</code>", escape(text))


def render_html(
    data: ReportData,
    names: Names | None = None,
    *,
    generated_at: datetime | None = None,
    before: str = "",
    after: str = "",
    script: str = "",
    note: str | None = None,
    forecast: ForecastReport | None = None,
    credit: CreditBalance | None = None,
    credit_currency: str | None = None,
    connect_self: bool = False,
    project_link: Callable[[str], str] | None = None,
    rows: RowLimit = RowLimit(),
) -> str:
    """The report as one HTML document (a string), with its charts, CSS and script inline.

    ``before`` and ``after`` are HTML put before and after the report's own (the dashboard's filters and drill-down),
    ``script`` more inline JavaScript run after the report's; ``note`` (such as the currency rates used) goes in the
    footer. ``forecast`` and ``credit`` (in ``credit_currency``, else the report's currency) fill the "This month"
    card (:func:`outlook`), with the closed months' adjustments of ``data``. ``connect_self`` lets the page's script
    fetch from the server that served it (the live dashboard asks it for the last sync); a file report fetches
    nothing. ``project_link`` gives the address of a project's drill-down (the dashboard's), which each project's name
    in "Spend by project" then links to; a file report links nowhere. Every row of every table is in the page; a long
    table shows the first rows ``rows`` says (the terminal report's rule) and a button for the rest."""
    names = names or Names()
    cur = data.currency
    generated = (generated_at or datetime.now(UTC)).astimezone(UTC)
    scope = data.scope.labels(names.project)

    parts = [
        before,
        "<header>",
        "<h1>Usage &amp; costs</h1>",
        f"<p>{escape(str(data.period))}{escape(' · ' + ' · '.join(scope)) if scope else ''}</p>",
        "</header>",
        # What `report` says on stderr (costs never synced, a store mixing synthetic and real orgs), above the figures.
        *(f'<p class="store-warning" role="alert">Warning: {_prose(warning)}</p>' for warning in data.warnings),
        '<div class="cards">',
        _card(
            "Spend",
            format_money(data.total_spend, cur),
            data.comparison(),
        ),
        _card("Tokens", format_count(data.total_tokens), "input + output, token-metered endpoints"),
        _card("Requests", format_count(data.total_requests), "model requests, token-metered endpoints"),
        "</div>",
        outlook(
            forecast,
            credit,
            cur if credit_currency is None else credit_currency,
            data.adjustments,
            names,
        ),
        '<div class="charts">',
    ]
    for chart in report_charts(data, names):
        parts.append(
            f'<section class="panel chart-panel"><h2>{escape(chart.title)}</h2>{render_chart(chart)}</section>'
        )
    parts.append("</div>")

    parts.append(
        _table(
            "spend-by-project",
            "Spend by project",
            ["project", "spend", "share"],
            [
                [
                    _Cell(
                        names.project(s.key),
                        href=None if project_link is None or s.key is None else project_link(s.key),
                    ),
                    _money(s.amount, cur),
                    _share(s.amount, data.total_spend),
                ]
                for s in data.spend_by_project
            ],
        )
    )
    for table_id, title, label, spends, name in (
        ("spend-by-api-key", "Spend by API key", "API key", data.spend_by_api_key, names.api_key),
        ("spend-by-user", "Spend by user", "user", data.spend_by_user, names.user),
    ):
        if spends:
            cells = [[_Cell(name(s.key)), _money(s.amount, cur), _share(s.amount, data.total_spend)] for s in spends]
            parts.append(_table(table_id, title, [label, "spend", "share"], cells))
    parts.append(
        _table(
            "spend-by-line-item",
            "Spend by line item",
            ["line item", "spend", "share"],
            [
                [_Cell(s.key or "(none)"), _money(s.amount, cur), _share(s.amount, data.total_spend)]
                for s in data.spend_by_line_item
            ],
        )
    )
    model_rows = []
    for m in data.spend_by_model:
        rate = m.per_million_tokens
        model_rows.append(
            [
                _Cell(m.model or "(no model)"),
                _money(m.amount, cur),
                _share(m.amount, data.total_spend),
                _count(m.tokens),
                _money(rate, cur, 4) if rate is not None else _Cell("-"),
            ]
        )
    parts.append(
        _table(
            "spend-by-model",
            "Spend by model",
            ["model", "spend", "share", "billed tokens", "per 1M tokens"],
            model_rows,
            "Cost per 1M tokens: spend on token-priced line items divided by the tokens billed for them.",
        )
    )
    parts.append(
        _table(
            "usage-by-model",
            "Tokens and requests by model",
            ["model", "input tokens", "output tokens", "total tokens", "requests"],
            [
                [
                    _Cell(u.model or "(no model)"),
                    _count(u.input_tokens),
                    _count(u.output_tokens),
                    _count(u.tokens),
                    _count(u.requests),
                ]
                for u in data.usage_by_model
            ],
        )
    )
    compared = data.compared  # else the Spend card says why there is no comparison
    for table_id, title, label, movers, mover_names in (
        ("movers-by-project", "Top movers by project", "project", data.movers_by_project, names),
        ("movers-by-model", "Top movers by model", "model", data.movers_by_model, None),
    )[: 2 if compared else 0]:
        parts.append(
            _table(
                table_id,
                f"{title} (vs the previous {counted(data.period.days, 'day')})",
                [label, "this period", "previous", "change", "change %"],
                _mover_rows(movers, cur, mover_names),
            )
        )
    parts.append(after)
    parts.append(
        f"<footer>Generated by usageledger {escape(__version__)} at {generated:%Y-%m-%d %H:%M} UTC from the store's "
        "daily views. Every figure is a SQL sum over the store." + (f" {escape(note)}" if note else "") + "</footer>"
    )
    title = f"Usage & costs, {data.period}"
    return Template(_asset("template.html")).substitute(
        title=escape(title),
        version=escape(__version__),
        css=_asset("report.css"),
        js=_asset("report.js") + script,
        body="\n".join(parts),
        connect="; connect-src 'self'" if connect_self else "",
        rows=rows.page_attributes(),
    )
