"""Benchmark: a ``/metrics`` scrape over the 5-million-row DuckDB store of ``bench_report.py``.

The store is filled by ``bench_report.generate`` (one org; costs, completions and embeddings; a year of daily
buckets; 40 projects, 12 models, six token line-item kinds). Timed, each ``--repeat`` times:

- the render alone: open the store read-only, :func:`render_metrics` (three queries, names, exposition), close;
- a real scrape: ``GET /metrics`` from a Starlette app served by uvicorn on loopback (``metrics_endpoint``), with
  the Prometheus text format and with OpenMetrics;
- the same render with ``--metrics-labels model`` (fewer series).

"Now" is the last generated day at noon, so month to date covers 19 days of the data.

    .venv/bin/python bench/bench_metrics.py [--rows 5000000] [--days 365] [--repeat 5]
"""

from __future__ import annotations

import os
import resource
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from bench_report import FIRST_DAY, generated_store, store_args
from usageledger.report.metrics import metrics_endpoint, parse_metrics_labels, render_metrics
from usageledger.store import BaseStore, open_existing_store

TARGET_SECONDS = 2.0
"""A scrape must fit well inside Prometheus's default 10 s scrape timeout: we ask for a fifth of it."""


@contextmanager
def _serving(app: Starlette) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _times(run: Callable[[], int], repeat: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(repeat):
        began = time.perf_counter()
        size = run()
        times.append(time.perf_counter() - began)
    return times, size


def _say(label: str, times: list[float], size: int) -> bool:
    ok = max(times) < TARGET_SECONDS
    print(
        f"{label}: first {times[0]:.3f} s, best {min(times):.3f} s, median {statistics.median(times):.3f} s, "
        f"worst {max(times):.3f} s over {len(times)} runs, {size:,} bytes -> {'PASS' if ok else 'FAIL'} "
        f"(target < {TARGET_SECONDS} s)"
    )
    return not ok


def main() -> None:
    args = store_args(__doc__)
    with generated_store(args.rows, args.days) as path:
        last = FIRST_DAY + timedelta(days=args.days - 1)
        now = datetime(last.year, last.month, last.day, 12, tzinfo=UTC)

        @contextmanager
        def reading() -> Iterator[BaseStore]:
            with open_existing_store(path) as store:
                yield store

        def render(labels: frozenset[str] | None = None) -> Callable[[], int]:
            def run() -> int:
                with reading() as store:
                    body, _ = render_metrics(store, now=now, **({} if labels is None else {"labels": labels}))
                return len(body)

            return run

        failed = False
        with reading() as store:
            for label, keep in (("every label", None), ("--metrics-labels model", parse_metrics_labels("model"))):
                body, _ = render_metrics(store, now=now, **({} if keep is None else {"labels": keep}))
                series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
                print(f"now = {now.isoformat()}: {series:,} series with {label}")
        failed |= _say("render, every label", *_times(render(), args.repeat))
        failed |= _say("render, --metrics-labels model", *_times(render(parse_metrics_labels("model")), args.repeat))
        app = Starlette(routes=[Route("/metrics", metrics_endpoint(reading, clock=lambda: now))])
        with _serving(app) as base, httpx.Client(base_url=base, timeout=60) as client:
            for label, accept in (("text", "text/plain"), ("OpenMetrics", "application/openmetrics-text")):

                def scrape(accept: str = accept) -> int:
                    response = client.get("/metrics", headers={"Accept": accept})
                    response.raise_for_status()
                    return len(response.content)

                failed |= _say(f"HTTP scrape through uvicorn, {label}", *_times(scrape, args.repeat))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (generation included): {peak:.0f} MiB; load average {os.getloadavg()[0]:.1f}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
