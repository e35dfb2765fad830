"""PostgreSQL re-sync benchmark: `usageledger sync --since Nd` run again over the days it already stored.

Setting: the CLI's own emulator (``usageledger emulator``, fixed clock, one synthetic organisation) and a
temporary PostgreSQL cluster (the tests' fixture, ``fsync=on``, autovacuum as the server's defaults set it). For
each scenario, each span (``--days``, default 10, 20 and 40) and each round, each code under test syncs every
default stream into a fresh database (``usageledger sync --store postgresql://... --since Nd``, the first sync),
then at once the re-sync, which reads the span again and compares every window with the rows it stored. Both are
timed as processes (start to exit). The scenarios (``--scenarios``): ``same``, the re-sync reads what the first
stored (each window's unchanged check only); ``changed``, the data changed in between (emulators with
``--revisions`` over the whole span, the re-sync's an hour later and ``--now`` likewise: every bucket restated, so
each window's log, delete, update and insert statements run). The codes under test alternate within a round (old,
new, then new, old in the next round), so the machine's load falls on both alike.

The old code is another checkout's ``src`` (``--old-src``: e.g. ``git archive <commit> src | tar -x -C /tmp/old``),
run by the same interpreter with its own ``PYTHONPATH``; without it only this checkout is measured. Each run also
notes whether ``costs`` had been analysed before the re-sync (by autovacuum, or by a first sync that analyses the
tables it wrote that never were): the stored side's statistics, which the re-sync's plans read. A DuckDB file,
synced and re-synced the same way at the largest span by this checkout (the last scenario's way), is the check
that DuckDB has no such cost.

Run: ``.venv/bin/python bench/bench_pg_resync.py --old-src /tmp/old/src`` (``--days 10,20,40 --rounds 3
--scenarios same,changed``).
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


def start_emulator(days: int, *, now: int = NOW, revised: bool = False) -> tuple[subprocess.Popen[str], str]:
    """``usageledger emulator`` on a free port with a fixed clock (``now``); the process and its base URL. Revised:
    every bucket of the last ``days + 5`` days still grows (``--revisions``), so one an hour later differs in each."""
    env = environment(REPO / "src")
    args = ["emulator", "--port", "0", "--now", str(now), "--seed", "7", "--days", str(days + 10)]
    if revised:
        args += ["--revisions", "--revision-window", f"{days + 5}d"]
    proc = subprocess.Popen(cli(*args), env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready at " not in line:
        proc.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return proc, line.split("ready at ", 1)[1].strip()


def sync(src: Path, config: Path, store: str, days: int, now: int = NOW) -> float:
    """One ``usageledger sync --since <days>d`` run from the code in ``src`` at ``now``; its wall time."""
    env = environment(src)
    args = ["sync", "--config", str(config), "--store", store, "--now", str(now), "--since", f"{days}d"]
    started = time.perf_counter()
    done = subprocess.run(cli(*args, "--quiet", "--no-directory"), env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sync failed ({done.returncode}): {done.stderr.strip()}")
    return wall


def analysed(url: str) -> bool:
    """Whether ``costs`` of the database ``url`` has been analysed (by autovacuum, or by the sync that wrote it)."""
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


def config_for(folder: Path, name: str, url: str) -> Path:
    """A config file ``name`` naming one org ``main`` served at ``url``."""
    path = folder / name
    path.write_text(f'[[orgs]]\nname = "main"\nbase_url = "{url}"\n')
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", default="10,20,40", help="Spans synced, in days, comma-separated.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="same,changed", help="same, changed or both, comma-separated.")
    parser.add_argument("--old-src", type=Path, default=None, help="The src folder of the code to compare with.")
    args = parser.parse_args()
    spans = [int(d) for d in args.days.split(",")]
    scenarios = [s for s in args.scenarios.split(",") if s]
    if not scenarios or set(scenarios) - {"same", "changed"}:
        raise SystemExit(f"--scenarios: {args.scenarios!r}; give same, changed or same,changed")
    codes = [("new", REPO / "src")] + ([("old", args.old_src.resolve())] if args.old_src else [])
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores", flush=True)
    later = NOW + 3600
    emulators = [start_emulator(max(spans)), start_emulator(max(spans), revised=True)]
    emulators.append(start_emulator(max(spans), now=later, revised=True))
    try:
        with tempfile.TemporaryDirectory() as tmp, _Cluster() as cluster:
            folder = Path(tmp)
            plain, before, after = (config_for(folder, f"{i}.toml", url) for i, (_, url) in enumerate(emulators))
            # Which emulator each sync of a scenario reads, and at what --now.
            setting = {"same": ((plain, NOW), (plain, NOW)), "changed": ((before, NOW), (after, later))}
            for cfg, now in {c for pair in setting.values() for c in pair}:
                sync(REPO / "src", cfg, str(folder / f"warm{now}{cfg.stem}.duckdb"), max(spans), now)  # fills caches
            results: dict[tuple[str, str, int], list[tuple[float, float, bool]]] = {}
            n = 0
            for scenario in scenarios:
                (cfg1, now1), (cfg2, now2) = setting[scenario]
                for days in spans:
                    for r in range(args.rounds):
                        order = codes if r % 2 else list(reversed(codes))
                        for name, src in order:
                            n += 1
                            store = cluster.createdb(f"resync_{n}")
                            first = sync(src, cfg1, store, days, now1)
                            stats = analysed(store)
                            again = sync(src, cfg2, store, days, now2)
                            results.setdefault((scenario, name, days), []).append((first, again, stats))
                            print(
                                f"{scenario:7s} {days:4d} days, round {r + 1}, {name}: first sync {first:6.2f}s,"
                                f" re-sync {again:6.2f}s (costs {costs_rows(store):,} rows, analysed before:"
                                f" {'yes' if stats else 'no'})",
                                flush=True,
                            )
            print("\nmedian of the rounds (first sync / re-sync):")
            for scenario in scenarios:
                for days in spans:
                    cells = []
                    for name, _ in codes:
                        runs = results[(scenario, name, days)]
                        first = statistics.median(f for f, _, _ in runs)
                        again = statistics.median(a for _, a, _ in runs)
                        cells.append(f"{name} {first:.2f} / {again:.2f} s")
                    print(f"{scenario:7s} {days:4d} days: " + "; ".join(cells))
            duck = str(folder / "resync.duckdb")
            (cfg1, now1), (cfg2, now2) = setting[scenarios[-1]]
            first = sync(REPO / "src", cfg1, duck, max(spans), now1)
            again = sync(REPO / "src", cfg2, duck, max(spans), now2)
            print(f"DuckDB, {scenarios[-1]}, {max(spans)} days, new: first sync {first:.2f}s, re-sync {again:.2f}s")
    finally:
        for emulator, _ in emulators:
            emulator.terminate()
        for emulator, _ in emulators:
            emulator.wait(timeout=60)


if __name__ == "__main__":
    main()
