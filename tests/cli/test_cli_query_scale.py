"""`query` at scale (issue 9, item 19): 5 years at 1m as a table buffered 606 MB and printed nothing.

Now the command estimates its requests first and warns past a threshold, shows progress on stderr only where a
person watches (a terminal, without --quiet), streams CSV and JSON lines page by page, and stops a table at a cap.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from usageledger.cli import app, commands_query
from usageledger.cli.commands_query import MANY_REQUESTS, TABLE_MAX_ROWS

from fixtures.data import FAKE_ADMIN_KEY

# 111 days of one-minute buckets inside the emulator's history: 111 requests of 1,440 buckets each.
WIDE = ["completions", "--start", "2026-08-01", "--end", "2026-11-20", "--bucket-width", "1m"]
SMALL = ["completions", "--start", "2026-11-01", "--end", "2026-11-04"]


@pytest.fixture
def run(emulator_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Invoke `usageledger query` in-process against the emulator."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    monkeypatch.setenv("COLUMNS", "200")

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(app, ["query", *args, "--base-url", emulator_url])

    return invoke


def _cli(*argv: str, emulator_url: str, stderr: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "TERM": "xterm", "COLUMNS": "120"}
    command = [sys.executable, "-c", "from usageledger.cli import main; main()", "query", *argv]
    return subprocess.Popen(
        [*command, "--base-url", emulator_url], stdout=subprocess.PIPE, stderr=stderr, env=env, close_fds=True
    )


def test_a_large_query_warns_once_with_the_estimate_and_how_to_narrow(run) -> None:  # type: ignore[no-untyped-def]
    """Past the threshold, one stderr line gives the request count, the buckets and the flags that narrow it."""
    result = run(*WIDE, "-f", "jsonl", "--limit-rows", "1")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines == [
        "warning: this query may take up to 111 requests (159,840 buckets of 1m, at most 1,440 per request); "
        "narrow --start/--end, or use --bucket-width 1h"
    ]
    assert len(result.stdout.splitlines()) == 1
    assert MANY_REQUESTS < 111


def test_a_small_query_and_quiet_say_nothing_on_stderr(run) -> None:  # type: ignore[no-untyped-def]
    """Under the threshold there is no warning, and --quiet silences the warning of a large one."""
    assert run(*SMALL, "-f", "csv").stderr == ""
    quiet = run(*WIDE, "-f", "jsonl", "--limit-rows", "1", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr


def test_a_table_stops_at_the_cap_and_says_so(run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A table is held in memory, so it stops at TABLE_MAX_ROWS rows (fetching no further) and says how to get all."""
    assert TABLE_MAX_ROWS == 10_000
    monkeypatch.setattr(commands_query, "TABLE_MAX_ROWS", 1_000)  # the same rule, rendered faster (one page)
    result = run(*WIDE)
    assert result.exit_code == 0, result.output
    assert "completions: 1,000 rows" in result.stdout
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: the table stops at 1,000 rows; use --limit-rows, or -f csv or jsonl for every row"]
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "-f csv or jsonl streams them all" in warning[0]


def test_limit_rows_0_prints_every_row_of_a_table(run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """`--limit-rows 0` lifts the table's cap, as it lists every row of report, forecast, keys and changes (it was
    refused here: "0 is not in the range x>=1"); a negative count is refused naming the option."""
    monkeypatch.setattr(commands_query, "TABLE_MAX_ROWS", 2)  # SMALL: 3 daily rows
    capped = run(*SMALL)
    assert capped.exit_code == 0 and "note: the table stops at 2 rows" in capped.stderr, capped.output
    every = run(*SMALL, "--limit-rows", "0")
    assert every.exit_code == 0, every.output
    counted = [line for line in every.stdout.splitlines() if line.startswith("completions: ")]
    assert counted and counted[0] == "completions: 3 rows", every.stdout
    assert "note:" not in every.stderr
    negative = run(*SMALL, "--limit-rows", "-1")
    assert negative.exit_code == 2 and "--limit-rows" in negative.output


def test_json_lines_stream_and_a_closed_pipe_ends_quietly(emulator_url: str) -> None:
    """`query <111 days at 1m> -f jsonl | head -1`: the first row arrives at once, then exit 0 without a traceback."""
    started = time.monotonic()
    process = _cli(*WIDE, "--group-by", "model", "-f", "jsonl", emulator_url=emulator_url, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    first = json.loads(process.stdout.readline())
    process.stdout.close()
    code = process.wait(timeout=60)
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert first["endpoint"] == "completions" and first["bucket_start"].startswith("2026-08-01T00:")
    assert code == 0 and "Traceback" not in stderr, stderr
    assert [line for line in stderr.splitlines() if not line.startswith("warning:")] == [], stderr
    assert time.monotonic() - started < 30


def _stderr_on_a_terminal(*argv: str, emulator_url: str) -> tuple[int, bytes, str]:
    """Run the command with stderr on a pseudo-terminal: exit code, stdout, and what the terminal showed."""
    leader, follower = pty.openpty()
    process = _cli(*argv, emulator_url=emulator_url, stderr=follower)
    os.close(follower)
    shown = b""
    assert process.stdout is not None
    out = process.stdout.read()
    while True:
        ready, _, _ = select.select([leader], [], [], 10)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower side closed: the process is gone
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    process.stdout.close()
    return process.wait(timeout=60), out, shown.decode(errors="replace")


def test_progress_shows_on_a_terminal_only(emulator_url: str) -> None:
    """Progress goes to stderr when stderr is a terminal; never with --quiet, never into stdout or a pipe."""
    code, out, shown = _stderr_on_a_terminal(*SMALL, "-f", "csv", emulator_url=emulator_url)
    assert code == 0 and "completions: requests" in shown and "1/1" in shown and "rows" in shown, shown
    assert out.startswith(b"endpoint,bucket_start") and b"completions: requests" not in out
    code, _, shown = _stderr_on_a_terminal(*SMALL, "-f", "csv", "--quiet", emulator_url=emulator_url)
    assert code == 0 and "completions: requests" not in shown, shown
    piped = _cli(*SMALL, "-f", "csv", emulator_url=emulator_url, stderr=subprocess.PIPE)
    out, err = piped.communicate(timeout=60)
    assert piped.returncode == 0 and err == b"" and out.startswith(b"endpoint,bucket_start")
