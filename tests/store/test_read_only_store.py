"""A DuckDB store its user may only read (mode 0444, a folder they may not write, lock files of another user's), as
that user: the tests run as root, whose writes no file mode stops, so the CLI runs here in a subprocess that file
modes hold back. Every reader reads, never needing to write beside the store; every writer is refused in one line
naming the store and why, before it creates or changes a file.

The subprocess runs as root without capabilities (``setpriv --bounding-set=-all``, util-linux): file modes then hold
it back as they hold back any user, the owner bits for the files root owns, and the others' bits for the files given
to ``nobody`` (another user's lock files). It runs the venv's own Python, which ``nobody`` could not reach under
``/root``. A failure to drop fails the test, since CI runs as root. One Python process runs several commands (typer's
runner), and writes what each did as JSON."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import usageledger
from usageledger.store import open_store

from fixtures.data import FAKE_ADMIN_KEY

NOBODY = 65534

_CHILD = r"""
import json, os, sys
from typer.testing import CliRunner
from usageledger.cli import app
from starlette.testclient import TestClient
from usageledger.serve.app import build_app

jobs = json.loads(sys.argv[1])
store = jobs["probe"]
try:
    open(store, "r+b").close()
    writable = True
except PermissionError:
    writable = False
with open("/proc/self/status") as status:
    caps = next(line.split()[1] for line in status if line.startswith("CapEff:"))
done = {"euid": os.geteuid(), "caps": int(caps, 16), "may_write_the_store": writable, "runs": []}
for args in jobs["runs"]:
    got = CliRunner().invoke(app, args)
    error = None if got.exception is None or isinstance(got.exception, SystemExit) else repr(got.exception)
    done["runs"].append({"args": args, "code": got.exit_code, "out": got.stdout, "err": got.stderr, "raised": error})
if jobs.get("serve"):
    with TestClient(build_app(jobs["serve"])) as client:
        answer = client.get("/api/report")
        done["serve"] = {"status": answer.status_code, "body": answer.text}
print(json.dumps(done))
"""


@pytest.fixture(scope="module")
def user_home(demo_command_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding ``pristine.duckdb`` (the demo's store) and ``out/`` (a folder the user may write: its working
    directory and the exports' target)."""
    home = tmp_path_factory.mktemp("read-only")
    shutil.copy(demo_command_store, home / "pristine.duckdb")
    (home / "out").mkdir()
    try:
        yield home
    finally:
        shutil.rmtree(home)  # root removes it whatever the modes inside


def _layout(home: Path, name: str, *, store: int, folder: int, locks: int | None, theirs: bool = False) -> Path:
    """The store in a folder of its own under ``home``, with these modes; ``locks``: the mode of both lock files
    (as a writer of the store left them, holding a PID), or None for none; ``theirs``: the lock files are another
    user's (``nobody``'s), so their owner bits are not the user's."""
    where = home / name
    where.mkdir()
    path = where / "d.duckdb"
    shutil.copy(home / "pristine.duckdb", path)
    path.chmod(store)
    if locks is not None:
        for suffix, text in ((".lock", "4242\n"), (".readers", "")):
            lock = Path(f"{path}{suffix}")
            lock.write_text(text)
            lock.chmod(locks)
            if theirs:
                os.chown(lock, NOBODY, NOBODY)
    where.chmod(folder)
    return path


