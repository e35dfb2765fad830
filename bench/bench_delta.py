"""Delta export benchmark: what a re-run rewrites after the ledger changed, against a fresh export.

Setting: an in-process emulator with revisions (fixed clock), a year of every default daily stream synced into a
DuckDB file. Then, side by side in one run:

1. the first ``export_delta`` (every month partition written);
2. a re-run with nothing changed (no partition written, no new table version);
3. the clock moved by ``--move`` days (revisions of recent buckets, new days), an incremental sync, and a re-run:
   the month partitions it rewrote, of how many, its time, and the rows it inserted, updated and deleted;
4. a fresh export of the same store into a new directory, for the time a full rewrite costs, and a check that the
   merged tables equal it (read back with ``deltalake``).

Run: ``.venv/bin/python bench/bench_delta.py`` (``--days 365 --move 2``).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from deltalake import DeltaTable

from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.export_delta import DeltaExportResult, export_delta
from usageledger.store import default_streams, open_store
from usageledger.sync import Org, SyncOptions, sync

KEY = "sk-admin-bench-key"
NOW = 1795176000  # 2026-11-20T12:00:00Z, the tests' fixed clock
DAY = 86400
SORT = [(c, "ascending") for c in ("org", "stream", "bucket_start", "group_key")]


def do_sync(store: object, now: int, since: int | None) -> None:
    config = EmulatorConfig(seed=3, days=400, now=now, revisions=True)
    with run_server(Emulator(config)) as url:
        result = sync(store, [Org("bench", KEY, url)], default_streams(), SyncOptions(since=since), clock=lambda: now)  # type: ignore[arg-type]
    assert result.ok, result.errors


def timed(store: object, path: Path) -> tuple[DeltaExportResult, float]:
    started = time.perf_counter()
    result = export_delta(store, path)  # type: ignore[arg-type]
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--move", type=int, default=2, help="Days the clock moves before the re-run.")
    args = parser.parse_args()
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp, open_store(str(Path(tmp) / "ledger.duckdb")) as store:
        do_sync(store, NOW, NOW - args.days * DAY)
        lake = Path(tmp) / "lake"
        first, t_first = timed(store, lake)
        print(
            f"first export: {first.total:,} rows in {len(first.tables)} tables, {first.rewritten} of {first.months}"
            f" month partitions written, {t_first:.2f}s"
        )
        same, t_same = timed(store, lake)
        print(f"re-run, nothing changed: {same.rewritten} of {same.months} partitions written, {t_same:.2f}s")
        do_sync(store, NOW + args.move * DAY, None)
        merged, t_merged = timed(store, lake)
        ins = sum(t.inserted for t in merged.tables)
        upd = sum(t.updated for t in merged.tables)
        dele = sum(t.deleted for t in merged.tables)
        months = sorted({m for t in merged.tables for m in t.rewritten})
        print(
            f"re-run after the clock moved {args.move} days: {merged.rewritten} of {merged.months} partitions rewritten"
            f" (months {', '.join(months)}), +{ins:,} ~{upd:,} -{dele:,} rows, {t_merged:.2f}s"
        )
        fresh, t_fresh = timed(store, Path(tmp) / "fresh")
        print(f"fresh export of the same store: {fresh.rewritten} partitions written, {t_fresh:.2f}s")
        for t in merged.tables:
            a = DeltaTable(str(t.path)).to_pyarrow_table().sort_by(SORT)
            b = DeltaTable(str(Path(tmp) / "fresh" / t.table)).to_pyarrow_table().sort_by(SORT)
            assert a.equals(b), f"{t.table}: the merged table differs from the fresh export"
        print("merged tables equal the fresh export: yes")


if __name__ == "__main__":
    main()
