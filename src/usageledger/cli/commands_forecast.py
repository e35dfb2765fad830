"""``usageledger forecast`` (month-end spend, range and runway) and ``usageledger credit`` (prepaid top-ups)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from difflib import get_close_matches
from typing import Annotated, Any, Final, Literal

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from usageledger._amounts import parse_amount
from usageledger._text import as_typed, counted
from usageledger.cli._app import _click, app, console, echo_json, friendly_errors, open_for_writing, resolve_store, say
from usageledger.cli._flags import ConfigOpt, FormatOpt, NamesOpt, NowOpt, OrgOpt, ProjectOpt, StoreOpt
from usageledger.cli.commands_report import (
    _amount,
    _database,
    _names,
    _now,
    limit_rows_option,
    one_line_filters,
    project_option,
)
from usageledger.config import load_config
from usageledger.errors import ParameterError
from usageledger.report.assemble import unknown_project
from usageledger.report.credit import credit_balance
from usageledger.report.folding import ROWS_SHOWN, ROWS_SLACK, RowLimit, more_rows
from usageledger.report.forecast import Forecast, runway_words
from usageledger.report.forecast_out import credit_document, credit_line, forecast_document
from usageledger.report.forecasting import ForecastReport, Grouping, build_forecast, check_horizon
from usageledger.report.formatting import format_money
from usageledger.report.months import check_covered, first_cost_day, gaps_text, missing_days
from usageledger.report.names import Names, resolve_names
from usageledger.report.tables import DataTable, label, number
from usageledger.report.teams import project_teams
from usageledger.report.terminal import more_label
from usageledger.store import BaseStore
from usageledger.store.credit import TopUp, add_topup, check_note, list_topups, remove_topup
from usageledger.timeutil import parse_month


def _render(report: ForecastReport, names: Names, rows: RowLimit) -> RenderableType:
    cur = report.currency
    fc = report.total
    scope = " · ".join(
        part
        for part in (
            f"org {report.org}" if report.org else "",
            f"project {names.project(report.project)}" if report.project else "",
        )
        if part
    )
    table = DataTable(
        f"Forecast {fc.label} as of {fc.as_of} UTC" + (f"  {scope}" if scope else ""),
        label(report.by or "scope"),
        number("to date"),
        number("month end"),
        number("low"),
        number("high"),
    )

    def row(name: str | Text, f: Forecast) -> None:
        table.add_row(
            name,
            format_money(f.actual_to_date, cur),
            format_money(f.month_end, cur),
            format_money(f.low, cur),
            format_money(f.high, cur),
        )

    what = report.by or "group"
    for g in report.listed:
        shown = names.project(g.key) if report.by == "project" else g.key
        row(shown if shown is not None else f"(no {report.by})", g.forecast)
    if report.rest is not None:
        row(more_label(report.rest.count, what), report.rest.forecast)
    row("total", fc)
    parts: list[RenderableType] = [table]
    if report.budget is not None:
        budget = format_money(report.budget, cur)
        parts.append(Text(f"Runway: the budget of {budget} {runway_words(fc, report.runway)}."))
    if report.groups:
        together = "" if report.rest is None else f" (`{more_rows(report.rest.count, what)}`: from their spend summed)"
        parts.append(
            Text(
                f"Each row is forecast from its own daily spend{together}: the rows need not add up to the total.",
                style="dim",
            )
        )
    if report.rest is not None:
        parts.append(
            Text(
                f"The table lists the {counted(rows.shown or 0, what)} forecast to spend most: `usageledger forecast "
                "--limit-rows N` lists N, `--limit-rows 0` every one (--format json holds every one).",
                style="dim",
            )
        )
    parts.append(Text(fc.method, style="dim"))
    return Group(*parts)


@app.command()
@friendly_errors
def forecast(
    store: StoreOpt = None,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    month: Annotated[
        str | None,
        typer.Option("--month", help="The month to forecast: YYYY-MM, last or this (default: this month, UTC)."),
    ] = None,
    by: Annotated[
        Literal["project", "team", "model"] | None,
        typer.Option("--by", help="Also forecast each project, team (as report --by team) or model."),
    ] = None,
    budget: Annotated[
        str | None, typer.Option("--budget", help="A monthly budget: the runway is the day it is crossed.")
    ] = None,
    limit_rows: Annotated[
        int | None,
        typer.Option(
            "--limit-rows",
            min=0,
            help=f"With --by: list the N groups forecast to spend most and forecast the rest as one more row, from "
            f"their summed daily spend (default: the {ROWS_SHOWN} biggest of more than {ROWS_SHOWN + ROWS_SLACK}, as "
            "report lists them; 0: every one); --format json has every group.",
        ),
    ] = None,
    names: NamesOpt = None,
    config: ConfigOpt = None,
    output_format: FormatOpt = "text",
    now_at: NowOpt = None,
) -> None:
    """Where this month's spend ends, with a range, and the day a monthly budget is crossed (the runway).

    The method (weekday factors x a damped Theil-Sen trend, range from its own out-of-sample error) is stated in the
    output's footnote and in the README; its backtest is in bench/BENCHMARKS.md.
    """
    one_line_filters(("--project", project))
    rows = limit_rows_option(limit_rows, output_format=output_format)
    if limit_rows is not None and by is None:  # never a cap silently not applied
        raise ParameterError(
            "--limit-rows", "without --by the forecast has one row, the total; add --by project, team or model"
        )
    now = _now(now_at)
    target = parse_month(month, param="--month", today=now.date()) if month is not None else now.date().replace(day=1)
    check_horizon(target, now=now, param="--month")  # before the store is opened
    limit = _amount(budget, "--budget")
    settings = load_config(config)
    with _database(resolve_store(store, settings), org=org) as db:
        check_covered(db, target, org=org, param="--month")  # exit 1 and no flag named, from build_forecast
        project = project_option(db, project, org, _names(settings, names))
        # A project no row names has nothing to forecast from: one line naming --project and the ID to give, never
        # a warning saying so and then an error saying it again (exit 1, no flag named).
        if project is not None and (unknown := unknown_project(db, project, org)) is not None:
            raise ParameterError("--project", f"{as_typed(project)} {unknown}")
        teams = project_teams(db, org=org, config=settings.teams) if by == "team" else None
        grouping: Grouping | None = by
        report = build_forecast(
            db,
            target,
            now=now,
            org=org,
            project=project,
            by=grouping,
            teams=teams,
            budget=limit,
            rows=None if output_format == "json" else rows,  # a JSON document has every group, and no rest
        )
        # Days of the month up to *as of* the store lacks count as nothing spent: said, as `statement` says them.
        covered = report.total.as_of + timedelta(days=1)
        gaps = missing_days(db, target, [org] if org is not None else db.known_orgs(), today=covered)
        if gaps:
            say(f"warning: the store lacks days of {target:%Y-%m}: {gaps_text(gaps)}; they count as nothing spent")
        # a JSON document has the names as they are; the terminal's are fit to show (one line, alike ones with IDs)
        id_names = resolve_names(db, org=org, overrides=_names(settings, names), distinct=output_format != "json")
    if output_format == "json":
        echo_json(forecast_document(report, id_names))
    else:
        console.print(_render(report, id_names, rows))


# --- credit ---------------------------------------------------------------------------------------------------

credit_app = typer.Typer(
    name="credit",
    help="Prepaid credit: record top-ups; the balance (top-ups minus costs since the first) shows in status, report "
    "and check --credit-below.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(credit_app, name="credit")


def _org_for(db: BaseStore, org: str | None) -> str:
    if org is not None:
        db.check_orgs(org)  # a top-up for a mistyped org would never meet its costs
        return org
    known = [o.org for o in db.orgs()]
    if len(known) == 1:
        return known[0]
    if not known:
        raise ParameterError("--org", "the store holds no organisation yet; sync first or name the org with --org")
    raise ParameterError("--org", f"the store holds several organisations ({', '.join(known)}); name one with --org")


def _day_arg(value: str) -> date:
    """A top-up's day: a past or today's UTC day. A later one is refused: credit not yet bought would count in
    today's balance and hide a low-credit alert."""
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise ParameterError("DAY", f"{value!r} is not a day; write it as YYYY-MM-DD, like 2026-11-01") from None
    today = datetime.now(UTC).date()
    if day > today:
        raise ParameterError("DAY", f"{day} is after today ({today}); record a top-up on or after the day it is bought")
    return day


def _check_costs_cover(db: BaseStore, org: str, day: date) -> None:
    """Refuse a top-up dated before the org's costs in the store start: the balance counts the costs from the
    top-up's day on, and the days before the store's first one counted as nothing spent (a 2020 top-up on a store
    synced for 90 days showed its whole amount left). A store without costs yet passes: its first sync comes."""
    first = first_cost_day(db, org)
    if first is not None and day < first:
        raise ParameterError(
            "DAY",
            f"{day} is before the store's costs of {org} start on {first}: the spend between them is not in the "
            f"store, so the balance would be too high; sync from that day first (usageledger sync --since {day}), "
            f"or record what was left of it on {first}",
        )


def _topup_amount(value: str) -> Decimal:
    """Money paid: whole cents at most (``0.001`` was recorded and then shown as $0.00)."""
    return parse_amount(value, param="AMOUNT", noun="a top-up", positive=True, places=2, example="500 or 500.00")


def _topup_row(t: TopUp) -> dict[str, Any]:
    return {"id": t.id, "org": t.org, "day": t.day, "amount": t.amount, "note": t.note, "added_at": t.added_at}


def _refuse_extra_words(ctx: typer.Context, day: str, amount: str) -> None:
    """What ``credit add`` was given beyond DAY and AMOUNT, refused as what it is.

    The command takes unknown options as values (``ignore_unknown_options``), so that ``-5`` reaches AMOUNT and is
    refused as a negative top-up; an option it does not have (``--curency EUR``, ``--not x``) then said "Got
    unexpected extra argument(s)" instead of "No such option", and a currency or a note after the amount (``500
    EUR``) did not say where they go."""
    for word in (day, amount, *ctx.args):
        if word.startswith("-") and word != "-" and not _NUMBERISH.fullmatch(word):
            offered = [o for p in ctx.command.params if not getattr(p, "hidden", False) for o in p.opts]
            raise _click.exceptions.NoSuchOption(
                word.partition("=")[0], possibilities=get_close_matches(word.partition("=")[0], offered), ctx=ctx
            )
    if ctx.args:
        raise ParameterError(
            "AMOUNT",
            f"{' '.join(ctx.args)!r} after the amount is not taken: give the amount alone, like 500.00 (a top-up is "
            "in the costs' currency), and a note with --note",
        )


