"""``usageledger statement``: one showback statement per team or project for a month, adding up to its costs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal, cast

import typer

from usageledger.cli._app import (
    ConfigOpt,
    FormatOpt,
    FxOpt,
    StoreOpt,
    app,
    console,
    err_console,
    friendly_errors,
    refuse_overwriting,
    say,
)
from usageledger.cli.commands_report import CurrencyOpt, NamesOpt, OrgOpt, _database, _names
from usageledger.config import load_config
from usageledger.errors import ParameterError
from usageledger.report.fx import rates_option
from usageledger.report.jsonout import dumps
from usageledger.report.months import check_month, gaps_text, missing_days
from usageledger.report.names import resolve_names
from usageledger.report.statement import Allocation, month_statements
from usageledger.report.statement_render import (
    render_statements,
    statement_csv,
    statement_document,
    statement_html,
)
from usageledger.report.teams import project_teams
from usageledger.store import DEFAULT_STORE
from usageledger.timeutil import parse_month


@app.command()
@friendly_errors
def statement(
    month: Annotated[str, typer.Argument(help="The month, YYYY-MM (UTC), such as 2026-10.")],
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
    first = parse_month(month)
    settings = load_config(config)
    rule = cast(Allocation, allocate or settings.statement_allocate)
    rates = rates_option(currency, fx)
    url = store or settings.store_url or DEFAULT_STORE
    outputs = (("--csv", csv_path), ("--html", html))
    for i, (flag, path) in enumerate(outputs):
        if path is not None:
            refuse_overwriting(flag, path, store_url=url, config_path=settings.path, other_outputs=outputs[:i])
            if path.is_dir():  # before any figure is computed (`--csv ''` is the working directory)
                raise ParameterError(flag, f"{path} is a directory; give a file name, such as statements.{flag[2:]}")
    today = datetime.now(UTC).date()
    with _database(store or settings.store_url, org=org) as db:
        check_month(db, first, today=today, org=org)
        gaps = missing_days(db, first, [org] if org is not None else db.known_orgs(), today=today)
        if gaps:  # the statements add up to what the store holds, which is not the whole month
            say(f"warning: the store lacks days of {first:%Y-%m}: {gaps_text(gaps)}")
        teams = project_teams(db, org=org, config=settings.teams) if by == "team" else {}
        id_names = resolve_names(db, org=org, overrides=_names(settings, names))
        result = month_statements(db, first, by=by, allocation=rule, teams=teams, org=org, fx=rates, today=today)
    json_out = output_format == "json"
    if json_out:
        typer.echo(dumps(statement_document(result, id_names)))
    else:
        console.print(render_statements(result, id_names))
    said = err_console if json_out else console
    for path, text in ((csv_path, statement_csv), (html, statement_html)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text(result, id_names), encoding="utf-8")
            say(f"wrote {path}", said)
