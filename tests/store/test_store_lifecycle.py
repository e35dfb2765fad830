"""A store's life cycle handled carelessly: made by a newer usageledger, or by another program, copied mid-write,
moved, or written on a full disk. Every refusal is one line, and a refused store is left byte for byte as it was."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.errors import StoreError
from usageledger.store import Stream, migrations, open_existing_store, open_store
from usageledger.store.duckdb import DuckDBStore
from usageledger.sync import Org, RunStarted, sync
from usageledger.sync import _engine as engine
from usageledger.sync._safety import reap_abandoned

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.stores import copy_duckdb

NEWER = "0099_from_the_future"

COMMANDS = [
    ["status"],
    ["report"],
    ["reconcile"],
    ["check"],
    ["forecast"],
    ["changes"],
    ["keys"],
    ["statement", "2026-10"],
    ["export", "--format", "csv", "--output", "{out}"],
    ["credit", "list"],
    ["credit", "add", "2026-11-01", "5"],
    ["close", "2026-10"],
    ["init", "--path", "{cfg}"],
    ["demo", "--remove"],
    ["demo"],
    ["sync", "--since", "2d"],
]
IDS = ["-".join(a for a in argv if not a.startswith(("{", "-")) and not a[0].isdigit()) for argv in COMMANDS]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _newer_store(path: Path, new_store: Callable[[str, Path], str]) -> None:
    with open_store(new_store("duckdb", path)) as store:
        store.register_org("acme", synthetic=False, source="api", at=0)
        store.execute("INSERT INTO schema_migrations (name, seq, applied_at) VALUES (%s, 99, now())", (NEWER,))


@pytest.mark.parametrize("argv", COMMANDS, ids=IDS)
def test_a_store_made_by_a_newer_version_is_refused_and_left_alone(
    tmp_path: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch, new_store: Callable[[str, Path], str]
) -> None:
    """A store whose migrations table lists one this code does not know: every command says in one line that the
    store is newer and to upgrade, and the file is unchanged (nothing migrated, synced, removed or recorded)."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # never reached: the store is refused first
    path = tmp_path / "newer.duckdb"
    _newer_store(path, new_store)
    before = _digest(path)
    args = [a.format(out=tmp_path / "out", cfg=tmp_path / "c.toml") for a in argv]
    result = CliRunner().invoke(app, [*args, "--store", str(path)])
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"error: the store {path} was made by a newer usageledger (its schema has {NEWER}, which this version does not"
        " know): upgrade usageledger to use it\n"
    )
    assert _digest(path) == before
    assert not (tmp_path / "out").exists() and not (tmp_path / "c.toml").exists()


def test_a_newer_postgresql_store_is_refused_before_any_migration(pg_url: str) -> None:
    """The same on PostgreSQL, for the library's readers and writers alike: nothing is migrated over a newer schema."""
    with open_store(pg_url) as store:
        store.execute("INSERT INTO schema_migrations (name, seq, applied_at) VALUES (%s, 99, now())", (NEWER,))
    for opening in (open_store, open_existing_store):
        with pytest.raises(StoreError, match=r"made by a newer usageledger \(its schema has 0099_from_the_future"):
            opening(pg_url).close()


RELEASED_CATALOGUES = {1: "d70e40e65e21", 2: "07b6af6bf7e9"}  # 2: the daily views sum an hourly-only org's hours
"""The digest of each released catalogue version: history that never changes. A new version is appended by
``scripts/generate`` (``store/_catalogue_versions.py``) and needs no edit here."""


def test_released_catalogue_versions_keep_their_digests_and_the_newest_is_this_catalogue() -> None:
    """The catalogue step is named by its version and digest; a change of the schema the catalogue derives (a new
    endpoint, column or view) changes the digest, and ``scripts/generate`` appends a version for it, so an older
    usageledger refuses the store the newer one writes. A released version is recorded in stores: its number and
    digest never change and it is never dropped (a versions file hand-edited, or rewritten from nothing, fails here).
    When the newest digest is not this catalogue's: run scripts/generate."""
    versions = dict(migrations.CATALOGUE_VERSIONS)
    assert {v: versions.get(v) for v in RELEASED_CATALOGUES} == RELEASED_CATALOGUES
    assert list(versions) == list(range(1, len(versions) + 1))
    digest = migrations.catalogue_digest()
    assert max(versions) == migrations.CATALOGUE_VERSION
    assert versions[migrations.CATALOGUE_VERSION] == digest, f"run scripts/generate: this catalogue is {digest}"
    assert migrations.catalogue_migration().name == f"0002_catalogue_v{max(versions)}_{digest}"


