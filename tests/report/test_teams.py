"""`usageledger report --by team`: spend by team from the directory's groups or the config's [teams], to the cent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from usageledger.cli import app
from usageledger.config import parse_config
from usageledger.errors import ConfigError
from usageledger.report.queries import Spend
from usageledger.report.teams import UNASSIGNED, spend_by_team
from usageledger.store import open_store

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

DAY = 86_400
SINCE = datetime.fromtimestamp(EMULATOR_NOW - 29 * DAY, UTC).date().isoformat()
UNTIL = datetime.fromtimestamp(EMULATOR_NOW, UTC).date().isoformat()


def _run(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def _json(*args: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(_run(*args, "--format", "json").stdout)
    return doc


@pytest.fixture(scope="module")
def synced(emulator_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store synced from the shared emulator: 30 days of costs and the directory with its groups."""
    store = str(tmp_path_factory.mktemp("teams") / "s.duckdb")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
        _run("sync", "--store", store, "--now", str(EMULATOR_NOW), "--base-url", emulator_url, "-e", "costs")
    return store


def _first_groups(store: str) -> dict[str, str]:
    """Each project's first group by name, read straight from the directory."""
    with open_store(store, read_only=True) as db:
        rows = db.query(
            "SELECT scope, name FROM directory_current WHERE kind = 'project_group' AND status <> 'deleted'"
        )
    out: dict[str, list[str]] = {}
    for project, name in rows:
        out.setdefault(project, []).append(name)
    return {p: sorted(names, key=lambda n: (n.casefold(), n))[0] for p, names in out.items()}


def test_teams_add_up_to_the_total_to_the_cent(synced: str) -> None:
    """Every project with spend is in exactly one team (its first group by name), and the teams sum to the total."""
    whole = _json("report", "--store", synced, "--since", SINCE, "--until", UNTIL)
    teams = _json("report", "--store", synced, "--since", SINCE, "--until", UNTIL, "--by", "team")
    total = Decimal(whole["totals"]["spend"])  # type: ignore[index]
    rows = teams["spend_by_team"]
    assert isinstance(rows, list) and total > 0
    assert sum(Decimal(t["spend"]) for t in rows) == Decimal(teams["total"]) == total  # type: ignore[arg-type]
    placed = [p["project_id"] for t in rows for p in t["projects"]]
    projects = [r["project_id"] for r in whole["spend_by_project"]]  # type: ignore[union-attr]
    assert sorted(placed) == sorted(projects)
    groups = _first_groups(synced)
    team_of = {p["project_id"]: t["team"] for t in rows for p in t["projects"]}
    assert groups and all(team_of[p] == groups.get(p, UNASSIGNED) for p in projects)
    text = _run("report", "--store", synced, "--since", SINCE, "--until", UNTIL, "--by", "team").stdout
    assert "Spend by team" in text and all(t["team"] in text for t in rows)


def test_config_teams_win_over_the_directory(synced: str, tmp_path: Path) -> None:
    """A project listed under [teams] is in that team whatever its groups; the sum is still the total."""
    whole = _json("report", "--store", synced, "--since", SINCE, "--until", UNTIL)
    project = whole["spend_by_project"][0]["project_id"]  # type: ignore[index]
    config = tmp_path / "usageledger.toml"
    config.write_text(f'[teams]\n"Finance ops" = ["{project}"]\n', encoding="utf-8")
    teams = _json(
        "report", "--store", synced, "--since", SINCE, "--until", UNTIL, "--by", "team", "--config", str(config)
    )
    rows = teams["spend_by_team"]
    assert isinstance(rows, list)
    finance = next(t for t in rows if t["team"] == "Finance ops")
    assert [p["project_id"] for p in finance["projects"]] == [project]
    assert Decimal(teams["total"]) == Decimal(whole["totals"]["spend"])  # type: ignore[arg-type,index]


def test_no_project_and_unknown_projects_are_unassigned_and_cents_are_kept() -> None:
    """Spend with no project and projects in no team go to 'unassigned'; odd fractions of a cent sum exactly."""
    spends = [Spend("p1", Decimal("0.333333")), Spend("p2", Decimal("0.333334")), Spend(None, Decimal("10.01"))]
    teams = spend_by_team(spends, {"p1": "Search"})
    assert [(t.team, t.amount, t.projects) for t in teams] == [
        (UNASSIGNED, Decimal("10.343334"), ("p2", None)),
        ("Search", Decimal("0.333333"), ("p1",)),
    ]
    assert sum(t.amount for t in teams) == sum(s.amount for s in spends)


def test_a_project_in_two_config_teams_is_refused() -> None:
    """[teams] listing one project under two teams is a config error naming both, never a silent pick."""
    with pytest.raises(ConfigError, match=r"teams\.B: project proj_a is already in team A"):
        parse_config({"teams": {"A": ["proj_a"], "B": ["proj_a"]}})
    with pytest.raises(ConfigError, match=r"teams\.A: expected a list of project IDs"):
        parse_config({"teams": {"A": "proj_a"}})
