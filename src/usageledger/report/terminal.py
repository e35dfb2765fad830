"""Rich renderables for the terminal: the report, the reconciliation and the check. Nothing here prints; the CLI
hands the returned renderables to its console."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from usageledger._amounts import CENT, apportion
from usageledger._text import counted
from usageledger.report.alerts import AnomalyRule, CheckResult
from usageledger.report.finality import first_provisional
from usageledger.report.folding import RowLimit, more_rows
from usageledger.report.forecast_out import adjustment_line
from usageledger.report.formatting import format_count, format_money, format_percent, format_ratio, format_signed_money
from usageledger.report.history import Changes, Restatement
from usageledger.report.names import Names
from usageledger.report.queries import ModelSpend, ModelUsage, Mover, ReportData, Spend
from usageledger.report.reconciliation import WHY_THEY_DIFFER, ReconcileResult
from usageledger.report.tables import DataTable, Flow, label, number
from usageledger.report.teams import TeamSpend
from usageledger.report.trend import summarise
from usageledger.store import tables
from usageledger.timeutil import iso

__all__ = [
    "SPARK_CHARS",
    "more_label",
    "render_changes",
    "render_check",
    "render_reconcile",
    "render_report",
    "render_teams",
    "sparkline",
]

SPARK_CHARS: Final = "▁▂▃▄▅▆▇█"
_GRAIN_TITLES: Final = {"day": "Daily", "week": "Weekly", "month": "Monthly"}


def sparkline(values: Sequence[Decimal | int]) -> str:
    """One character per value, scaled from the smallest (▁) to the largest (█); all-zero is a flat ▁ line."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return SPARK_CHARS[0] * len(values)
    top = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[int((Decimal(v) - low) * top / (high - low) + Decimal("0.5"))] for v in values)


def _quantity(value: Decimal) -> str:
    """A token count: whole numbers with separators, fractions (billed per 1,000 tokens) as exact decimals."""
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value.normalize():,f}"


def _model(model: str | None) -> str:
    return model if model is not None else "(no model)"


def _item(key: str | None) -> str:
    return key if key is not None else "(none)"


def _share(part: Decimal, total: Decimal) -> str:
    if total == 0:
        return "-"
    return f"{(part * 100 / total).quantize(Decimal('0.1'))}%"


def _table(title: str, first: str, *numbers: str) -> DataTable:
    """A table of one label column and number columns, none of which is ever cut."""
    return DataTable(title, label(first), *(number(n) for n in numbers))


def _movers(title: str, movers: Sequence[Mover], what: str, currency: str | None, names: Names | None) -> DataTable:
    table = _table(title, what, "this period", "previous", "change", "%")
    for m in movers:
        key = names.project(m.key) if names is not None else _model(m.key)
        table.add_row(
            key,
            format_money(m.current, currency),
            format_money(m.previous, currency),
            format_signed_money(m.change, currency),
            format_ratio(m.change_ratio),
        )
    if not movers:
        table.add_row("no change", "", "", "", "")
    return table


def more_label(count: int, what: str) -> Text:
    """The label of a table's last row, which sums the rows it does not list: ``… 255 more projects``. It wraps in a
    column too narrow for it, never cut like a name (``… 14 more…`` lost what it counts: no other row says it)."""
    return Text(more_rows(count, what), style="dim", no_wrap=False, overflow="fold")


def _folded_note(rows: RowLimit) -> Text:
    """Said under the report's tables when one lists only its biggest rows: how to list more, and where all are."""
    return Text(
        f"Long tables list their {counted(rows.shown or 0, 'biggest row')} and sum the rest in one row: "
        "`usageledger report --limit-rows N` lists N, `--limit-rows 0` every row (--format json and --html hold "
        "every row).",
        style="dim",
    )


def _spend_table(
    title: str, what: str, spends: Sequence[Spend], name: Callable[[str | None], str], data: ReportData, rows: RowLimit
) -> DataTable:
    """Spend and share by one dimension, biggest first: the rows ``rows`` lists, then the rest summed in one row."""
    cur, total = data.currency, data.total_spend
    table = _table(title, what, "spend", "share")
    listed, rest = rows.split(spends)
    for s in listed:
        table.add_row(name(s.key), format_money(s.amount, cur), _share(s.amount, total))
    if rest:
        others = sum((s.amount for s in rest), Decimal(0))
        table.add_row(more_label(len(rest), what), format_money(others, cur), _share(others, total))
    return table


