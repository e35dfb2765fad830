"""Opening stores: reading commands never create one, say the true cause of a failed open, and work during a sync.

Every case runs through the CLI and checks the one line on stderr, the exit code and the files left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.errors import StoreError
from usageledger.store import duckdb as duckdb_store
from usageledger.store import migrations, open_existing_store, open_store
from usageledger.store._filelock import ReaderSignal, reader_turn, writer_pid

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.reliability import cli, emulator_popen, env, finish, run_cli, sync_args

READERS = [
    ["status"],
    ["report"],
    ["check"],
    ["reconcile"],
    ["export", "-e", "costs", "-o", "-"],
]
IDS = [argv[0] for argv in READERS]


def _one_line(result: object) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def _files(where: Path) -> list[str]:
    return sorted(str(p.relative_to(where)) for p in where.rglob("*"))


@pytest.mark.parametrize("argv", READERS, ids=IDS)
@pytest.mark.parametrize("store", ["typo.duckdb", "missing/folder/typo.duckdb"])
def test_a_reading_command_on_a_missing_store_says_so_and_creates_nothing(
    argv: list[str], store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`no store at PATH`, naming --store and [store] url; exit 1; no file, WAL, lock or folder is created."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [*argv, "--store", store])
    assert result.exit_code == 1, result.output
    line = _one_line(result)
    assert line.startswith(f"error: no store at {store}:") and "--store" in line and "[store] url" in line, line
    assert _files(tmp_path) == []


@pytest.mark.parametrize("argv", [*READERS, ["changes"], ["credit", "add", "2026-11-01", "5"]])
def test_a_missing_store_names_the_config_file_that_was_read(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store missing from `--config c1.toml` names c1.toml (never usageledger.toml) as the place to change."""
    monkeypatch.chdir(tmp_path)
    Path("c1.toml").write_text('[store]\nurl = "gone.duckdb"\n', encoding="utf-8")
    Path("c2.toml").write_text("[sync]\n", encoding="utf-8")
    named = _one_line(CliRunner().invoke(app, [*argv, "--config", "c1.toml"]))
    assert named.startswith("error: no store at gone.duckdb:") and "change [store] url in c1.toml" in named, named
    default = _one_line(CliRunner().invoke(app, [*argv, "--config", "c2.toml"]))
    assert "set [store] url in c2.toml" in default and "usageledger.toml" not in default, default
    assert _files(tmp_path) == ["c1.toml", "c2.toml"]


