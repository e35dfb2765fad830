"""SIGTERM and SIGKILL on a real `usageledger sync` process, mid-flight against an emulator process with latency.

SIGTERM is handled like Ctrl-C: one line, exit code 143, the run and its unfinished streams `interrupted`, finished
streams `ok`. SIGKILL leaves the run `running`; the next `status` or `sync` finds its process gone and marks it
`abandoned` (finished streams keep `ok`), so `status` never shows `running` for a process that is gone.

The directory's refresh, after the streams, is part of the run: stopped there, the run is `interrupted` (or, killed,
`abandoned`) with its streams `ok`, and `status` says the org's refresh did not finish and that the next sync
completes it.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.store import RunOwner, RunTotals, default_streams, open_store
from usageledger.store.directory import record_refresh
from usageledger.sync import SyncOptions, plan_stream
from usageledger.sync._model import INTERRUPTED
from usageledger.sync._safety import abandoned_runs, directory_now, reap_abandoned, stream_states_now, this_process

from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import cli, emulator_process, finish, run_cli, sync_args

ORG = "default"


@pytest.fixture(scope="module")
def slow_emulator() -> Iterator[str]:
    """A `usageledger emulator` subprocess answering every request after 40 ms, so a sync is caught mid-flight."""
    with emulator_process("--latency", "40ms") as url:
        yield url


def _planned() -> dict[str, int]:
    """Windows each default stream's first sync reads (no watermark, the CLI's default range)."""
    return {s.id: len(plan_stream(ORG, s, None, SyncOptions(), now=EMULATOR_NOW).windows) for s in default_streams()}


def _start_and_signal(store: str, url: str, cwd: Path, sig: signal.Signals) -> tuple[int, str, Counter[str], int]:
    """Start a sync; once a stream has committed all its windows (others still open), send ``sig``.

    One request at a time (``--concurrency 1``): the one-window costs stream finishes in the first round and the
    other streams' windows still take over a second to come, so the signal always lands with streams open. With
    several requests out, the windows could all arrive during the first commits and finish in one transaction.

    Exit code, stderr, windows committed per stream (from the JSON log), and the process id.
    """
    planned = _planned()
    proc = run_cli([*cli(), *sync_args(store, "--log-format", "json", "--concurrency", "1")], url, cwd)
    assert proc.stderr is not None
    committed: Counter[str] = Counter()
    lines: list[str] = []
    sent = False
    for line in proc.stderr:
        lines.append(line)
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("message") == "window committed":
            committed[record["stream"]] += 1
            if not sent and any(committed[s] == n for s, n in planned.items()):
                proc.send_signal(sig)
                sent = True
    code, _, rest = finish(proc, timeout=60)
    assert sent, "".join(lines)
    return code, "".join(lines) + rest, committed, proc.pid


def _stream_statuses(store: str) -> dict[str, str]:
    with open_store(store) as opened:
        return {s.stream: s.last_status or "-" for s in opened.stream_states()}


def test_sigterm_records_the_run_as_interrupted_and_keeps_finished_streams(slow_emulator: str, tmp_path: Path) -> None:
    """SIGTERM mid-sync: exit 143, one line, run and unfinished streams `interrupted`, finished ones `ok`."""
    store = str(tmp_path / "term.duckdb")
    code, stderr, committed, _ = _start_and_signal(store, slow_emulator, tmp_path, signal.SIGTERM)
    assert code == 143, stderr
    plain = [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert plain == ["error: interrupted by SIGTERM"], stderr
    planned = _planned()
    statuses = _stream_statuses(store)
    expected = {s: "ok" if committed[s] == n else "interrupted" for s, n in planned.items()}
    assert statuses == expected
    assert "ok" in statuses.values() and "interrupted" in statuses.values()
    with open_store(store) as opened:
        (run,) = opened.query("SELECT status, error FROM sync_runs")
    assert run == ("interrupted", "interrupted: the process was stopped (Ctrl-C or SIGTERM); sync again to go on")
    code, _, err = finish(run_cli([*cli(), *sync_args(store)], slow_emulator, tmp_path))
    assert code == 0, err
    assert set(_stream_statuses(store).values()) == {"ok"}


def test_sigkill_leaves_a_run_that_status_shows_abandoned(slow_emulator: str, tmp_path: Path) -> None:
    """SIGKILL mid-sync: the run keeps its pid and host; `status` then shows `abandoned`, never `running`."""
    store = str(tmp_path / "kill.duckdb")
    code, stderr, committed, pid = _start_and_signal(store, slow_emulator, tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL, stderr
    with open_store(store) as opened:
        assert opened.query("SELECT status, pid, host FROM sync_runs") == [("running", pid, socket.gethostname())]
    assert "running" in _stream_statuses(store).values()
    planned = _planned()
    finished = {s for s, n in planned.items() if committed[s] == n}
    expected = {s: "ok" if s in finished else "abandoned" for s in planned}
    assert finished and len(finished) < len(planned)

    # A reader that cannot write (DuckDB opened read-only) still never sees `running`.
    with open_store(store, migrate=False, read_only=True) as opened:
        assert {s.stream: s.last_status for s in stream_states_now(opened, at=EMULATOR_NOW)} == expected
        assert opened.query("SELECT status FROM sync_runs") == [("running",)]

    result = CliRunner().invoke(app, ["status", "--store", store], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "abandoned" in result.output and "running" not in result.output


def test_the_next_sync_marks_a_killed_run_abandoned_and_finishes_the_job(slow_emulator: str, tmp_path: Path) -> None:
    """After a SIGKILL, the next `sync` records the dead run as `abandoned` and completes its own."""
    store = str(tmp_path / "resume.duckdb")
    code, stderr, _, pid = _start_and_signal(store, slow_emulator, tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL, stderr
    code, _, err = finish(run_cli([*cli(), *sync_args(store)], slow_emulator, tmp_path))
    assert code == 0, err
    with open_store(store) as opened:
        rows = sorted(opened.query("SELECT status, error FROM sync_runs"))
    why = f"the run's process (pid {pid} on {socket.gethostname()}) ended without finishing it"
    assert rows == [("abandoned", why), ("ok", None)]
    assert set(_stream_statuses(store).values()) == {"ok"}


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_a_live_run_is_never_abandoned_and_a_reused_pid_does_not_keep_a_dead_one(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, new_store: Callable[[str, Path], str]
) -> None:
    """A run whose process is alive stays `running`; one whose pid now belongs to a later process is abandoned."""
    url = new_store(backend, tmp_path / "live.duckdb")
    with open_store(url) as opened:
        me = this_process()
        opened.begin_run("live", at=EMULATOR_NOW, command="sync", owner=me)
        assert me.started is not None  # Linux: the start time tells processes apart
        reused = RunOwner(me.pid, me.host, me.started - 1)
        opened.begin_run("reused", at=EMULATOR_NOW, command="sync", owner=reused)
        child = subprocess.Popen(["true"])
        child.wait()
        opened.begin_run("gone", at=EMULATOR_NOW, command="sync", owner=RunOwner(child.pid, me.host))
        if backend == "duckdb":
            opened.begin_run("elsewhere", at=EMULATOR_NOW, command="sync", owner=RunOwner(child.pid, "another-host"))
        else:  # a worker on another host: its own connection holds the run's advisory lock
            worker = open_store(url)
            worker.begin_run("elsewhere", at=EMULATOR_NOW, command="sync", owner=RunOwner(child.pid, "another-host"))
        assert sorted(reap_abandoned(opened, at=EMULATOR_NOW, holding_sync_lock=False)) == ["gone", "reused"]
        statuses = dict(opened.query("SELECT run_id, status FROM sync_runs"))
        assert statuses == {"live": "running", "reused": "abandoned", "gone": "abandoned", "elsewhere": "running"}
        if backend == "postgres":
            # Workers on several hosts share the database: a live one is never abandoned, lock or no lock...
            assert reap_abandoned(opened, at=EMULATOR_NOW, holding_sync_lock=True) == []
            backend_pid = worker.query("SELECT pg_backend_pid()")[0][0]
            worker.close()  # ...until its connection dies, and the server drops the run's lock with it
            # The server ends the backend (and frees its locks) just after the client has gone: wait for that.
            deadline = time.monotonic() + 30
            while opened.query("SELECT COUNT(*) FROM pg_locks WHERE pid = %s", (backend_pid,))[0][0]:
                assert time.monotonic() < deadline, "the closed worker's backend kept its locks for 30 s"
                time.sleep(0.05)
        # DuckDB: a sync holding the file knows no other sync runs: the other host's run is dead too.
        assert reap_abandoned(opened, at=EMULATOR_NOW, holding_sync_lock=True) == ["elsewhere"]


@pytest.fixture(scope="module")
def slow_directory() -> Iterator[str]:
    """A `usageledger emulator` subprocess answering after 300 ms: the directory's two dozen lists, four at a time,
    take two seconds, and the costs of three days one request."""
    with emulator_process("--latency", "300ms") as url:
        yield url


def _signal_in_directory(store: str, url: str, cwd: Path, sig: signal.Signals) -> tuple[int, str, int]:
    """Sync the costs of three days, and send ``sig`` once the directory's refresh has begun (its log line comes
    before its first list is asked for; the lists take seconds more). Exit code, stderr and the process id."""
    args = sync_args(store, "-e", "costs", "--since", "3d", "--log-format", "json")
    proc = run_cli([*cli(), *args], url, cwd)
    assert proc.stderr is not None
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("{") and json.loads(line).get("message") == f"reading the directory of {ORG}":
            proc.send_signal(sig)
            break
    code, _, rest = finish(proc, timeout=60)
    assert any("reading the directory" in line for line in lines), "".join(lines) + rest
    return code, "".join(lines) + rest, proc.pid


def _status(store: str) -> tuple[str, dict[str, Any]]:
    """`status` of ``store``: its directory line (the text output's last, unwrapped) and its directory's JSON record."""
    text = CliRunner().invoke(app, ["status", "--store", store])
    assert text.exit_code == 0, text.output
    line = " ".join(text.output[text.output.index("Directory of") :].split())  # the last line, as the console wraps it
    document = CliRunner().invoke(app, ["status", "--store", store, "--format", "json"])
    assert document.exit_code == 0, document.output
    (record,) = json.loads(document.stdout)["directory"]
    return line, record


@pytest.mark.parametrize(
    ("sig", "backend"),
    [(signal.SIGINT, "duckdb"), (signal.SIGTERM, "duckdb"), (signal.SIGINT, "postgres")],
)
def test_a_stop_in_the_directory_refresh_is_the_runs_and_status_says_the_next_sync_completes_it(
    sig: signal.Signals,
    backend: str,
    slow_directory: str,
    tmp_path: Path,
    new_store: Callable[[str, Path], str],
) -> None:
    """Ctrl-C or SIGTERM while the directory is read: the run `interrupted`, its streams `ok`; `status` says when
    the refresh stopped and that the next sync completes it, which it does."""
    store = new_store(backend, tmp_path / "dir.duckdb")
    code, stderr, _ = _signal_in_directory(store, slow_directory, tmp_path, sig)
    said = "error: interrupted" if sig == signal.SIGINT else "error: interrupted by SIGTERM"
    assert code == (130 if sig == signal.SIGINT else 143), stderr
    assert [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")] == [said], stderr
    with open_store(store) as opened:
        (run,) = opened.query("SELECT run_id, status, error FROM sync_runs")
    assert run[1:] == ("interrupted", f"the directory of {ORG} was not refreshed: {INTERRUPTED}")
    assert set(_stream_statuses(store).values()) == {"ok"}

    line, record = _status(store)
    began = record["last_refresh"]["started_at"]
    assert line == (
        f"Directory of {ORG}: not read yet; its refresh of {began} was interrupted (Ctrl-C or SIGTERM) before it"
        " finished: the next `usageledger sync` completes it"
    )
    assert record["last_refresh"] == {
        "started_at": began,
        "run_id": run[0],
        "status": "interrupted",
        "error": INTERRUPTED,
    }
    assert record["last_change"] is None

    code, _, err = finish(
        run_cli([*cli(), *sync_args(store, "-e", "costs", "--since", "3d")], slow_directory, tmp_path)
    )
    assert code == 0, err
    line, record = _status(store)
    assert record["last_refresh"]["status"] == "ok" and record["projects"] == {"active": 3, "archived": 1}, record
    assert line.startswith(f"Directory of {ORG}: 4 projects (1 archived),") and "refresh" not in line, line
    with open_store(store) as opened:
        statuses = opened.query("SELECT status, error FROM sync_runs ORDER BY started_at")
    assert statuses[1] == ("ok", None)


def test_a_kill_in_the_directory_refresh_shows_it_unfinished_never_running(slow_directory: str, tmp_path: Path) -> None:
    """SIGKILL while the directory is read: `status` shows the refresh as not finished, its process gone, and that
    the next sync completes it; the next sync records the run `abandoned`."""
    store = str(tmp_path / "killed.duckdb")
    code, stderr, pid = _signal_in_directory(store, slow_directory, tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL, stderr
    with open_store(store, migrate=False, read_only=True) as opened:
        assert opened.query("SELECT status FROM sync_runs") == [("running",)]
        assert opened.query("SELECT status FROM directory_refreshes") == [("running",)]
    line, record = _status(store)
    why = f"the run's process (pid {pid} on {socket.gethostname()}) ended without finishing it"
    began = record["last_refresh"]["started_at"]
    assert line == (
        f"Directory of {ORG}: not read yet; its refresh of {began} did not finish ({why}): the next"
        " `usageledger sync` completes it"
    )
    assert (record["last_refresh"]["status"], record["last_refresh"]["error"]) == ("abandoned", why)
    code, _, err = finish(
        run_cli([*cli(), *sync_args(store, "-e", "costs", "--since", "3d")], slow_directory, tmp_path)
    )
    assert code == 0, err
    with open_store(store) as opened:
        assert sorted(opened.query("SELECT status FROM sync_runs")) == [("abandoned",), ("ok",)]
        assert opened.query("SELECT status, error FROM directory_refreshes") == [("ok", None)]


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_a_refresh_left_running_is_shown_running_only_while_its_run_lives(
    backend: str, tmp_path: Path, new_store: Callable[[str, Path], str]
) -> None:
    """A refresh marked `running` reads so while its run runs; once the run has ended (a second Ctrl-C kept the
    refresh from recording its end) or its process is gone, `status` shows it as not finished, never running."""
    url = new_store(backend, tmp_path / "left.duckdb")
    with open_store(url) as opened:
        owner = this_process()
        for org, run in (("live", "r-live"), ("ended", "r-ended")):
            opened.begin_run(run, at=EMULATOR_NOW, command="sync", owner=owner)
            record_refresh(opened, org, run_id=run, started_at=EMULATOR_NOW, status="running")
        child = subprocess.Popen(["true"])
        child.wait()
        opened.begin_run("r-gone", at=EMULATOR_NOW, command="sync", owner=RunOwner(child.pid, owner.host))
        record_refresh(opened, "gone", run_id="r-gone", started_at=EMULATOR_NOW, status="running")
        opened.finish_run("r-ended", at=EMULATOR_NOW, status="interrupted", totals=RunTotals(streams=0))
        shown = {d.org: d.last_refresh for d in directory_now(opened, abandoned_runs(opened))}
    assert {org: (r.status, r.error) for org, r in shown.items() if r is not None} == {
        "live": ("running", None),
        "ended": ("abandoned", "its run ended without recording its end"),
        "gone": ("abandoned", f"the run's process (pid {child.pid} on {owner.host}) ended without finishing it"),
    }
