"""What the revision log costs: a year of the emulator synced into DuckDB, with and without the log.

Setting: the emulator's default organisation (in this process, served on loopback, no injected latency, its cache
warmed by one unmeasured sync) with ``revisions`` on, every default stream, ``--since 365d`` into a fresh DuckDB
file; then the emulator's clock moves two days on and a second sync re-reads the lag window (the restatement path:
compare, log, upsert). "Without" replaces the store's one log step (``BaseStore._log_revisions``) with nothing, so
the two runs differ by the log alone. Reported: the median wall time of each sync over ``--repeat`` runs, the ratio,
the time spent inside the log step (a direct measure, less sensitive to a busy machine than the wall-time ratio),
the log's entries and the file size after a checkpoint.

Run: ``.venv/bin/python bench/bench_revisions.py`` (``--repeat 5``; ``--hourly`` adds hourly completions).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any, Final

from usageledger import timeutil
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.store import BaseStore, Stream, default_streams, open_store
from usageledger.sync import Org, SyncOptions, sync

NOW: Final = 1795176000  # 2026-11-20T12:00:00Z
DAY: Final = 86400
KEY: Final = "sk-admin-bench-revisions"


def _one(url: str, clock: list[float], streams: tuple[Stream, ...], folder: str, label: str) -> dict[str, Any]:
    path = os.path.join(folder, f"{label}.duckdb")
    with open_store(path) as store:
        clock[0] = float(NOW)
        since = timeutil.floor(NOW - 365 * DAY, "1d")

        def run(**options: Any) -> float:
            started = time.perf_counter()
            result = sync(store, [Org("bench", KEY, url)], streams, SyncOptions(**options), clock=lambda: clock[0])
            assert result.ok, result.errors
            return time.perf_counter() - started

        first = run(since=since)
        clock[0] += 2 * DAY
        second = run()
        entries = store.query("SELECT COUNT(*) FROM revisions")[0][0]
        store.execute("CHECKPOINT")
    size = os.path.getsize(path)
    os.unlink(path)
    return {"first": first, "second": second, "entries": entries, "size": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hourly", action="store_true", help="Add an hourly completions stream grouped by model.")
    args = parser.parse_args()
    streams = default_streams()
    if args.hourly:
        streams = (*streams, Stream.create("completions", "1h", ("model",)))
    clock = [float(NOW)]
    emu = Emulator(EmulatorConfig(revisions=True), clock=lambda: clock[0])
    original: Callable[..., None] = BaseStore._log_revisions
    inside = [0.0]

    def logging_on(self: BaseStore, sql: str, params: Any) -> None:
        """The log step, timed."""
        started = time.perf_counter()
        original(self, sql, params)
        inside[0] += time.perf_counter() - started

    def logging_off(self: BaseStore, sql: str, params: Any) -> None:
        """The log step left out."""

    with run_server(emu) as url, tempfile.TemporaryDirectory() as folder:
        _one(url, clock, streams, folder, "warm")  # fills the emulator's cache for both clocks
        inside[0] = 0.0
        results: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
        for i in range(args.repeat):
            for label, step in (
                (("with", logging_on), ("without", logging_off))
                if i % 2
                else (
                    ("without", logging_off),
                    ("with", logging_on),
                )
            ):
                BaseStore._log_revisions = step  # type: ignore[method-assign]
                results[label].append(_one(url, clock, streams, folder, f"{label}{i}"))
        BaseStore._log_revisions = original  # type: ignore[method-assign]
    print(f"{len(streams)} streams, 365 days, median of {args.repeat} (alternating order)")
    for phase in ("first", "second"):
        on = statistics.median(r[phase] for r in results["with"])
        off = statistics.median(r[phase] for r in results["without"])
        print(f"{phase:>6} sync: with the log {on:.2f} s, without {off:.2f} s, ratio {on / off:.2f}")
    on_size = statistics.median(r["size"] for r in results["with"])
    off_size = statistics.median(r["size"] for r in results["without"])
    entries = results["with"][0]["entries"]
    print(f"time inside the log step: {inside[0] / args.repeat:.2f} s per pair of syncs (first + second)")
    print(f"store size: with {on_size / 2**20:.1f} MiB, without {off_size / 2**20:.1f} MiB; log entries {entries:,}")


if __name__ == "__main__":
    main()