def _model_spend_table(data: ReportData, rows: RowLimit) -> DataTable:
    """Spend, share and cost per 1M tokens by model; the models not listed summed in one row, its rate theirs
    together (their token-priced spend over their tokens), as a model's is."""
    cur = data.currency
    table = _table("Spend by model", "model", "spend", "share", "per 1M tokens")
    listed, rest = rows.split(data.spend_by_model)
    lines: list[tuple[str | Text, ModelSpend]] = [(_model(m.model), m) for m in listed]
    if rest:
        zero = Decimal(0)
        others = ModelSpend(
            None,
            sum((m.amount for m in rest), zero),
            sum((m.token_spend for m in rest), zero),
            sum((m.tokens for m in rest), zero),
        )
        lines.append((more_label(len(rest), "model"), others))
    for shown, m in lines:
        rate = m.per_million_tokens
        table.add_row(
            shown,
            format_money(m.amount, cur),
            _share(m.amount, data.total_spend),
            format_money(rate, cur, places=4) if rate is not None else "-",
        )
    return table


def _usage_table(usage: Sequence[ModelUsage], rows: RowLimit) -> DataTable:
    """Tokens and requests by model, most tokens first; the models not listed summed in one row."""
    table = _table("Tokens and requests by model", "model", "input tokens", "output tokens", "total", "requests")
    listed, rest = rows.split(usage)
    lines: list[tuple[str | Text, ModelUsage]] = [(_model(u.model), u) for u in listed]
    if rest:
        others = ModelUsage(
            None,
            sum(u.input_tokens for u in rest),
            sum(u.output_tokens for u in rest),
            sum(u.requests for u in rest),
        )
        lines.append((more_label(len(rest), "model"), others))
    for shown, u in lines:
        table.add_row(
            shown,
            format_count(u.input_tokens),
            format_count(u.output_tokens),
            format_count(u.tokens),
            format_count(u.requests),
        )
    return table


def render_report(data: ReportData, names: Names | None = None, *, rows: RowLimit = RowLimit()) -> RenderableType:
    """The whole terminal report for one period. Each long table lists the rows ``rows`` says, biggest first (the
    dashboard's 25 by default: :mod:`usageledger.report.folding`), and sums the rest in one last row, so its columns
    still add up to the table's total; the top movers are the biggest :data:`~usageledger.report.queries.TOP_MOVERS`
    changes already, and listed whole."""
    names = names or Names()
    cur = data.currency
    scope = data.scope.labels(names.project)
    heading = Flow(Text.assemble(("Usage & costs ", "bold"), str(data.period)), Text(" · ".join(scope)), gap=2)
    summary = Flow(
        Text.assemble(("Spend ", "bold"), format_money(data.total_spend, cur), f"  ({data.comparison()})"),
        Text.assemble(("Tokens ", "bold"), format_count(data.total_tokens)),
        Text.assemble(("Requests ", "bold"), format_count(data.total_requests)),
    )
    series = summarise(data.daily_spend)
    values = [v for _, v in series.points]
    line = sparkline(values)
    # Points that hold a provisional day: yellow, marked `*`, explained below the line.
    cut = first_provisional([d for d, _ in series.points], data.provisional_from, data.period.until)
    trend = Flow(
        Text.assemble(
            (f"{_GRAIN_TITLES[series.grain]} spend ", "bold"),
            (line[:cut], "cyan"),
            (line[cut:], "yellow"),
            ("*" if cut < len(line) else ""),
        ),
        Text(f"{data.period.since} … {data.period.until - timedelta(days=1)}"),
        Text(f"low {format_money(min(values), cur)}, high {format_money(max(values), cur)}"),
        gap=2,
    )
    footnotes: list[RenderableType] = []
    if data.as_of is not None:
        footnotes.append(
            Text(f"As of {data.as_of:%Y-%m-%d %H:%M:%S} UTC, rebuilt from the revision log.", style="bold")
        )
    footnotes.extend(adjustment_line(adj, names) for adj in data.adjustments)
    if cut < len(line) and data.provisional_from is not None:
        footnotes.append(
            Text(
                f"* provisional: spend from {data.provisional_from} on may still be restated by the API"
                " (final before that day; see `usageledger status`).",
                style="dim",
            )
        )

    by_project = _spend_table("Spend by project", "project", data.spend_by_project, names.project, data, rows)
    by_dimension = [  # only when the costs stream groups by it
        _spend_table(title, what, spends, name, data, rows)
        for title, what, spends, name in (
            ("Spend by API key", "API key", data.spend_by_api_key, names.api_key),
            ("Spend by user", "user", data.spend_by_user, names.user),
        )
        if spends
    ]
    by_item = _spend_table("Spend by line item", "line item", data.spend_by_line_item, _item, data, rows)
    by_model = _model_spend_table(data, rows)
    usage = _usage_table(data.usage_by_model, rows)
    tables_rows: tuple[Sequence[object], ...] = (
        data.spend_by_project,
        data.spend_by_api_key,
        data.spend_by_user,
        data.spend_by_line_item,
        data.spend_by_model,
        data.usage_by_model,
    )
    folded = any(rows.split(t)[1] for t in tables_rows)  # then the report says how to list more

    period = counted(data.period.days, "day")
    movers = (
        []  # the summary line says why: the previous period is only partly in the store
        if not data.compared
        else [
            _movers(f"Top movers by project (vs the previous {period})", data.movers_by_project, "project", cur, names),
            _movers(f"Top movers by model (vs the previous {period})", data.movers_by_model, "model", cur, None),
        ]
    )
    note = Text(
        "Cost per 1M tokens: spend on token-priced line items divided by the tokens billed for them.", style="dim"
    )
    return Group(
        heading,
        summary,
        trend,
        *footnotes,
        Text(),
        by_project,
        *by_dimension,
        by_item,
        by_model,
        note,
        usage,
        *([_folded_note(rows)] if folded else []),
        *movers,
    )