def _catalogue_recorded_as(url: str, name: str) -> None:
    """The store's catalogue step recorded under ``name`` instead (another version's, or from before versions),
    written past usageledger, which refuses a newer store."""
    sql = f"UPDATE schema_migrations SET name = '{name}' WHERE name LIKE '0002_catalogue_%'"
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)
    else:
        con = duckdb.connect(url)
        con.execute(sql)
        con.close()


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_a_store_of_a_newer_catalogue_is_refused_and_one_from_before_versions_opens(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A store whose catalogue step a newer usageledger recorded (a new endpoint, nothing else) was not refused: a
    reader said its schema was older and to run `sync`, which put this version's views over the newer ones. A higher
    catalogue version is now refused as a newer migration is; a store recorded before versions opens as it did,
    read as it is when its digest is this one's and upgraded when it is an older one's."""
    url = str(tmp_path / "s.duckdb") if backend == "duckdb" else request.getfixturevalue("pg_url")
    open_store(url).close()
    digest = migrations.catalogue_digest()
    newer = f"0002_catalogue_v{migrations.CATALOGUE_VERSION + 1}_0123456789ab"
    _catalogue_recorded_as(url, newer)
    for opening in (open_store, open_existing_store):
        with pytest.raises(StoreError, match=rf"made by a newer usageledger \(its schema has {newer}, which"):
            opening(url).close()
    if backend == "duckdb":
        before = _digest(Path(url))
        refused = CliRunner().invoke(app, ["report", "--store", url])
        assert refused.exit_code == 1 and "made by a newer usageledger" in refused.stderr, refused.output
        assert _digest(Path(url)) == before
    _catalogue_recorded_as(url, f"0002_catalogue_{digest}")  # this catalogue, recorded before versions
    with open_existing_store(url) as store:
        assert store.pending_migrations() == []
    _catalogue_recorded_as(url, "0002_catalogue_00000000aaaa")  # an older catalogue, before versions: upgraded
    with pytest.raises(StoreError, match="has an older schema: run `usageledger sync` once to migrate it"):
        open_existing_store(url).close()
    with open_store(url) as store:
        assert store.pending_migrations() == []
        assert store.applied_migrations()[-1] == migrations.catalogue_migration().name


def _foreign(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE streams (id INTEGER)")  # a name usageledger uses too: never taken for its own
    con.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    con.execute("INSERT INTO customers VALUES (1, 'a')")
    con.close()


def _truncated(path: Path, tmp_path: Path, new_store: Callable[[str, Path], str]) -> None:
    whole = tmp_path / "whole.duckdb"
    with open_store(new_store("duckdb", whole)) as store:
        store.register_org("acme", synthetic=False, source="api", at=0)
    path.write_bytes(whole.read_bytes()[:100_000])  # `head -c 100000 whole.duckdb`: past the header, short of a block


BROKEN = {
    "another-programs-duckdb": (
        _foreign,
        "{path} is a DuckDB database of another program (it holds customers, streams), not a usageledger store: pass"
        " another --store (at a new path, `usageledger sync` makes one)",
    ),
    "csv-renamed": (
        lambda p: p.write_text("a,b\n1,2\n"),
        "{path} is not a DuckDB database file: pass the path of a usageledger store (a .duckdb file) with --store",
    ),
    "zero-bytes": (
        lambda p: p.write_bytes(b""),
        "{path} is not a DuckDB database file: pass the path of a usageledger store (a .duckdb file) with --store",
    ),
    "truncated-copy": (
        None,
        "the DuckDB store {path} is damaged or cut short (a partial copy?): restore it from a whole copy, or pass"
        " another --store (IO Error: Could not read enough bytes",
    ),
}
WRITERS = [["sync", "--since", "2d"], ["init", "--path", "{cfg}"], ["credit", "add", "2026-11-01", "5"], ["status"]]


@pytest.mark.parametrize("kind", list(BROKEN))
@pytest.mark.parametrize("argv", WRITERS, ids=[argv[0] for argv in WRITERS])
def test_a_file_that_is_no_store_is_refused_in_one_line_and_left_as_it_was(
    tmp_path: Path, kind: str, argv: list[str], monkeypatch: pytest.MonkeyPatch, new_store: Callable[[str, Path], str]
) -> None:
    """Another program's DuckDB database, a renamed CSV, a zero-byte file and a truncated copy of a store: writers
    and readers refuse each in one line naming what it is; the file is unchanged and no lock file is left beside it
    (a sync wrote its tables into another program's database, or failed on its `streams` with a binder error)."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    path = tmp_path / "s.duckdb"
    make, expected = BROKEN[kind]
    if make is None:
        _truncated(path, tmp_path, new_store)
    else:
        make(path)
    before = _digest(path)
    args = [a.format(cfg=tmp_path / "c.toml") for a in argv]
    result = CliRunner().invoke(app, [*args, "--store", str(path)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: " + expected.format(path=path)), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("s.")) == ["s.duckdb"]


def test_an_empty_duckdb_file_becomes_a_store(tmp_path: Path) -> None:
    """A DuckDB file with no table at all holds nothing to overwrite: a writer makes the store in it, as in a new
    file (the line between it and another program's database is whether any table exists)."""
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()
    with open_store(str(path)) as store:
        assert store.applied_migrations()


def test_opening_a_current_store_writes_nothing(
    tmp_path: Path, new_store: Callable[[str, Path], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command opens its store, and a current one has nothing to migrate: the open reads what was applied and
    runs no statement (it ran a `CREATE TABLE IF NOT EXISTS` in a write transaction each time). A store with a
    migration pending is still migrated, under the lock."""
    path = new_store("duckdb", tmp_path / "current.duckdb")
    ran: list[str] = []
    real = DuckDBStore.execute

    def execute(self: DuckDBStore, sql: str, params: Sequence[object] = ()) -> int:
        ran.append(sql)
        return real(self, sql, params)

    monkeypatch.setattr(DuckDBStore, "execute", execute)
    with open_store(path) as store:
        assert ran == []
        store.execute("DELETE FROM schema_migrations WHERE name = %s", [migrations.MIGRATIONS[-1].name])
    ran.clear()
    with open_store(path) as store:
        assert any("INSERT INTO schema_migrations" in sql for sql in ran), ran
        assert store.pending_migrations() == []


DAY = 86_400


def _sync(store: Path, url: str, now: int, *streams: str) -> object:
    return CliRunner().invoke(
        app,
        ["sync", "--store", str(store), "--base-url", url, "--now", str(now), "--quiet", *(streams or ("-e", "costs"))],
        env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY},
    )


def _watermarks(path: Path) -> set[int | None]:
    with open_existing_store(str(path)) as store:
        return {s.watermark for s in store.stream_states()}


def test_a_clock_that_went_backwards_is_refused_before_anything_is_written(tmp_path: Path, emulator_url: str) -> None:
    """`sync --now` earlier than the store's watermark (a clock set back): one line naming both times, and the file
    unchanged. It re-read a lag window ending mid-day, overwrote finished days with partial ones, deleted rows and
    recorded a last run before the one it follows."""
    path = tmp_path / "s.duckdb"
    assert _sync(path, emulator_url, EMULATOR_NOW).exit_code == 0  # type: ignore[attr-defined]
    before = _digest(path)
    back = EMULATOR_NOW - 60 * DAY
    result = _sync(path, emulator_url, back)
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert result.stderr == (  # type: ignore[attr-defined]
        "error: the clock reads 2026-09-21T12:00:00Z, before the watermark 2026-11-20T00:00:00Z of"
        " default/costs.1d.project_id+line_item (the store is synced past it already): check the system clock (or"
        " --now); nothing was synced\n"
    )
    assert _digest(path) == before
    assert _sync(path, emulator_url, EMULATOR_NOW + 3600).exit_code == 0  # type: ignore[attr-defined]


def test_a_clock_seconds_or_minutes_behind_a_watermark_still_syncs(tmp_path: Path, emulator_url: str) -> None:
    """Workers on two machines into one store: an hourly watermark set at the hour by one is minutes after the
    other's clock. That is no clock gone backwards (the API's buckets hold the data): the run syncs, and a clock
    hours behind is still refused."""
    path = tmp_path / "s.duckdb"
    hourly = ("-e", "completions", "--bucket-width", "1h")
    # The first sync reads two days of hours, not the default 90: the hourly watermark it sets is what is checked.
    assert _sync(path, emulator_url, EMULATOR_NOW, *hourly, "--since", "2d").exit_code == 0  # type: ignore[attr-defined]
    assert _watermarks(path) == {EMULATOR_NOW}
    behind = _sync(path, emulator_url, EMULATOR_NOW - 10 * 60, *hourly)
    assert behind.exit_code == 0, behind.output  # type: ignore[attr-defined]
    assert _watermarks(path) == {EMULATOR_NOW}
    hours = _sync(path, emulator_url, EMULATOR_NOW - 2 * 3600, *hourly)
    assert hours.exit_code == 1 and "before the watermark" in hours.stderr  # type: ignore[attr-defined]


def test_a_clock_ahead_of_the_api_never_moves_the_watermark_past_what_the_api_gave(
    tmp_path: Path, emulator_url: str
) -> None:
    """`sync --now` weeks ahead of the API's clock: the API refuses the window that holds its now (its end_time is
    in the API's future), which the client asks again without end_time, so it ends at the API's now; the windows
    after it start in the API's future and are empty. The watermark stays at the API's today; it went to the end of
    the window, weeks ahead, so the next sync at the right time refused the clock (or, before that, skipped the days
    between for good)."""
    path = tmp_path / "s.duckdb"
    assert _sync(path, emulator_url, EMULATOR_NOW).exit_code == 0  # type: ignore[attr-defined]
    assert _watermarks(path) == {EMULATOR_NOW // DAY * DAY}
    ahead = _sync(path, emulator_url, EMULATOR_NOW + 56 * DAY)  # costs: one window, which the API cuts short
    assert ahead.exit_code == 0, ahead.output  # type: ignore[attr-defined]
    assert _watermarks(path) == {EMULATOR_NOW // DAY * DAY}
    # The new hourly stream reads from two days before the API's now (58 days before its own), not 90 days back.
    hourly = ("-e", "completions", "--bucket-width", "1h", "--since", "58d")
    further = _sync(path, emulator_url, EMULATOR_NOW + 56 * DAY, *hourly)
    # The windows after the API's now are empty (their start_time is in its future), not a failed stream.
    assert further.exit_code == 0, further.output  # type: ignore[attr-defined]
    with open_existing_store(str(path)) as store:
        hourly = [s.watermark for s in store.stream_states() if s.stream.startswith("completions.1h")]
    # At most the start of the last hour the API gave, never a window's end weeks ahead: the next run reads on from
    # there.
    assert len(hourly) == 1 and hourly[0] is not None and hourly[0] <= EMULATOR_NOW - 3600, hourly
    assert _sync(path, emulator_url, EMULATOR_NOW + 3600).exit_code == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "made"),
    [
        (["--format", "jsonl"], "usage_completions.jsonl"),  # every endpoint: jsonl could be one file
        (["-e", "costs", "--format", "csv"], "costs.csv"),  # one endpoint: one file
        (["--format", "csv"], "costs.csv"),
    ],
    ids=["jsonl-all", "csv-one", "csv-all"],
)
def test_an_output_with_a_trailing_slash_is_a_directory_made_with_its_parents(
    tmp_path: Path, argv: list[str], made: str
) -> None:
    """`export --output nope/deeper/` (two folders that do not exist): the slash names a directory, made with its
    parents, as `--output nope/deeper` is for a directory export. One endpoint, or every one as JSON Lines, was
    written as a file named `deeper`, or refused naming `nope` as the missing directory."""
    store = tmp_path / "s.duckdb"
    open_store(str(store)).close()
    out = tmp_path / "nope" / "deeper"
    result = CliRunner().invoke(app, ["export", *argv, "--output", f"{out}/", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert out.is_dir() and (out / made).is_file()


def test_a_focus_export_to_a_directory_is_refused_in_one_line(tmp_path: Path) -> None:
    """FOCUS rows are one file: `--output dir/` or an existing directory is refused naming it, as bad input (exit
    2), and nothing is written (`dir/` was written as a file named `dir`; an existing one failed on the rename).
    A `new/` that does not exist was said to be "a directory" and exited 1: it names a folder, and says so."""
    store = tmp_path / "s.duckdb"
    open_store(str(store)).close()
    (tmp_path / "there").mkdir()
    for output, said in (
        (f"{tmp_path / 'new'}/", "names a folder (it ends in /), and this output is one file: give a file's path"),
        (str(tmp_path / "there"), "is a directory, and this output is one file: give a file's path in it"),
    ):
        result = CliRunner().invoke(app, ["export", "--format", "focus", "--output", output, "--store", str(store)])
        assert result.exit_code == 2
        assert result.stderr == f"error: --output: {output} {said}\n"
    assert not (tmp_path / "new").exists() and list((tmp_path / "there").iterdir()) == []


def test_a_disk_that_fills_during_a_sync_is_one_line_and_the_next_sync_completes(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk fails a window's commit, and then the record of the run's end: the user sees the commit's error
    alone (a WARNING line about the run's end came first), the store stays readable, and the next sync, with room
    again, completes (finding the run abandoned)."""
    path = tmp_path / "s.duckdb"
    assert _sync(path, emulator_url, EMULATOR_NOW).exit_code == 0  # type: ignore[attr-defined]
    full = StoreError('DuckDB commit failed: Could not write file "s.duckdb.wal": No space left on device')

    def no_room(*args: object, **kwargs: object) -> None:
        raise full

    with monkeypatch.context() as patched:
        patched.setattr(DuckDBStore, "commit_windows", no_room)
        patched.setattr(engine, "_finish", no_room)
        failed = _sync(path, emulator_url, EMULATOR_NOW + 3600)
    assert failed.exit_code == 1  # type: ignore[attr-defined]
    assert failed.stderr == f"error: {full}\n"  # type: ignore[attr-defined]
    assert CliRunner().invoke(app, ["status", "--store", str(path)]).exit_code == 0
    assert _sync(path, emulator_url, EMULATOR_NOW + 7200).exit_code == 0  # type: ignore[attr-defined]


def test_a_page_that_cannot_be_written_whole_leaves_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _demo_command_master: Path
) -> None:
    """`report --html` on a full disk: one line naming the file, the old page kept as it was and no partial or
    temporary file left (the page was truncated first and left empty, and the error named no file), nor a folder
    made for it."""
    store = _demo_copy(_demo_command_master, tmp_path)
    page = tmp_path / "r.html"
    page.write_text("old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    result = CliRunner().invoke(app, ["report", "--html", str(page), "--store", str(store)])
    assert result.exit_code == 1
    assert result.stderr == f"error: --html: No space left on device: {page}\n"
    assert page.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir() if "r.html" in p.name) == ["r.html"]
    # a page into folders it made: they go too (the command made them first, and left them empty)
    fresh = tmp_path / "new" / "pages" / "r.html"
    result = CliRunner().invoke(app, ["report", "--html", str(fresh), "--store", str(store)])
    assert result.stderr == f"error: --html: No space left on device: {fresh}\n" and not (tmp_path / "new").exists()


def _demo_copy(master: Path, tmp_path: Path) -> Path:
    """A copy of the store `usageledger demo --store FILE` made (``fixtures.stores``: one such run a test run)."""
    store = tmp_path / "s.duckdb"
    copy_duckdb(master, store)
    return store


def test_a_delta_export_cut_short_by_a_full_disk_is_one_line_and_the_next_one_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _demo_command_master: Path
) -> None:
    """A full disk fails deltalake's first write of a table before its commit: the error is one line naming the
    table (deltalake's is several lines of coloured text), and the next export, with room again, writes the table
    over what the failed write left (an empty `_delta_log`, which deltalake refused with a traceback)."""
    import deltalake

    store = _demo_copy(_demo_command_master, tmp_path)
    lake = tmp_path / "lake"
    real = deltalake.write_deltalake

    def full(where: str, *args: object, **kwargs: object) -> None:
        (Path(where) / "_delta_log").mkdir(parents=True)
        (Path(where) / "month=2026-11").mkdir()
        raise OSError(
            "Generic LocalFileSystem error\n  \x1b[31m\u21b3\x1b[0m Unable to copy data to file\n"
            "  \x1b[31m\u21b3\x1b[0m No space left on device (os error 28)\n"
        )

    args = ["export", "--format", "delta", "-e", "costs", "--output", str(lake), "--store", str(store)]
    monkeypatch.setattr(deltalake, "write_deltalake", full)
    failed = CliRunner().invoke(app, args)
    assert failed.exit_code == 1
    assert failed.stderr == f"error: No space left on device: {lake / 'costs'}\n"
    monkeypatch.setattr(deltalake, "write_deltalake", real)
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert deltalake.DeltaTable(str(lake / "costs")).version() == 0


def test_a_postgresql_server_gone_mid_sync_is_one_store_error_and_the_next_run_finds_it(
    pg_url: str, emulator_url: str
) -> None:
    """The server ending the sync's connection mid-run (a restart): a StoreError of one line, not psycopg's
    exception out of the lock release; the next opening marks the run abandoned and a re-run syncs whole."""
    streams = [Stream.create("costs", "1d", ("project_id", "line_item"))]
    store = open_store(pg_url)
    backend = store.query("SELECT pg_backend_pid()")[0][0]
    killer = open_store(pg_url)

    def cut(event: object) -> None:
        if isinstance(event, RunStarted):  # the run is recorded `running`; nothing is written yet
            killer.query("SELECT pg_terminate_backend(%s)", (backend,))

    with pytest.raises(StoreError) as failed:
        sync(store, [Org("main", FAKE_ADMIN_KEY, emulator_url)], streams, on_event=cut, clock=lambda: EMULATOR_NOW)
    assert "\n" not in str(failed.value) and str(failed.value).startswith("PostgreSQL: ")
    for step in (lambda: store.try_lock_stream("main", "s"), lambda: store.release_sync_lock(shared=True)):
        with pytest.raises(StoreError):  # every lock step of a dead connection, not psycopg.OperationalError
            step()
    store.close()
    killer.close()
    with open_store(pg_url) as reopened:
        assert len(reap_abandoned(reopened, at=EMULATOR_NOW, holding_sync_lock=False)) == 1  # this process lives on
        assert sync(reopened, [Org("main", FAKE_ADMIN_KEY, emulator_url)], streams, clock=lambda: EMULATOR_NOW).ok
        assert reopened.query("SELECT last_status FROM streams")[0][0] == "ok"


def test_a_full_disk_names_the_store_the_fix_and_keeps_the_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync on a disk that filled said "DuckDB commit failed: TransactionContext Error: Failed to commit: Could not
    write file ".../s.duckdb.wal": No space left on device", and left s.duckdb.wal, which a user may delete to make
    room and so lose committed windows (DuckDB replays it when the store next opens: a sync on a 3 MB tmpfs, run
    again once it had room, equalled a clean sync). A commit, a statement or an open that meets a full disk or quota
    is now one line naming the store, the fix, and to keep the .wal."""
    import contextlib

    from usageledger.store import duckdb as duck

    path = tmp_path / "s.duckdb"
    wal = f'Could not write file "{path}.wal": No space left on device'

    class _NoRoom:
        """The store's connection, whose commit meets a full disk."""

        def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
            self._con = con

        def commit(self) -> None:
            raise duckdb.IOException(f"TransactionContext Error: Failed to commit: {wal}")

        def __getattr__(self, name: str) -> object:
            return getattr(self._con, name)

    with open_store(path) as db:
        real = DuckDBStore._use

        @contextlib.contextmanager
        def no_room(self: DuckDBStore) -> object:
            with real(self) as con:
                yield _NoRoom(con)

        monkeypatch.setattr(DuckDBStore, "_use", no_room)
        with pytest.raises(StoreError) as info, db.transaction():
            pass
        monkeypatch.undo()
    said = str(info.value)
    assert said.startswith(f"the disk of the DuckDB store {path} is full (") and "No space left on device" in said
    assert "free some space" in said and "keep the .wal file" in said and "\n" not in said
    quota = duckdb.IOException(f'Could not write file "{path}": Disk quota exceeded')
    for error in (duck._statement_error(str(path), quota), duck._open_error(str(path), quota)):
        assert str(error).startswith(f"the disk of the DuckDB store {path} is full ("), error
    other = duckdb.IOException("Could not read enough bytes")
    assert "is full" not in str(duck._statement_error(str(path), other))


def test_a_duckdb_store_used_after_its_close_says_how_to_open_it_again(tmp_path: Path) -> None:
    """A DuckDB store used after `close()` said only "the DuckDB store X is closed": it says what closed it and the
    fix, in the words a PostgreSQL store uses."""
    path = tmp_path / "ledger.duckdb"
    with open_store(path) as store:
        assert store.known_orgs() == []
    with pytest.raises(StoreError) as caught:
        store.known_orgs()
    assert str(caught.value) == (
        f"the store {path} is closed (close() was called, or its with block ended); open it again with open_store(...)"
    )
