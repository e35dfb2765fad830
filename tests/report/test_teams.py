"""`usageledger report --by team`: spend by team from the directory's groups or the config's [teams], to the cent."""

from __future__ import annotations

import html
import io
import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Route
from rich.console import Console
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from usageledger.cli import app
from usageledger.config import Config, parse_config
from usageledger.emulator import EmulatorConfig, run_server
from usageledger.emulator.orgs import Organisations, org_key
from usageledger.errors import ConfigError, ParameterError
from usageledger.mcp_tools import LedgerTools
from usageledger.report.names import Names
from usageledger.report.period import report_period
from usageledger.report.queries import Scope, Spend, build_report
from usageledger.report.teams import UNASSIGNED, TeamSpend, select_team, spend_by_team
from usageledger.report.terminal import render_teams
from usageledger.serve import build_app
from usageledger.store import BaseStore, open_store

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


def test_a_config_team_of_ids_the_store_never_saw_is_warned_of(synced: str, tmp_path: Path) -> None:
    """A [teams] ID no row nor the directory names (the README's example's `proj_abc`, copied as it stands, or a typo)
    is one warning naming the team's key and the ID, from `report --by team` and `statement`: its team got no spend
    and was missing from the table without a word. A listed project the store knows is not warned of."""
    whole = _json("report", "--store", synced, "--since", SINCE, "--until", UNTIL)
    known = whole["spend_by_project"][0]["project_id"]  # type: ignore[index]
    config = tmp_path / "usageledger.toml"
    config.write_text(f'[teams]\nSearch = ["{known}", "proj_abc"]\n"Data platform" = ["proj_ghi"]\n')
    common = ("--store", synced, "--config", str(config), "--by", "team")
    month = datetime.fromtimestamp(EMULATOR_NOW - 2 * DAY, UTC).strftime("%Y-%m")
    for args in (("report", "--since", SINCE, "--until", UNTIL), ("statement", month)):
        result = CliRunner().invoke(app, [*args, *common])
        assert result.exit_code == 0, result.output
        warned = [line for line in result.stderr.splitlines() if " lists " in line]
        assert warned == [
            'warning: teams."Data platform" lists proj_ghi, which appears in no cost or usage row of this store; '
            "check the ID (usageledger report lists the projects)",
            "warning: teams.Search lists proj_abc, which appears in no cost or usage row of this store; check the ID "
            "(usageledger report lists the projects)",
        ], result.stderr
    # `--team search`: that team's unknown IDs alone (the team as it resolves), as the dashboard's ?team= gives them
    result = CliRunner().invoke(
        app,
        ["report", "--since", SINCE, "--until", UNTIL, "--store", synced, "--config", str(config), "--team", "search"],
    )
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if " lists " in line] == [
        "warning: teams.Search lists proj_abc, which appears in no cost or usage row of this store; check the ID "
        "(usageledger report lists the projects)",
    ], result.stderr
    said = [line.removeprefix("warning: ") for line in warned]
    # The dashboard's team view and the MCP tools' spend by team say them as they say their other warnings: the
    # view's team only on the page and in /api/report, every team's in the MCP answer.
    settings = parse_config({"teams": {"Search": [known, "proj_abc"], "Data platform": ["proj_ghi"]}})
    with TestClient(build_app(synced, config=settings)) as dashboard:
        for team, wanted in (("Search", said[1:]), ("Data platform", said[:1])):
            doc = dashboard.get("/api/report", params={"since": SINCE, "until": UNTIL, "team": team}).json()
            assert [w for w in doc["warnings"] if " lists " in w] == wanted, doc["warnings"]
            page = dashboard.get("/", params={"since": SINCE, "until": UNTIL, "team": team}).text
            assert f'<p class="store-warning" role="alert">Warning: {html.escape(wanted[0])}</p>' in page
        doc = dashboard.get("/api/report", params={"since": SINCE, "until": UNTIL}).json()
        assert not [w for w in doc["warnings"] if " lists " in w]  # no team view, no team to warn of

    @contextmanager
    def reading() -> Iterator[BaseStore]:
        with open_store(synced, read_only=True) as opened:
            yield opened

    tools = LedgerTools(reading, settings, clock=lambda: datetime.fromtimestamp(EMULATOR_NOW, UTC))
    assert [w for w in tools.spend(SINCE, UNTIL, "team")["warnings"] if " lists " in w] == said
    assert not [w for w in tools.spend(SINCE, UNTIL, "project")["warnings"] if " lists " in w]


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