_HEADLINE: Final = {
    spec.name: {m.name for m in spec.endpoint.metrics if m.required} for spec in tables() if not spec.endpoint.is_costs
}
"""The metrics `changes` lists in the terminal for each usage table (the required ones; every one where an endpoint
has none): a restated bucket moves every token breakdown with its total."""


def _value(value: Decimal | None, money: bool, currency: str | None) -> str:
    if value is None:
        return "-"
    if money:
        return format_money(value, currency, places=4)
    return format_count(value) if value == value.to_integral_value() else f"{value.normalize():f}"


CHANGES_ROWS: Final = 20
"""How many lines ``changes`` prints per stream by default: one restating sync moved ~3,800 values of the demo's org,
13,000 terminal lines; the rest are counted and are in ``--format json``."""


def render_changes(
    changes: Changes, names: Names | None = None, *, rows_each: int | None = CHANGES_ROWS
) -> RenderableType:
    """Restatements grouped by org and stream, a line per bucket, group and metric, at most ``rows_each`` a stream
    (``None``: every one; those after a close first; the rest counted under the table); spend restated after its
    month was closed is
    marked ``!`` in red; then the closed months' adjustments."""
    names = names or Names()
    span = []
    if changes.since is not None:
        span.append(f"seen after {iso(changes.since)}")
    if changes.until is not None:
        span.append(f"up to {iso(changes.until)}")
    rows = changes.restatements
    buckets = {(r.table, r.org, r.stream, r.bucket_start) for r in rows}
    parts: list[RenderableType] = [
        Text.assemble(
            ("Restatements ", "bold"),
            " ".join(span) or "(all)",
            f": {counted(len(rows), 'changed value')} in {counted(len(buckets), 'bucket')}; spend restated by"
            f" {format_signed_money(changes.spend_delta, 'usd')}",
        )
    ]
    if not rows:
        parts.append(Text("Nothing was restated in this span.", style="dim"))
    by_stream: dict[tuple[str, str], list[Restatement]] = {}
    for r in rows:
        by_stream.setdefault((r.org, r.stream), []).append(r)
    hidden = 0
    for (org, stream), items in sorted(by_stream.items()):
        fields = ", ".join(name for name, _ in items[0].group) or "group"
        table = DataTable(
            f"{stream} (org {org})",
            label("day", whole=True),
            label(fields, whole=True),
            label("metric", whole=True),
            number("old"),
            number("new"),
            number("delta"),
        )
        shown = _HEADLINE.get(items[0].table)
        listed = [r for r in items if not shown or r.metric in shown]
        hidden += len(items) - len(listed)
        # The lines after a close first (the ones to act on), each kind in the log's order; the rest are counted.
        listed = sorted(listed, key=lambda r: not r.after_close)
        for r in listed[slice(rows_each)]:
            style = "bold red" if r.after_close else ""
            money = r.is_spend
            mark = "! " if r.after_close else ""
            table.add_row(
                Text(f"{mark}{r.bucket_start:%Y-%m-%d}", style=style),
                Text(r.group_label(names), style=style),
                Text(r.metric, style=style),
                _value(r.old, money, "usd"),
                _value(r.new, money, "usd"),
                Text(_signed(r.delta, money), style=style),
            )
        parts.append(table)
        if rows_each is not None and len(listed) > rows_each:
            more = listed[rows_each:]
            late = sum(r.after_close for r in more)
            parts.append(
                Text(
                    f"... and {counted(len(more), 'more line')} of {stream}"
                    + (f", {late} of them after a close" if late else "")
                    + ": --limit-rows N prints more, --format json every one",
                    style="bold red" if late else "dim",
                )
            )
    if hidden:
        parts.append(
            Text(
                f"{counted(hidden, 'restated token breakdown')} (cached, audio, ...)"
                f" {'is' if hidden == 1 else 'are'} in --format json.",
                style="dim",
            )
        )
    if any(r.after_close for r in rows):
        parts.append(
            Text("! spend of a month restated after the month was closed (`usageledger close`)", style="bold red")
        )
    if changes.adjustments:
        adj = DataTable(
            "Adjustments against closed months",
            label("month"),
            label("org", whole=True),
            label("project", whole=True),
            number("closed"),
            number("now"),
            number("adjustment"),
        )
        for a in changes.adjustments:
            cur = a.currency
            closed, current, amount = a.in_cents()
            adj.add_row(
                f"{a.month:%Y-%m}",
                a.org,
                "(total)" if a.project_id is None and a.level == "org" else names.project(a.project_id),
                format_money(closed, cur),
                format_money(current, cur),
                Text(format_signed_money(amount, cur), style="bold red"),
            )
        parts.append(adj)
    return Group(*parts)


