"""Store write throughput: a year of hourly usage committed into DuckDB, as the sync's writer commits it.

Setting: one unmeasured in-process sync (11 usage endpoints, default grouping, hourly, ``--days`` days) from an
emulator process with no latency gives the rows. They are read back as Arrow, cut into the sync's windows, and
committed into fresh stores by ``BaseStore.commit_windows`` in batches of ``--batch`` windows (the sync's: at
most ``8 x concurrency``): the revision log's wide insert, the data insert, the key check at commit, the streams
update and the commit itself, with no HTTP and no decoding. Measured side by side in one run:

1. a fresh DuckDB store (the key checked at commit, no index);
2. the same with every endpoint table keyed by a primary key (a store created before the check at commit).

Prints rows/s of wall time and of process CPU (DuckDB's own threads included) for each.

Run: ``.venv/bin/python bench/bench_store_write.py`` (``--days 365 --batch 16``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import NOW, emulator, run_sync
from usageledger import catalogue, rules, timeutil
from usageledger.store import BaseStore, Stream, WindowWrite, open_store, table_for
from usageledger.store._types import PreparedWindow
from usageledger.store.schema import TableSpec


def windows_of(source: Path, streams: list[Stream], since: int) -> list[tuple[Stream, WindowWrite, pa.Table]]:
    """Every stream's rows, cut into the sync's windows, in the sync's order (round-robin over streams)."""
    per_stream: list[list[tuple[Stream, WindowWrite, pa.Table]]] = []
    with duckdb.connect(str(source), read_only=True) as con:
        for stream in streams:
            spec = table_for(stream.endpoint)
            schema = spec.arrow_schema()
            columns = ", ".join(f'"{name}"' for name in schema.names)
            rows = con.sql(f"SELECT {columns} FROM {spec.name} ORDER BY bucket_start, group_key").to_arrow_table()
            rows = rows.cast(schema)
            starts = rows.column("bucket_start").cast(pa.int64()).to_numpy()
            out = []
            for window in rules.plan_windows(stream.endpoint, since, NOW, "1h"):
                lo, hi = starts.searchsorted(window.start), starts.searchsorted(window.end)
                write = WindowWrite("bench", stream, (), window.start, window.end, "run", NOW, fresh=True)
                out.append((stream, write, rows.slice(lo, hi - lo)))
            per_stream.append(out)
    ordered = []
    for i in range(max(len(s) for s in per_stream)):
        ordered += [s[i] for s in per_stream if i < len(s)]
    return ordered


def keyed(store: BaseStore, specs: list[TableSpec]) -> None:
    """Recreate the endpoint tables with the primary key they had before the key check at commit."""
    for spec in specs:
        ddl = spec.create_sql("duckdb")
        store.execute(f"DROP VIEW IF EXISTS {spec.daily_view}")
        store.execute(f"DROP TABLE {spec.name}")
        store.execute(ddl[: ddl.rindex(")")] + ",\n  PRIMARY KEY (org, stream, bucket_start, group_key)\n)")


def commit_all(
    path: Path, windows: list[tuple[Stream, WindowWrite, pa.Table]], batch: int, pk: bool
) -> tuple[float, float, int]:
    with open_store(str(path)) as store:
        if pk:
            keyed(store, [table_for(s.endpoint) for s in {w[0].id: w[0] for w in windows}.values()])
        for stream in {w[0].id: w[0] for w in windows}.values():
            store.register_stream("bench", stream)
        prepared = [store.prepare_table(write, table) for _, write, table in windows]
        t0, c0 = time.perf_counter(), time.process_time()
        rows = 0
        for i in range(0, len(prepared), batch):
            part: list[WindowWrite | PreparedWindow] = list(prepared[i : i + batch])
            rows += sum(c.inserted for c in store.commit_windows(part))
        return time.perf_counter() - t0, time.process_time() - c0, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument(
        "--batch", type=int, default=16, help="Windows per transaction (the sync: up to 8 x concurrency)."
    )
    args = parser.parse_args()
    since = timeutil.floor(NOW - args.days * 86400, "1h")
    streams = [Stream.create(ep, "1h", ep.default_group_by) for ep in catalogue.USAGE_ENDPOINTS]
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores,"
        f" duckdb {duckdb.__version__}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-write-"))
    try:
        with emulator(0.0) as url:
            run_sync(url, str(tmp / "source.duckdb"), streams, since, 8)
        windows = windows_of(tmp / "source.duckdb", streams, since)
        print(
            f"{args.days} days hourly, {len(windows)} windows, {sum(t.num_rows for *_, t in windows):,} rows,"
            f" {args.batch} windows per transaction"
        )
        print(f"{'store':<28} {'wall':>8} {'cpu':>8} {'rows/s (wall)':>14} {'rows/s (cpu)':>13} {'file':>9}")
        for label, pk in (("no index, key checked", False), ("primary key (older stores)", True)):
            path = tmp / f"{'pk' if pk else 'check'}.duckdb"
            wall, cpu, rows = commit_all(path, windows, args.batch, pk)
            size = path.stat().st_size / 2**20
            print(f"{label:<28} {wall:>7.2f}s {cpu:>7.2f}s {rows / wall:>14,.0f} {rows / cpu:>13,.0f} {size:>6.1f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
