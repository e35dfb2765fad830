"""Spend by team: every project belongs to exactly one team, so the teams add up to the total to the cent.

The rule, in order:

1. the config's ``[teams]`` section (team name = [project IDs]) wins: a project listed there is in that team;
2. else the project's groups in the store's directory (``project_groups``, the groups with access to it): with one
   group, that group; with several, the first by name (case-insensitive, then exact name, then group ID), so the
   choice is stable and never splits a cent;
3. else, and for spend with no project at all, the team ``unassigned``.

Each project's whole spend goes to one team, and :func:`spend_by_team` only regroups the report's spend by project,
so the teams' sum is the report's total exactly (Decimal, no rounding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from usageledger.report.queries import Spend
from usageledger.store.directory import BaseStore

__all__ = ["UNASSIGNED", "TeamSpend", "project_teams", "spend_by_team"]

UNASSIGNED: Final = "unassigned"
"""The team of a project in no ``[teams]`` entry and no directory group, and of spend with no project."""


@dataclass(frozen=True, slots=True)
class TeamSpend:
    team: str
    amount: Decimal
    projects: tuple[str | None, ...]
    """The projects whose spend is in this team (``None``: spend with no project)."""


def project_teams(
    store: BaseStore, *, org: str | None = None, config: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``{project_id: team}`` by the module's rule, for every project the directory or ``config`` knows."""
    sql = (
        "SELECT scope, name, id FROM directory_versions"
        " WHERE kind = 'project_group' AND valid_to IS NULL AND status <> 'deleted'"
    )
    params: list[object] = []
    if org is not None:
        sql += " AND org = %s"
        params.append(org)
    groups: dict[str, list[tuple[str, str, str]]] = {}
    for project, name, group_id in store.query(sql, params):
        shown = name or group_id
        groups.setdefault(project, []).append((shown.casefold(), shown, group_id))
    teams = {project: min(found)[1] for project, found in groups.items()}
    teams.update(config or {})
    return teams


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