def _signed(value: Decimal, money: bool) -> str:
    text = _value(abs(value), money, "usd")
    return ("-" if value < 0 else "+") + text if value != 0 else text


def render_reconcile(result: ReconcileResult) -> RenderableType:
    """The reconciliation's verdict, its differences and the plain-words explanation."""
    tol = result.tolerance
    diffs = result.differences
    head = Text.assemble(
        ("Usage vs costs, tokens per day and model ", "bold"),
        str(result.period),
        f"   usage {_quantity(result.usage_total)}, costs {_quantity(result.costs_total)}, "
        f"tolerance {format_percent(tol)}",
    )
    parts: list[RenderableType] = [head]
    if diffs:
        several = len({r.org for r in result.rows}) > 1
        headers = [number("day"), label("model"), *(number(h) for h in ("usage", "costs", "costs − usage", "%"))]
        table = DataTable(
            f"{counted(len(diffs), 'difference')} beyond the tolerance",
            *([label("org"), *headers] if several else headers),
        )
        for r in diffs:
            cells = [
                str(r.day),
                _model(r.model),
                _quantity(r.usage_tokens) if r.usage_tokens is not None else "missing",
                _quantity(r.costs_tokens) if r.costs_tokens is not None else "missing",
                ("+" if r.difference > 0 else "") + _quantity(r.difference),
                f"{(r.relative * 100).quantize(Decimal('0.01'))}%",
            ]
            table.add_row(*([r.org, *cells] if several else cells))
        parts.append(table)
    elif not result.rows:  # "No differences ... across 0 day/model pairs" read as an all-clear
        parts.append(
            Text(
                "Nothing to compare: the store holds no token usage and no billed tokens in this period"
                f"{'' if result.scope.org is None else f' for org {result.scope.org}'}; check the period, or sync it.",
                style="yellow",
            )
        )
    else:
        parts.append(
            Text(f"No differences beyond the tolerance across {len(result.rows)} day/model pairs.", style="green")
        )
    parts.append(Panel(WHY_THEY_DIFFER, title="Why they differ", title_align="left", border_style="dim"))
    return Group(*parts)


