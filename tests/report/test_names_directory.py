"""Names come from the stored directory: `usageledger report` and `check` name projects and keys after a sync."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from usageledger.cli import app
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.report.names import resolve_names
from usageledger.store import open_store
from usageledger.store.directory import current_names

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

DAY = 86_400


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def _run(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory with the admin key set: the CLI's default org is ``default``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    yield tmp_path


def _sync(url: str, store: str, *extra: str) -> None:
    _run("sync", "--store", store, "--now", str(EMULATOR_NOW), "--base-url", url, *extra)


def _report(store: str, since: int, until: int, *extra: str) -> dict[str, object]:
    out = _run("report", "--store", store, "--since", _day(since), "--until", _day(until), "--format", "json", *extra)
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


@pytest.fixture(scope="module")
def synced(emulator_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store synced from the shared emulator: costs for 30 days, and its directory."""
    store = str(tmp_path_factory.mktemp("names") / "s.duckdb")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
        _sync(emulator_url, store, "--endpoint", "costs", "--since", "30d")
    return store


def test_report_names_every_active_project_after_sync(synced: str) -> None:
    """After `usageledger sync`, the report names every project with spend by its directory name, never by its ID."""
    doc = _report(synced, EMULATOR_NOW - 29 * DAY, EMULATOR_NOW)
    with open_store(synced, read_only=True) as db:
        names = current_names(db, "default", "project")
    rows = doc["spend_by_project"]
    assert isinstance(rows, list) and rows
    for row in rows:
        name, status = names[row["project_id"]]
        assert status == "active" and name and row["name"] == name != row["project_id"]
    text = _run("report", "--store", synced, "--since", _day(EMULATOR_NOW - 29 * DAY), "--until", _day(EMULATOR_NOW))
    assert all(names[row["project_id"]][0] in text.stdout for row in rows)


def test_names_file_and_config_override_the_directory(synced: str, tmp_path: Path) -> None:
    """A `--names` file still wins over the directory's name, for the IDs it names."""
    doc = _report(synced, EMULATOR_NOW - 29 * DAY, EMULATOR_NOW)
    rows = doc["spend_by_project"]
    assert isinstance(rows, list) and len(rows) >= 2
    first, second = rows[0], rows[1]
    names = tmp_path / "names.csv"
    names.write_text(f"kind,id,name\nproject,{first['project_id']},Hand named\n", encoding="utf-8")
    again = _report(synced, EMULATOR_NOW - 29 * DAY, EMULATOR_NOW, "--names", str(names))
    by_id = {r["project_id"]: r["name"] for r in again["spend_by_project"]}  # type: ignore[union-attr]
    assert by_id[first["project_id"]] == "Hand named"
    assert by_id[second["project_id"]] == second["name"] != second["project_id"]


def test_check_alerts_name_the_project(synced: str) -> None:
    """A project's budget alert says its name with its ID."""
    with open_store(synced, read_only=True) as db:
        (pid,) = db.query("SELECT project_id FROM costs_daily GROUP BY 1 ORDER BY SUM(amount_value) DESC LIMIT 1")[0]
        name = current_names(db, "default", "project")[pid][0]
    result = CliRunner().invoke(
        app,
        ["check", "--store", synced, "--project", pid, "--monthly-budget", "0", "--date", _day(EMULATOR_NOW)],
    )
    assert result.exit_code == 3, result.output
    assert f"project {name} ({pid}): monthly spend" in result.stdout


def test_a_key_deleted_between_two_syncs_keeps_its_name_in_the_report(workdir: Path) -> None:
    """Synced first while its keys exist (46 days of history) and again after they were deleted (120 days), the
    report of the period the deleted keys were used names them, marked deleted; the archived project says so too."""
    young = Emulator(EmulatorConfig(seed=7, days=46, projects=4, users=8, models=5, now=EMULATOR_NOW))
    old = Emulator(EmulatorConfig(seed=7, days=120, projects=4, users=8, models=5, now=EMULATOR_NOW))
    costs = ["--endpoint", "costs", "--group-by", "project_id,api_key_id"]
    with run_server(young) as url:
        _sync(url, "s.duckdb", *costs, "--since", "5d")
    with open_store("s.duckdb", read_only=True) as db:
        before = current_names(db, "default", "project_api_key")
    deleted = set(old.source.retired.keys)
    assert deleted and all(before[k][1] == "active" for k in deleted)
    with run_server(old) as url:
        _sync(url, "s.duckdb", *costs, "--since", "120d")
    doc = _report("s.duckdb", EMULATOR_NOW - 119 * DAY, EMULATOR_NOW - 80 * DAY)
    by_key = {r["api_key_id"]: r["name"] for r in doc["spend_by_api_key"]}  # type: ignore[union-attr]
    assert deleted <= set(by_key)
    assert all(by_key[k] == f"{before[k][0]} (deleted)" for k in deleted)
    archived = set(old.source.retired.projects)
    by_project = {r["project_id"]: r["name"] for r in doc["spend_by_project"]}  # type: ignore[union-attr]
    assert archived and all(by_project[p].endswith(" (archived)") for p in archived)


