"""Helpers for the reliability suites (kills, faults, concurrency): CLI subprocesses, an emulator process, checks.

``USAGELEDGER_HEAVY=1`` turns every reliability suite into its long variant (more kill points, more fault seeds).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from test_sync import Snapshot

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_CONFIG, EMULATOR_NOW

HEAVY: Final = os.environ.get("USAGELEDGER_HEAVY") == "1"
LAUNCHER: Final = Path(__file__).resolve().parent / "kill_launcher.py"


def cli() -> list[str]:
    """The `usageledger` console script of this interpreter."""
    script = Path(sys.executable).parent / "usageledger"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from usageledger.cli import main; main()"]


def launcher() -> list[str]:
    """The test-only launcher that can SIGKILL a sync inside its write path (``tests/kill_launcher.py``)."""
    return [sys.executable, str(LAUNCHER)]


@contextmanager
def emulator_process(*extra: str) -> Iterator[str]:
    """A `usageledger emulator` subprocess with the shared test organisation (``extra``: fault flags); its base URL."""
    c = EMULATOR_CONFIG
    args = ["--now", str(EMULATOR_NOW), "--seed", str(c.seed), "--days", str(c.days), "--projects", str(c.projects)]
    args += ["--users", str(c.users), "--models", str(c.models)]
    proc = subprocess.Popen(
        [*cli(), "emulator", "--port", "0", *args, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "Emulator ready at " in line, line
        yield line.split("Emulator ready at ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def sync_args(store: str, *extra: str) -> list[str]:
    """`sync` arguments for a run of every default stream over 90 days at the emulator's fixed now."""
    return ["sync", "--store", store, "--now", str(EMULATOR_NOW), "--concurrency", "3", "--quiet", *extra]


def env(url: str, **more: str) -> dict[str, str]:
    """The environment of a CLI subprocess: no developer OPENAI_*/USAGELEDGER_* variables, the fake key, ``url``."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_", "KILL_"))}
    out.update(OPENAI_ADMIN_KEY=FAKE_ADMIN_KEY, OPENAI_BASE_URL=url, **more)
    return out


def run_cli(args: Sequence[str], url: str, cwd: Path, *, timeout: float = 300, **more: str) -> subprocess.Popen[str]:
    """Start a CLI subprocess (``args`` include the program) with :func:`env`; stdout and stderr piped."""
    return subprocess.Popen(
        list(args), env=env(url, **more), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    """Wait for a subprocess; its exit code, stdout and stderr."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def assert_whole_buckets(partial: Snapshot, reference: Snapshot, where: str) -> None:
    """Every bucket a store holds is whole and equal to the reference's, and no watermark claims a missing bucket.

    Rows of an endpoint table start with ``org, stream, bucket_start``; a bucket is the set of rows sharing them.
    """
    marks = {(org, stream): mark for org, stream, mark, _ in partial["streams"]}
    for table, rows in reference.items():
        if table == "streams":
            continue
        ref_buckets = _buckets(rows)
        got = _buckets(partial[table])
        for key, bucket_rows in got.items():
            assert ref_buckets.get(key) == bucket_rows, f"{where}: {table} bucket {key} is partial or differs"
        for key, bucket_rows in ref_buckets.items():
            mark = marks.get(key[:2])
            if mark is not None and key[2] < mark:
                assert got.get(key) == bucket_rows, f"{where}: {table} {key} is before the watermark but missing"


def _buckets(rows: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
    out: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        out.setdefault(tuple(row[:3]), []).append(row)
    return out
