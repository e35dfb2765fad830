"""Long-running commands put the objects of their start-up out of the garbage collector's reach before their loop
(``cli._app.settle``: ``gc.freeze``); the library never does."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from usageledger.cli import _app
from usageledger.store import open_store

from fixtures.emulator import EMULATOR_NOW

# Runs the CLI as the console script does, with gc.freeze recorded: at exit, how many times it was called and how
# many objects the last call froze.
_PROBE = (
    "import atexit, gc, json, sys\n"
    "calls = []\n"
    "real = gc.freeze\n"
    "def freeze():\n"
    "    real()\n"
    "    calls.append(gc.get_freeze_count())\n"
    "gc.freeze = freeze\n"
    "atexit.register(lambda: print(json.dumps(calls), file=sys.stderr))\n"
    "from usageledger.cli import main\n"
    "main()\n"
)


def test_settle_freezes_what_is_alive_now() -> None:
    """settle() moves the objects alive now into the permanent generation (undone here, for the test process)."""
    try:
        _app.settle()
        assert gc.get_freeze_count() > 10_000  # the imported modules at least
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_sync_settles_once_and_still_syncs(tmp_path: Path, emulator_url: str) -> None:
    """A CLI sync over HTTP freezes once, after its imports (the objects then alive are counted), and syncs."""
    store = tmp_path / "u.duckdb"
    argv = ["sync", "--store", str(store), "--base-url", emulator_url, "--endpoint", "completions"]
    argv += ["--since", "2026-11-18", "--quiet", "--no-directory", "--now", str(EMULATOR_NOW)]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OPENAI_ADMIN_KEY": "sk-admin-settle-test-key"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    calls = json.loads(done.stderr.strip().splitlines()[-1])
    assert len(calls) == 1 and calls[0] > 10_000
    with open_store(str(store)) as opened:
        assert opened.query("SELECT COUNT(*) FROM usage_completions")[0][0] > 0


def test_a_command_that_ends_at_once_does_not_settle() -> None:
    """`version` (and every short command) leaves the collector alone."""
    done = subprocess.run([sys.executable, "-c", _PROBE, "version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []
