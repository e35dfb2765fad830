"""``usageledger report``, ``reconcile``, ``check`` and ``statement``: read the store, render, and exit with a useful
code."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Final, Literal, cast

import typer
from rich.console import Group, RenderableType

from usageledger._amounts import finite_decimal, parse_amount
from usageledger._paths import same_file, write_whole_text
from usageledger._secrets import check_webhook_url
from usageledger._sections import key_path, stale_after_span
from usageledger._text import as_typed, counted, is_one_line, quoted
from usageledger.cli._app import (
    app,
    console,
    describe_os_error,
    echo_json,
    err_console,
    fail,
    file_in_the_way,
    friendly_errors,
    open_for_reading,
    refuse_overwriting,
    resolve_store,
    say,
)
from usageledger.cli._flags import (
    ConfigOpt,
    CurrencyOpt,
    FormatOpt,
    FxOpt,
    NamesOpt,
    NowOpt,
    OrgOpt,
    ProjectOpt,
    SinceOpt,
    StoreOpt,
    UntilOpt,
)
from usageledger.config import Config, load_config
from usageledger.errors import ConfigError, ParameterError, UsageLedgerError
from usageledger.report.alerts import (
    AlertDeliveryError,
    AnomalyRule,
    Budget,
    parse_alert_config,
    post_webhook,
    run_checks,
)
from usageledger.report.alerts import slack_payload as make_slack_payload
from usageledger.report.assemble import (
    adjustments_within,
    alert_projects,
    assemble_report,
    closed_adjustments,
    month_outlook,
    outlook_document,
    project_named,
    resolve_scope,
    unknown_project,
    unknown_team_projects,
)
from usageledger.report.charts import check_png_support, report_charts, undrawable, write_png
from usageledger.report.finality import final_costs_until
from usageledger.report.folding import ROWS_SHOWN, ROWS_SLACK, RowLimit
from usageledger.report.forecast_out import credit_line, forecast_line
from usageledger.report.fx import BASE_CURRENCY, ConvertedCosts, fx_document, fx_note, rates_option
from usageledger.report.history import adjustments, before_the_log, watermarks_unlogged
from usageledger.report.history import as_of as history_as_of
from usageledger.report.html import render_html
from usageledger.report.jsonout import check_document, reconcile_document, teams_document
from usageledger.report.keys import key_span
from usageledger.report.months import check_month, first_cost_day, gaps_text, missing_days
from usageledger.report.names import Names, load_names, names_from_mapping, resolve_names, shown_names
from usageledger.report.period import report_day, report_period
from usageledger.report.queries import Period, Scope, costs_not_synced, models_like, project_known
from usageledger.report.reconciliation import reconcile as run_reconcile
from usageledger.report.statement import Allocation, month_statements
from usageledger.report.statement_render import (
    render_statements,
    statement_csv,
    statement_document,
    statement_html,
)
from usageledger.report.teams import NO_TEAMS, UNASSIGNED, project_teams, spend_by_team
from usageledger.report.terminal import render_check, render_reconcile, render_report, render_teams
from usageledger.store import DEFAULT_STORE, BaseStore
from usageledger.timeutil import back_from, parse_month, past_unix, to_unix

EXIT_FINDINGS: Final = 3
"""Exit code when ``check`` raised an alert or ``reconcile --fail-over`` found a difference (errors exit 1)."""


def _warn_unknown_project(
    db: BaseStore, project: str | None, org: str | None, model: str | None = None, source: str = "--project"
) -> None:
    """Say so when --project (or ``source``, a config key) names an ID, or --model a model, the store has never seen:
    a typo (or a model's base name, `gpt-4o` for `gpt-4o-2024-08-06`) would otherwise report $0.00, quietly."""
    where = "" if org is None else f" for org {org}"
    if project is not None and (unknown := unknown_project(db, project, org)) is not None:
        shown = f"--project {as_typed(project)}" if source == "--project" else source
        say(f"warning: {shown} {unknown}")
    if model is not None and (like := models_like(db, model, org)) is not None:
        hint = f"did you mean {', '.join(like)}?" if like else "check the name (usageledger report lists the models)"
        say(f"warning: --model {as_typed(model)} appears in no cost or usage row of this store{where}; {hint}")


def _warn_unknown_team_projects(db: BaseStore, teams: Mapping[str, str], *, team: str | None = None) -> None:
    """Say each :func:`unknown_team_projects` warning: a ``[teams]`` ID no row nor the directory names (of ``team``
    alone, when given)."""
    for warning in unknown_team_projects(db, teams, team=team):
        say(f"warning: {warning}")


def project_option(db: BaseStore, project: str | None, org: str | None, overrides: Names | None) -> str | None:
    """``--project`` as the command reads it: an ID as given, or the ID of the one project (of ``--org``) the value
    names (:func:`project_named`), said once on stderr; a name of several projects is refused naming their IDs. A
    value that names nothing is kept, for :func:`_warn_unknown_project` (or ``forecast``'s refusal) to say so."""
    if project is None:
        return None
    names = resolve_names(db, org=org, overrides=overrides, distinct=False)
    found = project_named(db, project, org=org, names=names, param="--project")
    if found is None:
        return project
    say(f"note: --project {quoted(project)} is the name of project {found}; reading that project")
    return found


def one_line_filters(*filters: tuple[str, str | None]) -> None:
    """Refuse a filter (``--project``, ``--model``) holding a newline or a control character: no ID or model name
    does, and quoted back in a heading or an alert (`check`'s are one line each, for cron) it split the line."""
    for flag, value in filters:
        if value is not None and not is_one_line(value):  # a joined emoji (`👩\u200d💻 Tools`) is one line
            raise ParameterError(flag, f"{value!r} holds a newline or a control character; give it on one line")


def _refuse_project_outside_team(db: BaseStore, scope: Scope, *, teams: Mapping[str, str]) -> None:
    """Refuse ``--project`` and ``--team`` that disagree: a project of another team (or of none) under ``--team``
    reported "Spend $0.00 (no spend in this period or the previous 30 days)", as if the project had spent nothing.
    A project the store has never seen is left to :func:`_warn_unknown_project`'s warning."""
    project, team = scope.project, scope.team
    if project is None or team is None or scope.team_projects is None or project in scope.team_projects:
        return
    if not project_known(db, project, scope.org):
        return
    its_team = project_teams(db, org=scope.org, config=teams).get(project, UNASSIGNED)
    if its_team == team:  # `--team unassigned`: its projects are those with spend in the period
        return
    where = "no team (unassigned)" if its_team == UNASSIGNED else f"team {its_team}"
    raise ParameterError(
        "--project",
        f"{project} is in {where}, not in team {team}, so the report would hold nothing; leave out --team "
        "or --project (report --by team lists each team's projects)",
    )


@contextmanager
def _reading(
    url: str | None, *, org: str | None = None, period: Period | None = None
) -> Iterator[tuple[BaseStore, tuple[str, ...]]]:
    """The store, opened to read only (see ``open_existing_store``): reports never create or migrate it. An ``--org``
    the store holds no data for is refused (:meth:`BaseStore.check_orgs`), never read as an empty org. What the reader
    must be told about the figures (:func:`~usageledger.sync._safety.data_warnings`, of the spend over ``period`` when
    given) is said on stderr, and comes with the store for a JSON document's or a page's ``warnings``: read once."""
    from usageledger.sync._safety import data_warnings  # before opening: a running sync waits while a reader holds it

    with open_for_reading(url or DEFAULT_STORE) as store:
        store.check_orgs(org)
        warnings = data_warnings(store, org, period=period)
        for warning in warnings:
            say(f"warning: {warning}")
        yield store, warnings


@contextmanager
def _database(url: str | None, *, org: str | None = None) -> Iterator[BaseStore]:
    """The store as :func:`_reading` opens it, for a command whose output carries no ``warnings``."""
    with _reading(url, org=org) as (store, _):
        yield store


def _write(flag: str, path: Path, text: str) -> None:
    """Write an output file whole (:func:`write_whole_text`); a failure names the flag it was given with."""
    try:
        write_whole_text(path, text)
    except OSError as exc:
        raise fail(f"{flag}: {describe_os_error(exc)}") from None


def _past_day(value: str, *, now: int, param: str) -> date:
    """A day to judge: today or before (a later day has no data, so its "no alerts" would be a false all-clear)."""
    day = report_day(value, now=now, param=param, end=False)
    today = datetime.fromtimestamp(now, UTC).date()
    if day > today:
        raise ParameterError(
            param, f"{day.isoformat()} is after today ({today.isoformat()}): give today or an earlier day"
        )
    return day


def _period(since: str | None, until: str | None, *, now: datetime) -> Period:
    """The report's period rule (:func:`usageledger.report.period.report_period`)."""
    return report_period(since, until, now=now)


def _now(now_at: str | None) -> datetime:
    """``--now`` as an aware UTC datetime; the real time when it is not given."""
    return datetime.fromtimestamp(to_unix(now_at, param="--now"), UTC) if now_at else datetime.now(UTC)


def _names(config: Config, names_file: Path | None) -> Names:
    """The overrides of the directory's names: the config's [names], overridden by a names file."""
    names = names_from_mapping(config.names)
    if names_file is None:
        return names
    try:
        return names.merged(load_names(names_file))
    except ConfigError as exc:  # the file's own error ("x.txt: a names file must end in ...") names the flag too
        raise ParameterError("--names", str(exc)) from None


def _amount(value: str | None, param: str) -> Decimal | None:
    return None if value is None else parse_amount(value, param=param)


def synced_report(store: BaseStore, *, since: int, until: int, org: str | None = None) -> RenderableType:
    """The terminal report over whole UTC days from ``since`` through the day holding ``until`` (what ``demo``
    prints after its sync), with the stored directory's names, as ``usageledger report`` prints it: its provisional
    days marked, closed months' adjustments, this month's forecast and the credit balance. The demo printed the bare
    figures, without the ``*`` footnote or the forecast line that ``report`` on the same store shows, though the
    README calls it the report."""
    from usageledger.sync import SyncOptions

    first = datetime.fromtimestamp(since, UTC).date()
    last = datetime.fromtimestamp(until, UTC).date()
    period, scope = Period(first, last + timedelta(days=1)), Scope(org=org)
    data, raw_names = assemble_report(store, period, scope, options=SyncOptions(), distinct=False)
    moved, _ = closed_adjustments(store, period, scope)  # a model's scope alone warns, and this one has none
    outlook, credit = month_outlook(store, now=datetime.fromtimestamp(until, UTC), org=org)
    parts: list[RenderableType] = [render_report(replace(data, adjustments=moved), shown_names(raw_names))]
    if outlook is not None:
        parts.append(forecast_line(outlook))
    if credit is not None:
        parts.append(credit_line(credit, data.currency))
    return Group(*parts)


def limit_rows_option(limit: int | None, *, output_format: str) -> RowLimit:
    """``--limit-rows`` of a command that prints long tables (``report``, ``forecast``, ``keys``), refused with
    ``--format json``, whose document holds every row (never a cap silently not applied)."""
    if limit is not None and output_format == "json":
        raise ParameterError("--limit-rows", "the JSON holds every row; leave out --limit-rows with --format json")
    return RowLimit.of(limit)


def _row_limit(
    limit: int | None, *, output_format: str, html: Path | None, png: Path | None, by: str | None
) -> RowLimit:
    """``report --limit-rows``, refused where nothing it would cut is printed or written: a JSON document holds
    every row (:func:`limit_rows_option`), and ``--png`` draws charts, no tables; ``--html`` folds its tables."""
    if html is not None:
        return RowLimit.of(limit)
    rows = limit_rows_option(limit, output_format=output_format)
    if limit is not None and png is not None and by is None:
        raise ParameterError(
            "--limit-rows", "--png draws charts, which list no table rows; leave out --limit-rows, or add --html"
        )
    return rows


@app.command()
@friendly_errors
def report(
    store: StoreOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    team: Annotated[
        str | None, typer.Option("--team", help="Only this team's projects (teams as for --by team).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Only this model and its dated snapshots (gpt-4o: also gpt-4o-2024-08-06)."),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write a self-contained HTML report here, in place of the terminal report (a JSON document "
            "or --by team is still printed).",
        ),
    ] = None,
    png: Annotated[
        Path | None,
        typer.Option(
            "--png", help="Write the charts as PNG files into this directory, in place of the terminal report."
        ),
    ] = None,
    names: NamesOpt = None,
    by: Annotated[
        Literal["team"] | None,
        typer.Option(
            "--by",
            help="team: spend by team instead of the whole report (teams from the config's [teams], else the "
            "directory's project groups; see the README).",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The report as the ledger held it at this time, rebuilt from the revision log (a date, a datetime, "
            "Unix seconds, 2d).",
        ),
    ] = None,
    limit_rows: Annotated[
        int | None,
        typer.Option(
            "--limit-rows",
            min=0,
            help=f"List the N biggest rows of each long table and sum the rest in one row (default: the "
            f"{ROWS_SHOWN} biggest of a table of more than {ROWS_SHOWN + ROWS_SLACK}, as the dashboard shows them; "
            "0: every row); --html folds its tables so; --format json has every row.",
        ),
    ] = None,
    config: ConfigOpt = None,
    output_format: FormatOpt = "text",
    currency: CurrencyOpt = None,
    fx: FxOpt = None,
) -> None:
    """Spend by project, line item and model; tokens; daily trend; top movers; cost per 1M tokens."""
    one_line_filters(("--project", project), ("--model", model))
    rows = _row_limit(limit_rows, output_format=output_format, html=html, png=png, by=by)
    now = datetime.now(UTC)
    period = _period(since, until, now=now)
    as_of_at = None if as_of is None else past_unix(as_of, now=int(now.timestamp()), param="--as-of")
    settings = load_config(config)
    rates = rates_option(currency, fx)
    used: list[tuple[date, Decimal]] = []
    overrides = _names(settings, names)
    if html is not None:  # never over the store or the config (`--html usageledger.duckdb` replaced the store)
        url = resolve_store(store, settings)
        refuse_overwriting(
            "--html",
            html,
            store_url=url,
            config_path=settings.path,
            example="report.html",
            other_outputs=(("--names", names), ("--fx", fx)),
        )
    if png is not None:  # said before anything is written: `--html r.html --png r.html` wrote the page, then failed
        if str(png) == "-":
            raise ParameterError(
                "--png", "- is not stdout here, it would be a folder named '-'; give a folder, such as charts"
            )
        if html is not None and same_file(html, png):
            raise ParameterError("--png", f"{png} is the file of --html; give the charts a directory of their own")
        if png.exists() and not png.is_dir():
            raise ParameterError("--png", f"{png} is a file; give a directory for the charts (it is made if missing)")
        if (blocked := file_in_the_way(png)) is not None:
            raise ParameterError("--png", f"{blocked} is a file, not a folder, so {png} cannot be made; give a folder")
        try:
            check_png_support()
        except ConfigError as exc:
            raise ParameterError("--png", f"{exc}, or leave --png out") from exc
    # --as-of: what the costs covered is said of the store as it stood then (below), not of today's.
    covered = period if as_of_at is None else None
    with _reading(resolve_store(store, settings), org=org, period=covered) as (db, warnings):
        project = project_option(db, project, org, overrides)
        _warn_unknown_project(db, project, org, model)
        past: AbstractContextManager[BaseStore] = nullcontext(db)
        empty = None
        if as_of_at is not None:
            if (empty := before_the_log(db, as_of_at, org=org)) is not None:
                say(f"warning: {empty}")
                warnings = (*warnings, empty)  # the JSON's and the page's too: empty figures with the reason
            elif (
                guessed := watermarks_unlogged(db, as_of_at, org=org)
            ) is not None:  # finality by the rule before the log
                say(f"warning: {guessed}")
                warnings = (*warnings, guessed)
            past = history_as_of(db, as_of_at, buckets=(period.previous().start, period.end))
        with past as read:  # --as-of: the store as it stood then (rebuilt from the revision log), for this block
            if as_of_at is not None and empty is None:  # (before the log: that one reason says it all)
                then = costs_not_synced(read, org, period, seen_from=period.previous().since)
                for warning in then:
                    say(f"warning: {warning}")
                warnings = (*warnings, *then)
            scope = resolve_scope(
                read, period, Scope(org=org, project=project, team=team, model=model), teams=settings.teams
            )
            _refuse_project_outside_team(read, scope, teams=settings.teams)
            source = None
            if rates is not None:  # every day converted at its own rate, the previous period too (see report/fx.py)
                source = converted = ConvertedCosts(read, rates, start=period.previous().start, end=period.end, org=org)
            # the JSON carries the names as they are (any string, the ID beside each); tables and pages show them
            data, raw_names = assemble_report(
                read,
                period,
                scope,
                options=settings.sync.to_options(),
                overrides=overrides,
                source=source,
                distinct=False,
            )
            id_names = shown_names(raw_names)
            if rates is not None:
                used = converted.used()
        if as_of_at is None:
            moved, why_none = closed_adjustments(db, period, scope)
            for warning in why_none:
                say(f"warning: {warning}")
            data, warnings = replace(data, adjustments=moved), (*warnings, *why_none)
        else:
            data = replace(data, as_of=datetime.fromtimestamp(as_of_at, UTC))
        data = replace(data, warnings=warnings)  # said on stderr too; the JSON and the HTML page carry them
        teams = project_teams(db, org=org, config=settings.teams) if by == "team" else {}
        if by == "team":
            _warn_unknown_team_projects(db, settings.teams)
        elif scope.team is not None:  # `--team search`: that team's own IDs, as the dashboard's ?team= says them
            _warn_unknown_team_projects(db, settings.teams, team=scope.team)
        if by == "team" and not teams and data.spend_by_project:
            say(f"warning: {NO_TEAMS}")
            data = replace(data, warnings=(*data.warnings, NO_TEAMS))
        # This month's forecast and credit speak of today: an --as-of report (what the ledger held then) has none.
        outlook, credit = month_outlook(db, now=now, org=org, project=project) if as_of_at is None else (None, None)
    json_out = output_format == "json"
    fx_said = rates is not None and not json_out
    if by == "team":
        by_team = spend_by_team(data.spend_by_project, teams)
        if json_out:
            doc = teams_document(data, by_team, raw_names)
            echo_json(doc if rates is None else {**doc, "fx": fx_document(rates, used)})
        else:
            console.print(render_teams(data, by_team, id_names, rows=rows))
        if fx_said and rates is not None:
            console.print(fx_note(rates, used), highlight=False, markup=False)
        if html is None and png is None:
            return
    elif json_out:
        document = outlook_document(data, raw_names, outlook, credit)
        if rates is not None:
            document["fx"] = fx_document(rates, used)
        echo_json(document)
    elif html is None and png is None:
        console.print(render_report(data, id_names, rows=rows))
        if outlook is not None:
            console.print(forecast_line(outlook))
        if credit is not None:
            console.print(credit_line(credit, data.currency if rates is None else BASE_CURRENCY))  # credit is in USD
        if rates is not None:
            console.print(fx_note(rates, used), highlight=False, markup=False)
        return
    # With --format json or --by team, stdout holds the document or the teams alone: what was written is said on
    # stderr.
    said = err_console if json_out or by is not None else console
    if html is not None:
        note = fx_note(rates, used) if rates is not None else None
        page = render_html(
            data,
            id_names,
            generated_at=now,
            note=note,
            forecast=outlook,
            credit=credit,
            credit_currency=data.currency if rates is None else BASE_CURRENCY,  # credit is in USD
            rows=rows,
        )
        _write("--html", html, page)
        say(f"wrote {html}", said)  # a path is never broken
    if png is not None:
        charts = report_charts(data, id_names)
        if boxes := undrawable(charts):  # said once, never matplotlib's warning per character and per chart
            say(
                f"warning: --png: no font here draws {counted(len(boxes), 'character')} of the charts' names "
                f"({boxes if len(boxes) <= 12 else boxes[:12] + '…'}), so they are drawn as boxes: install a font "
                "that has them (Noto Sans CJK, for one), or read the names in --html"
            )
        for chart in charts:
            try:
                path = write_png(chart, png / f"{chart.slug}.png")
            except OSError as exc:  # named as --html's and --csv's failures are (see _write)
                raise fail(f"--png: {describe_os_error(exc)}") from None
            say(f"wrote {path}", said)
    if rates is not None and by is None and not json_out:
        said.print(fx_note(rates, used), highlight=False, markup=False)


TOLERANCE_PLACES: Final = 8
"""The finest tolerance: 8 decimal places of a fraction, 6 of a percent (0.000001%). Token counts are whole, so a
finer one changes nothing, and `1e-999` printed as a percentage a thousand digits long."""


def _tolerance(value: str) -> Decimal:
    """A relative difference: ``0.01`` or ``1%``, below 100% and at most 6 decimal places of a percent.

    No relative difference exceeds 1 (token counts are never negative, and a pair with one side missing is exactly
    1), so a tolerance of 100% or more hides every finding: refused in either spelling, a bare ``5`` with the fix
    ``5%`` (whoever typed it almost surely meant that)."""
    text = value.strip()
    shown = text if len(text) <= 40 else text[:37] + "..."
    percent = text.endswith("%")
    number = finite_decimal(
        text[:-1] if percent else text, param="--tolerance", noun="a fraction", example="0.01 or 1%", shown=value
    )
    tol = number / 100 if percent else number
    if tol < 0:
        raise ParameterError("--tolerance", f"the tolerance must be zero or more, got {value!r}; write 0.01 or 1%")
    if tol >= 1:
        if not percent and tol < 100:
            raise ParameterError(
                "--tolerance",
                f"{shown} would allow {tol * 100:f}%, hiding every difference; for {shown} percent write {shown}%",
            )
        raise ParameterError(
            "--tolerance",
            f"{shown} hides every difference: no relative difference exceeds 100% (token counts are never "
            "negative); give less than 100%, like 5%",
        )
    exponent = tol.normalize().as_tuple().exponent
    if tol and isinstance(exponent, int) and exponent < -TOLERANCE_PLACES:
        raise ParameterError(
            "--tolerance",
            f"{shown} is finer than a tolerance can be; give at most 6 decimal places of a percent (0.000001%), "
            "or 0 to see every difference",
        )
    return tol


@app.command()
@friendly_errors
def reconcile(
    store: StoreOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    org: OrgOpt = None,
    tolerance: Annotated[
        str, typer.Option("--tolerance", help="Allowed relative difference per day and model: 0.01 or 1%.")
    ] = "0",
    fail_over: Annotated[
        bool, typer.Option("--fail-over", help=f"Exit {EXIT_FINDINGS} when a difference exceeds the tolerance.")
    ] = False,
    config: ConfigOpt = None,
    output_format: FormatOpt = "text",
) -> None:
    """Compare usage tokens with billed token quantities per day and model, and say why they can differ."""
    period = _period(since, until, now=datetime.now(UTC))
    tol = _tolerance(tolerance)
    settings = load_config(config)
    with _database(resolve_store(store, settings), org=org) as db:
        result = run_reconcile(db, period, Scope(org=org), tolerance=tol)
    if output_format == "json":
        echo_json(reconcile_document(result))
    else:
        console.print(render_reconcile(result))
    if fail_over and result.differences:
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
@friendly_errors
def check(
    store: StoreOpt = None,
    org: OrgOpt = None,
    project: Annotated[
        str | None,
        typer.Option(
            "--project", help="Apply --daily-budget/--monthly-budget to this project (ID or name), and watch its spend."
        ),
    ] = None,
    daily_budget: Annotated[
        str | None, typer.Option("--daily-budget", help="Alert when one day's spend is above this.")
    ] = None,
    monthly_budget: Annotated[
        str | None, typer.Option("--monthly-budget", help="Alert when the month to date is above this.")
    ] = None,
    stale_after: Annotated[
        str | None, typer.Option("--stale-after", help="Alert when the newest bucket ended longer ago (48h).")
    ] = None,
    anomaly_threshold: Annotated[
        str | None, typer.Option("--anomaly-threshold", help="Robust z-score above which a day is anomalous (3.5).")
    ] = None,
    min_increase: Annotated[
        str | None, typer.Option("--min-increase", help="Smallest rise over the median worth an alert (1.00).")
    ] = None,
    on: Annotated[
        str | None,
        typer.Option("--date", help="Day to check: budgets to that day, anomaly on it (default: today and yesterday)."),
    ] = None,
    anomaly_date: Annotated[
        str | None,
        typer.Option("--anomaly-date", help="Day to judge for anomalies (default: --date, else yesterday, UTC)."),
    ] = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="POST a Slack-compatible JSON message here when alerts fire.")
    ] = None,
    stale_keys: Annotated[
        str | None,
        typer.Option(
            "--stale-keys",
            help="Alert once per API key unused for longer than this span (90d), whose owner was removed, or, for "
            "an admin key, created longer ago (see usageledger keys).",
        ),
    ] = None,
    forecast_over: Annotated[
        str | None,
        typer.Option(
            "--forecast-over",
            help="Alert when this month's forecast month-end spend is above this, before it is spent (see forecast; "
            "else [alerts] forecast_over).",
        ),
    ] = None,
    credit_below: Annotated[
        str | None,
        typer.Option(
            "--credit-below",
            help="Alert when the prepaid credit balance is below this (see credit; else [alerts] credit_below).",
        ),
    ] = None,
    names: NamesOpt = None,
    restated_over: Annotated[
        str | None,
        typer.Option(
            "--restated-over",
            help="Alert when a closed month's spend (an org's total or a project's) moved by more than this amount "
            "since it was closed (see usageledger close).",
        ),
    ] = None,
    final_only: Annotated[
        bool,
        typer.Option(
            "--final-only", help="Budgets and anomalies read final buckets only (see [sync] final_after_days)."
        ),
    ] = False,
    config: ConfigOpt = None,
    output_format: FormatOpt = "text",
    now_at: NowOpt = None,
) -> None:
    """Budget, forecast, credit, anomaly, staleness and stale key alerts for cron and CI: one line per alert, exit 3
    when any fired.

    Budgets fire when spend is strictly above them (spend > budget). Thresholds come from the flags, else from the
    config file's [alerts] section.
    """
    one_line_filters(("--project", project))  # an alert is one line, for cron and CI
    now = _now(now_at)
    webhook = None if webhook is None else check_webhook_url(webhook)
    settings = load_config(config)
    cfg = parse_alert_config(settings.alerts)
    ts = int(now.timestamp())
    # A span back from now, so read by the one step that counts back (a start before 1970 is refused, naming the flag).
    key_limit = None if stale_keys is None else key_span(stale_keys, "--stale-keys")
    if stale_keys is not None:
        back_from(ts, stale_keys, param="--stale-keys")  # a span reaching before 1970 is refused as --since's is
    forecast_limit = _amount(forecast_over, "--forecast-over")
    credit_limit = _amount(credit_below, "--credit-below")
    flag_budget = Budget(_amount(daily_budget, "--daily-budget"), _amount(monthly_budget, "--monthly-budget"))
    if flag_budget != Budget() and project is None:
        cfg = cfg.replace(budget=flag_budget)
    rule = cfg.anomaly
    threshold = (
        None
        if anomaly_threshold is None
        else parse_amount(
            anomaly_threshold, param="--anomaly-threshold", noun="a threshold", example="3.5", money=False
        )
    )
    increase = _amount(min_increase, "--min-increase")
    rule = AnomalyRule(
        threshold=threshold if threshold is not None else rule.threshold,
        window_days=rule.window_days,
        min_increase=increase if increase is not None else rule.min_increase,
        min_baseline_days=rule.min_baseline_days,
    )
    cfg = cfg.replace(anomaly=rule)
    if stale_after is not None:
        cfg = cfg.replace(stale_after=stale_after_span(stale_after, "--stale-after"))
    restated_limit = _amount(restated_over, "--restated-over")
    budget_day = _past_day(on, now=ts, param="--date") if on else None
    judged = _past_day(anomaly_date, now=ts, param="--anomaly-date") if anomaly_date else budget_day
    with _database(resolve_store(store, settings), org=org) as db:
        _refuse_days_before_the_costs(db, org, (("--date", budget_day), ("--anomaly-date", judged)))
        # The month the budgets read, through the day they judge: costs never synced (or synced short of that day)
        # are an `unchecked` alert of a budget, forecast or credit check that reads them (run_checks), and a warning
        # on stderr, as `report` says them, where no such check is asked for (the anomaly check reads them too).
        checked = budget_day or now.astimezone(UTC).date()
        gaps = costs_not_synced(db, org, Period(checked.replace(day=1), checked + timedelta(days=1)))
        project = project_option(db, project, org, _names(settings, names))
        # [alerts.projects.X]: X a project's ID or its name, read as --project reads it (before --project's budget,
        # which replaces the table of the project it names, whichever way the table names it)
        by_name = resolve_names(db, org=org, overrides=_names(settings, names), distinct=False)
        cfg, budgeted = alert_projects(db, cfg, org=org, names=by_name)
        if flag_budget != Budget() and project is not None:  # keyed by the ID --project names
            cfg = cfg.replace(project_budgets={**cfg.project_budgets, project: flag_budget})
        _warn_unknown_project(db, project, org)
        for key, budgeted_id in sorted(budgeted.items()):  # a mistyped X, likewise
            if budgeted_id != project:
                _warn_unknown_project(db, budgeted_id, org, source=key_path("alerts.projects", key))
        final = final_costs_until(db, settings.sync.to_options()) if final_only else None
        id_names = resolve_names(db, org=org, overrides=_names(settings, names))
        result = run_checks(
            db,
            cfg,
            now=now,
            org=org,
            project=project,
            budget_day=budget_day,
            anomaly_day=judged,
            stale_keys=key_limit,
            names=id_names,
            final=final,
            forecast_over=forecast_limit if forecast_limit is not None else cfg.forecast_over,
            credit_below=credit_limit if credit_limit is not None else cfg.credit_below,
            restated_over=restated_limit,
            # the project's own figures under --project, as `report --project` lists them
            adjustments=adjustments_within(adjustments(db, org=org), Scope(org=org, project=project))
            if restated_limit is not None
            else (),
        )
    for gap in gaps:
        if not any(a.kind == "unchecked" and a.message.endswith(gap) for a in result.alerts):
            say(f"warning: {gap}")
    if output_format == "json":
        echo_json(check_document(result))
    else:
        # Piped into a log or a mail, every alert stays on one line, however long: never wrapped at 80 columns.
        console.print(render_check(result, cfg.anomaly), soft_wrap=not console.is_terminal)
    if result.alerts and webhook is not None:
        try:
            status = post_webhook(webhook, make_slack_payload(result, org=org))
        except AlertDeliveryError as exc:
            # The alerts fired whether or not the webhook heard of them: exit 3 still, with the failure on stderr.
            say(f"error: {exc}")
        else:
            err_console.print(
                f"webhook: delivered {counted(len(result.alerts), 'alert')} (HTTP {status})", highlight=False
            )
    if result.alerts:
        raise typer.Exit(EXIT_FINDINGS)


def _refuse_days_before_the_costs(db: BaseStore, org: str | None, days: tuple[tuple[str, date | None], ...]) -> None:
    """Refuse a day to check before the store's costs (of ``org``) start: `check --date 2026-09-01` read $0.00 spent
    that day and said "OK: no alerts", an all-clear for a day the store holds nothing of (as one after today was)."""
    first = first_cost_day(db, org)
    for flag, day in days:
        if day is not None and first is not None and day < first:
            raise ParameterError(
                flag,
                f"{day} is before the store's costs start on {first}, so it holds nothing to check: give {first} or "
                f"a later day, or sync that day first (usageledger sync --since {day})",
            )


# --- statement ------------------------------------------------------------------------------------------------


@app.command()
@friendly_errors
def statement(
    month: Annotated[
        str,
        typer.Argument(
            metavar="MONTH",
            help="The month (UTC): YYYY-MM, such as 2026-10, or last (the month before this one) or this.",
        ),
    ],
    by: Annotated[
        Literal["team", "project"],
        typer.Option("--by", help="One statement per team (config [teams], else directory groups) or per project."),
    ] = "team",
    allocate: Annotated[
        Literal["proportional", "even", "none"] | None,
        typer.Option(
            "--allocate",
            help="Shared spend (no project, or a project in no team): proportional to direct spend, even, or none "
            "(its own statement). Default: the config's [statement] allocate, else proportional.",
        ),
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Also write the statements' lines as CSV here.")
    ] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write the statements as an HTML page here.")] = None,
    currency: CurrencyOpt = None,
    fx: FxOpt = None,
    store: StoreOpt = None,
    org: OrgOpt = None,
    names: NamesOpt = None,
    config: ConfigOpt = None,
    output_format: FormatOpt = "text",
) -> None:
    """Showback: one statement per team or project for a month, lines by model and line item, shared spend
    allocated by a stated rule; the statements add up to the month's costs to the cent, and say so. A closed month
    (`close`) uses the figures closed and lists the later adjustments apart."""
    today = datetime.now(UTC).date()
    first = parse_month(month, today=today)
    settings = load_config(config)
    rule = cast(Allocation, allocate or settings.statement_allocate)
    rates = rates_option(currency, fx)
    url = resolve_store(store, settings)
    outputs = (("--csv", csv_path), ("--html", html))
    for i, (flag, path) in enumerate(outputs):
        if path is not None:
            refuse_overwriting(
                flag,
                path,
                store_url=url,
                config_path=settings.path,
                example=f"statements.{flag[2:]}",
                other_outputs=(*outputs[:i], ("--names", names), ("--fx", fx)),
            )
    with _database(resolve_store(store, settings), org=org) as db:
        check_month(db, first, today=today, org=org)
        known = db.known_orgs()
        if not known:  # "The 0 statements of 2026-10 (...) add up to $0.00, the month's costs in the store ..."
            raise UsageLedgerError("the store holds no costs yet to make statements of: run `usageledger sync` first")
        gaps = missing_days(db, first, [org] if org is not None else known, today=today)
        warnings: list[str] = []
        if gaps:  # the statements add up to what the store holds, which is not the whole month
            warnings.append(f"the store lacks days of {first:%Y-%m}: {gaps_text(gaps)}")
            say(f"warning: {warnings[-1]}")
        teams = project_teams(db, org=org, config=settings.teams) if by == "team" else {}
        if by == "team":
            _warn_unknown_team_projects(db, settings.teams)
        raw_names = resolve_names(db, org=org, overrides=_names(settings, names), distinct=False)
        id_names = shown_names(raw_names)  # for the terminal, the CSV and the page; the JSON has them as they are
        result = month_statements(db, first, by=by, allocation=rule, teams=teams, org=org, fx=rates, today=today)
    json_out = output_format == "json"
    if json_out:
        echo_json(statement_document(result, raw_names, warnings=warnings))
    else:
        console.print(render_statements(result, id_names))
    said = err_console if json_out else console
    for flag, path, text in (("--csv", csv_path, statement_csv), ("--html", html, statement_html)):
        if path is not None:
            _write(flag, path, text(result, id_names))
            say(f"wrote {path}", said)
