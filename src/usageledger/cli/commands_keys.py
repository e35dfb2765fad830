"""``usageledger keys``: every API key with its owner, project, last use, spend and requests, and what is stale."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated

import typer
from rich.text import Text

from usageledger._text import counted, one_line
from usageledger.cli._app import app, console, echo_json, friendly_errors, resolve_store, say
from usageledger.cli._flags import ConfigOpt, FormatOpt, NowOpt, OrgOpt, ProjectOpt, StoreOpt
from usageledger.cli.commands_report import (
    _database,
    _names,
    _warn_unknown_project,
    limit_rows_option,
    one_line_filters,
    project_option,
)
from usageledger.config import load_config
from usageledger.errors import ParameterError
from usageledger.report.folding import ROWS_SHOWN, ROWS_SLACK, RowLimit
from usageledger.report.formatting import format_count, format_money
from usageledger.report.jsonout import keys_document
from usageledger.report.keys import (
    KeyInfo,
    KeyOwner,
    KeyRules,
    KeysReport,
    build_keys,
    key_span,
    listed_keys,
    no_key_line,
)
from usageledger.report.names import Names, resolve_names
from usageledger.report.tables import DataTable, label, number
from usageledger.report.terminal import more_label
from usageledger.timeutil import now_unix, since_unix, to_unix

DEFAULT_SINCE = "30d"


def duration_flag(value: str, param: str) -> timedelta:
    """A key-staleness span given to a flag (``30d``): :func:`usageledger.report.keys.key_span`."""
    return key_span(value, param)


def _owner(owner: KeyOwner) -> str:
    """The owner's name (a service account says so); the email is in the JSON, removal in the flags."""
    who = one_line(owner.name or owner.email or owner.id or "?")
    return f"{who} (service account)" if owner.type == "service_account" else who


def _when(value: datetime | None) -> str:
    return "never" if value is None else f"{value:%Y-%m-%d}"


def render_keys(data: KeysReport, names: Names, rows: RowLimit = RowLimit()) -> DataTable:
    """The keys as a table whose numbers are never cut; projects named as every report names them (``names``, from
    ``resolve_names``: one line each, two projects called alike told apart by their IDs). The keys ``rows`` leaves
    out (:func:`~usageledger.report.keys.listed_keys`) are one last row, with their spend and requests summed."""
    title = f"API keys: spend and requests from {data.start:%Y-%m-%d %H:%M} to {data.end:%Y-%m-%d %H:%M} UTC"
    if data.project is not None:  # --project: another project's keys are left out, so the heading says whose these are
        title += f"  project {names.project(data.project)}"
    table = DataTable(
        title,
        label("key"),
        label("id"),
        label("type"),
        label("status"),
        label("owner"),
        label("project"),
        number("created"),
        number("last used"),
        number("spend"),
        number("requests"),
        label("flags"),
    )
    listed, rest = listed_keys(data, rows)
    for k in listed:
        project = "" if k.project_id is None else names.project(k.project_id)
        table.add_row(
            one_line(k.name or ""),
            k.id,
            k.kind,
            k.status,
            "" if k.owner is None else _owner(k.owner),
            project,
            "" if k.created is None else f"{k.created:%Y-%m-%d}",
            _when(k.last_used),
            "—" if k.spend is None else format_money(k.spend, data.currency),
            "—" if k.requests is None else format_count(k.requests),
            ", ".join(f.code.replace("_", " ") for f in k.flags),
        )
    if rest:
        spend, requests = _summed(rest)
        table.add_row(
            more_label(len(rest), "key"),
            *[""] * 7,
            "—" if spend is None else format_money(spend, data.currency),
            "—" if requests is None else format_count(requests),
            "",
        )
    return table


def _summed(keys: Sequence[KeyInfo]) -> tuple[Decimal | None, int | None]:
    """The spend and the requests of ``keys`` that are known (an admin key's are not), None where none is."""
    spends = [k.spend for k in keys if k.spend is not None]
    requests = [k.requests for k in keys if k.requests is not None]
    return (sum(spends, Decimal(0)) if spends else None, sum(requests) if requests else None)


def _folded_note(rows: RowLimit) -> Text:
    """Said under the table when it leaves keys out: which it lists, and how to list more."""
    return Text(
        f"The table lists every flagged key and the {counted(rows.shown or 0, 'other key')} that spent most (then "
        "the most recently used): `usageledger keys --limit-rows N` lists N of them, `--limit-rows 0` every key "
        "(--format json holds every key).",
        style="dim",
    )


