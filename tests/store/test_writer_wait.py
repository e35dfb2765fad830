"""Two writers of one DuckDB file: a brief write (`credit add`, `close`) is waited for, saying so; a sync is not."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from usageledger.errors import StoreError
from usageledger.store import _filelock
from usageledger.store._filelock import WriterLock, writer

CLI = [sys.executable, "-c", "from usageledger.cli import main; main()"]


def test_a_brief_writer_is_waited_for_and_the_wait_is_said_once(tmp_path: Path) -> None:
    """A second writer finding a `credit add` holding the store waits for it (it lets go once the waiter has said
    so) and hears once what it waits for; the lock then says who holds it now. (A timer letting go after 0.5 s could
    fire, on a loaded machine, before the waiter's 200 ms of tries had passed: nothing was said, rightly.)"""
    store = str(tmp_path / "s.duckdb")
    first = WriterLock.acquire(store, brief="credit add")
    assert writer(store) == _filelock.Writer(os.getpid(), "credit add", brief=True)
    heard: list[str] = []

    def told(said: str) -> None:
        heard.append(said)
        threading.Timer(0.1, first.release).start()  # the holder finishes a little after the waiter began to wait

    second = WriterLock.acquire(store, brief="close", on_wait=told)
    assert heard == [f"waiting for the running credit add (PID {os.getpid()}) to finish writing the store {store}…"]
    assert writer(store) == _filelock.Writer(os.getpid(), "close", brief=True)
    second.release()
    assert writer(store) is None


def test_a_sync_is_refused_at_once_and_a_brief_writer_that_stays_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync holding the store refuses another writer at once ("a running sync", as before); a brief writer that
    holds it past the bound is named for what it is, never called a sync."""
    store = str(tmp_path / "s.duckdb")
    sync = WriterLock.acquire(store)
    with pytest.raises(StoreError, match=rf"\(PID {os.getpid()}, a running sync\) is writing to the store"):
        WriterLock.acquire(store, brief="credit add", on_wait=pytest.fail)
    sync.release()
    monkeypatch.setattr(_filelock, "BRIEF_WAIT_LIMIT", 0.3)
    held = WriterLock.acquire(store, brief="credit add")
    try:
        with pytest.raises(StoreError, match=r"a running credit add\) is writing to the store .* \(waited [01] s\)"):
            WriterLock.acquire(store)
    finally:
        held.release()


def test_top_ups_and_a_close_at_once_all_land(demo_store_copy: Path) -> None:
    """`credit add` three times and `close` at once on one store: one of them was refused with "a running sync"
    (none ran); now each waits its turn and every top-up is recorded."""
    store = str(demo_store_copy)
    argvs = [["credit", "add", f"2026-11-0{i}", f"1{i}", "--store", store] for i in (1, 2, 3)]
    argvs.append(["close", "2026-10", "--allow-partial", "--store", store])
    env = {**os.environ, "COLUMNS": "80"}
    procs = [
        subprocess.Popen([*CLI, *a], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in argvs
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "running sync" not in err
    listed = subprocess.run(
        [*CLI, "credit", "list", "--store", store, "--format", "json"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    days = sorted(t["day"] for t in json.loads(listed.stdout)["topups"])
    assert days == ["2026-11-01", "2026-11-02", "2026-11-03"], listed.stdout


def test_doctor_names_a_brief_writer_for_what_it_is(demo_store_copy: Path) -> None:
    """`doctor` while a top-up holds the store said "a running sync"; it names the top-up."""
    from usageledger.doctor import diagnose

    held = WriterLock.acquire(str(demo_store_copy), brief="credit add")
    try:
        found = [f for f in diagnose(store=str(demo_store_copy), environ={}).findings if f.check == "store"]
    finally:
        held.release()
    assert [f.status for f in found] == ["warn"]
    assert f"being written by a running credit add (PID {os.getpid()})" in found[0].finding
    assert "once the credit add has finished" in found[0].fix


def test_a_writer_waits_for_a_store_another_is_creating_and_never_calls_it_foreign(tmp_path: Path) -> None:
    """Two syncs started at once on a new path: the first has made the file, not yet its header, when the second
    looks. The second read the header before taking the writer lock and said the file "is not a DuckDB database
    file"; now it reads it under the lock, after the first has written the store whole."""
    import duckdb

    from usageledger.store import open_store

    store = str(tmp_path / "new.duckdb")
    first = WriterLock.acquire(store, brief="credit add")
    Path(store).touch()  # made, its header not written yet

    def finish_the_store() -> None:
        os.unlink(store)
        duckdb.connect(store).close()
        first.release()

    timer = threading.Timer(0.5, finish_the_store)
    timer.start()
    try:
        with open_store(store, brief="close") as opened:
            assert opened.applied_migrations()
    finally:
        timer.join()


def test_a_running_demo_is_named_to_a_second_process_not_called_a_sync(tmp_path: Path) -> None:
    """A second `demo` (or a sync, a top-up) on the store a running `demo` writes was refused with "a running sync":
    the lock recorded what holds it only for a brief write. A real `usageledger demo` process, stopped while it
    holds the store, is named for what it is to another real process; a lock an older version wrote (a PID alone)
    still reads as a sync."""
    store = str(tmp_path / "demo.duckdb")
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.Popen(
        [*CLI, "demo", "--store", store], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while (held := writer(store)) is None or held.pid != first.pid:
            assert first.poll() is None and time.monotonic() < deadline, "the demo never took the store"
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)  # it holds the lock while stopped: the second process meets it for sure
        assert writer(store) == _filelock.Writer(first.pid, "demo")
        second = subprocess.run([*CLI, "demo", "--store", store], env=env, capture_output=True, text=True, timeout=60)
    finally:
        os.kill(first.pid, signal.SIGCONT)
        first.kill()
        first.wait(timeout=30)
    assert second.returncode == 1, second.stderr
    assert f"another usageledger process (PID {first.pid}, a running demo) is writing to the store" in second.stderr
    assert "sync" not in second.stderr, second.stderr

    old = tmp_path / "old.duckdb"
    Path(f"{old}{_filelock.LOCK_SUFFIX}").write_text("4242\n")
    with open(f"{old}{_filelock.LOCK_SUFFIX}") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # held, as a writer holds it, so it is read
        assert writer(str(old)) == _filelock.Writer(4242, "sync")


def test_a_writer_held_up_by_a_program_reading_the_store_says_so_once(tmp_path: Path) -> None:
    """A program in another process keeps the store open to read (a notebook's `open_existing_store`): a sync then
    waited for it silently, up to 600 s, looking hung. Past a moment it now hears once which process it waits for,
    and opens the store when that process closes it."""
    from usageledger.store import open_existing_store, open_store

    store = str(tmp_path / "s.duckdb")
    with open_store(store):
        pass
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from usageledger.store import open_existing_store\n"
            f"with open_existing_store({store!r}):\n    print('open', flush=True); sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as reader:
        assert reader.stdin is not None and reader.stdout is not None
        assert reader.stdout.readline() == "open\n"
        heard: list[str] = []

        def told(said: str) -> None:
            heard.append(said)
            assert reader.stdin is not None
            reader.stdin.write("\n")  # the program closes the store once the writer has said what it waits for
            reader.stdin.flush()

        unheard = threading.Timer(10.0, reader.stdin.close)  # nothing said: the program lets go all the same
        unheard.start()
        try:
            with open_store(store, on_wait=told) as opened:
                assert opened.applied_migrations()
        finally:
            unheard.cancel()
        (said,) = heard
        assert said.startswith(f"waiting for process {reader.pid} (python"), said  # the program, as DuckDB names it
        assert said.endswith(f"), which has the store {store} open to read, to close it (at most 600 s)…"), said
        with open_existing_store(store) as again:  # whole after the wait
            assert again.applied_migrations()
