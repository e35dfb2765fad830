"""PostgreSQL re-sync benchmark: `usageledger sync --since Nd` run again over the days it already stored.

Setting: the CLI's own emulator (``usageledger emulator``, fixed clock, one synthetic organisation) and a
temporary PostgreSQL cluster (the tests' fixture, ``fsync=on``, autovacuum as the server's defaults set it). For
each span (``--days``, default 30, 60 and 120) and each round, each code under test syncs every default stream
into a fresh database (``usageledger sync --store postgresql://... --since Nd``, the first sync), then runs the
same command again at once: the re-sync, which reads the span again and compares every window with the rows it
stored. Both are timed as processes (start to exit). The codes under test alternate within a round (old, new, then
new, old in the next round), so the machine's load falls on both alike.

The old code is another checkout's ``src`` (``--old-src``: e.g. ``git archive <commit> src | tar -x -C /tmp/old``),
run by the same interpreter with its own ``PYTHONPATH``; without it only this checkout is measured. Each run also
notes whether autovacuum had analysed ``costs`` before the re-sync (the stored side's statistics, which the re-sync's
plans also read). A DuckDB file, synced and re-synced the same way at the largest span by this checkout, is the
check that DuckDB has no such cost.

Run: ``.venv/bin/python bench/bench_pg_resync.py --old-src /tmp/old/src`` (``--days 10,20,40 --rounds 3``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEY = "sk-admin-bench-key"
NOW = 1795176000  # 2026-11-20T12:00:00Z, the tests' fixed clock
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fixtures.postgres import _Cluster  # noqa: E402


def cli(*args: str) -> list[str]:
    """The command line of ``usageledger <args>`` (the code imported is the one ``PYTHONPATH`` names)."""
    return [sys.executable, "-c", "from usageledger.cli import main; main()", *args]


def environment(src: Path) -> dict[str, str]:
    """This process's environment without API or usageledger settings, importing the code in ``src``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_", "PYTHONPATH"))}
    env["PYTHONPATH"] = str(src)
    env["OPENAI_ADMIN_KEY"] = KEY
    return env


def start_emulator(days: int) -> tuple[subprocess.Popen[str], str]:
    """``usageledger emulator`` on a free port with a fixed clock; the process and its base URL."""
    env = environment(REPO / "src")
    args = ["emulator", "--port", "0", "--now", str(NOW), "--seed", "7", "--days", str(days + 10)]
    proc = subprocess.Popen(cli(*args), env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready at " not in line:
        proc.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return proc, line.split("ready at ", 1)[1].strip()


def sync(src: Path, config: Path, store: str, days: int) -> float:
    """One ``usageledger sync --since <days>d`` run from the code in ``src``; its wall time."""
    env = environment(src)
    args = ["sync", "--config", str(config), "--store", store, "--now", str(NOW), "--since", f"{days}d"]
    started = time.perf_counter()
    done = subprocess.run(cli(*args, "--quiet", "--no-directory"), env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sync failed ({done.returncode}): {done.stderr.strip()}")
    return wall


def analysed(url: str) -> bool:
    """Whether ``costs`` of the database ``url`` has been analysed (by autovacuum: nothing else analyses it)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        row = con.execute(
            "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL FROM pg_stat_user_tables"
            " WHERE relname = 'costs'"
        ).fetchone()
    return bool(row and row[0])


def costs_rows(url: str) -> int:
    """The rows ``costs`` of the database ``url`` holds."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        row = con.execute("SELECT COUNT(*) FROM costs").fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", default="10,20,40", help="Spans synced, in days, comma-separated.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--old-src", type=Path, default=None, help="The src folder of the code to compare with.")
    args = parser.parse_args()
    spans = [int(d) for d in args.days.split(",")]
    codes = [("new", REPO / "src")] + ([("old", args.old_src.resolve())] if args.old_src else [])
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores", flush=True)
    emulator, url = start_emulator(max(spans))
    try:
        with tempfile.TemporaryDirectory() as tmp, _Cluster() as cluster:
            config = Path(tmp) / "usageledger.toml"
            config.write_text(f'[[orgs]]\nname = "main"\nbase_url = "{url}"\n')
            sync(REPO / "src", config, str(Path(tmp) / "warm.duckdb"), max(spans))  # fills the emulator's caches
            results: dict[tuple[str, int], list[tuple[float, float, bool]]] = {}
            n = 0
            for days in spans:
                for r in range(args.rounds):
                    order = codes if r % 2 else list(reversed(codes))
                    for name, src in order:
                        n += 1
                        store = cluster.createdb(f"resync_{n}")
                        first = sync(src, config, store, days)
                        stats = analysed(store)
                        again = sync(src, config, store, days)
                        results.setdefault((name, days), []).append((first, again, stats))
                        print(
                            f"{days:4d} days, round {r + 1}, {name}: first sync {first:6.2f}s, re-sync {again:6.2f}s"
                            f" (costs {costs_rows(store):,} rows, analysed before: {'yes' if stats else 'no'})",
                            flush=True,
                        )
            print("\nmedian of the rounds (first sync / re-sync):")
            for days in spans:
                cells = []
                for name, _ in codes:
                    runs = results[(name, days)]
                    first = statistics.median(f for f, _, _ in runs)
                    again = statistics.median(a for _, a, _ in runs)
                    cells.append(f"{name} {first:.2f} / {again:.2f} s")
                print(f"{days:4d} days: " + "; ".join(cells))
            duck = str(Path(tmp) / "resync.duckdb")
            first = sync(REPO / "src", config, duck, max(spans))
            again = sync(REPO / "src", config, duck, max(spans))
            print(f"DuckDB, {max(spans)} days, new: first sync {first:.2f}s, re-sync {again:.2f}s")
    finally:
        emulator.terminate()
        emulator.wait(timeout=60)


if __name__ == "__main__":
    main()