def _no_keys(data: KeysReport, names: Names) -> str:
    """Why the table is empty: under ``--project`` the store may well hold keys, only none of that project."""
    if data.project is None:
        return "no API keys: the store holds no directory and no usage grouped by api_key_id"
    return (
        f"no API keys of project {names.project(data.project)}: the directory lists none in it, and no usage grouped"
        " by project_id and api_key_id names one"
    )


def flag_lines(data: KeysReport) -> list[str]:
    """One line per flag, naming the org, the key and what is wrong."""
    return [f"{k.org}: {k.kind} key {k.label} [{k.id}]: {f.message}" for k in data.flagged for f in k.flags]


def _missing_sources(data: KeysReport) -> None:
    """Say once on stderr which figures are unknown because no synced stream groups by api_key_id."""
    missing = [
        what
        for what, streams in (("spend (costs)", data.spend_streams), ("requests (usage)", data.request_streams))
        if not streams
    ]
    if missing:
        by = "api_key_id" if data.project is None else "project_id and api_key_id (for --project)"
        say(
            f"note: no synced stream groups {' or '.join(missing)} by {by}, so those columns are unknown; "
            "sync one with: usageledger sync -e completions -e costs --group-by project_id,api_key_id"
        )


@app.command()
@friendly_errors
def keys(
    store: StoreOpt = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Start of the spend and requests period: a date, a datetime, or whole days ending today "
            f"(30d = today and the 29 days before). Default: {DEFAULT_SINCE}.",
        ),
    ] = None,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    unused_after: Annotated[
        str, typer.Option("--unused-after", help="Flag a key not used for longer than this (a span: 30d).")
    ] = "30d",
    admin_max_age: Annotated[
        str, typer.Option("--admin-max-age", help="Flag an admin key created longer ago than this (a span: 90d).")
    ] = "90d",
    limit_rows: Annotated[
        int | None,
        typer.Option(
            "--limit-rows",
            min=0,
            help=f"List every flagged key and the N others that spent most (then the most recently used), in the "
            f"table's order, and count the rest in one row with their spend (default: {ROWS_SHOWN} of more than "
            f"{ROWS_SHOWN + ROWS_SLACK} others; 0: every key); --format json has every key.",
        ),
    ] = None,
    config: ConfigOpt = None,
    output_format: FormatOpt = "text",
    now_at: NowOpt = None,
) -> None:
    """Every API key (project and admin, deleted ones marked): owner, project, created, last used, spend, requests,
    and flags: unused, owner removed, admin key too old. A big org's table lists every flagged key and the 25 others
    that spent most, and counts the rest in one row (--limit-rows)."""
    rows = limit_rows_option(limit_rows, output_format=output_format)
    ts = to_unix(now_at, param="--now") if now_at else now_unix()
    now = datetime.fromtimestamp(ts, UTC)
    start = datetime.fromtimestamp(since_unix(since or DEFAULT_SINCE, now=ts, param="--since"), UTC)
    if start > now:  # at now itself (`--since 1d` at 00:00:00 UTC) the period is today's, which holds nothing yet
        raise ParameterError("--since", f"{since!r} is not in the past; give a date before today or a span (30d)")
    rules = KeyRules(
        unused_after=duration_flag(unused_after, "--unused-after"),
        admin_max_age=duration_flag(admin_max_age, "--admin-max-age"),
    )
    one_line_filters(("--project", project))
    settings = load_config(config)
    with _database(resolve_store(store, settings), org=org) as db:
        # a name as every table shows it, by report's rule (project_named); an ID no row names is warned of
        project = project_option(db, project, org, _names(settings, None))
        _warn_unknown_project(db, project, org)
        data = build_keys(db, start=start, end=now, now=now, org=org, rules=rules, project=project)
        names = resolve_names(db, org=org)
    _missing_sources(data)
    if output_format == "json":
        echo_json(keys_document(data))
    else:
        console.print(render_keys(data, names, rows))
        if listed_keys(data, rows)[1]:
            console.print(_folded_note(rows))
        if not data.keys:
            console.print(_no_keys(data, names), highlight=False, markup=False)
        if (line := no_key_line(data)) is not None:
            console.print(line, highlight=False, markup=False)
        # Piped into a log or a mail, every flag stays on one line, however long.
        for line in flag_lines(data):
            console.print(line, highlight=False, markup=False, soft_wrap=not console.is_terminal)
