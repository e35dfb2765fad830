"""Named views (`costs_daily_named` and friends) and `export --with-names`, on DuckDB and PostgreSQL; a renamed
project shows its new name everywhere, with the old one kept in history."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from usageledger import Client
from usageledger.cli import app
from usageledger.store import open_store
from usageledger.store.directory import Snapshot, current_names, refresh
from usageledger.sync.directory import snapshot

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

DAY = 86_400


def _run(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(params=["duckdb", "postgres"])
def synced(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    new_store: Callable[[str, Path], str],
    emulator_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """A store of each back end synced by the CLI: costs by project and key, completions by project, user and key."""
    url = new_store(request.param, tmp_path / "s.duckdb")
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    base = ["sync", "--store", url, "--now", str(EMULATOR_NOW), "--base-url", emulator_url, "--since", "5d"]
    _run(*base, "-e", "costs", "--group-by", "project_id,api_key_id")
    _run(*base, "-e", "completions", "--group-by", "project_id,user_id,api_key_id,model", "--no-directory")
    return url


def _rename_a_project(url: str, emulator_url: str) -> tuple[str, str]:
    """Refresh the directory a day later with one project renamed; its ID and old name."""
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
        snap = snapshot(client)
    with open_store(url) as db:
        (pid,) = db.query("SELECT project_id FROM costs_daily WHERE project_id IS NOT NULL LIMIT 1")[0]
        target = next(e for e in snap.entries if e.kind == "project" and e.id == pid)
        renamed = dataclasses.replace(target, name="Renamed", record=target.record.replace(str(target.name), "Renamed"))
        entries = [renamed if e is target else e for e in snap.entries]
        assert refresh(db, "default", Snapshot(entries, snap.complete), at=EMULATOR_NOW + DAY).changed == 1
    return pid, str(target.name)


def test_named_views_carry_names_for_every_id(synced: str) -> None:
    """costs_daily_named and usage_completions_daily_named have a name for every project, key and user ID, one row
    per row of the daily view."""
    with open_store(synced) as db:
        projects = {k: v[0] for k, v in current_names(db, "default", "project").items()}
        keys = {k: v[0] for k, v in current_names(db, "default", "project_api_key").items()}
        users = {k: v[0] for k, v in current_names(db, "default", "user").items()}
        costs = db.query(
            "SELECT project_id, project_name, api_key_id, api_key_name, project_status FROM costs_daily_named"
        )
        (plain,) = db.query("SELECT COUNT(*) FROM costs_daily")[0]
        usage = db.query("SELECT project_id, project_name, user_id, user_name FROM usage_completions_daily_named")
        (plain_usage,) = db.query("SELECT COUNT(*) FROM usage_completions_daily")[0]
    assert costs and len(costs) == plain and usage and len(usage) == plain_usage
    for pid, pname, kid, kname, status in costs:
        assert pid is None or (pname == projects[pid] and status in ("active", "archived"))
        assert kid is None or kname == keys.get(kid)
    named_keys = [kname for _, _, kid, kname, _ in costs if kid is not None]
    assert named_keys and any(named_keys)
    assert all(pname == projects[pid] and uname == users[uid] for pid, pname, uid, uname in usage if uid is not None)


def test_a_renamed_project_shows_its_new_name(synced: str, emulator_url: str) -> None:
    """After a rename, the named view and the report show the new name; directory_versions keeps the old one."""
    pid, old = _rename_a_project(synced, emulator_url)
    with open_store(synced) as db:
        shown = {
            n for (n,) in db.query("SELECT DISTINCT project_name FROM costs_daily_named WHERE project_id = %s", [pid])
        }
        history = db.query(
            "SELECT name FROM directory_versions WHERE kind = 'project' AND id = %s ORDER BY valid_from", [pid]
        )
    assert shown == {"Renamed"} and history == [(old,), ("Renamed",)]
    since = datetime.fromtimestamp(EMULATOR_NOW - 4 * DAY, UTC).date().isoformat()
    doc = json.loads(
        _run("report", "--store", synced, "--since", since, "--format", "json", "--until", "2026-11-21").stdout
    )
    by_id = {r["project_id"]: r["name"] for r in doc["spend_by_project"]}
    assert by_id[pid] == "Renamed"


def test_export_with_names_adds_name_columns(synced: str) -> None:
    """`export --with-names` adds project_name, api_key_name and user_name to costs and completions; without the flag
    the columns are as before."""
    costs = list(csv.DictReader(io.StringIO(_run("export", "--store", synced, "-e", "costs", "--with-names").stdout)))
    plain = list(csv.DictReader(io.StringIO(_run("export", "--store", synced, "-e", "costs").stdout)))
    assert costs and len(costs) == len(plain)
    assert set(costs[0]) - set(plain[0]) == {"project_name", "api_key_name", "user_name"}
    with open_store(synced) as db:
        projects = {k: v[0] for k, v in current_names(db, "default", "project").items()}
    assert all(r["project_name"] == projects[r["project_id"]] for r in costs if r["project_id"])
    lines = _run("export", "--store", synced, "-e", "completions", "-f", "jsonl", "--with-names").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows and {"project_name", "api_key_name", "user_name"} <= set(rows[0])
    assert any(r["user_name"] for r in rows)
