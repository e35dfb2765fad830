"""Sync benchmark: a full year of hourly usage for every usage endpoint, from the emulator with 100 ms latency.

Setting: a ``usageledger emulator`` subprocess (its own core; fixed clock; ``--latency 100ms`` on every response),
default grouping per endpoint. Measured in one run, side by side:

1. ``usageledger.sync`` into a fresh DuckDB file: wall time, requests, rows, peak RSS of this process, and the
   time spent inside store writes (rows/s into DuckDB);
2. the same sync into a fresh PostgreSQL database (rows/s into PostgreSQL);
3. the official openai SDK's page-by-page loop (``client.admin.organization.usage.<endpoint>(..., page=...)``) over
   the same windows. ``--sdk-endpoints N`` runs it on the first N endpoints only and scales its time by the request
   count (it is sequential, so its time is proportional to requests).

The concurrency-bound ideal is ``requests / concurrency x latency``; the targets are wall <= 1.3x ideal and >= 6x
faster than the SDK loop.

Run: ``.venv/bin/python bench/bench_sync.py`` (``--concurrency 6,8 --days 365 --sdk-endpoints 11``;
``--pg-url postgresql://...`` to use an existing server instead of a temporary cluster).

``--as-user`` measures instead what a user runs, with nothing given through the library: a ``usageledger emulator
--latency 100ms --now ...`` process (its default cache), one unmeasured warm-up sync, then for each of ``--days-list``
(90,365,730) a ``usageledger sync --bucket-width 1h --concurrency 8 --quiet --no-directory`` process into a fresh
DuckDB file: its wall time (start-up included) against the concurrency-bound ideal, rows/s and its peak RSS.
``--before PYTHON`` adds the same sync run by another interpreter (a checkout of main with its own venv), alternating
with this tree's, so before and after are measured side by side in one run against the same emulator.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openai import OpenAI

from usageledger import catalogue, rules, timeutil
from usageledger.store import BaseStore, Stream, open_store
from usageledger.sync import Org, SyncOptions, SyncResult, sync

KEY = "sk-admin-bench-key"
NOW = 1795176000  # 2026-11-20T12:00:00Z, the tests' fixed clock
REPO = Path(__file__).resolve().parent.parent


_SERVE = """
import signal, sys, threading
from usageledger.emulator import Emulator, EmulatorConfig, FaultConfig, run_server
now, days, projects, users, models, latency, cache = (float(a) for a in sys.argv[1:8])
config = EmulatorConfig(
    now=int(now), days=int(days), projects=int(projects), users=int(users), models=int(models),
    faults=FaultConfig(latency=latency), cache_bytes=int(cache),
)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
with run_server(Emulator(config)) as url:
    print("Emulator ready at", url, flush=True)
    stop.wait()
