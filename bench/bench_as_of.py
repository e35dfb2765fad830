"""What reading the past costs: a report as of a time (rebuilt from the revision log) against the plain report.

Setting: the emulator's default organisation with ``revisions`` on (in this process, on loopback), every default
stream, ``since`` 365 days, into a fresh DuckDB file; a moment; the emulator's clock two days on and a second sync
that restates the lag window. Then, side by side, ``--repeat`` times each: the plain 30-day report
(``build_report``), the same report as of the moment (``as_of`` materialises every endpoint table as it stood, then
the same report), ``changes`` (every restatement) and ``deltas`` since the moment. Reported: median wall times, the
ratio as-of / plain, and the log's size.

Run: ``.venv/bin/python bench/bench_as_of.py`` (``--repeat 3``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from typing import Final

from usageledger import timeutil
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.report import Period, Scope, as_of, build_report, changes, deltas
from usageledger.store import default_streams, open_store
from usageledger.sync import Org, SyncOptions, sync

NOW: Final = 1795176000  # 2026-11-20T12:00:00Z
DAY: Final = 86400
KEY: Final = "sk-admin-bench-as-of"
PERIOD: Final = Period(date(2026, 10, 22), date(2026, 11, 21))


def _median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    clock = [float(NOW)]
    emu = Emulator(EmulatorConfig(revisions=True), clock=lambda: clock[0])
    with tempfile.TemporaryDirectory() as folder, run_server(emu) as url:
        path = os.path.join(folder, "ledger.duckdb")
        with open_store(path) as store:
            orgs = [Org("bench", KEY, url)]
            since = timeutil.floor(NOW - 365 * DAY, "1d")
            assert sync(store, orgs, default_streams(), SyncOptions(since=since), clock=lambda: clock[0]).ok
            moment = int(time.time())
            while int(time.time()) <= moment:
                time.sleep(0.05)
            clock[0] += 2 * DAY
            assert sync(store, orgs, default_streams(), SyncOptions(), clock=lambda: clock[0]).ok
            entries = store.query("SELECT COUNT(*) FROM revisions")[0][0]
            rows = sum(store.query(f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("costs", "usage_completions"))

            def past() -> None:
                with as_of(store, moment) as then:
                    build_report(then, PERIOD, Scope())

            def past_period() -> None:
                with as_of(store, moment, buckets=(PERIOD.previous().start, PERIOD.end)) as then:
                    build_report(then, PERIOD, Scope())

            plain = _median(lambda: build_report(store, PERIOD, Scope()), args.repeat)
            then = _median(past, args.repeat)
            then_period = _median(past_period, args.repeat)
            listed = _median(lambda: changes(store), args.repeat)
            moved = _median(lambda: deltas(store, since=moment), args.repeat)
            count = len(changes(store).restatements)
    print(f"log entries: {entries:,}; costs + completions rows: {rows:,}; restated (row, metric): {count:,}")
    print(f"plain report (30 days):       {plain:.3f} s")
    print(f"report as of the moment:      {then:.3f} s  (ratio {then / plain:.1f})")
    print(f"as of, the period's buckets:  {then_period:.3f} s  (ratio {then_period / plain:.1f})")
    print(f"changes (every restatement):  {listed:.3f} s")
    print(f"deltas since the moment:      {moved:.3f} s")


if __name__ == "__main__":
    main()