def render_check(result: CheckResult, rule: AnomalyRule) -> RenderableType:
    """What each check compared, then one line per alert."""
    lines: list[RenderableType] = [Text(f"Anomaly method: {rule.describe()}.", style="dim")]
    lines.extend(Text(f"checked  {c}", style="dim") for c in result.checks)
    for alert in result.alerts:
        lines.append(Text.assemble((f"ALERT {alert.kind}:", "bold red"), f" {alert.message}"))
    if not result.alerts:
        lines.append(Text("OK: no alerts", style="bold green"))
    return Group(*lines)


def render_teams(
    data: ReportData, teams: Sequence[TeamSpend], names: Names, *, rows: RowLimit = RowLimit()
) -> RenderableType:
    """``report --by team``: each team's spend and share, its projects by name, and the total they add up to. A
    long list of teams, and a team's long list of projects (a big org's ``unassigned``: hundreds of names), are cut
    as the report's tables are (``rows``): the biggest listed, the rest counted (their spend in one row)."""
    cur = data.currency
    # The heading above the table, as the whole report's: its filters said (`--team`, `--model`), and never wrapped
    # to the table's width (`(30` on one line, `days)` on the next).
    heading = Flow(
        Text.assemble(("Spend by team ", "bold"), str(data.period)),
        Text(" · ".join(data.scope.labels(names.project))),
        gap=2,
    )
    table = DataTable(None, label("team"), number("spend"), number("share"), label("projects"))
    # The teams add up to the total to the cent as printed too: the total rounded once (half-up), each team's exact
    # spend apportioned to it (largest remainder), a statement's rule. Rounded alone, the demo's teams in EUR read
    # €1,123.08 + €622.23 + €219.08 = €1,964.39 against a total of €1,964.40.
    total = sum((t.amount for t in teams), Decimal(0))
    cents = apportion([t.amount for t in teams], total.quantize(CENT, rounding=ROUND_HALF_UP))
    listed, rest = rows.split(list(zip(teams, cents, strict=True)))
    folded = bool(rest)
    for t, amount in listed:
        # a team's projects in the order of its spend (the report's), so the ones listed are its biggest
        shown, more = rows.split(t.projects)
        folded = folded or bool(more)
        projects = ", ".join(
            [names.project(p) if p is not None else "(no project)" for p in shown]
            + ([f"… {counted(len(more), 'more project')}"] if more else [])
        )
        table.add_row(t.team, format_money(amount, cur), _share(t.amount, data.total_spend), projects)
    if rest:
        others = sum((t.amount for t, _ in rest), Decimal(0))
        table.add_row(
            more_label(len(rest), "team"),
            format_money(sum((amount for _, amount in rest), Decimal(0)), cur),
            _share(others, data.total_spend),
            counted(sum(len(t.projects) for t, _ in rest), "project"),
        )
    table.add_row("total", format_money(total, cur), "", "")
    parts: list[RenderableType] = [heading, table]
    if folded:
        parts.append(_folded_note(rows))
    # A team apportioned a cent its own rounding does not give reads a cent off its projects' spend as the whole
    # report prints it (a team of one project: $426.13 here, $426.12 there): said where it is read, never left to find
    moved = [t.team for t, amount in listed if amount != t.amount.quantize(CENT, ROUND_HALF_UP)]
    if moved:
        parts.append(
            Text(
                f"Rounded so the teams add up to the total (largest remainder): {', '.join(moved)} "
                f"{'reads' if len(moved) == 1 else 'read'} a cent off {'its' if len(moved) == 1 else 'their'} "
                "exact spend rounded alone, as the report's project table rounds it; --format json gives the exact "
                "figures."
            )
        )
    if data.as_of is not None:
        # `--by team --as-of`: figures the ledger held then, said as the whole report says them
        parts.append(Text(f"As of {data.as_of:%Y-%m-%d %H:%M:%S} UTC, rebuilt from the revision log.", style="bold"))
    return Group(*parts)
