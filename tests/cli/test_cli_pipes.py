"""Output piped into a reader that stops early (`| head -1`) ends quietly, and JSON lines carry ISO times."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

QUERY = ["query", "completions", "--start", "2026-10-01", "--end", "2026-11-15", "--bucket-width", "1h"]


def _usageledger(*argv: str, emulator_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}
    command = [sys.executable, "-c", "from usageledger.cli import main; main()", *argv, "--base-url", emulator_url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_a_reader_that_stops_early_ends_the_command_quietly(emulator_url: str) -> None:
    """`query ... --format csv | head -1`: the first line arrives, then exit 0 with nothing on stderr."""
    process = _usageledger(*QUERY, "--format", "csv", emulator_url=emulator_url)
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    code = process.wait(timeout=60)
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert first.startswith(b"endpoint,bucket_start"), first
    assert code == 0 and stderr == "", (code, stderr)


def test_query_json_lines_use_iso_times(emulator_url: str) -> None:
    """`query -f jsonl` writes bucket_start and bucket_end as ISO times, the form `export` writes."""
    process = _usageledger(*QUERY[:4], "--end", "2026-10-03", "--format", "jsonl", emulator_url=emulator_url)
    out, err = process.communicate(timeout=60)
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert process.returncode == 0, err
    assert [r["bucket_start"] for r in rows] == ["2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z"]
    assert rows[0]["bucket_end"] == "2026-10-02T00:00:00Z"


def test_tables_cut_short_by_their_reader_end_with_zero(emulator_url: str, tmp_path: Path) -> None:
    """`report | head -1` (rich tables, whose own broken-pipe handling exits 1): exit 0, nothing on stderr, as
    `query` does; under `set -o pipefail` a 1 would fail the user's script."""
    store = str(tmp_path / "u.duckdb")
    env = {**os.environ, "OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "COLUMNS": "80"}
    cli = [sys.executable, "-c", "from usageledger.cli import main; main()"]
    # October whole (a statement refuses a month the store does not cover, and warns of one it covers in part)
    span = ["--since", "2026-10-01", "--until", "2026-11-01", "--now", str(EMULATOR_NOW)]
    sync = [*cli, "sync", "--store", store, "--base-url", emulator_url, *span, "-e", "costs", "--quiet"]
    assert subprocess.run(sync, env=env, capture_output=True, timeout=120).returncode == 0
    for argv in (["report", "--since", "2026-10-12", "--until", "2026-11-01"], ["statement", "2026-10"], ["status"]):
        process = subprocess.Popen(
            [*cli, *argv, "--store", store], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        code = process.wait(timeout=120)
        stderr = process.stderr.read().decode()
        process.stderr.close()
        assert first.strip(), argv
        assert code == 0 and stderr == "", (argv, code, stderr)
