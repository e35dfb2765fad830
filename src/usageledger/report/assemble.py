"""The whole report of a period and scope as ``report`` shows it: figures, names, and where spend turns provisional.

One function for the ``report`` command and the dashboard's ``/api/report``, so both give the same document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from usageledger._sections import AlertConfig, key_path
from usageledger._text import as_typed, name_key, quoted
from usageledger.errors import ParameterError, UsageLedgerError
from usageledger.report.credit import CreditBalance, credit_balance
from usageledger.report.finality import final_costs_until, provisional_from
from usageledger.report.forecast_out import credit_document, forecast_document
from usageledger.report.forecasting import ForecastReport, build_forecast
from usageledger.report.history import Adjustment, adjustments
from usageledger.report.jsonout import report_document
from usageledger.report.names import Names, resolve_names, without_status
from usageledger.report.queries import COSTS_VIEW, Database, Period, ReportData, Scope, build_report, project_known
from usageledger.report.teams import UNASSIGNED, project_teams, select_team
from usageledger.store import BaseStore
from usageledger.sync_options import SyncOptions

__all__ = [
    "MODEL_ADJUSTMENTS",
    "adjustments_within",
    "alert_projects",
    "assemble_report",
    "closed_adjustments",
    "known_project",
    "month_outlook",
    "outlook_document",
    "project_named",
    "projects_in",
    "resolve_scope",
    "unknown_project",
    "unknown_team_projects",
]


def assemble_report(
    db: BaseStore,
    period: Period,
    scope: Scope,
    *,
    options: SyncOptions,
    overrides: Names | None = None,
    source: Database | None = None,
    distinct: bool = True,
) -> tuple[ReportData, Names]:
    """The report's figures (with ``provisional_from`` by the sync's finalization grace in ``options``) and the
    names to show for IDs: the store's directory, overridden by ``overrides`` (``distinct``: fit to show, see
    :func:`resolve_names`; else as they are, for a JSON document). ``source``, when given, is what the
    figures are read from instead of ``db`` (the costs converted to another currency, :mod:`usageledger.report.fx`)."""
    data = build_report(source if source is not None else db, period, scope)
    id_names = resolve_names(db, org=scope.org, overrides=overrides, distinct=distinct)
    final = final_costs_until(db, options)
    return replace(data, provisional_from=provisional_from(final, scope.org)), id_names


MODEL_ADJUSTMENTS: Final = (
    "the closed months' adjustments are kept by org and project, not by model, so a report of one model leaves them "
    "out; leave out the model filter to see them"
)


def closed_adjustments(db: BaseStore, period: Period, scope: Scope) -> tuple[tuple[Adjustment, ...], tuple[str, ...]]:
    """The adjustments of the closed months the period touches, within ``scope``, as ``report``, the dashboard and the
    MCP tools show them, and the warnings to say with them.

    A close records figures by org and project: a project's or a team's scope keeps its projects' own adjustments
    (never the org's total, which covers other projects); a model's scope has none to give, and when the scope
    without its model would list some, one warning says why they are left out."""
    moved = adjustments_within(
        adjustments(db, org=scope.org, months=(period.since.replace(day=1), period.until)), scope
    )
    if scope.model is not None:
        return (), (MODEL_ADJUSTMENTS,) if moved else ()
    return moved, ()


def adjustments_within(moved: Sequence[Adjustment], scope: Scope) -> tuple[Adjustment, ...]:
    """The adjustments of ``moved`` within ``scope``'s project or team: the projects' own, never the org's total (it
    covers other projects too). The org is the caller's to pick when reading them; the model is not a close's."""
    if scope.project is None and scope.team_projects is None:
        return tuple(moved)
    members = {scope.project} if scope.team_projects is None else set(scope.team_projects)
    return tuple(a for a in moved if a.level == "project" and a.project_id in members)


def month_outlook(
    db: BaseStore, *, now: datetime, org: str | None, project: str | None = None
) -> tuple[ForecastReport | None, CreditBalance | None]:
    """This month's forecast (``None`` when the store holds too little history) and the prepaid credit balance
    (``None`` without top-ups), as ``report``, ``status`` and the dashboard show them."""
    try:
        outlook = build_forecast(db, now.date().replace(day=1), now=now, org=org, project=project)
    except UsageLedgerError:
        outlook = None
    return outlook, credit_balance(db, now=now, org=org)


def outlook_document(
    data: ReportData, names: Names, outlook: ForecastReport | None, credit: CreditBalance | None
) -> dict[str, Any]:
    """``report --format json`` and ``/api/report``: the report's document with ``forecast`` and ``credit``."""
    document = report_document(data, names)
    document["forecast"] = None if outlook is None else forecast_document(outlook, names)
    document["credit"] = credit_document(credit)
    return document


