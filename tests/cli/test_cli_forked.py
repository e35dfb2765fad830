"""The suite's CLI runs are forked from a zygote (``tests/fixtures/zygote.py``): a forked run must be the run a fresh
interpreter gives, in output, exit status, environment, working directory and signals, or every CLI test would be
testing something else."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.zygote import _ORIGINAL, ZygotePopen
from fixtures.zygote_server import CLI_CODE

CLI = [sys.executable, "-c", CLI_CODE]

pytestmark = pytest.mark.skipif(
    os.environ.get("USAGELEDGER_TEST_ZYGOTE") == "0", reason="the zygote is turned off (USAGELEDGER_TEST_ZYGOTE=0)"
)


def _both(args: list[str], **kwargs: object) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """``args`` run forked and fresh: each one's (exit status, stdout, stderr)."""
    out = []
    for forked in (True, False):
        popen = ZygotePopen if forked else _ORIGINAL
        proc = popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        stdout, stderr = proc.communicate(timeout=120)
        if forked:
            assert proc.forked, "the run was not forked"
        out.append((proc.returncode, stdout, stderr))
    return out[0], out[1]


@pytest.mark.parametrize(
    "argv",
    [
        ["version"],
        ["reprot"],
        ["query", "costs", "--limit-rows", "many"],
        ["status", "--store", "no-such-store.duckdb"],
        ["sync", "--store", "x.duckdb", "--since", "36"],
        ["status"],
        ["sync", "--store", "x.duckdb"],
    ],
    ids=["version", "unknown command", "bad option", "missing store", "bad duration", "config in cwd", "key in env"],
)
def test_a_forked_run_prints_and_exits_as_a_fresh_one(argv: list[str], tmp_path: Path) -> None:
    """Same stdout, stderr and exit status, in the test's working directory (its ``usageledger.toml`` names the
    store) and environment (a narrow terminal, a key with a space inside that every command refuses)."""
    (tmp_path / "usageledger.toml").write_text('[store]\nurl = "from-the-config.duckdb"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_"))}
    env.update(COLUMNS="60", OPENAI_ADMIN_KEY="sk-admin forked test")
    forked, fresh = _both([*CLI, *argv], cwd=tmp_path, env=env)
    assert forked == fresh
    if argv == ["status"]:
        assert "from-the-config.duckdb" in forked[2]
    if argv == ["sync", "--store", "x.duckdb"]:
        assert "whitespace character inside it" in forked[2]
    assert [p.name for p in tmp_path.iterdir()] == ["usageledger.toml"]  # neither run left a store behind


def test_a_forked_emulator_serves_and_stops_on_sigterm_as_a_fresh_one() -> None:
    """A long-running command: its own PID takes the signal, and it exits as a fresh process does."""
    results = []
    for popen in (ZygotePopen, _ORIGINAL):
        proc = popen([*CLI, "emulator", "--port", "0", "--days", "3"], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("Emulator ready at "), ready
        assert proc.pid != os.getpid() and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
        results.append((proc.returncode, rest))
    assert results[0] == results[1]


def test_an_import_time_variable_starts_a_fresh_interpreter() -> None:
    """A run whose environment differs in what is read at import (here ``PYTHONHASHSEED``) is not forked."""
    env = {**os.environ, "PYTHONHASHSEED": "12345" if os.environ.get("PYTHONHASHSEED") != "12345" else "54321"}
    proc = ZygotePopen([*CLI, "version"], stdout=subprocess.PIPE, text=True, env=env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip()
    assert not proc.forked


def test_a_run_asyncio_starts_is_forked_and_exits_as_a_fresh_one(caplog: pytest.LogCaptureFixture) -> None:
    """asyncio (mcp's stdio client starts its server so) waits its children with ``waitpid``, which a forked run is
    not: it said "Unknown child process pid" and exit code 255, and left the run's zygote socket open. A forked run
    now exits with its own status there too, the same as a fresh one's."""

    async def run(argv: list[str]) -> tuple[int, bytes, bool]:
        proc = await asyncio.create_subprocess_exec(*CLI, *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        forked = bool(proc._transport._proc.forked)  # type: ignore[attr-defined]  # the Popen asyncio made
        out, _ = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out, forked

    for argv in (["version"], ["reprot"]):
        code, out, forked = asyncio.run(run(argv))
        fresh = _ORIGINAL([*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert forked and (code, out) == (fresh.wait(timeout=60), fresh.communicate()[0])
    assert "Unknown child process" not in caplog.text
