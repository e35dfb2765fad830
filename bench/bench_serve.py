"""Benchmark: the dashboard's API latency (p50, p99) and the server's memory on a DuckDB store of 5 million rows.

The store is generated as ``bench_report.py`` generates it (one org's default daily streams, a year of days, 40
projects, 12 models). A real ``usageledger serve`` runs in its own process on loopback; one client sends requests
one after another over a kept-alive connection, and the server's resident memory (RSS) is read with psutil after
every request. Every request opens the store read-only and closes it again, as the server does during a sync.

    .venv/bin/python bench/bench_serve.py [--rows 5000000] [--days 365] [--requests 100] [--store PATH]

``--store PATH`` keeps the generated store there (and reuses it when it exists). Beside the API, the same period's
report queries are timed in-process (open read-only, ``build_report``, close), interleaved with the requests, so
the server's own cost (HTTP, JSON, names, finality) is measured side by side under the same load.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psutil

from bench_report import FIRST_DAY, generate
from usageledger.report.queries import Period, build_report
from usageledger.store import open_store


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _row(label: str, times: list[float]) -> str:
    return (
        f"| {label} | {statistics.median(times) * 1000:.0f} ms | {_quantile(times, 0.99) * 1000:.0f} ms"
        f" | {max(times) * 1000:.0f} ms | {len(times)} |"
    )


def _in_process(path: Path, period: dict[str, str]) -> float:
    t0 = time.perf_counter()
    with open_store(path, migrate=False, read_only=True) as store:
        build_report(store, Period(date.fromisoformat(period["since"]), date.fromisoformat(period["until"])))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--store", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or Path(tmp) / "bench.duckdb"
        if not path.exists():
            began = time.perf_counter()
            with open_store(path) as store:
                counts = generate(store, args.rows, args.days)
                store.execute("CHECKPOINT")
            print(f"generated {sum(counts.values()):,} rows {counts} in {time.perf_counter() - began:.1f} s")
        with open_store(path, migrate=False, read_only=True) as store:
            print(f"store: {store.query('SELECT count(*) FROM costs')[0][0]:,} rows in costs, {path}")
        last = FIRST_DAY + timedelta(days=args.days)
        half = FIRST_DAY + timedelta(days=args.days // 2)
        month = {"since": (last - timedelta(days=30)).isoformat(), "until": last.isoformat()}
        every = {"since": half.isoformat(), "until": last.isoformat()}
        direct = {"api/report?" + urlencode(month): month, "api/report?" + urlencode(every): every}
        cases = {
            "/api/report, last 30 days": "api/report?" + urlencode(month),
            f"/api/report, last {(last - half).days} days (every row, with the previous period)": "api/report?"
            + urlencode(every),
            "/api/report, last 30 days, one project": "api/report?" + urlencode({**month, "project": "proj_7"}),
            "/api/report, last 30 days, one model": "api/report?" + urlencode({**month, "model": "model-3"}),
            "/api/filters, last 30 days": "api/filters?" + urlencode(month),
            "/api/projects/proj_7, last 30 days": "api/projects/proj_7?" + urlencode(month),
            "/ (the dashboard page), last 30 days": "?" + urlencode(month),
            "/healthz": "healthz",
        }
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("usageledger")), "serve", "--store", str(path), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_"))},
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            base = line.split(" at ", 1)[1].split(" ", 1)[0]
            proc = psutil.Process(server.pid)
            idle = proc.memory_info().rss
            peak = idle
            print(f"server at {base}, RSS idle {idle / 2**20:.0f} MiB")
            print("| request | p50 | p99 | max | requests |")
            print("|---|---|---|---|---|")
            with httpx.Client(base_url=base, timeout=120) as client:
                for label, url in cases.items():
                    assert client.get(url).status_code == 200, url  # a first request, not timed
                    times: list[float] = []
                    inproc: list[float] = []
                    period = direct.get(url)
                    for _ in range(args.requests):
                        t0 = time.perf_counter()
                        response = client.get(url)
                        times.append(time.perf_counter() - t0)
                        assert response.status_code == 200, response.text
                        peak = max(peak, proc.memory_info().rss)
                        if period is not None:
                            inproc.append(_in_process(path, period))
                    print(_row(label, times))
                    if inproc:
                        print(_row("in-process `build_report`, same period (open, query, close; no HTTP)", inproc))
            final = proc.memory_info().rss
            print(f"load average (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
            print(f"RSS: idle {idle / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB, after {final / 2**20:.0f} MiB")
        finally:
            server.send_signal(signal.SIGTERM)
            server.communicate(timeout=60)


if __name__ == "__main__":
    main()
