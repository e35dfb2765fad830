"""Bounded load test: 16 concurrent clients page the emulator (a separate process) over loopback for 60 s.

The emulator runs as ``usageledger emulator --port 0`` (its ready line gives the URL). Each of ``--clients``
workers owns one :class:`usageledger.AsyncClient` and pages through a rotating list of range queries (every
endpoint; daily, hourly and minute buckets; grouped and not), following ``next_page`` cursors, until ``--seconds``
have passed or ``--max-requests`` were sent. With ``--faults`` the emulator injects 429s (``Retry-After: 1``),
500/503s, dropped connections, cut and slow bodies and a gateway's 502 HTML page; the clients retry as they do in
real use.

Every attempt is classified at the transport (a wrapper around httpx's, so retries are seen one by one): a 200
with a usage page, 429, 5xx, a gateway's 502 page, no response, a cut body, a body that is not a usage page, or
anything else. The emulator's fault decisions are a pure function of (seed, request number), so after the run the
faults it injected into requests ``0 .. N-1`` are recomputed and compared kind by kind with what the clients
observed. Any error the emulator did not inject (an unexpected status, a timeout, a connection refused, one more
fault of a kind than were injected) is an **uninjected error**; the run must end with zero. Latency is per attempt
(request sent to body read) and per page (including retries and waits).

Run: ``.venv/bin/python bench/bench_load.py`` (60 s, 16 clients, no faults) and
``.venv/bin/python bench/bench_load.py --faults`` (the same with 15% faults); ``--seconds 5`` for a short run,
``--json PATH`` to keep the numbers. Exit status 1 when there was an uninjected error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from usageledger import AsyncClient, catalogue
from usageledger._http import RetryPolicy
from usageledger.emulator import FaultConfig
from usageledger.emulator.faults import decide
from usageledger.errors import UsageLedgerError
from usageledger.models import decode_page

KEY: Final = "sk-admin-load-test"
NOW: Final = 1795176000  # 2026-11-20T12:00:00Z, fixed so runs repeat
DAY: Final = 86400
SEED: Final = 11
FAULT_RATES: Final = {"rate_429": 0.05, "rate_5xx": 0.05, "rate_drop": 0.02, "rate_truncate": 0.03}
READY_TIMEOUT: Final = 60.0

# (endpoint, bucket width, limit per page, span in seconds, group_by): each is several pages.
PLANS: Final[tuple[tuple[str, str, int, int, tuple[str, ...]], ...]] = (
    ("completions", "1h", 24, 7 * DAY, ("model",)),
    ("costs", "1d", 7, 60 * DAY, ("line_item",)),
    ("embeddings", "1d", 7, 90 * DAY, ("project_id",)),
    ("images", "1m", 60, 4 * 3600, ()),
    ("moderations", "1h", 48, 10 * DAY, ()),
    ("audio_speeches", "1d", 10, 40 * DAY, ("model",)),
    ("audio_transcriptions", "1d", 10, 40 * DAY, ()),
    ("vector_stores", "1d", 15, 60 * DAY, ("project_id",)),
    ("code_interpreter_sessions", "1d", 31, 120 * DAY, ()),
    ("file_search_calls", "1h", 24, 3 * DAY, ()),
    ("web_search_calls", "1d", 14, 56 * DAY, ("context_level",)),
    ("decisions", "1h", 12, 2 * DAY, ("model", "service_tier")),
    ("costs", "1d", 30, 120 * DAY, ("project_id", "line_item")),
    ("completions", "1d", 7, 28 * DAY, ("project_id", "model", "batch")),
)

# What the emulator injected, as the clients can observe it.
OBSERVABLE: Final = {
    "none": "ok",
    "slow": "ok",
    "429": "429",
    "500": "5xx",
    "503": "5xx",
    "drop": "no response",
    "truncate": "cut body",
    "malformed": "gateway page",
}


@dataclass
class Tally:
    """Everything the workers saw."""

    attempts: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    attempt_ms: list[float] = field(default_factory=list)
    page_ms: list[float] = field(default_factory=list)
    pages: int = 0
    queries: int = 0
    gave_up: int = 0


class CountingTransport(httpx.AsyncBaseTransport):
    """Sends through httpx's transport, reads the body, and classifies every attempt."""

    def __init__(self, tally: Tally) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._tally = tally

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.RemoteProtocolError:
            self._tally.attempts["no response"] += 1
            raise
        except httpx.TransportError as exc:
            self._note("other", f"{type(exc).__name__}: {exc}")
            raise
        try:
            body = await response.aread()
        except httpx.RemoteProtocolError:
            self._tally.attempts["cut body"] += 1
            raise
        except httpx.TransportError as exc:
            self._note("other", f"reading the body: {type(exc).__name__}: {exc}")
            raise
        finally:
            await response.aclose()
        self._tally.attempt_ms.append((time.perf_counter() - started) * 1000)
        status = response.status_code
        if status == 200:
            try:
                decode_page(body)
            except UsageLedgerError:
                self._tally.attempts["not a usage page"] += 1
            else:
                self._tally.attempts["ok"] += 1
        elif status == 429:
            self._tally.attempts["429"] += 1
        elif status in (500, 503):
            self._tally.attempts["5xx"] += 1
        elif status == 502 and response.headers.get("content-type", "").startswith("text/html"):
            self._tally.attempts["gateway page"] += 1
        else:
            self._note("other", f"HTTP {status}: {body[:200]!r}")
        return httpx.Response(status, headers=response.headers, content=body, request=request)

    def _note(self, kind: str, detail: str) -> None:
        self._tally.attempts[kind] += 1
        if len(self._tally.unexpected) < 20:
            self._tally.unexpected.append(detail)

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextmanager
def emulator(faults: bool) -> Iterator[str]:
    """``usageledger emulator --port 0`` in a process; its base URL, read from the ready line within a deadline."""
    args = ["--port", "0", "--days", "120", "--projects", "4", "--users", "8", "--seed", str(SEED), "--now", str(NOW)]
    if faults:
        for name, rate in FAULT_RATES.items():
            args += [f"--{name.replace('_', '-')}", str(rate)]
    command = [sys.executable, "-c", "from usageledger.cli import main; main()", "emulator", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in iter(stdout.readline, "")], daemon=True).start()
    try:
        try:
            line = lines.get(timeout=READY_TIMEOUT)
        except queue.Empty:
            line = ""
        if not line.startswith("Emulator ready at "):
            raise RuntimeError(f"the emulator did not start: {line!r}")
        yield line.split(" at ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def injected(total: int, faults: bool) -> Counter[str]:
    """What the emulator injected into requests 0 .. total-1, as the clients would observe it."""
    config = FaultConfig(seed=SEED, **(FAULT_RATES if faults else {}))
    return Counter(OBSERVABLE[decide(config, n).kind] for n in range(total))


async def worker(index: int, url: str, tally: Tally, deadline: float, budget: list[int]) -> None:
    retry = RetryPolicy(max_retries=4)
    async with AsyncClient(KEY, url, retry=retry, transport=CountingTransport(tally), max_concurrency=1) as client:
        cycle = 0
        while time.monotonic() < deadline and budget[0] > 0:
            name, width, limit, span, group_by = PLANS[(index + cycle) % len(PLANS)]
            end = NOW - (cycle % 20) * DAY
            start = end - span
            cursor: str | None = None
            while time.monotonic() < deadline and budget[0] > 0:
                began = time.perf_counter()
                budget[0] -= 1
                try:
                    page = await client.page(
                        catalogue.get(name),
                        start_time=start,
                        end_time=end,
                        bucket_width=width,  # type: ignore[arg-type]
                        group_by=group_by,
                        limit=limit,
                        page=cursor,
                    )
                except UsageLedgerError:
                    tally.gave_up += 1  # retries exhausted on injected faults: ask for the same page again
                    continue
                tally.page_ms.append((time.perf_counter() - began) * 1000)
                tally.pages += 1
                if not page.has_more:
                    break
                cursor = page.next_page
            tally.queries += 1
            cycle += 1


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(url: str, clients: int, seconds: float, max_requests: int) -> tuple[Tally, float]:
    tally = Tally()
    started = time.monotonic()
    budget = [max_requests]
    await asyncio.gather(*(worker(i, url, tally, started + seconds, budget) for i in range(clients)))
    return tally, time.monotonic() - started


def run(*, seconds: float, clients: int, faults: bool, max_requests: int) -> dict[str, Any]:
    """One bounded run; the numbers as a dict."""
    with emulator(faults) as url:
        tally, elapsed = asyncio.run(load(url, clients, seconds, max_requests))
    total = sum(tally.attempts.values())
    expected = injected(total, faults)
    observed = tally.attempts
    kinds = sorted(set(expected) | set(observed))
    uninjected = sum(max(0, observed[k] - expected[k]) for k in kinds if k != "ok")
    missing = sum(max(0, expected[k] - observed[k]) for k in kinds if k != "ok")
    return {
        "seconds": round(elapsed, 2),
        "clients": clients,
        "faults": FAULT_RATES if faults else None,
        "requests": total,
        "throughput_rps": round(total / elapsed, 1),
        "pages": tally.pages,
        "queries": tally.queries,
        "attempt_ms": {
            "p50": round(percentile(tally.attempt_ms, 0.50), 2),
            "p99": round(percentile(tally.attempt_ms, 0.99), 2),
        },
        "page_ms": {"p50": round(percentile(tally.page_ms, 0.50), 2), "p99": round(percentile(tally.page_ms, 0.99), 2)},
        "injected": {k: expected[k] for k in kinds if k != "ok"},
        "observed": {k: observed[k] for k in kinds if k != "ok"},
        "injected_total": sum(v for k, v in expected.items() if k != "ok"),
        "observed_errors": sum(v for k, v in observed.items() if k != "ok"),
        "uninjected_errors": uninjected,
        "injected_not_observed": missing,
        "gave_up_after_retries": tally.gave_up,
        "unexpected": tally.unexpected,
        "machine": f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients page (default 60)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="stop after this many pages asked for")
    parser.add_argument("--faults", action="store_true", help=f"inject faults: {FAULT_RATES}")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    result = run(seconds=args.seconds, clients=args.clients, faults=args.faults, max_requests=args.max_requests)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    print(
        f"{result['requests']} requests in {result['seconds']} s by {result['clients']} clients: "
        f"{result['throughput_rps']} req/s; {result['pages']} pages, {result['queries']} queries"
    )
    print(f"latency per attempt: p50 {result['attempt_ms']['p50']} ms, p99 {result['attempt_ms']['p99']} ms")
    print(f"latency per page (with retries): p50 {result['page_ms']['p50']} ms, p99 {result['page_ms']['p99']} ms")
    print(f"faults injected {result['injected_total']} {result['injected']}")
    print(f"errors observed {result['observed_errors']} {result['observed']}")
    print(
        f"uninjected errors: {result['uninjected_errors']}; injected but not observed: "
        f"{result['injected_not_observed']}; pages given up after retries (then asked again): "
        f"{result['gave_up_after_retries']}"
    )
    for line in result["unexpected"]:
        print(f"  unexpected: {line}")
    sys.exit(1 if result["uninjected_errors"] else 0)


if __name__ == "__main__":
    main()
