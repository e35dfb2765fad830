"""Teams as a careless organisation names them (a group named with a newline), or has none at all."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.report.teams import NO_TEAMS, project_teams, select_team
from usageledger.store import open_store
from usageledger.store.directory import Entry, Snapshot, refresh

from fixtures.emulator import EMULATOR_NOW

SINCE = datetime.fromtimestamp(EMULATOR_NOW - 29 * 86_400, UTC).date().isoformat()
UNTIL = datetime.fromtimestamp(EMULATOR_NOW, UTC).date().isoformat()


def _store_with_groups(path: Path, groups: dict[str, str]) -> str:
    """A DuckDB store whose directory gives each project (key) a group of that name (value)."""
    store = str(path / "teams.duckdb")
    entries = [
        Entry("project_group", project, f"group_{i}", name, "{}", status="active")
        for i, (project, name) in enumerate(groups.items())
    ]
    with open_store(store) as db:
        refresh(db, "acme", Snapshot(entries), at=1_760_000_000)
    return store


def test_a_group_named_over_two_lines_is_a_team_of_one_line(tmp_path: Path) -> None:
    """A group named "Plat\\nform" (or with an escape sequence) was a team printed over two lines, one row of
    `report --by team` reading as two, where a project of that name is shown on one line with the escape written
    out. The team is shown as the project would be, and `--team` takes what is shown."""
    store = _store_with_groups(tmp_path, {"proj_a": "Plat\nform\x1b[2J", "proj_b": "Research"})
    with open_store(store, read_only=True) as db:
        teams = project_teams(db)
        assert teams == {"proj_a": "Plat\\nform\\u001b[2J", "proj_b": "Research"}
        assert select_team(db, "Plat\\nform\\u001b[2J") == ("Plat\\nform\\u001b[2J", ("proj_a",))


def test_a_group_with_a_blank_name_is_its_id(tmp_path: Path) -> None:
    """A group whose name is spaces only was a team shown as nothing at all, which `--team` could not name: it is
    shown by its ID, as a group with no name is."""
    store = _store_with_groups(tmp_path, {"proj_a": "   "})
    with open_store(store, read_only=True) as db:
        assert project_teams(db) == {"proj_a": "group_0"}
        assert select_team(db, "group_0") == ("group_0", ("proj_a",))


def test_spend_by_team_with_no_team_at_all_says_why(demo_store: Path, tmp_path: Path) -> None:
    """`report --by team` on a store with no [teams] and no directory groups printed one row, `unassigned`, with
    nothing saying why: it warns (stderr and the JSON's warnings) with the two ways to have teams, and not once a
    project has a team."""
    period = ("--since", SINCE, "--until", UNTIL)
    with open_store(str(demo_store), read_only=True) as db:
        assert project_teams(db) == {}  # the demo sync reads no directory
        project = db.query("SELECT project_id FROM costs WHERE project_id IS NOT NULL LIMIT 1")[0][0]
    result = CliRunner().invoke(app, ["report", "--store", str(demo_store), *period, "--by", "team", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == [NO_TEAMS]
    assert f"warning: {NO_TEAMS}" in " ".join(result.stderr.split())
    config = tmp_path / "usageledger.toml"
    config.write_text(f'[teams]\nSearch = ["{project}"]\n')
    args = ["report", "--store", str(demo_store), *period, "--by", "team", "-f", "json", "--config", str(config)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == [] and "warning" not in result.stderr


def test_a_group_named_unassigned_carries_its_org(tmp_path: Path) -> None:
    """A directory group named "Unassigned" was a team row beside the spend of no team, `unassigned`, and `--team
    Unassigned` picked the spend of no team. It carries its org, as a name two orgs share does; so does "Total"."""
    store = _store_with_groups(tmp_path, {"proj_a": "Unassigned", "proj_b": "Total", "proj_c": "Research"})
    with open_store(store, read_only=True) as db:
        assert project_teams(db) == {"proj_a": "Unassigned (acme)", "proj_b": "Total (acme)", "proj_c": "Research"}
        assert select_team(db, "Unassigned (acme)") == ("Unassigned (acme)", ("proj_a",))
