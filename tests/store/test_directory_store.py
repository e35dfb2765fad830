"""The store keeps the directory with type-2 history, on DuckDB and PostgreSQL, refreshed by `usageledger sync`."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from usageledger import Client
from usageledger.cli import app
from usageledger.emulator import Emulator, EmulatorConfig
from usageledger.errors import PermissionDeniedError
from usageledger.report.keys import key_directory
from usageledger.report.names import resolve_names
from usageledger.store import BaseStore, open_store
from usageledger.store.directory import (
    Entry,
    Snapshot,
    current_names,
    directory_summary,
    name_joins,
    named_ids,
    refresh,
)
from usageledger.sync import Org
from usageledger.sync.directory import refresh_org, snapshot

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

DAY = 86_400


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path, new_store: Callable[[str, Path], str]) -> Iterator[BaseStore]:
    """A fresh, migrated store of each back end."""
    url = new_store(request.param, tmp_path / "s.duckdb")
    with open_store(url) as opened:
        yield opened


@pytest.fixture(scope="module")
def snap(emulator_url: str) -> Snapshot:
    """The emulator's whole directory, read once."""
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
        return snapshot(client)


def _versions(store: BaseStore) -> int:
    return int(store.query("SELECT COUNT(*) FROM directory_versions")[0][0])


def test_refreshing_twice_writes_nothing_new(store: BaseStore, snap: Snapshot) -> None:
    """The first refresh inserts every item of every kind; the same lists again change nothing."""
    first = refresh(store, "main", snap, at=EMULATOR_NOW)
    rows = _versions(store)
    second = refresh(store, "main", snap, at=EMULATOR_NOW + 60)
    kinds = {k for (k,) in store.query("SELECT DISTINCT kind FROM directory_current")}
    assert first.inserted == len(snap.entries) == rows and second.unchanged == rows
    assert (second.inserted, second.changed, second.deleted) == (0, 0, 0) and _versions(store) == rows
    assert {"project", "user", "admin_api_key", "project_api_key", "group", "group_user", "project_group"} <= kinds


def test_a_renamed_project_shows_its_new_name_with_the_old_in_history(store: BaseStore, snap: Snapshot) -> None:
    """A rename closes the old version at the refresh time and opens one with the new name."""
    refresh(store, "main", snap, at=EMULATOR_NOW)
    target = next(e for e in snap.entries if e.kind == "project")
    renamed = dataclasses.replace(target, name="Renamed", record=target.record.replace(str(target.name), "Renamed"))
    entries = [renamed if e is target else e for e in snap.entries]
    counts = refresh(store, "main", Snapshot(entries, snap.complete), at=EMULATOR_NOW + DAY)
    history = store.query(
        "SELECT name, valid_to IS NULL FROM directory_versions WHERE kind = 'project' AND id = %s ORDER BY valid_from",
        [target.id],
    )
    assert counts.changed == 1 and history == [(target.name, False), ("Renamed", True)]
    assert store.query("SELECT name FROM directory_projects WHERE id = %s", [target.id]) == [("Renamed",)]


def test_a_large_directory_is_written_a_statement_a_step_not_a_row(
    store: BaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 users, then 200 renamed and 100 gone: each refresh ends versions in one statement and adds them in one
    (a statement a row took seconds for a large org), and the history is what it is a row at a time."""
    users = [
        Entry("user", "org", f"user-{i:05d}", f"User {i}", f'{{"id": "user-{i:05d}"}}', f"u{i}@example.com", "active")
        for i in range(2000)
    ]
    complete = frozenset({("user", "org")})
    statements: list[str] = []
    execute = type(store).execute
    monkeypatch.setattr(
        type(store), "execute", lambda self, sql, params=(): statements.append(sql) or execute(self, sql, params)
    )
    first = refresh(store, "main", Snapshot(users, complete), at=EMULATOR_NOW)
    assert first.inserted == 2000 and len(statements) == 1
    renamed = [
        dataclasses.replace(u, name=f"{u.name}!", record=u.record + " ") if i % 10 == 0 else u
        for i, u in enumerate(users)
    ]
    statements.clear()
    second = refresh(store, "main", Snapshot(renamed[:1900], complete), at=EMULATOR_NOW + DAY)
    assert (second.changed, second.deleted, second.unchanged) == (190, 100, 1710) and len(statements) == 2
    assert _versions(store) == 2000 + 190 + 100
    rows = store.query(
        "SELECT id, name, status FROM directory_versions WHERE valid_to IS NULL AND id IN (%s, %s, %s) ORDER BY id",
        ["user-00010", "user-00011", "user-01990"],
    )
    assert rows == [
        ("user-00010", "User 10!", "active"),
        ("user-00011", "User 11", "active"),
        ("user-01990", "User 1990", "deleted"),
    ]
    assert store.query("SELECT COUNT(*) FROM directory_versions WHERE valid_to IS NOT NULL")[0][0] == 290


def test_a_key_moved_to_another_project_is_listed_there_not_deleted(store: BaseStore, snap: Snapshot) -> None:
    """One refresh that lists a key under another project closes its old version with a deleted one and opens a
    listed one, both at the refresh's time. Readers took an item's versions by time alone, so the tie fell as the
    back end liked: `keys` and every report named the moved key "(deleted)" on DuckDB, and on PostgreSQL said
    deleted or active key by key, `keys` and `report` not even agreeing. The listed version now wins the tie."""
    refresh(store, "main", snap, at=EMULATOR_NOW)
    projects = [e.id for e in snap.entries if e.kind == "project"]
    keys = [e for e in snap.entries if e.kind == "project_api_key"]
    moved = {
        k.id: dataclasses.replace(k, scope=next(p for p in projects if p != k.scope), name=f"{k.name}-moved")
        for k in keys
    }
    entries = [moved.get(e.id, e) if e.kind == "project_api_key" else e for e in snap.entries]
    complete = snap.complete | {("project_api_key", p) for p in projects}
    counts = refresh(store, "main", Snapshot(entries, complete), at=EMULATOR_NOW + DAY)
    assert counts.deleted == counts.inserted == len(keys) > 1
    listed = key_directory(store, "main")["main"].keys
    names = current_names(store, "main", "project_api_key")
    shown = resolve_names(store, org="main")
    for key in moved.values():
        assert (listed[key.id].status, listed[key.id].project_id) == ("active", key.scope)
        assert names[key.id] == (key.name, "active")
        assert shown.api_keys[key.id] == key.name
    # the named views (`costs_daily_named`, the Grafana panels) join the same versions: they said "deleted" too
    [named] = named_ids(["api_key_id"])
    joined = store.query(
        "SELECT d.api_key_id, api_key_dir.name, api_key_dir.status FROM (SELECT DISTINCT org, id AS api_key_id"
        " FROM directory_versions WHERE kind = 'project_api_key') AS d " + name_joins("d", [named])
    )
    assert {row[0]: (row[1], row[2]) for row in joined} == {k.id: (k.name, "active") for k in moved.values()}
    [summary] = directory_summary(store)
    assert summary.counts["api_keys"].get("deleted", 0) == 0
    assert sum(summary.counts["api_keys"].values()) == len(keys) + sum(
        1 for e in snap.entries if e.kind == "admin_api_key"
    )


def test_a_deleted_key_keeps_its_name(store: BaseStore, snap: Snapshot) -> None:
    """A key missing from a complete list gets a 'deleted' version that keeps its name; it comes back if relisted."""
    refresh(store, "main", snap, at=EMULATOR_NOW)
    key = next(e for e in snap.entries if e.kind == "project_api_key")
    without = Snapshot([e for e in snap.entries if e is not key], snap.complete)
    counts = refresh(store, "main", without, at=EMULATOR_NOW + DAY)
    assert counts.deleted == 1
    assert current_names(store, "main", "project_api_key")[key.id] == (key.name, "deleted")
    again = refresh(store, "main", without, at=EMULATOR_NOW + 2 * DAY)
    assert (again.deleted, again.changed, again.inserted) == (0, 0, 0)
    back = refresh(store, "main", snap, at=EMULATOR_NOW + 3 * DAY)
    assert back.changed == 1 and current_names(store, "main", "project_api_key")[key.id] == (key.name, "active")


def test_a_list_not_read_in_full_deletes_nothing(store: BaseStore, snap: Snapshot) -> None:
    """Only lists read in full can show a deletion: a snapshot without a list's completeness keeps its items."""
    refresh(store, "main", snap, at=EMULATOR_NOW)
    partial = Snapshot([e for e in snap.entries if e.kind != "group_user"], frozenset())
    assert refresh(store, "main", partial, at=EMULATOR_NOW + DAY).deleted == 0


def test_the_directory_lists_are_read_a_few_at_once_and_listed_in_one_order(emulator_url: str, snap: Snapshot) -> None:
    """The per-project lists were read one after another (four round trips a project after every sync): two of them
    now wait for each other at a barrier, which only lists read at once pass. The entries come in the order of a
    snapshot read one list at a time, whatever the order the answers come in."""
    barrier = threading.Barrier(2, timeout=30)
    met: list[str] = []

    class Meeting(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if "/projects/" in request.url.path and len(met) < 2:
                met.append(request.url.path)
                barrier.wait()  # broken (an error) unless a second list is asked for meanwhile
            return super().handle_request(request)

    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW, transport=Meeting()) as client:
        at_once = snapshot(client)
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
        one_by_one = snapshot(client, readers=1)
    assert len(met) == 2
    assert at_once == one_by_one == snap


def test_ctrl_c_ends_the_snapshot_without_waiting_for_lists_still_in_flight(emulator_url: str) -> None:
    """Ctrl-C while the lists were read waited for every list still in flight (their timeouts and retries
    included): an interrupted sync did not stop until the slowest answer came, where lists read one after another
    stopped at once. It is raised at once now; a list in flight is left to end on its own, its answer unused."""
    release = threading.Event()
    held: list[str] = []

    class OneSlowOneInterrupted(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/users") and "/projects/" in request.url.path and not held:
                held.append(request.url.path)
                release.wait(30)  # an answer that takes its time (refused: no socket left behind)
                body = {"error": {"message": "late", "type": "invalid_request_error", "param": None, "code": None}}
                return httpx.Response(403, json=body, request=request)
            if request.url.path.endswith("/service_accounts"):
                raise KeyboardInterrupt  # as the main thread gets it, through the list it waits for
            return super().handle_request(request)

    started = time.monotonic()
    try:
        client = Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW, transport=OneSlowOneInterrupted())
        with client, pytest.raises(KeyboardInterrupt):
            snapshot(client)
        assert held and time.monotonic() - started < 10
    finally:
        release.set()
        for reader in threading.enumerate():
            if reader.name.startswith("usageledger-directory"):
                reader.join(10)


def test_a_failed_read_leaves_the_stored_directory(store: BaseStore, snap: Snapshot, emulator_url: str) -> None:
    """When a list cannot be read, nothing is written: the previous versions stay as they were."""
    refresh(store, "main", snap, at=EMULATOR_NOW)
    before = store.query("SELECT kind, scope, id, valid_from, valid_to FROM directory_versions ORDER BY 1, 2, 3, 4")
    bad = Org("main", "sk-wrong-kind-of-key", emulator_url)
    with pytest.raises(PermissionDeniedError, match="insufficient permissions"):
        refresh_org(store, bad, at=EMULATOR_NOW + DAY)
    after = store.query("SELECT kind, scope, id, valid_from, valid_to FROM directory_versions ORDER BY 1, 2, 3, 4")
    assert after == before


def test_sync_refreshes_the_directory_unless_told_not_to(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`usageledger sync` fills the directory (every project named); `--no-directory` leaves it empty."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", emulator_url)
    runner = CliRunner()
    base = ["sync", "--endpoint", "code_interpreter_sessions", "--since", "5d", "--now", str(EMULATOR_NOW)]
    skipped = runner.invoke(app, [*base, "--store", "skip.duckdb", "--no-directory"])
    assert skipped.exit_code == 0, skipped.output
    with open_store("skip.duckdb", read_only=True) as opened:
        assert opened.query("SELECT COUNT(*) FROM directory_versions") == [(0,)]
    done = runner.invoke(app, [*base, "--store", "dir.duckdb"])
    assert done.exit_code == 0 and "directory of default:" in done.output, done.output
    with open_store("dir.duckdb", read_only=True) as opened:
        names = current_names(opened, "default", "project")
        used = {pid for (pid,) in opened.query("SELECT DISTINCT project_id FROM usage_code_interpreter_sessions")}
    assert used and all(names[pid][0] for pid in used)


def test_a_key_deleted_between_two_syncs_keeps_its_name(store: BaseStore) -> None:
    """The same organisation read before (46 days of history) and after (120 days) its keys are deleted: the deleted
    keys, still in its old usage, keep their names in the store with status 'deleted'."""
    young = Emulator(EmulatorConfig(seed=7, days=46, projects=4, users=8, models=5, now=EMULATOR_NOW))
    old = Emulator(EmulatorConfig(seed=7, days=120, projects=4, users=8, models=5, now=EMULATOR_NOW))

    def through(emulator: Emulator) -> Callable[[Org], Client]:
        return lambda org: Client(org.api_key, "http://127.0.0.1/v1", transport=emulator.transport())

    org = Org("main", FAKE_ADMIN_KEY)
    refresh_org(store, org, at=EMULATOR_NOW, client_factory=through(young))
    counts = refresh_org(store, org, at=EMULATOR_NOW + DAY, client_factory=through(old))
    deleted = set(old.source.retired.keys)
    names = current_names(store, "main", "project_api_key")
    assert counts.deleted == len(deleted) > 0
    assert all(names[key][1] == "deleted" and names[key][0] for key in deleted)
    archived = set(old.source.retired.projects)
    assert archived and all(current_names(store, "main", "project")[p][1] == "archived" for p in archived)


def test_two_refreshes_of_one_org_at_once_keep_one_current_version_per_item(pg_url: str) -> None:
    """Two workers of one org refreshing its directory at once both found no current version and both inserted one:
    every item twice in directory_current, so every row of a named view that joins it counted twice. The later
    refresh now waits for the first one's commit and then finds every item unchanged."""
    import threading
    import time

    entries = [Entry("project", "", f"proj_{i}", f"P{i}", "{}") for i in range(50)]
    snap = Snapshot(entries, frozenset({("project", "")}))
    first, later = open_store(pg_url), open_store(pg_url)
    later_pid = later.query("SELECT pg_backend_pid()")[0][0]
    done: list[object] = []
    try:
        with first.transaction():
            refresh(first, "o", snap, at=EMULATOR_NOW)  # written, not committed yet
            thread = threading.Thread(target=lambda: done.append(refresh(later, "o", snap, at=EMULATOR_NOW + 1)))
            thread.start()
            deadline = time.monotonic() + 30
            while (
                thread.is_alive()
                and not first.query("SELECT COUNT(*) FROM pg_locks WHERE pid = %s AND NOT granted", (later_pid,))[0][0]
            ):
                assert time.monotonic() < deadline, "the later refresh neither waited nor finished"
                time.sleep(0.01)
        thread.join(30)
        assert done and done[0] == dataclasses.replace(done[0], inserted=0, unchanged=50)  # type: ignore[type-var]
        rows = first.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM directory_current WHERE org = 'o'")
        assert rows == [(50, 50)]
    finally:
        first.close()
        later.close()