def _as_a_user(home: Path, probe: Path, runs: list[list[str]], serve: Path | None = None) -> dict[str, Any]:
    """Run the CLI as a user the file modes hold back on each of ``runs`` (and read /api/report of ``serve``), in one
    process."""
    jobs = {"probe": str(probe), "runs": runs, "serve": str(serve) if serve else None}
    env = {**os.environ, "HOME": str(home / "out"), "PYTHONDONTWRITEBYTECODE": "1", "OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}
    # The usageledger under test (a checkout's src/ before an installed one), as this process imports it.
    env["PYTHONPATH"] = os.pathsep.join([str(Path(usageledger.__file__).parents[1]), env.get("PYTHONPATH", "")])
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    done = subprocess.run(
        [*drop, sys.executable, "-c", _CHILD, json.dumps(jobs)],
        capture_output=True,
        text=True,
        cwd=home / "out",
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr  # could not drop the capabilities, or the child itself failed
    answer: dict[str, Any] = json.loads(done.stdout)
    # The premise: the commands ran as a user the store's modes hold back (not root with its capabilities, which
    # may write anything).
    assert answer["caps"] == 0 and answer["euid"] == os.geteuid(), answer
    return answer


def _files(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Each file beside the store: its mode, modification time and content digest; and the folder's own."""
    files = {
        p.name: (p.stat().st_mode, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.iterdir())
    }
    return {**files, ".": (folder.stat().st_mode, folder.stat().st_mtime_ns, "")}  # a file made, then removed


def _refused(run: dict[str, Any], store: Path, why: str) -> None:
    assert run["raised"] is None, run
    assert run["code"] == 1, run
    assert run["out"] == "", run
    assert run["err"] == (
        f"error: cannot write {store}: permission denied; {why}: reading commands (report, export, statement, status)"
        " still read it; to write it, run as its owner or copy it to a folder of yours and pass --store\n"
    ), run["args"]


def _writers(store: Path, out: Path) -> list[list[str]]:
    day = datetime.now(UTC).date().replace(day=1).isoformat()
    s = ["--store", str(store)]
    return [
        ["sync", *s, "--base-url", "http://127.0.0.1:9/v1"],
        ["close", "last", *s],
        ["credit", "add", day, "100", *s],
        ["init", "--path", str(out / "u.toml"), *s],
    ]


def test_a_user_who_may_only_read_the_store_reads_it_and_every_writer_is_refused_in_one_line(
    user_home: Path,
) -> None:
    """The store 0444, its lock files 0444, its folder 0555: as a user whose modes these are (root without its
    capabilities), report (text and JSON), statement, export (to a folder of theirs), keys, changes, forecast,
    status and the dashboard's /api/report read it; sync, close, credit add and init are each refused in one line
    (exit 1) saying the file is read-only, and nothing beside the store is created or changed."""
    store = _layout(user_home, "read-only", store=0o444, folder=0o555, locks=0o444)
    out = user_home / "out"
    before = _files(store.parent)
    s = ["--store", str(store)]
    readers = [
        ["report", *s],
        ["report", *s, "--format", "json"],
        ["statement", "last", *s],
        ["export", "-o", f"{out}/exp/", *s],
        ["keys", *s],
        ["changes", *s],
        ["forecast", *s],
        ["status", *s],
    ]
    done = _as_a_user(user_home, store, readers + _writers(store, out), serve=store)
    assert done["may_write_the_store"] is False
    for run in done["runs"][: len(readers)]:
        assert run["raised"] is None and run["code"] == 0, run
        assert (run["out"] or run["err"]).strip(), run
        assert "Traceback" not in run["err"] and "lock" not in run["err"], run
    assert json.loads(done["runs"][1]["out"])["totals"]["spend"] != "0"
    assert sorted(p.suffix for p in (out / "exp").iterdir()) == [".csv"] * len(list((out / "exp").iterdir())) != []
    assert done["serve"]["status"] == 200, done["serve"]
    assert json.loads(done["serve"]["body"])["totals"]["spend"] != "0"
    for run in done["runs"][len(readers) :]:
        _refused(run, store, "the file is read-only for you")
    assert not (out / "u.toml").exists()
    assert _files(store.parent) == before


def test_a_writer_is_refused_for_each_file_it_may_not_write_and_creates_nothing(user_home: Path) -> None:
    """Each thing a writer needs and the user may not: the folder (a writable store there needs its lock files and
    DuckDB's log beside it), a lock file left 0444 in a folder the user may write (the reader still
    reads), and a 0444 store in a folder the user may write (the lock files were made, then removed: now nothing is
    made). Each is named in the one line, and the folder is as it was."""
    out = user_home / "out"
    folder = _layout(user_home, "folder", store=0o666, folder=0o555, locks=None)
    locks = _layout(user_home, "locks", store=0o666, folder=0o777, locks=0o444)
    file = _layout(user_home, "file", store=0o444, folder=0o777, locks=None)
    before = {p: _files(p.parent) for p in (folder, locks, file)}
    runs = [*_writers(folder, out)[:1], *_writers(locks, out)[2:3], *_writers(file, out)[1:2]]
    runs.append(["report", "--store", str(locks), "--format", "json"])
    done = _as_a_user(user_home, folder, runs)
    assert done["may_write_the_store"] is True  # the store is 0666: only its folder holds the writer back
    _refused(
        done["runs"][0],
        folder,
        f"its folder {folder.parent} is not writable by you, and a writer keeps files beside it",
    )
    _refused(done["runs"][1], locks, f"its lock file {locks}.lock is read-only for you")
    _refused(done["runs"][2], file, "the file is read-only for you")
    read = done["runs"][3]
    assert read["code"] == 0 and json.loads(read["out"])["totals"]["spend"] != "0", read
    assert {p: _files(p.parent) for p in (folder, locks, file)} == before


def test_while_the_owner_writes_a_reader_waits_its_turn_or_says_it_cannot_be_given_one(user_home: Path) -> None:
    """The store's owner (root here) holds it open for writing, as a running sync does. A reader whose lock files
    are readable (0644 and 0444: a turn is a shared lock, which needs no write) gets its turn and reads. One whose
    lock files are the owner's alone (0600) cannot ask for a turn nor see who writes: it said the store was held by
    "another program, not a running usageledger sync", and now says it is being written and what to do; one that
    sees the writer but may not open its .readers (0600) waited the whole 120 s for a turn it never asked for, and
    now says so at once."""
    shared = _layout(user_home, "owner-shared", store=0o644, folder=0o755, locks=0o644)
    Path(f"{shared}.readers").chmod(0o444)
    private = _layout(user_home, "owner-private", store=0o644, folder=0o755, locks=0o600, theirs=True)
    turnless = _layout(user_home, "owner-turnless", store=0o644, folder=0o755, locks=0o644)
    Path(f"{turnless}.readers").chmod(0o600)
    os.chown(f"{turnless}.readers", NOBODY, NOBODY)
    writers = [open_store(str(shared)), open_store(str(private)), open_store(str(turnless))]
    try:
        for writing in writers:
            writing.query("SELECT 1")  # the file is held, as by a sync between two transactions
        runs = [["status", "--store", str(shared)], ["report", "--store", str(private), "--format", "json"]]
        runs.append(["keys", "--store", str(turnless)])
        done = _as_a_user(user_home, private, runs)
    finally:
        for writing in writers:
            writing.close()
    read, *refused = done["runs"]
    # the heading names the store, and wraps where the temporary folder's path is long
    assert read["code"] == 0 and f"Streamsin{shared}" in "".join(read["out"].split()), read
    for run, lock in zip(refused, (f"{private}.lock", f"{turnless}.readers"), strict=True):
        assert run["raised"] is None and run["code"] == 1 and run["out"] == "", run
        assert run["err"] == (
            f"error: the store {lock.rsplit('.', 1)[0]} is being written (PID {os.getpid()}), and its lock file {lock}"
            " is not readable by you, so the writer cannot make way for you: run again when it has finished, or ask"
            " the store's owner to make its lock files readable (chmod a+r)\n"
        )


def test_a_writer_that_cannot_open_the_readers_file_leaves_no_lock_file_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the writable check cannot foresee (an ACL, a .readers another user makes that instant) is refused when
    the lock files are opened, in the one line naming the file; the .lock this open had just made went unremoved,
    since the open counted its fresh files only once both were open. Nothing is left beside the store."""
    import usageledger.store.duckdb as duckdb_store
    from usageledger.errors import StoreError

    path = tmp_path / "new.duckdb"

    def refused(store_path: str) -> None:
        raise PermissionError(13, "Permission denied", store_path + ".readers")

    monkeypatch.setattr(duckdb_store, "ReaderSignal", refused)
    with pytest.raises(StoreError, match=r"permission denied; its lock file .*new\.duckdb\.readers could not be"):
        open_store(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