"""


@contextmanager
def emulator(latency: float, size: tuple[int, int, int] = (5, 12, 6), cache_mb: int = 2048) -> Iterator[str]:
    """An emulator in its own process (fixed clock, latency, projects/users/models, a response cache big enough
    for the year); yields its base URL. Same server as `usageledger emulator`, which does not expose the cache size.
    """
    projects, users, models = size
    args = [NOW, 400, projects, users, models, latency, cache_mb * 2**20]
    with _served([sys.executable, "-c", _SERVE, *map(str, args)]) as url:
        yield url


@contextmanager
def _served(argv: list[str]) -> Iterator[str]:
    """An emulator process started with ``argv``: its base URL once it says it is ready; SIGTERM at the end."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "Emulator ready at " not in line:
            raise RuntimeError(f"the emulator did not start: {line!r}")
        yield line.split("Emulator ready at ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@contextmanager
def postgres(url: str | None) -> Iterator[str]:
    """An existing PostgreSQL URL, or a temporary cluster (the test fixture's) for the run."""
    if url:
        yield url
        return
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures.postgres import _Cluster

    with _Cluster() as cluster:
        yield cluster.createdb("bench")


class TimedStore:
    """Wraps a store's prepare and commit_windows to add up the time spent converting and writing rows."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store
        self.write_seconds = 0.0
        for name in ("prepare", "commit_windows"):
            setattr(store, name, self._timed(getattr(store, name)))

    def _timed(self, original: Any) -> Any:
        def timed(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args)
            finally:
                self.write_seconds += time.perf_counter() - t0

        return timed


def run_sync(
    url: str, store_url: str, streams: list[Stream], since: int, concurrency: int
) -> tuple[SyncResult, float, float]:
    with open_store(store_url) as store:
        timed = TimedStore(store)
        t0 = time.perf_counter()
        result = sync(
            store,
            [Org("bench", KEY, url)],
            streams,
            SyncOptions(since=since, concurrency=concurrency),
            clock=lambda: float(NOW),
        )
        wall = time.perf_counter() - t0
        if not result.ok:
            raise RuntimeError(f"sync failed: {result.errors}")
        return result, wall, timed.write_seconds


def sdk_loop(url: str, streams: list[Stream], since: int) -> tuple[int, int, float]:
    """The official SDK, page by page, over the same windows; (requests, results, seconds)."""
    client = OpenAI(admin_api_key=KEY, api_key="unused", base_url=url, max_retries=2)
    requests = results = 0
    t0 = time.perf_counter()
    for stream in streams:
        method = getattr(client.admin.organization.usage, stream.endpoint.sdk_method)
        for window in rules.plan_windows(stream.endpoint, since, NOW, stream.bucket_width):
            page: str | None = None
            while True:
                kwargs: dict[str, Any] = {
                    "start_time": window.start,
                    "end_time": window.end,
                    "bucket_width": stream.bucket_width,
                    "limit": window.limit,
                    "group_by": list(stream.group_by),
                }
                if page:
                    kwargs["page"] = page
                response = method(**kwargs)
                requests += 1
                results += sum(len(b.results) for b in response.data)
                if not response.has_more:
                    break
                page = response.next_page
    client.close()
    return requests, results, time.perf_counter() - t0


_CLI = "from usageledger.cli import main; main()"


@contextmanager
def cli_emulator(latency: str, days: int) -> Iterator[str]:
    """``usageledger emulator`` as a user starts it (fixed clock, latency, default cache); yields its base URL."""
    args = ["emulator", "--port", "0", "--latency", latency, "--now", str(NOW), "--days", str(days)]
    with _served([sys.executable, "-c", _CLI, *args]) as url:
        yield url


def cli_sync(python: str, url: str, store: Path, days: int, concurrency: int) -> tuple[float, float, int, int]:
    """One ``usageledger sync`` process: (wall seconds, peak RSS MB, requests, rows inserted)."""
    since = timeutil.iso(timeutil.floor(NOW - days * 86400, "1h"))
    argv = ["sync", "--store", str(store), "--base-url", url, "--bucket-width", "1h", "--since", since]
    argv += ["--concurrency", str(concurrency), "--quiet", "--no-directory", "--now", str(NOW)]
    env = {**os.environ, "OPENAI_ADMIN_KEY": KEY}
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-c", _CLI, *argv], env=env, cwd=store.parent, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"sync failed ({python}): {err}")
    import duckdb

    with duckdb.connect(str(store), read_only=True) as con:
        row = con.execute("SELECT requests, inserted FROM sync_runs ORDER BY started_at DESC LIMIT 1").fetchone()
    assert row is not None
    return wall, usage.ru_maxrss / 1024, int(row[0]), int(row[1])


def as_user(args: argparse.Namespace) -> None:
    latency = timeutil.parse_duration(args.latency)
    day_list = [int(d) for d in args.days_list.split(",")]
    concurrency = int(args.concurrency.split(",")[-1])
    pythons = {"after": sys.executable} if args.before is None else {"before": args.before, "after": sys.executable}
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    print(f"as a user runs it: CLI emulator --latency {args.latency}, CLI sync --bucket-width 1h (11 endpoints)")
    print(f"--concurrency {concurrency}, days {day_list}, interpreters {pythons}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-user-"))
    try:
        with cli_emulator(args.latency, max(day_list) + 10) as url:
            cli_sync(sys.executable, url, tmp / "warm.duckdb", max(day_list), concurrency)
            print(
                f"{'days':>5} {'code':>7} {'wall':>8} {'ideal':>7} {'wall/ideal':>10} {'requests':>8}"
                f" {'rows':>9} {'rows/s':>9} {'peak RSS':>9}"
            )
            for days in day_list:
                for _, (label, python) in itertools.product(range(args.rounds), pythons.items()):
                    store = tmp / f"{label}-{days}.duckdb"
                    store.unlink(missing_ok=True)
                    wall, rss, requests, rows = cli_sync(python, url, store, days, concurrency)
                    ideal = requests / concurrency * latency
                    print(
                        f"{days:>5} {label:>7} {wall:>7.2f}s {ideal:>6.2f}s {wall / ideal:>10.2f} {requests:>8}"
                        f" {rows:>9,} {rows / wall:>9,.0f} {rss:>6.0f} MB",
                        flush=True,
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--as-user", action="store_true", help="CLI emulator and CLI sync processes (see above).")
    parser.add_argument("--before", default=None, help="With --as-user: an interpreter with the code to compare.")
    parser.add_argument("--rounds", type=int, default=1, help="With --as-user: syncs per range and code, alternating.")
    parser.add_argument("--days-list", default="90,365,730", help="With --as-user: the ranges to sync, in days.")
    parser.add_argument("--concurrency", default="6,8", help="Comma-separated concurrencies to measure.")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--latency", default="100ms")
    parser.add_argument("--sdk-endpoints", type=int, default=len(catalogue.USAGE_ENDPOINTS))
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--skip-postgres", action="store_true", help="Leave out the PostgreSQL run.")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give 1 or more syncs per range and code")
    if args.as_user:
        as_user(args)
        return

    latency = timeutil.parse_duration(args.latency)
    levels = [int(c) for c in args.concurrency.split(",")]
    since = timeutil.floor(NOW - args.days * 86400, "1h")
    streams = [Stream.create(ep, "1h", ep.default_group_by) for ep in catalogue.USAGE_ENDPOINTS]
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    print(f"{len(streams)} usage endpoints, hourly, {args.days} days, latency {args.latency}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    try:
        with emulator(latency) as url:
            # Warm the emulator's caches with one unmeasured pass so both clients meet the same server state.
            run_sync(url, str(tmp / "warm.duckdb"), streams, since, max(levels))

            walls: dict[int, float] = {}
            for concurrency in levels:
                result, wall, writes = run_sync(
                    url, str(tmp / f"bench{concurrency}.duckdb"), streams, since, concurrency
                )
                walls[concurrency] = wall
                peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                rows = result.counts.inserted
                ideal = result.requests / concurrency * latency
                print(
                    f"sync -> DuckDB, concurrency {concurrency}: {wall:.2f}s wall,"
                    f" {result.requests} requests, {rows:,} rows"
                )
                print(f"  concurrency-bound ideal {ideal:.2f}s -> wall/ideal = {wall / ideal:.2f} (target <= 1.3)")
                print(f"  converting + writing {writes:.2f}s -> {rows / writes:,.0f} rows/s into DuckDB")
                print(f"  peak RSS of the process so far: {peak_mb:.0f} MB")
            concurrency = levels[0]
            if args.skip_postgres:
                pass
            else:
                with postgres(args.pg_url) as pg_url:
                    pg_result, pg_wall, pg_writes = run_sync(url, pg_url, streams, since, concurrency)
                print(
                    f"sync -> PostgreSQL: {pg_wall:.2f}s wall, {pg_result.counts.inserted:,} rows;"
                    f" writes {pg_writes:.2f}s -> {pg_result.counts.inserted / pg_writes:,.0f} rows/s into PostgreSQL"
                )

            subset = streams[: args.sdk_endpoints]
            sdk_requests, sdk_results, sdk_seconds = sdk_loop(url, subset, since)
            scale = result.requests / sdk_requests
            sdk_full = sdk_seconds * scale
            note = "" if subset == streams else f" (measured on {len(subset)} endpoints, scaled x{scale:.2f})"
            print(
                f"official SDK page loop: {sdk_requests} requests, {sdk_results:,} results in {sdk_seconds:.2f}s{note}"
            )
            for level, wall in walls.items():
                print(f"  same data: {sdk_full:.2f}s -> sync at concurrency {level} is {sdk_full / wall:.1f}x faster")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