@pytest.fixture(scope="module")
def two_orgs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A store of two emulated orgs, acme and beta, synced by `usageledger sync` with their directories: their
    synthetic groups share names (Platform, Research, ...), as two real orgs' groups may; and the config used."""
    folder = tmp_path_factory.mktemp("two-orgs")
    store, config = folder / "s.duckdb", folder / "usageledger.toml"
    orgs = Organisations(EmulatorConfig(days=10, projects=5, users=6, models=4, now=EMULATOR_NOW), 2)
    with run_server(orgs) as url, pytest.MonkeyPatch.context() as mp:
        config.write_text(
            "".join(f'[[orgs]]\nname = "{n}"\nkey_env = "KEY_{n.upper()}"\nbase_url = "{url}"\n' for n in ORG_NAMES),
            encoding="utf-8",
        )
        for number, name in enumerate(ORG_NAMES, start=1):
            mp.setenv(f"KEY_{name.upper()}", org_key(number))
        sync = ("sync", "--config", str(config), "--store", str(store), "--now", str(EMULATOR_NOW), "-e", "costs")
        _run(*sync, "--allow-insecure-http")
    return str(store), config


ORG_NAMES = ("acme", "beta")


def _teams_of(store: str, *args: str) -> dict[str, list[str]]:
    """``{team: its project IDs}`` of `report --by team`, checked to add up to the report's total."""
    doc = _json("report", "--store", store, "--since", SINCE, "--until", UNTIL, "--by", "team", *args)
    whole = _json("report", "--store", store, "--since", SINCE, "--until", UNTIL, *args)
    rows = doc["spend_by_team"]
    assert isinstance(rows, list)
    assert sum(Decimal(t["spend"]) for t in rows) == Decimal(whole["totals"]["spend"]) > 0  # type: ignore[index]
    return {t["team"]: sorted(p["project_id"] for p in t["projects"]) for t in rows}


def _org_of(store: str) -> dict[str, str]:
    with open_store(store, read_only=True) as db:
        return dict(db.query("SELECT DISTINCT id, org FROM directory_current WHERE kind = 'project'"))


def test_two_orgs_groups_of_one_name_are_two_teams(two_orgs: tuple[str, Path]) -> None:
    """Both orgs have a group "Platform": `--by team` summed them as one team. Now each org's is its own team, named
    with its org only where the name collides; within one org (`--org`) the plain names, as in a one-org store."""
    store, _ = two_orgs
    org_of = _org_of(store)
    teams = _teams_of(store)
    apart = {t for t in teams if t.endswith((" (acme)", " (beta)"))}
    assert {"Platform (acme)", "Platform (beta)"} <= apart and "Platform" not in teams
    for team in apart:
        assert {org_of[p] for p in teams[team]} == {team.rsplit(" (", 1)[1].rstrip(")")}
    for org in ORG_NAMES:
        alone = _teams_of(store, "--org", org)
        assert "Platform" in alone and not any(t.endswith(f" ({org})") for t in alone)
        mine = {t.removesuffix(f" ({org})"): ps for t, ps in teams.items() if {org_of[p] for p in ps} == {org}}
        assert {t: ps for t, ps in alone.items() if t != UNASSIGNED} == mine


