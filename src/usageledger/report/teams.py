"""Spend by team: every project belongs to exactly one team, so the teams add up to the total to the cent.

The rule, in order:

1. the config's ``[teams]`` section (team name = [project IDs]) wins: a project listed there is in that team;
2. else the project's groups in the store's directory (``project_groups``, the groups with access to it): with one
   group, that group; with several, the first by name (case-insensitive, then exact name, then group ID), so the
   choice is stable and never splits a cent;
3. else, and for spend with no project at all, the team ``unassigned``.

A group is an organisation's object: two orgs' groups of one name are two teams (a config ``[teams]`` entry listing
both orgs' projects makes them one). Such a name carries its org where it collides, case-insensitively, in what is
shown (``Platform (acme)``, ``Platform (beta)``), as :func:`usageledger.report.names.resolve_names` gives two alike
names their IDs; a store with one org, or a report of one ``org``, shows the plain name. A ``[teams]`` name is the
config's, and shown as it is. :func:`select_team` finds a team by its shown name, its plain name when that is not
ambiguous, or ``name (org)``, ignoring case and extra spaces.

Each project's whole spend goes to one team, and :func:`spend_by_team` only regroups the report's spend by project,
so the teams' sum is the report's total exactly (Decimal, no rounding).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from usageledger._sections import UNASSIGNED
from usageledger._text import name_key, one_line
from usageledger.errors import ParameterError
from usageledger.report.queries import Spend
from usageledger.store.directory import BaseStore

__all__ = ["NO_TEAMS", "UNASSIGNED", "TeamSpend", "project_teams", "select_team", "spend_by_team"]

NO_TEAMS: Final = (
    "no project has a team, so all spend is unassigned: list projects under [teams] in the config, or sync the"
    " directory (without --no-directory) so that its groups are the teams"
)
"""The warning for spend by team where :func:`project_teams` found none: a table of one row, ``unassigned``, said
nothing of why (no ``[teams]``, no directory synced, or groups with no project)."""


@dataclass(frozen=True, slots=True)
class TeamSpend:
    team: str
    amount: Decimal
    projects: tuple[str | None, ...]
    """The projects whose spend is in this team (``None``: spend with no project)."""


def _directory_teams(store: BaseStore, org: str | None) -> dict[str, tuple[str, str]]:
    """``{project_id: (org, group name)}``: each project's first group by the module's rule."""
    sql = (
        "SELECT org, scope, name, id FROM directory_versions"
        " WHERE kind = 'project_group' AND valid_to IS NULL AND status <> 'deleted'"
    )
    params: list[object] = []
    if org is not None:
        sql += " AND org = %s"
        params.append(org)
    groups: dict[str, list[tuple[str, str, str, str]]] = {}
    for owner, project, name, group_id in store.query(sql, params):
        # One line, as a project's name is (resolve_names): a group named "Plat\nform" made a team of two lines in
        # every table, and a row that read as two.
        shown = one_line(name) if name and name.strip() else group_id
        groups.setdefault(project, []).append((shown.casefold(), shown, group_id, owner))
    return {project: (first[3], first[1]) for project, first in ((p, min(found)) for p, found in groups.items())}


def _labels(
    directory: Mapping[str, tuple[str, str]], config: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, set[str]]]:
    """``({project_id: team}, {team: the names that select it too})``: directory teams carry their org where two
    orgs' groups share a name (config teams are as written); each directory team is also ``name`` and
    ``name (org)``."""
    chosen = {p: found for p, found in directory.items() if p not in config}
    orgs_of: dict[str, set[str]] = {}
    for owner, name in chosen.values():
        orgs_of.setdefault(name.casefold(), set()).add(owner)
    teams: dict[str, str] = {}
    aliases: dict[str, set[str]] = {}
    for project, (owner, name) in chosen.items():
        # A group named "Unassigned" (or "Total") would read as the spend of no team (or the sum row): it carries
        # its org, as a name two orgs share does.
        clash = len(orgs_of[name.casefold()]) > 1 or name_key(name) in (UNASSIGNED, "total")
        team = f"{name} ({owner})" if clash else name
        teams[project] = team
        aliases.setdefault(team, set()).update((name, f"{name} ({owner})"))
    teams.update(config)
    return teams, aliases


def project_teams(
    store: BaseStore, *, org: str | None = None, config: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``{project_id: team}`` by the module's rule, for every project the directory or ``config`` knows."""
    return _labels(_directory_teams(store, org), config or {})[0]


def select_team(
    store: BaseStore,
    team: str,
    *,
    org: str | None = None,
    config: Mapping[str, str] | None = None,
    param: str = "--team",
) -> tuple[str, tuple[str, ...]]:
    """``(team, its project IDs)`` of the team named ``team`` (not ``unassigned``): its shown name, else its plain
    group name when one team has it, else ``name (org)``: but for the exact shown name, all compared ignoring case
    (as names collide) and extra spaces. A name two orgs' teams share is refused with the choices, one unknown with
    the teams (:class:`ParameterError` on ``param``)."""
    teams, aliases = _labels(_directory_teams(store, org), config or {})
    shown = set(teams.values())
    if team not in shown:
        # as names collide: ignoring case, and spaces doubled or around the org's parentheses (typed by hand)
        key = _match_key(team)
        matches = sorted(t for t in shown if key in {_match_key(n) for n in {t, *aliases.get(t, ())}})
        if len(matches) > 1:
            raise ParameterError(param, f"{team!r} is a team in several orgs; pick one: {', '.join(matches)}")
        if not matches:
            known = ", ".join(sorted({*shown, UNASSIGNED}))
            raise ParameterError(param, f"no team is named {team!r}; the teams: {known}")
        team = matches[0]
    return team, tuple(sorted(p for p, t in teams.items() if t == team))


def _match_key(name: str) -> str:
    """``name`` as :func:`select_team` compares it: case-folded, runs of whitespace one space, none inside the
    parentheses of ``name (org)`` and one before them (``platform(ACME )`` is ``Platform (acme)``)."""
    text = " ".join(name.split())
    text = re.sub(r" ?\( ?", " (", re.sub(r" ?\)", ")", text))
    return text.strip().casefold()


def spend_by_team(spend_by_project: Sequence[Spend], teams: Mapping[str, str]) -> tuple[TeamSpend, ...]:
    """The report's spend by project regrouped by team, biggest first (``unassigned`` last among equals)."""
    amounts: dict[str, Decimal] = {}
    members: dict[str, list[str | None]] = {}
    for s in spend_by_project:
        team = teams.get(s.key, UNASSIGNED) if s.key is not None else UNASSIGNED
        amounts[team] = amounts.get(team, Decimal(0)) + s.amount
        members.setdefault(team, []).append(s.key)
    out = [TeamSpend(team, amounts[team], tuple(members[team])) for team in amounts]
    return tuple(sorted(out, key=lambda t: (-t.amount, t.team == UNASSIGNED, t.team)))
