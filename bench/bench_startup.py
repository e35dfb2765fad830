"""Start-up benchmark: wall time and peak RSS of `usageledger --help`, `version`, `version --help`, `report --help`,
and of two commands that read a store: `status` and `report` on a fresh DuckDB store (made once, in a temporary
folder, by this bench).

Each command runs as a user runs it (a fresh interpreter: ``python -c "from usageledger.cli import main; main()"``),
``--runs`` times, alternating between the interpreters given, so both meet the same machine load. Reported: the
median wall time, the median CPU time (user + system, from ``wait4``: less swayed by the load of a shared machine than
the wall time) and the median peak RSS (``wait4``'s ``ru_maxrss``) per command and interpreter.

Run: ``.venv/bin/python bench/bench_startup.py --before /work/main/.venv/bin/python`` (``--before`` is an interpreter
with the code to compare against, e.g. a checkout of main with its own venv; leave it out to measure this tree only).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HELP: tuple[tuple[str, ...], ...] = (("--help",), ("version",), ("version", "--help"), ("report", "--help"))


def store_commands(store: str) -> tuple[tuple[str, ...], ...]:
    """The commands that open a store: what a user runs most after a sync."""
    return (("status", "--store", store), ("report", "--store", store, "--since", "2026-11-01"))


ENTRY = "from usageledger.cli import main; main()"


def once(python: str, argv: tuple[str, ...]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-c", ENTRY, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{python} {' '.join(argv)} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=None, help="Interpreter running the code to compare against.")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-startup-")
    store = os.path.join(folder, "usage.duckdb")
    # Made in a process of its own: were the bench to import the store (pyarrow, DuckDB), each command's forked
    # child would count the bench's pages in its peak RSS until it execs.
    make = f"from usageledger.store import open_store\nwith open_store({store!r}) as s:\n    s.migrate()"
    subprocess.run([sys.executable, "-c", make], check=True)
    try:
        run(args, (*HELP, *store_commands(store)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace, commands: tuple[tuple[str, ...], ...]) -> None:
    pythons = {"after": sys.executable} if args.before is None else {"before": args.before, "after": sys.executable}
    results: dict[tuple[str, tuple[str, ...]], list[tuple[float, float, float]]] = {}
    for python in pythons.values():  # one unmeasured run each: warm the page cache and the .pyc files
        for argv in commands:
            once(python, argv)
    for _ in range(args.runs):
        for label, python in pythons.items():
            for argv in commands:
                results.setdefault((label, argv), []).append(once(python, argv))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"median of {args.runs} runs, alternating, python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"load average at the end (1, 5, 15 min): {load}")
    print(f"{'command':<44}{'':>8}{'wall':>10}{'CPU':>10}{'peak RSS':>12}")
    for argv in commands:
        for label in pythons:
            runs = results[(label, argv)]
            wall = statistics.median(w for w, _, _ in runs)
            cpu = statistics.median(c for _, c, _ in runs)
            rss = statistics.median(r for _, _, r in runs)
            name = "usageledger " + " ".join(a if not a.endswith(".duckdb") else "STORE" for a in argv)
            print(f"{name:<44}{label:>8}{wall * 1000:>8.0f}ms{cpu * 1000:>8.0f}ms{rss:>9.0f} MB")


if __name__ == "__main__":
    main()