def test_team_filter_picks_one_orgs_team_and_refuses_a_shared_name(two_orgs: tuple[str, Path]) -> None:
    """`--team Platform` took both orgs' groups; now a name two orgs' teams share is a one-line error listing the
    choices, and `--team "Platform (acme)"` (or `--org acme --team Platform`) is acme's team alone."""
    store, _ = two_orgs
    period = ("--since", SINCE, "--until", UNTIL)
    refused = CliRunner().invoke(app, ["report", "--store", store, *period, "--team", "Platform"])
    assert refused.exit_code == 2
    said = refused.output.strip()
    assert said == "error: --team: 'Platform' is a team in several orgs; pick one: Platform (acme), Platform (beta)"
    acme = _teams_of(store)["Platform (acme)"]
    for args in (
        ("--team", "Platform (acme)"),
        ("--org", "acme", "--team", "Platform"),
        ("--org", "acme", "--team", "Platform (acme)"),
    ):
        doc = _json("report", "--store", store, *period, *args)
        assert sorted(p["project_id"] for p in doc["spend_by_project"]) == acme  # type: ignore[union-attr]
    dashboard = TestClient(build_app(store))
    with dashboard:
        offered = dashboard.get("/api/filters", params={"since": SINCE, "until": UNTIL}).json()["teams"]
        assert {"Platform (acme)", "Platform (beta)"} <= set(offered) and "Platform" not in offered
        got = dashboard.get("/api/report", params={"since": SINCE, "until": UNTIL, "team": "Platform"})
        assert got.status_code == 400 and "pick one: Platform (acme), Platform (beta)" in got.json()["error"]


def test_a_team_typed_by_hand_is_found_ignoring_case_and_spaces(two_orgs: tuple[str, Path], tmp_path: Path) -> None:
    """`--team "platform  (ACME)"` or `"Platform(acme)"` was "no team is named"; and names collide ignoring case, so
    beta's group renamed "platform" is shown as "platform (beta)", but `--team Platform` silently took acme's alone."""
    store, _ = two_orgs
    with open_store(store, read_only=True) as db:
        for typed in ("Platform (acme)", " platform  (ACME) ", "Platform(acme)", "PLATFORM ( acme )"):
            assert select_team(db, typed) == select_team(db, "Platform (acme)"), typed
            assert select_team(db, typed)[0] == "Platform (acme)"
        with pytest.raises(ParameterError, match="is a team in several orgs; pick one: Platform"):
            select_team(db, " platform ")
    unassigned = _json("report", "--store", store, "--since", SINCE, "--until", UNTIL, "--team", "unassigned")
    typed = _json("report", "--store", store, "--since", SINCE, "--until", UNTIL, "--team", " Unassigned")
    assert typed["totals"] == unassigned["totals"] and typed["scope"] == unassigned["scope"]
    renamed = tmp_path / "renamed.duckdb"
    shutil.copyfile(store, renamed)
    with open_store(str(renamed)) as db:
        db.execute("UPDATE directory_versions SET name = 'platform' WHERE org = 'beta' AND name = 'Platform'")
        with pytest.raises(ParameterError, match=r"pick one: Platform \(acme\), platform \(beta\)$"):
            select_team(db, "Platform")
        assert select_team(db, "platform (beta)")[0] == "platform (beta)"
        assert select_team(db, "Platform (Beta)")[0] == "platform (beta)"


def test_the_dashboard_shows_the_team_a_name_picked_once(two_orgs: tuple[str, Path]) -> None:
    """Picked "Platform (acme)" from the dropdown, then org acme: the report is acme's "Platform", but the dropdown
    offered "Platform" and "Platform (acme)" both (the given value was added as a second option, and selected)."""
    store, _ = two_orgs
    period = {"since": SINCE, "until": UNTIL, "org": "acme"}
    with TestClient(build_app(store)) as dashboard:
        for given in ("Platform (acme)", "Platform"):
            page = dashboard.get("/", params={**period, "team": given})
            assert page.status_code == 200, page.text
            select = page.text[page.text.index('<select name="team"') :]
            select = select[: select.index("</select>")]
            assert '<option value="Platform" selected>' in select and "Platform (acme)" not in select, select
            offered = dashboard.get("/api/filters", params={**period, "team": given}).json()["teams"]
            assert "Platform" in offered and "Platform (acme)" not in offered


def test_the_dashboard_lets_the_team_go_when_the_org_changes(two_orgs: tuple[str, Path], browser: Browser) -> None:
    """Team "Platform (acme)" picked with every org, then org beta chosen: the page was an error page ("no team is
    named 'Platform (acme)'"), every filter lost. Another org now lets the team go; `unassigned` is kept."""
    store, _ = two_orgs
    base = "http://dashboard.test/"

    with TestClient(build_app(store)) as app_client:

        def from_the_app(route: Route) -> None:  # the page, served by the app in this process
            got = app_client.get(route.request.url.removeprefix(base.rstrip("/")))
            route.fulfill(status=got.status_code, body=got.content, content_type=got.headers["content-type"])

        context = browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            context.route("http://dashboard.test/**", from_the_app)
            page = context.new_page()
            for team, kept in (("Platform (acme)", ""), ("unassigned", "unassigned")):
                page.goto(base + "?" + urlencode({"since": SINCE, "until": UNTIL, "team": team}))
                assert page.locator("#filter-team").input_value() == team
                with page.expect_navigation():
                    page.select_option("#filter-org", "beta")
                assert page.locator("#error").count() == 0, page.locator("#error").inner_text()
                assert page.locator("#filter-org").input_value() == "beta"
                assert page.locator("#filter-team").input_value() == kept
        finally:
            context.close()


