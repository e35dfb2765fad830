"""Crash safety: `usageledger sync` killed with SIGKILL at random points, then re-run, equals an uninterrupted sync.

Both processes are real: a `usageledger emulator` subprocess (fixed clock, a little latency) and `usageledger sync`
subprocesses. A kill point is "after the k-th committed window" (read from the JSON log), so points spread over
the whole run: before the first window, between fetches, during batch writes and watermark commits.

The number of points is set by ``USAGELEDGER_KILL_POINTS`` (DuckDB, default 10) and ``USAGELEDGER_PG_KILL_POINTS``
(PostgreSQL, default 3); ``USAGELEDGER_KILL_SEED`` fixes the random choice (it is printed on failure).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from test_sync import Snapshot, snapshot
from usageledger.store import open_store

from conftest import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_CONFIG, EMULATOR_NOW

KILL_POINTS = int(os.environ.get("USAGELEDGER_KILL_POINTS", "10"))
PG_KILL_POINTS = int(os.environ.get("USAGELEDGER_PG_KILL_POINTS", "3"))
SEED = int(os.environ.get("USAGELEDGER_KILL_SEED", str(random.SystemRandom().randrange(1_000_000))))


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "usageledger"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from usageledger.cli import main; main()"]


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[str]:
    """A `usageledger emulator` subprocess with the shared test organisation and 15 ms latency; its base URL."""
    c = EMULATOR_CONFIG
    proc = subprocess.Popen(
        [
            *_cli(),
            "emulator",
            "--port",
            "0",
            "--now",
            str(EMULATOR_NOW),
            "--seed",
            str(c.seed),
            "--days",
            str(c.days),
            "--projects",
            str(c.projects),
            "--users",
            str(c.users),
            "--models",
            str(c.models),
            "--latency",
            "15ms",
        ],
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


def _sync_cmd(store: str) -> list[str]:
    return [
        *_cli(),
        "sync",
        "--store",
        store,
        "--now",
        str(EMULATOR_NOW),
        "--concurrency",
        "3",
        "--quiet",
        "--log-format",
        "json",
    ]


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_"))}
    env.update(OPENAI_ADMIN_KEY=FAKE_ADMIN_KEY, OPENAI_BASE_URL=url)
    return env


def _run(store: str, url: str, cwd: Path) -> int:
    """An uninterrupted sync; the number of windows it committed."""
    done = subprocess.run(_sync_cmd(store), env=_env(url), cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return sum(1 for line in done.stderr.splitlines() if '"window committed"' in line)


def _kill_after(store: str, url: str, cwd: Path, windows: int) -> bool:
    """Start a sync and SIGKILL it right after its ``windows``-th committed window; False if it finished first."""
    proc = subprocess.Popen(
        _sync_cmd(store), env=_env(url), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    seen = 0
    killed = False
    try:
        for line in proc.stderr:
            if line.startswith("{") and json.loads(line).get("message") == "window committed":
                seen += 1
            if seen >= windows:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
    finally:
        proc.stderr.close()
        proc.wait(timeout=60)
    return killed and proc.returncode == -signal.SIGKILL


def _crash_and_recover(
    url: str, tmp_path: Path, make_store: Callable[[int], str], points: int, reference: Snapshot, total: int
) -> None:
    rng = random.Random(SEED)
    chosen = sorted(rng.sample(range(total), min(points, total)))
    survived = 0
    for i, k in enumerate(chosen):
        store = make_store(i)
        assert _kill_after(store, url, tmp_path, k), f"seed {SEED}: the sync finished before kill point {k}"
        _run(store, url, tmp_path)
        with open_store(store) as opened:
            assert snapshot(opened) == reference, f"seed {SEED}: kill after window {k} left a different store"
        survived += 1
    assert survived == len(chosen) >= min(points, 10)


@pytest.fixture(scope="module")
def reference(emulator_process: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, int]:
    """The snapshot of an uninterrupted sync, and how many windows it commits."""
    where = tmp_path_factory.mktemp("ref")
    store = str(where / "ref.duckdb")
    total = _run(store, emulator_process, where)
    with open_store(store) as opened:
        return snapshot(opened), total


def test_sigkill_at_random_points_then_rerun_equals_uninterrupted_duckdb(
    emulator_process: str, reference: tuple[Snapshot, int], tmp_path: Path
) -> None:
    """SIGKILL after k committed windows (k random, 10+ points), re-run: the DuckDB store equals the reference."""
    snap, total = reference
    assert total >= 30
    _crash_and_recover(
        emulator_process, tmp_path, lambda i: str(tmp_path / f"kill{i}.duckdb"), KILL_POINTS, snap, total
    )


@pytest.fixture
def pg_databases(_pg_cluster: object) -> Callable[[int], str]:
    """A factory of fresh PostgreSQL databases on the session cluster."""
    counter = iter(range(10**6))

    def make(_i: int) -> str:
        return _pg_cluster.createdb(f"kill_{os.getpid()}_{next(counter)}_{random.randrange(10**9)}")  # type: ignore[attr-defined, no-any-return]

    return make


def test_sigkill_at_random_points_then_rerun_equals_uninterrupted_postgres(
    emulator_process: str, reference: tuple[Snapshot, int], tmp_path: Path, pg_databases: Callable[[int], str]
) -> None:
    """The same crash test on PostgreSQL; its recovered store also equals the DuckDB reference."""
    snap, total = reference
    _crash_and_recover(emulator_process, tmp_path, pg_databases, PG_KILL_POINTS, snap, total)


def _interrupt_after(store: str, url: str, cwd: Path, windows: int) -> tuple[int, str]:
    """Start a sync, send SIGINT (Ctrl-C) after its ``windows``-th committed window; its exit code and stderr."""
    proc = subprocess.Popen(
        _sync_cmd(store), env=_env(url), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    seen = 0
    lines: list[str] = []
    with proc.stderr:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("{") and json.loads(line).get("message") == "window committed":
                seen += 1
                if seen == windows:
                    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=60), "".join(lines)


def test_ctrl_c_exits_cleanly_and_the_rerun_finishes_the_job(
    emulator_process: str, reference: tuple[Snapshot, int], tmp_path: Path
) -> None:
    """SIGINT mid-run: exit code 130 with one 'interrupted' line, the run recorded as interrupted, re-run completes."""
    snap, total = reference
    store = str(tmp_path / "ctrl_c.duckdb")
    code, stderr = _interrupt_after(store, emulator_process, tmp_path, random.Random(SEED).randrange(1, total // 2))
    assert code == 130, stderr
    assert "error: interrupted" in stderr and "Traceback" not in stderr
    with open_store(store) as opened:
        assert opened.query("SELECT status FROM sync_runs") == [("interrupted",)]
    _run(store, emulator_process, tmp_path)
    with open_store(store) as opened:
        assert snapshot(opened) == snap
