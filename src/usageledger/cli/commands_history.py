"""``usageledger changes`` and ``usageledger close``: what the revision log says was restated, and closed months."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

import typer

from usageledger import timeutil
from usageledger._text import counted
from usageledger.cli._app import app, console, echo_json, friendly_errors, open_for_writing, resolve_store, say
from usageledger.cli._flags import ConfigOpt, FormatOpt, NamesOpt, OrgOpt, StoreOpt
from usageledger.cli.commands_report import _database, _names
from usageledger.config import load_config
from usageledger.errors import ParameterError
from usageledger.report.formatting import format_money
from usageledger.report.history import changes as read_changes
from usageledger.report.jsonout import changes_document
from usageledger.report.months import check_month, gaps_text, missing_days, month_span
from usageledger.report.names import resolve_names, with_id
from usageledger.report.tables import DataTable, label, number
from usageledger.report.terminal import CHANGES_ROWS, render_changes
from usageledger.store.closes import close_month, closed_lines, reopen_month


@app.command()
@friendly_errors
def changes(
    store: StoreOpt = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Restatements seen after this time (a date, a datetime, Unix seconds, 7d)."),
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Restatements seen at or before this time.")] = None,
    org: OrgOpt = None,
    limit_rows: Annotated[
        int | None,
        typer.Option(
            "--limit-rows",
            min=0,
            help=f"Print at most this many lines a stream (default {CHANGES_ROWS}; 0: every one); --format json has"
            " every one.",
        ),
    ] = None,
    names: NamesOpt = None,
    config: ConfigOpt = None,
    output_format: FormatOpt = "text",
) -> None:
    """Restatements from the revision log: bucket, stream, group, old and new values and the delta, grouped by
    stream; spend restated after its month was closed stands out, with the closed months' adjustments."""
    if limit_rows is not None and output_format == "json":  # never a cap silently not applied
        raise ParameterError("--limit-rows", "the JSON holds every line; leave out --limit-rows with --format json")
    now = timeutil.now_unix()
    lo = None if since is None else timeutil.since_unix(since, now=now, param="--since")
    hi = None if until is None else timeutil.to_unix(until, now=now, param="--until")
    timeutil.check_range(lo, hi, now=now, start_param="--since", end_param="--until", stored=True)
    settings = load_config(config)
    overrides = _names(settings, names)  # a bad names file is refused before the store is opened
    with _database(resolve_store(store, settings), org=org) as db:  # warns of a store mixing synthetic and real
        found = read_changes(db, since=lo, until=hi, org=org)
        # a JSON document has the names as they are; the terminal's are fit to show (one line, alike ones with IDs)
        id_names = resolve_names(db, org=org, overrides=overrides, distinct=output_format != "json")
    if output_format == "json":
        echo_json(changes_document(found, id_names))
    else:
        each = CHANGES_ROWS if limit_rows is None else limit_rows or None  # 0: every line
        console.print(render_changes(found, id_names, rows_each=each))


def _month(value: str, now: int) -> date:
    today = datetime.fromtimestamp(now, UTC).date()
    month = timeutil.parse_month(value, today=today, current=False)
    if month >= today.replace(day=1):
        named = f"{month:%Y-%m}" if value.strip() == f"{month:%Y-%m}" else f"{value.strip()} ({month:%Y-%m})"
        raise ParameterError(
            "MONTH", f"{named} has not ended yet (today is {today.isoformat()}): close a month once it is over"
        )
    return month


@app.command()
@friendly_errors
def close(
    month: Annotated[
        str,
        typer.Argument(
            metavar="MONTH",
            help="The month to close: YYYY-MM (e.g. 2026-10), or last (the month before this one).",
        ),
    ],
    reopen: Annotated[
        bool, typer.Option("--reopen", help="Reopen the month instead: forget its closed figures.")
    ] = False,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help="Close a month the store covers only in part (costs starting after its first day, or synced short "
            "of its last), with a warning naming the missing days; without it such a close is refused.",
        ),
    ] = False,
    org: OrgOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    now_at: Annotated[
        str | None, typer.Option("--now", hidden=True, help="Judge which months have ended at this time (tests).")
    ] = None,
) -> None:
    """Close a month: record its spend per org and project as the ledger holds it; later restatements of it are
    reported as adjustments (changes, report, check --restated-over)."""
    if reopen and allow_partial:  # it reopened the month (forgot its figures) and ignored --allow-partial
        raise ParameterError(
            "--allow-partial",
            "--reopen only reopens the month, it closes nothing: run close --reopen first, then close --allow-partial",
        )
    now = timeutil.to_unix(now_at, param="--now") if now_at else timeutil.now_unix()
    first = _month(month, now)
    settings = load_config(config)
    url = resolve_store(store, settings)
    # The store must exist (closing never creates one); brief: a second close or top-up waits for it.
    with open_for_writing(url, "close") as db:
        db.check_orgs(org)
        known = db.known_orgs()
        orgs = [org] if org is not None and known else known
        if not orgs:
            raise ParameterError("MONTH", "the store holds no org yet: run `usageledger sync` first")
        closed = {line.org for line in closed_lines(db) if line.month == first}
        if reopen:
            count = reopen_month(db, first, orgs)
            console.print(
                f"Reopened {first:%Y-%m} for {counted(count, 'org')}." if count else f"{first:%Y-%m} was not closed.",
                highlight=False,
            )
            return
        already = sorted(closed & set(orgs))
        if already:
            # Closing every org when some have the month closed: the others are closed one by one with --org,
            # never by reopening (and so forgetting) the closed figures.
            still_open = [o for o in orgs if o not in closed]
            each = ", ".join(f"--org {o}" for o in still_open)
            others = f", or close it for each org still open: {each}" if still_open else ""
            raise ParameterError(
                "MONTH",
                f"{first:%Y-%m} is already closed for {', '.join(already)}: pass --reopen first to close it again"
                f"{others}",
            )
        # A month before the store's costs, or with days it does not hold, is no month to close as it is.
        today = datetime.fromtimestamp(now, UTC).date()
        check_month(db, first, today=today, org=org)
        gaps = missing_days(db, first, orgs, today=today)
        if gaps and not allow_partial:
            raise ParameterError(
                "MONTH",
                f"the store lacks days of {first:%Y-%m}: {gaps_text(gaps)}; sync them first (usageledger sync --since "
                f"{min(g.first for g in gaps)}), or pass --allow-partial to close it as the store holds it",
            )
        if gaps:
            say(f"warning: closing {first:%Y-%m} without {gaps_text(gaps)}")
        # Stamped with the real time, as the revision log's seen times are: a restatement seen later is after the close.
        lines = close_month(db, first, orgs, at=timeutil.now_unix())
        overrides = _names(settings, None)  # the config's [names], as `changes` and `report` show them
        shown = {o: resolve_names(db, org=o, overrides=overrides) for o in {line.org for line in lines}}
    table = DataTable(f"Closed {month_span(first)}", label("org"), label("project"), number("spend"))  # a UTC month
    for line in lines:
        project = "-" if line.project_id is None else with_id(shown[line.org].project(line.project_id), line.project_id)
        table.add_row(line.org, "(total)" if line.level == "org" else project, format_money(line.amount, line.currency))
    console.print(table)