def known_project(db: BaseStore, project: str, *, org: str | None, names: Names) -> bool:
    """Whether ``project`` is a project of the store (of ``org``, when given): named by a cost or usage row at any
    time, or by the directory or a ``[names]`` override (``names``, from :func:`resolve_names`). The one test of a
    project filter the dashboard and the MCP tools refuse, never answering a mistyped ID as a project with no spend."""
    return project_known(db, project, org) or project in names.projects


def project_named(db: BaseStore, project: str, *, org: str | None, names: Names, param: str) -> str | None:
    """The ID of the one project (of ``org``, when given) named ``project``, when it is a name and not an ID; else
    ``None``: the value is taken as the ID it is (a ``proj_…``, an ID a row or the directory names), or as given when
    it names nothing (the caller warns or refuses). The one resolver of ``--project`` and the MCP tools' ``project``:
    ``--project 'Search Assistant'``, the name every table shows, was read as an ID and reported $0.00.

    Names are ``names`` (:func:`resolve_names` with ``distinct=False``: the directory, then ``[names]`` and
    ``--names``), compared with blanks collapsed and case folded. A name of several projects is refused, naming
    their IDs (``param``), never answered with one of them. A name as shown, ``Old tools (archived)``, is matched
    first; else the name without the status a table adds (``--project 'Old tools'`` named nothing)."""
    if project.startswith("proj_") or project in names.projects or project_known(db, project, org):
        return None
    wanted = name_key(project)
    found = sorted(pid for pid, name in names.projects.items() if name_key(name) == wanted)
    if not found:
        found = sorted(pid for pid, name in names.projects.items() if name_key(without_status(name)) == wanted)
    if len(found) > 1:
        where = "" if org is None else f" of org {org}"
        raise ParameterError(
            param,
            f"{quoted(project)} is the name of {len(found)} projects{where} ({', '.join(found)}); give the ID of one",
        )
    return found[0] if found else None


def unknown_project(db: BaseStore, project: str, org: str | None) -> str | None:
    """Why ``project`` (an ID) names nothing in the store, and what to give instead, or ``None`` when a row names it:
    the one wording of the CLI's warning of a ``--project`` or a config key no row names, of ``forecast``'s refusal
    and of :func:`unknown_team_projects`."""
    if project_known(db, project, org):
        return None
    where = "" if org is None else f" for org {org}"
    return f"appears in no cost or usage row of this store{where}; {_project_hint(db, project, org)}"


def _project_hint(db: BaseStore, project: str, org: str | None) -> str:
    """What to do about a project filter no row names: the ID it differs from only in case or blanks, or the ID of
    the project it names (``--project 'Support Bot'`` read as an ID reported $0.00, and ``check`` watched nothing),
    else to check the ID (or the name, for a value no ID looks like)."""
    names = resolve_names(db, org=org, distinct=False).projects
    if project in names:  # the directory's: "did you mean" it named the very ID given (an archived project's)
        return f"it is {names[project]!r} in the directory, a project with no spend or usage synced"
    wanted = name_key(project)
    alike = sorted(pid for pid in names if pid.casefold() == wanted)  # a pasted blank, a shifted letter
    if alike:
        return f"did you mean {alike[0]}?"
    found = sorted(pid for pid, name in names.items() if name_key(name) == wanted)
    if not found and project.startswith("proj_"):
        return "check the ID (usageledger report lists the projects)"
    if not found:  # a name (--project takes one now): "check the ID" sent its user to look for an ID they never gave
        return "nor is it a project's name; check the name, or give the ID (usageledger report lists the projects)"
    if len(found) == 1:
        return f"{quoted(project)} is the name of project {found[0]}: give that ID instead"
    return f"{quoted(project)} is the name of projects {', '.join(found)}: give the ID of one"