def test_config_teams_can_join_two_orgs_and_stay_as_written(two_orgs: tuple[str, Path], tmp_path: Path) -> None:
    """A [teams] entry listing both orgs' Platform projects makes them one team, named as the config names it; the
    MCP tools and `statement` show the teams `report --by team` does."""
    store, config = two_orgs
    teams = _teams_of(store)
    joined = teams["Platform (acme)"] + teams["Platform (beta)"]
    listed = ", ".join(f'"{p}"' for p in joined)
    mine = tmp_path / "usageledger.toml"
    mine.write_text(config.read_text(encoding="utf-8") + f"[teams]\nPlatform = [{listed}]\n", encoding="utf-8")
    again = _teams_of(store, "--config", str(mine))
    assert again["Platform"] == sorted(joined) and not {"Platform (acme)", "Platform (beta)"} & set(again)
    assert {t: ps for t, ps in again.items() if t != "Platform"} == {
        t: ps for t, ps in teams.items() if t not in ("Platform (acme)", "Platform (beta)")
    }

    @contextmanager
    def reading() -> Iterator[BaseStore]:
        with open_store(store, read_only=True) as opened:
            yield opened

    tools = LedgerTools(reading, Config(), clock=lambda: datetime.fromtimestamp(EMULATOR_NOW, UTC))
    rows = tools.spend(SINCE, UNTIL, "team")["rows"]
    assert {r["team"]: sorted(p["project_id"] for p in r["projects"]) for r in rows} == teams
    month = datetime.fromtimestamp(EMULATOR_NOW, UTC).strftime("%Y-%m")
    statements = _json("statement", month, "--store", store)["statements"]
    assert isinstance(statements, list)
    assert {"Platform (acme)", "Platform (beta)"} <= {s["owner"] for s in statements}


def test_the_team_table_adds_up_to_its_total_as_printed(synced: str) -> None:
    """Each team's spend was rounded on its own: $0.335 + $0.335 + $0.33 printed $0.34 + $0.34 + $0.33 under a total
    of $1.00. They are apportioned to the rounded total now, the statements' rule."""
    with open_store(synced, read_only=True) as db:
        data = build_report(db, report_period(SINCE, UNTIL, now=datetime.fromtimestamp(EMULATOR_NOW, UTC)), Scope())
    teams = [TeamSpend(t, Decimal(a), ()) for t, a in (("a", "0.335"), ("b", "0.335"), ("c", "0.33"))]
    console = Console(file=io.StringIO(), width=120)
    console.print(render_teams(data, teams, Names()))
    out = console.file.getvalue()
    printed = {m[1]: Decimal(m[2]) for m in re.finditer(r"│ (\w+)\s+│\s+\$([\d.]+) │", out)}
    assert printed == {"a": Decimal("0.34"), "b": Decimal("0.33"), "c": Decimal("0.33"), "total": Decimal("1.00")}
    # b's $0.335 is $0.34 in the project table (half-up, alone) and $0.33 here: said under the table, naming it
    note = " ".join(out[out.index("Rounded so") :].split())
    assert note.startswith("Rounded so the teams add up to the total (largest remainder): b reads a cent off its exact")
    assert "--format json gives the exact figures." in note
    # teams whose own rounding adds up get no note
    whole = [TeamSpend(t, Decimal(a), ()) for t, a in (("a", "0.5"), ("b", "0.25"), ("c", "0.25"))]
    console = Console(file=io.StringIO(), width=120)
    console.print(render_teams(data, whole, Names()))
    assert "│ total" in console.file.getvalue() and "Rounded so" not in console.file.getvalue()
