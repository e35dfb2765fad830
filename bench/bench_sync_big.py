"""Sync of a big organisation as a user runs it: wall time, CPU and peak RSS of ``usageledger sync``, before and after.

Setting: a ``usageledger emulator --projects 300 --users 50 --keys 5 --archived 20 --names world`` process (or
``--small``: the default organisation), then ``usageledger sync --store S --since 60d --now <today 00:00 UTC> -q``
(``--since 90d``: another span) processes into fresh DuckDB files, alternating this tree's ``src`` with ``--before
SRC`` (another checkout's ``src``, e.g. ``git worktree add /tmp/old main``), both run by this interpreter with
``PYTHONPATH`` at their ``src``. Each run's wall time, CPU time (user + system: the fairer figure on a shared
machine) and peak RSS (``wait4`` of the child) are printed side by side; afterwards the last stores of both are
compared table by table (every column but ``synced_at``, ``EXCEPT ALL`` both ways) and stream by stream.
``--now`` is pinned to midnight, so no bucket is still growing and both read the same rows.

Run: ``.venv/bin/python bench/bench_sync_big.py --before /tmp/old/src`` (``--rounds 2``, ``--small``,
``--since 90d``).
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent.parent / "src"
BIG = ["--projects", "300", "--users", "50", "--keys", "5", "--archived", "20", "--names", "world"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sync(src: Path, store: Path, url: str, now: str, since: str) -> tuple[float, float, float]:
    """One CLI sync into a fresh ``store``: (wall seconds, CPU seconds (user + system), peak RSS in MB)."""
    env = {**os.environ, "PYTHONPATH": str(src), "OPENAI_BASE_URL": url, "OPENAI_ADMIN_KEY": "sk-admin-local"}
    command = [sys.executable, "-m", "usageledger", "sync", "--store", str(store), "--since", since, "--now", now, "-q"]
    started = time.perf_counter()
    with subprocess.Popen(command, env=env) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"sync exited {proc.returncode}")
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _compare(a: Path, b: Path) -> None:
    con = duckdb.connect()
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY); ATTACH '{b}' AS b (READ_ONLY)")
    names = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'a' AND table_type = 'BASE TABLE'"
        " AND (table_name = 'costs' OR table_name LIKE 'usage_%') ORDER BY 1"
    ).fetchall()
    rows = 0
    for (table,) in names:
        cols = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'a' AND table_name = ?"
            " AND column_name <> 'synced_at' ORDER BY ordinal_position",
            [table],
        ).fetchall()
        c = ", ".join(f'"{name}"' for (name,) in cols)
        n = con.execute(f"SELECT count(*) FROM a.{table}").fetchone()[0]  # type: ignore[index]
        apart = con.execute(
            f"SELECT (SELECT count(*) FROM (SELECT {c} FROM a.{table} EXCEPT ALL SELECT {c} FROM b.{table}))"
            f" + (SELECT count(*) FROM (SELECT {c} FROM b.{table} EXCEPT ALL SELECT {c} FROM a.{table}))"
        ).fetchone()[0]  # type: ignore[index]
        rows += n
        print(f"  {table}: {n} rows, {apart} apart")
    marks = "SELECT stream, watermark, row_count FROM {}.streams ORDER BY 1"
    same = con.execute(marks.format("a")).fetchall() == con.execute(marks.format("b")).fetchall()
    print(f"  {rows} rows in all; streams' watermarks and counts {'the same' if same else 'DIFFER'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the src folder of the code to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--small", action="store_true", help="the emulator's default organisation")
    parser.add_argument("--since", default="60d", help="the span synced (sync --since)")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    port = _port()
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    emulator = [sys.executable, "-m", "usageledger", "emulator", "--port", str(port), *([] if args.small else BIG)]
    now = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
    with (
        subprocess.Popen(emulator, env=env, stdout=subprocess.PIPE, text=True) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        try:
            assert server.stdout is not None
            server.stdout.readline()  # "Emulator ready at ..."
            url = f"http://127.0.0.1:{port}/v1"
            for i in range(1, args.rounds + 1):
                for name, src in (("before", args.before), ("after", HERE)):
                    store = Path(tmp) / f"{name}.duckdb"
                    store.unlink(missing_ok=True)
                    wall, cpu, rss = _sync(src, store, url, now, args.since)
                    print(f"{name} {i}: {wall:.2f} s, CPU {cpu:.2f} s, peak RSS {rss:,.0f} MB", flush=True)
            _compare(Path(tmp) / "before.duckdb", Path(tmp) / "after.duckdb")
        finally:
            server.terminate()


if __name__ == "__main__":
    main()