@pytest.mark.parametrize("argv", [*READERS, ["keys"], ["credit", "list"]], ids=[*IDS, "keys", "credit"])
def test_after_the_demo_a_missing_store_names_the_demo_store_beside_it(
    argv: list[str], demo_command_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `scripts/demo`, `usageledger report` in the same folder read usageledger.duckdb, which is not there, and
    was told only to run `usageledger sync`, which needs an admin key the newcomer does not have. The line names
    the demo's store beside it, and the fix it gives reads it; without a demo store the line is as it was."""
    monkeypatch.chdir(tmp_path)
    line = _one_line(CliRunner().invoke(app, argv))
    assert line.startswith("error: no store at usageledger.duckdb:") and "demo" not in line, line
    shutil.copy(demo_command_store, tmp_path / "usageledger-demo.duckdb")
    missing = CliRunner().invoke(app, argv)
    assert missing.exit_code == 1
    assert _one_line(missing).endswith(", such as the demo's beside it: --store usageledger-demo.duckdb")
    fixed = CliRunner().invoke(app, [*argv, "--store", "usageledger-demo.duckdb"])
    assert fixed.exit_code == 0, fixed.output
    assert "usageledger.duckdb" not in _files(tmp_path)


@pytest.mark.parametrize("argv", READERS, ids=IDS)
def test_a_reading_command_on_a_postgres_database_without_the_schema_creates_no_table(
    argv: list[str], pg_url: str
) -> None:
    """A PostgreSQL database without usageledger's tables: one line saying so, and still no table afterwards."""
    result = CliRunner().invoke(app, [*argv, "--store", pg_url])
    assert result.exit_code == 1, result.output
    line = _one_line(result)
    assert "no usageledger store in" in line and "usageledger sync" in line, line
    with open_store(pg_url, migrate=False) as opened:
        assert opened.applied_migrations() == [] and opened.query(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
        ) == [(0,)]


def _holder(path: Path) -> subprocess.Popen[str]:
    """Another program (a plain duckdb connection, not usageledger) holding ``path`` open for writing."""
    code = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


WRITER = ["sync", "--base-url", "http://127.0.0.1:9/v1", "--quiet"]
"""A sync whose store fails to open before it sends any request (nothing listens on port 9)."""


@pytest.mark.parametrize("argv", [["status"], ["report"], WRITER], ids=["status", "report", "sync"])
def test_duckdb_open_failures_say_their_real_cause(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory, a missing folder, a file that is not DuckDB and a file locked by PID N: each its own line."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    (tmp_path / "adir").mkdir()
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    cases = {
        "adir": "is a directory, not a DuckDB file",
        "notes.csv": "is not a DuckDB database file",
    }
    if argv[0] == "sync":  # a writer names the missing folder; readers say `no store at` (tested above)
        cases["gone/u.duckdb"] = f"the folder {tmp_path / 'gone'} of the store gone/u.duckdb does not exist"
    for store, cause in cases.items():
        before = _files(tmp_path)
        result = CliRunner().invoke(app, [*argv, "--store", store])
        assert result.exit_code == 1, result.output
        line = _one_line(result)
        assert cause in line and "wait for" not in line, line
        assert _files(tmp_path) == before, store
    held = tmp_path / "held.duckdb"
    holder = _holder(held)
    try:
        before = _files(tmp_path)
        result = CliRunner().invoke(app, [*argv, "--store", str(held)])
        assert result.exit_code == 1, result.output
        line = _one_line(result)
        assert f"is locked by process {holder.pid} (" in line and "not a running usageledger sync" in line, line
        assert _files(tmp_path) == before
    finally:
        holder.communicate("")


def test_readers_work_during_a_duckdb_sync_and_a_second_sync_is_refused_at_once(
    tmp_path: Path, emulator_url: str
) -> None:
    """status and report succeed while a real sync writes; a second sync is refused in one line naming its PID."""
    store = str(tmp_path / "busy.duckdb")
    with emulator_popen("--latency", "50ms") as (url, emulator):
        # One request at a time, 50 ms each: the run's ~35 windows take over 1.5 s after its first commit. The
        # emulator is paused (SIGSTOP) as soon as the sync logs its first committed window, so the sync holds the
        # store, has written, and waits on its next answer for as long as the CLI processes below take, however
        # loaded the machine; it goes on (SIGCONT) after them. (At a fixed 300 ms a request, made to outlast the
        # readers, the sync took over ten seconds, most of it after the readers were done.)
        sync = run_cli([*cli(), *sync_args(store, "--concurrency", "1", "--log-format", "json")], url, tmp_path)
        log: list[str] = []
        committed = threading.Event()

        def read_log() -> None:
            assert sync.stderr is not None
            for line in sync.stderr:
                log.append(line)
                if line.startswith("{") and json.loads(line).get("message") == "window committed":
                    committed.set()

        reading = threading.Thread(target=read_log, daemon=True)
        reading.start()
        try:
            assert committed.wait(60), f"the sync committed no window: {''.join(log)}"
            emulator.send_signal(signal.SIGSTOP)
            assert sync.poll() is None and writer_pid(store) == sync.pid, "".join(log)
            started = time.monotonic()
            second = run_cli([*cli(), *sync_args(store)], url, tmp_path)
            code, _, err = finish(second)
            assert code == 1 and len(err.strip().splitlines()) == 1, err
            assert f"another usageledger process (PID {sync.pid}, a running sync) is writing to the store" in err
            assert time.monotonic() - started < 20 and sync.poll() is None, "refused at once, not after waiting"
            # `close` read the store first, saying "waiting for the running sync", then refused it anyway: now one
            # line, as a top-up's (the same opening of a store to write briefly).
            code, _, err = finish(run_cli([*cli(), "close", "2026-10", "--store", store], url, tmp_path))
            assert code == 1 and len(err.strip().splitlines()) == 1, err
            assert f"another usageledger process (PID {sync.pid}, a running sync) is writing to the store" in err
            for argv in (["status"], ["report", "--until", "2025-01-01"]):
                done = subprocess.run(
                    [*cli(), *argv, "--store", store], env=env(url), cwd=tmp_path, capture_output=True, text=True
                )
                assert done.returncode == 0, done.stderr
                assert done.stdout.strip(), argv
                # a sync under way may not have reached the costs yet, which the report says (run sync, it ends)
                lines = done.stderr.strip().splitlines()
                waited = [s for s in lines if not (s.startswith("warning: ") and "run `usageledger sync`" in s)]
                assert waited in ([], [f"waiting for the running sync (PID {sync.pid}) to release the store {store}…"])
                assert sync.poll() is None, "the reader must have run while the sync was still writing"
        finally:
            emulator.send_signal(signal.SIGCONT)
            code = sync.wait(timeout=300)
            reading.join(timeout=60)
            for pipe in (sync.stdout, sync.stderr):
                assert pipe is not None
                pipe.close()
        assert code == 0, "".join(log)
        # The lock file stays behind with a PID that no longer holds it: it never blocks the next sync. That sync
        # asks the shared emulator (the same organisation, no latency): nothing needs it slow, and at 300 ms a
        # request it took ~4 s.
        assert Path(store + ".lock").read_text().strip() == str(sync.pid)
        code, _, err = finish(run_cli([*cli(), *sync_args(store)], emulator_url, tmp_path))
        assert code == 0, err


def test_a_status_reader_gets_a_store_that_is_written_back_to_back(tmp_path: Path) -> None:
    """`status` in a subprocess reads a store whose writer commits back to back: the writer steps aside for it."""
    path = tmp_path / "hot.duckdb"
    commits = 0
    with open_store(path) as store:
        store.execute("CREATE TABLE beats (n INTEGER)")
        reader = subprocess.Popen(
            [*cli(), "status", "--store", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        while reader.poll() is None:
            with store.transaction():
                store.execute("INSERT INTO beats VALUES (1)")
            commits += 1
            time.sleep(0.005)
        out, err = reader.communicate()
        assert store.query("SELECT count(*) FROM beats") == [(commits,)]
    assert reader.returncode == 0, err
    assert "No streams yet" in out and err.strip() in (
        "",
        f"waiting for the running sync (PID {os.getpid()}) to release the store {path}…",
    )


def test_a_writer_gets_the_file_back_when_the_reader_closes_not_when_it_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that has closed the store but lives on (rendering, piping) no longer holds up the writer.

    No clock measures it: the reader stays alive, blocked on its stdin, until the writer has committed again. A
    writer that waited for the reader's exit instead would give up after its wait limit (shortened from 600 s)."""
    monkeypatch.setattr(duckdb_store, "WRITE_WAIT_LIMIT", 30.0)
    path = tmp_path / "hot.duckdb"
    code = (
        "import sys; from usageledger.store import open_existing_store;"
        " s = open_existing_store(sys.argv[1]); n = s.query('SELECT count(*) FROM beats')[0][0]; s.close();"
        " print('closed', n, flush=True); sys.stdin.readline()"
    )
    with open_store(path) as store:
        store.execute("CREATE TABLE beats (n INTEGER)")
        with store.transaction():
            store.execute("INSERT INTO beats VALUES (1)")
        reader = subprocess.Popen(
            [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert reader.stdout is not None and reader.stdin is not None
        try:
            # The writer stays idle between transactions, as a sync waiting on the API does: it gives the file away.
            word, seen = reader.stdout.readline().split()
            assert word == "closed" and int(seen) >= 1
            with store.transaction():  # the reader has closed; its process is still running
                store.execute("INSERT INTO beats VALUES (2)")
            assert reader.poll() is None, "the writer must have got the file back while the reader still ran"
            assert store.query("SELECT count(*) FROM beats") == [(2,)]
        finally:
            reader.communicate("\n")
    assert reader.returncode == 0


def test_a_writer_waits_for_a_reader_that_holds_the_file(tmp_path: Path) -> None:
    """A sync that starts while a reader holds the file waits for it instead of failing."""
    path = tmp_path / "read.duckdb"
    open_store(path).close()
    code = (
        "import sys, time; from usageledger.store import open_existing_store;"
        " s = open_existing_store(sys.argv[1]); print('ready', flush=True); time.sleep(1.5); s.close()"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    began = time.monotonic()
    with open_store(path) as store:
        assert store.applied_migrations()
    holder.communicate()
    assert time.monotonic() - began > 0.5  # it did wait for the reader


def test_duckdb_never_draws_its_progress_bar(tmp_path: Path) -> None:
    """Writing and reading stores switch DuckDB's own progress bar off: a slow statement must not draw on stdout
    (it broke `sync --quiet` and would corrupt a command's output)."""
    path = str(tmp_path / "quiet.duckdb")
    with open_store(path) as writing:
        assert writing.query("SELECT current_setting('enable_progress_bar')") == [(False,)]
    with open_store(path, read_only=True) as reading:
        assert reading.query("SELECT current_setting('enable_progress_bar')") == [(False,)]


def test_a_waiting_reader_never_gets_the_file_between_two_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that starts waiting while a sync migrates a new store gets the file after the last migration,
    never in between (there it said "older schema: run `usageledger sync`")."""
    path = str(tmp_path / "new.duckdb")
    with open_store(path, migrate=False) as store:
        statements = 0
        execute, step_aside = store.execute, store._step_aside  # type: ignore[attr-defined]
        reader = threading.Thread(target=lambda: _wait_as_reader(path, 0.3))

        def counted(sql: str, params: Any = ()) -> int:
            nonlocal statements
            statements += 1
            if statements == 3:  # a reader comes while the migrations run
                reader.start()
                time.sleep(0.1)
            return execute(sql, params)

        asides: list[int] = []

        def recorded() -> None:
            asides.append(statements)
            step_aside()

        monkeypatch.setattr(store, "execute", counted)
        monkeypatch.setattr(store, "_step_aside", recorded)
        applied = store.migrate()
        reader.join()
        assert applied and statements > 3
        # Handing the file over before the first statement or after the last one is right; in between is not.
        assert set(asides) <= {0, statements}, f"the file was handed over after {asides} of {statements} statements"


_READ_MIGRATIONS = """
import sys
from usageledger.errors import StoreError
from usageledger.store import open_existing_store
try:
    with open_existing_store(sys.argv[1]) as reader:
        print(reader.query("SELECT COUNT(*) FROM schema_migrations")[0][0])
except StoreError as exc:
    print(exc)
"""


def test_a_reader_that_comes_before_the_first_migration_waits_for_the_whole_schema(tmp_path: Path) -> None:
    """A reader that starts waiting after a sync created a new store but before it migrated it (a `status` typed
    right after `sync`) gets the file once the schema is whole: it said "no usageledger store" when the writer's
    watcher handed over the empty file."""
    path = str(tmp_path / "new.duckdb")
    with open_store(path, migrate=False) as store:  # the file exists, without a table yet
        reader = subprocess.Popen([sys.executable, "-c", _READ_MIGRATIONS, path], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        signal = ReaderSignal(path)  # the writer's own probe, from a second descriptor
        while not signal.waiting():
            assert reader.poll() is None, reader.communicate()
            assert time.monotonic() < deadline, "the reader never started waiting"
            time.sleep(0.02)
        signal.close()
        time.sleep(0.5)  # ten of the writer's looks for a waiting reader
        assert reader.poll() is None, reader.communicate()
        applied = store.migrate()
        out, _ = reader.communicate(timeout=60)
    assert applied and out.strip() == str(len(applied))


_OPEN_TO_WRITE = """
import sys, duckdb
try:
    duckdb.connect(sys.argv[1]).close()
    print("opened")
except duckdb.Error as exc:
    print("refused" if "Conflicting lock is held" in str(exc) else exc)
"""


@pytest.mark.parametrize(
    ("first", "second"),
    [("write", "read"), ("read", "write"), ("read", "read")],
    ids=["reader-beside-writer", "writer-beside-reader", "two-readers"],
)
def test_a_second_store_of_a_file_in_one_process_keeps_it_locked(tmp_path: Path, first: str, second: str) -> None:
    """A store opened again in the process that holds it (a library's reader beside its writer) leaves the file
    locked against other processes: the second open read the header from a descriptor of its own, and closing it
    dropped DuckDB's lock (a POSIX lock goes with any close of the file in the process), so another process could
    open the file while it was being written or read."""
    path = str(tmp_path / "held.duckdb")
    open_store(path).close()
    opens = {"write": lambda: open_store(path), "read": lambda: open_existing_store(path)}
    with opens[first]():
        try:
            opens[second]().close()  # two readers share the file; DuckDB refuses a reader beside a writer
        except StoreError as exc:
            assert first != second
            assert str(exc) == (
                f"cannot open the DuckDB store {path} to {second}: this program already has it open to {first}"
                " (DuckDB opens a file one way per process); use the store already open, or close it first"
            )
        other = subprocess.run([sys.executable, "-c", _OPEN_TO_WRITE, path], capture_output=True, text=True)
        assert other.stdout.strip() == "refused", other


def _wait_as_reader(path: str, seconds: float) -> None:
    with reader_turn(path):
        time.sleep(seconds)


_SLOW_MIGRATION = """
import sys, time
from usageledger.store import open_store
store = open_store(sys.argv[1], migrate=False)
execute, count = store.execute, [0]
def slow(sql, params=()):
    count[0] += 1
    if count[0] == 40:  # well inside the migrations: several are done, more to come
        print("mid", flush=True)
        time.sleep(60)
    return execute(sql, params)
store.execute = slow
store.migrate()
"""


def test_a_sync_killed_mid_migration_leaves_no_half_made_store(tmp_path: Path) -> None:
    """SIGKILL while the migrations run: the file holds none of them (one transaction), `status` says to sync, and
    the next open migrates the store whole."""
    path = str(tmp_path / "killed.duckdb")
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_MIGRATION, path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "mid"
    finally:
        proc.kill()
        proc.communicate()
    done = subprocess.run([*cli(), "status", "--store", path], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().startswith(f"error: no usageledger store in {path}: it holds none of usageledger's")
    assert "run `usageledger sync`" in done.stderr
    with open_store(path) as store:
        assert store.applied_migrations() == migrations.all_names()


@pytest.mark.parametrize(("org", "fix"), [("acme", "usageledger sync"), ("demo", "usageledger demo --store {path}")])
def test_a_store_of_an_older_schema_names_the_command_that_migrates_it(tmp_path: Path, org: str, fix: str) -> None:
    """A reader refuses a store a migration behind, naming what migrates it: `sync`, or `demo` for the demo's store
    (a `sync` there would ask the real API, whose data the store refuses beside the demo's); then it reads."""
    path = tmp_path / "older.duckdb"
    with open_store(str(path)) as store:
        store.register_org(org, synthetic=org == "demo", source="demo" if org == "demo" else "api", at=0)
        store.execute("DROP TABLE store_identity")  # as a store made before migration 0010 holds it
        store.execute("DELETE FROM schema_migrations WHERE name = '0010_store_identity'")
    result = CliRunner().invoke(app, ["status", "--store", str(path)])
    assert result.exit_code == 1
    expected = fix.format(path=path)
    assert result.stderr == f"error: the store {path} has an older schema: run `{expected}` once to migrate it\n"
    with open_store(str(path)) as store:  # what the sync or the demo does first
        assert store.pending_migrations() == [] and store.identity()
    assert CliRunner().invoke(app, ["status", "--store", str(path)]).exit_code == 0