def test_html_report_names_projects(synced: str, tmp_path: Path) -> None:
    """The HTML report names the projects from the directory, as the terminal report does."""
    page = tmp_path / "r.html"
    since, until = _day(EMULATOR_NOW - 29 * DAY), _day(EMULATOR_NOW)
    _run("report", "--store", synced, "--since", since, "--until", until, "--html", str(page))
    with open_store(synced, read_only=True) as db:
        used = {p for (p,) in db.query("SELECT DISTINCT project_id FROM costs_daily WHERE project_id IS NOT NULL")}
        names = current_names(db, "default", "project")
    html = page.read_text(encoding="utf-8")
    assert used and all(str(names[p][0]) in html for p in used)


def test_status_counts_the_directory(synced: str) -> None:
    """`usageledger status` says what the directory holds per org (the archived project included), in text and JSON."""
    text = _run("status", "--store", synced).stdout
    doc = json.loads(_run("status", "--store", synced, "--format", "json").stdout)
    with open_store(synced, read_only=True) as db:
        projects = current_names(db, "default", "project")
    archived = sum(1 for _, status in projects.values() if status == "archived")
    assert archived and f"Directory of default: {len(projects)} projects ({archived} archived)" in text
    (entry,) = doc["directory"]
    assert entry["org"] == "default" and entry["projects"] == {"active": len(projects) - archived, "archived": archived}


def test_every_key_owner_is_named(synced: str) -> None:
    """resolve_names names every key's owner, user or service account, so `keys` and reports can show who owns it."""
    with open_store(synced, read_only=True) as db:
        names = resolve_names(db, org="default")
        owners = db.query(
            "SELECT DISTINCT owner_type, owner_id FROM directory_current"
            " WHERE kind = 'project_api_key' AND owner_id IS NOT NULL"
        )
    kinds = {kind for kind, _ in owners}
    assert {"user", "service_account"} <= kinds
    assert all(names.user(owner) != owner for _, owner in owners)


def test_demo_report_names_projects(tmp_path: Path) -> None:
    """`usageledger demo` reads the emulator's directory too, so its report names every project, never an ID; `demo
    --remove` removes the demo's directory with its data."""
    store = tmp_path / "demo.duckdb"
    result = CliRunner().invoke(app, ["demo", "--days", "3", "--store", str(store)])
    assert result.exit_code == 0, result.output
    with open_store(str(store), read_only=True) as db:
        names = current_names(db, "demo", "project")
        used = {p for (p,) in db.query("SELECT DISTINCT project_id FROM costs_daily WHERE project_id IS NOT NULL")}
    tail = result.output[result.output.index("Spend by project") :]
    assert used and all(str(names[p][0]) in tail and p not in tail for p in used)
    removed = CliRunner().invoke(app, ["demo", "--remove", "--store", str(store)])
    assert removed.exit_code == 0, removed.output
    with open_store(str(store), read_only=True) as db:
        assert db.query("SELECT COUNT(*) FROM directory_versions WHERE org = 'demo'") == [(0,)]


def test_two_projects_named_alike_stay_apart_and_every_name_is_one_line(synced: str, tmp_path: Path) -> None:
    """Two projects the directory names alike were two identical rows of every report (which is which?), and a
    newline in a name drew a row of its own: each alike name now carries its ID, and every name is one line, in the
    terminal (the JSON keeps the names as they are, with the ID beside each)."""
    import shutil

    store = str(tmp_path / "alike.duckdb")
    shutil.copy(synced, store)
    doc = _report(synced, EMULATOR_NOW - 29 * DAY, EMULATOR_NOW)
    rows = doc["spend_by_project"]
    assert isinstance(rows, list) and len(rows) >= 3
    first, second, third = (r["project_id"] for r in rows[:3])
    with open_store(store) as db:
        for pid, name in ((first, "Search"), (second, "search"), (third, "Ops\nTeam")):
            db.execute("UPDATE directory_versions SET name = %s WHERE kind = 'project' AND id = %s", (name, pid))
    since, until = _day(EMULATOR_NOW - 29 * DAY), _day(EMULATOR_NOW)
    text = _run("report", "--store", store, "--since", since, "--until", until).stdout
    assert f"Search ({first})" in text and f"search ({second})" in text and "Ops\\nTeam" in text
    again = _report(store, EMULATOR_NOW - 29 * DAY, EMULATOR_NOW)
    by_id = {r["project_id"]: r["name"] for r in again["spend_by_project"]}  # type: ignore[union-attr]
    # the JSON carries each name as it is, beside its ID: a script reads the real name (a newline and all)
    assert (by_id[first], by_id[second], by_id[third]) == ("Search", "search", "Ops\nTeam")
    keys = _run("keys", "--store", store, "--now", str(EMULATOR_NOW)).stdout
    assert f"Search ({first})" in keys and "Ops\\nTeam" in keys and "Ops\nTeam" not in keys
    alert = CliRunner().invoke(
        app, ["check", "--store", store, "--project", first, "--monthly-budget", "0", "--date", until]
    )
    assert f"project Search ({first}): monthly spend" in alert.stdout, alert.output  # its ID said once