def unknown_team_projects(db: BaseStore, teams: Mapping[str, str], *, team: str | None = None) -> list[str]:
    """A warning for each project ID a ``[teams]`` team lists (``teams``: the config's ``{project_id: team}``; of
    ``team`` alone, when given) that no row of the store, nor its directory, names, by team then ID: the team got
    none of its spend and vanished from spend by team without a word (the README's example, copied as it stands,
    listed a team ``Search`` of placeholder IDs that no report showed). Any org's project counts (a team may take in
    several orgs' projects), and so does one the directory holds with no spend yet, which a team may well list ahead
    of its first request. The one finding of ``report --by team``, ``statement``, the dashboard's team view and the
    MCP tools' spend by team; each says the warnings as it says its others."""
    listed = sorted((t, project) for project, t in teams.items() if team is None or t == team)
    if not listed:
        return []
    directory = resolve_names(db, distinct=False).projects
    return [
        f"{key_path('teams', t)} lists {as_typed(project)}, which {unknown}"
        for t, project in listed
        if project not in directory and (unknown := unknown_project(db, project, None)) is not None
    ]


def alert_projects(
    db: BaseStore, alerts: AlertConfig, *, org: str | None, names: Names
) -> tuple[AlertConfig, dict[str, str]]:
    """``alerts`` with its ``[alerts.projects.X]`` budgets keyed by project ID, and ``{X: project ID}``: each X a
    project's ID or its name, read by :func:`project_named` (an X that names nothing is kept as it is, for the caller
    to warn of). ``[alerts.projects."Search Assistant"]``, the name every table shows, was read as an ID no row
    names. The one reading of ``check`` and the MCP ``alerts`` tool.

    A name several projects share is refused naming the key and the IDs; two keys of one project (its ID and its
    name) are refused naming both, since one of the two tables would be dropped unsaid."""
    where = "alerts.projects"
    resolved: dict[str, str] = {}
    first: dict[str, str] = {}
    for key in sorted(alerts.project_budgets):
        at = key_path(where, key)
        project_id = project_named(db, key, org=org, names=names, param=at) or key
        if project_id in first:
            raise ParameterError(
                f"{key_path(where, first[project_id])} and {at}",
                f"both are project {project_id} ({names.project(project_id)}); keep one of the two tables",
            )
        first[project_id] = key
        resolved[key] = project_id
    budgets = {resolved[key]: budget for key, budget in alerts.project_budgets.items()}
    return alerts.replace(project_budgets=budgets), resolved


def projects_in(db: BaseStore, period: Period, org: str | None) -> list[str | None]:
    """The projects with spend in the period (``None``: spend with no project)."""
    where, params = Scope(org=org).where(period)
    return [r[0] for r in db.query(f"SELECT DISTINCT project_id FROM {COSTS_VIEW} WHERE {where}", params)]


def resolve_scope(
    db: BaseStore, period: Period, filters: Scope, *, teams: Mapping[str, str] | None = None, team_param: str = "--team"
) -> Scope:
    """The report scope of the filters: their team, given by name, is its projects, by the rule of ``report --by
    team`` (``teams``, the config's ``[teams]``, first, then the directory's project groups, else ``unassigned``)."""
    team, org = filters.team, filters.org
    if team is None:
        return filters
    members: tuple[str | None, ...] | None = None
    if name_key(team) == UNASSIGNED:  # as select_team matches names
        by_project = project_teams(db, org=org, config=teams)
        if team == UNASSIGNED or team not in by_project.values():  # never a [teams] team of that very name
            team = UNASSIGNED
            members = tuple(p for p in projects_in(db, period, org) if p is None or p not in by_project)
    if members is None:
        # two orgs' groups of one name are two teams: a name both have is refused with the choices
        team, members = select_team(db, team, org=org, config=teams, param=team_param)
    return replace(filters, team=team, team_projects=members)
