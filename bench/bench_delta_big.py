"""Delta export of a big store as a user runs it: wall time and peak RSS of ``usageledger export --format delta``,
a first export, a re-run with nothing new and a re-run after a few rows changed, before and after.

Setting: a store synced beforehand (e.g. the 300-project org of ``bench/BENCHMARKS.md``, "Exports of a big
organisation"). Each round, alternating this tree's ``src`` with ``--before SRC`` (another checkout's ``src``), both
run by this interpreter with ``PYTHONPATH`` at their ``src``: a first export into a new directory; a re-run into it;
then a re-run of a copy of the store in which a few rows changed, into a copy of the first export's lake: in the
costs table five rows' money moved by 1E-18 in one month, in ``usage_completions`` one row deleted, in
``usage_embeddings`` three rows' ``input_tokens`` one more. Each run's wall time and peak RSS (``getrusage`` of the
child) are printed side by side. Afterwards the last lakes of both are compared table by table (``deltalake`` to
pyarrow, sorted on the key), with a fresh export of the changed store, and with that store (row count and the
costs' sum), and their versions printed.

Run: ``.venv/bin/python bench/bench_delta_big.py --store big.duckdb --before /tmp/old/src`` (``--rounds 2``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent.parent / "src"
KEY = [(c, "ascending") for c in ("org", "stream", "bucket_start", "group_key")]
CHANGES = (
    "UPDATE costs SET amount_value = amount_value + 0.000000000000000001 WHERE rowid IN (SELECT rowid FROM costs"
    " WHERE bucket_start >= (SELECT MAX(bucket_start) FROM costs) - INTERVAL 20 DAY ORDER BY rowid LIMIT 5)",
    "DELETE FROM usage_completions WHERE rowid IN (SELECT MIN(rowid) FROM usage_completions)",
    "UPDATE usage_embeddings SET input_tokens = input_tokens + 1 WHERE rowid IN"
    " (SELECT rowid FROM usage_embeddings ORDER BY bucket_start DESC, rowid LIMIT 3)",
)


def _export(src: Path, store: Path, lake: Path) -> tuple[float, float, str]:
    """One CLI export: (wall seconds, peak RSS in MB, its summary line)."""
    command = [sys.executable, "-m", "usageledger", "export", "--store", str(store), "--format", "delta"]
    started = time.perf_counter()
    with subprocess.Popen(
        [*command, "-o", str(lake)], env={**os.environ, "PYTHONPATH": str(src)}, stderr=subprocess.PIPE, text=True
    ) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        said = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"export exited {os.waitstatus_to_exitcode(status)}: {said}")
    summary = next((line for line in said.splitlines() if line.startswith("Exported")), said.strip())
    return time.perf_counter() - started, usage.ru_maxrss / 1024, summary


def _compare(a: Path, b: Path, fresh: Path, store: Path) -> None:
    from deltalake import DeltaTable

    con = duckdb.connect(str(store), read_only=True)
    for table in sorted(p.name for p in a.iterdir()):
        x, y = DeltaTable(str(a / table)), DeltaTable(str(b / table))
        rows_x, rows_y = x.to_pyarrow_table().sort_by(KEY), y.to_pyarrow_table().sort_by(KEY)
        anew = DeltaTable(str(fresh / table)).to_pyarrow_table().sort_by(KEY)
        held = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
        line = f"  {table}: {rows_x.num_rows} rows ({held} in the store), versions {x.version()}/{y.version()}"
        if table == "costs":
            import pyarrow.compute as pc

            total = con.execute("SELECT SUM(amount_value) FROM costs").fetchone()[0]  # type: ignore[index]
            line += f", costs {pc.sum(rows_x.column('amount_value')).as_py()} (store {total})"
        print(f"{line}, before/after {'equal' if rows_x.equals(rows_y) else 'DIFFER'}", end="")
        print(f", after/fresh export {'equal' if rows_y.equals(anew) else 'DIFFER'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--before", type=Path, required=True, help="the src directory of the code to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-delta-"))
    changed = work / "changed.duckdb"
    shutil.copy(args.store, changed)
    with duckdb.connect(str(changed)) as con:
        for sql in CHANGES:
            con.execute(sql)
    lakes: dict[str, Path] = {}
    try:
        for n in range(1, args.rounds + 1):
            for name, src in (("before", args.before.resolve()), ("after", HERE)):
                lake = work / f"{name}-{n}"
                first = _export(src, args.store, lake)
                again = _export(src, args.store, lake)
                shutil.copytree(lake, work / f"{name}-{n}-changed")
                shutil.rmtree(lake)  # the no-change re-run wrote nothing: the copy is the first export's lake
                lakes[name] = work / f"{name}-{n}-changed"
                moved = _export(src, changed, lakes[name])
                for what, (wall, rss, said) in (("first", first), ("re-run", again), ("changed", moved)):
                    print(f"round {n} {name:6} {what:8} {wall:6.2f} s {rss:7.0f} MB  {said}", flush=True)
        _export(HERE, changed, work / "fresh")
        _compare(lakes["before"], lakes["after"], work / "fresh", changed)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