_NUMBERISH: Final = re.compile(r"-[\d.,]\S*")
"""A word that starts with a minus and reads as a number (``-5``, ``-0.5``, ``-1e3``): an AMOUNT to refuse, not an
option."""


@credit_app.command(  # `-5` is an AMOUNT to refuse; what else is left over is refused by _refuse_extra_words
    "add", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@friendly_errors
def credit_add(
    ctx: typer.Context,
    day: Annotated[
        str,
        typer.Argument(
            metavar="DAY", help="The UTC day the credit was bought (YYYY-MM-DD): costs from it on draw on it."
        ),
    ],
    amount: Annotated[
        str, typer.Argument(metavar="AMOUNT", help="The amount bought, like 500.00 (the costs' currency).")
    ],
    note: Annotated[str | None, typer.Option("--note", help="A note kept with the top-up (an invoice number).")] = None,
    store: StoreOpt = None,
    org: OrgOpt = None,
    config: ConfigOpt = None,
    output_format: FormatOpt = "text",
) -> None:
    """Record a prepaid credit top-up (the API has no endpoint for the balance)."""
    _refuse_extra_words(ctx, day, amount)
    when = _day_arg(day)
    value = _topup_amount(amount)
    check_note(note, "--note")
    settings = load_config(config)
    with open_for_writing(resolve_store(store, settings), "credit add") as db, db.transaction():
        owner = _org_for(db, org)
        _check_costs_cover(db, owner, when)
        alike = [t for t in list_topups(db, org=owner) if (t.day, t.amount, t.note) == (when, value, note)]
        added = add_topup(db, org=owner, day=when, amount=value, note=note)
    if output_format == "json":
        echo_json(_topup_row(added))
    else:
        console.print(
            f"Recorded top-up {added.id}: {format_money(added.amount, None)} for {added.org} on {added.day}",
            highlight=False,
            markup=False,
        )
    if alike:  # a command run twice (a retried script, the shell's history) counted the credit twice, silently
        ids = ("ID " if len(alike) == 1 else "IDs ") + ", ".join(str(t.id) for t in alike)
        noted = "" if note is None else " with the same note"
        say(
            f"warning: a top-up of {format_money(value, None)} on {when} for {owner}{noted} was already recorded "
            f"({ids}); if this one repeats it, remove it: usageledger credit remove {added.id}"
        )


@credit_app.command("list")
@friendly_errors
def credit_list(
    store: StoreOpt = None,
    org: OrgOpt = None,
    config: ConfigOpt = None,
    output_format: FormatOpt = "text",
    now_at: NowOpt = None,
) -> None:
    """The recorded top-ups and the remaining balance with its runway."""
    settings = load_config(config)
    with _database(resolve_store(store, settings), org=org) as db:
        topups = list_topups(db, org=org)
        balance = credit_balance(db, now=_now(now_at), org=org)
    if output_format == "json":
        echo_json({"topups": [_topup_row(t) for t in topups], "balance": credit_document(balance)})
        return
    if not topups:
        console.print("No top-ups recorded: `usageledger credit add DAY AMOUNT` records one.", markup=False)
        return
    table = DataTable(
        "Prepaid credit top-ups", number("id"), label("org"), number("day"), number("amount"), label("note")
    )
    for t in topups:
        table.add_row(str(t.id), t.org, t.day.isoformat(), format_money(t.amount, None), t.note or "")
    console.print(table)
    if balance is not None:
        console.print(credit_line(balance, None))


@credit_app.command("remove")
@friendly_errors
def credit_remove(
    topup_id: Annotated[str, typer.Argument(metavar="ID", help="The top-up's ID (see credit list).")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Delete one recorded top-up by its ID."""
    if not topup_id.strip().isdigit():
        raise ParameterError("ID", f"{topup_id!r} is not a top-up ID; give the number credit list shows")
    settings = load_config(config)
    with open_for_writing(resolve_store(store, settings), "credit remove") as db, db.transaction():
        removed = remove_topup(db, int(topup_id))
    if removed is None:
        raise ParameterError("ID", f"no top-up has ID {topup_id.strip()}; credit list shows the IDs")
    console.print(
        f"Removed top-up {removed.id}: {format_money(removed.amount, None)} for {removed.org} on {removed.day}",
        highlight=False,
        markup=False,
    )
