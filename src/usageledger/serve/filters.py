"""The dashboard's filters: what its dropdowns offer, and the report scope a choice of them names."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from usageledger.report.assemble import projects_in
from usageledger.report.names import Names
from usageledger.report.queries import COSTS_VIEW, LINE_ITEM_MODEL, Period, Scope, token_usage_sql
from usageledger.report.teams import UNASSIGNED, project_teams
from usageledger.store import BaseStore

__all__ = ["filter_options"]


def filter_options(
    db: BaseStore,
    period: Period,
    params: Mapping[str, str | None],
    *,
    names: Names,
    teams: Mapping[str, str],
) -> dict[str, Any]:
    """What the dropdowns offer for the period (within the chosen org): orgs, projects with names, teams, models.
    A value chosen already is always offered, so the page never loses the selection."""
    org = params.get("org")
    orgs = {r[0] for r in db.query("SELECT DISTINCT org FROM streams")}
    projects = {p for p in projects_in(db, period, org) if p is not None}
    team_names = set(project_teams(db, org=org, config=teams).values()) | {UNASSIGNED}
    where, values = Scope(org=org).where(period)
    models = {r[0] for r in db.query(f"SELECT DISTINCT {LINE_ITEM_MODEL} FROM {COSTS_VIEW} WHERE {where}", values)}
    usage, values = token_usage_sql(Scope(org=org), period)
    models |= {r[0] for r in db.query(f"SELECT DISTINCT model FROM ({usage}) u", values)}
    for key, found in (("org", orgs), ("project", projects), ("team", team_names), ("model", models)):
        chosen = params.get(key)
        if chosen is not None:
            found.add(chosen)
    listed = sorted(({"id": p, "name": names.project(p)} for p in projects), key=lambda p: (p["name"].lower(), p["id"]))
    return {
        "period": {"first_day": period.since, "last_day": period.until - timedelta(days=1), "days": period.days},
        "orgs": sorted(orgs),
        "projects": listed,
        "teams": sorted(team_names, key=lambda t: (t == UNASSIGNED, t.lower(), t)),
        "models": sorted(m for m in models if m is not None),
    }
