"""End to end over loopback: fetch the 1.7 MB completions page with usageledger's ``Client.page`` vs openai 3.57.

A stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (HTTP/1.1, keep-alive) answers every GET with the page from
``bench_decode.make_page()``. Each side uses one long-lived client (connection reuse, no retries needed) and makes
the same request: completions, hourly, grouped by project and model, ``limit=168``:

* usageledger: ``Client(admin_key, base_url).page("completions", ...)`` -> ``UsageResponse``;
* openai 3.57: ``OpenAI(admin_api_key=..., base_url=...).admin.organization.usage.completions(...)``.

Rounds are interleaved; the median seconds per call is reported with the ratio.

Run: ``.venv/bin/python bench/bench_fetch.py`` (``--rounds N``, ``--calls N`` per round).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from openai import OpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decode import BUCKETS, GROUPS, START, make_page
from usageledger import Client

KEY = "sk-admin-bench-key"
QUERY = {"start_time": START, "end_time": START + BUCKETS * 3600, "bucket_width": "1h", "limit": 168}
GROUP_BY = ["project_id", "model"]


@contextmanager
def serve(body: bytes) -> Iterator[str]:
    """A loopback HTTP/1.1 server answering every GET with ``body``; yields the base URL ending in /v1."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def per_call(fn: Callable[[], object], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20, help="calls per side per round")
    args = parser.parse_args()
    body = make_page()
    with serve(body) as base_url:
        ours = Client(KEY, base_url, clock=lambda: START + 400 * 86_400)
        sdk = OpenAI(api_key="sk-unused", admin_api_key=KEY, base_url=base_url, max_retries=0)

        def fetch_ours() -> object:
            return ours.page("completions", group_by=GROUP_BY, **QUERY)  # type: ignore[arg-type]

        def fetch_sdk() -> object:
            return sdk.admin.organization.usage.completions(group_by=GROUP_BY, **QUERY)  # type: ignore[arg-type]

        # Both read the same page, and the SDK really sent its own request shape.
        a, b = fetch_ours(), fetch_sdk()
        assert len(a.data) == len(b.data) == BUCKETS  # type: ignore[attr-defined]
        assert sum(len(x.results) for x in a.data) == BUCKETS * GROUPS  # type: ignore[attr-defined]

        samples: dict[str, list[float]] = {"usageledger Client.page": [], "openai usage.completions": []}
        for _ in range(args.rounds):
            samples["usageledger Client.page"].append(per_call(fetch_ours, args.calls))
            samples["openai usage.completions"].append(per_call(fetch_sdk, max(2, args.calls // 4)))
        ours.close()
        sdk.close()
    med = {name: statistics.median(values) for name, values in samples.items()}
    print(f"page: {len(body):,} bytes over loopback HTTP/1.1 (stdlib ThreadingHTTPServer), keep-alive")
    print(f"python {platform.python_version()}, {platform.machine()}, rounds={args.rounds}, calls={args.calls}")
    for name, seconds in med.items():
        print(f"  {name:<26} {seconds * 1e3:9.2f} ms/call")
    ratio = med["openai usage.completions"] / med["usageledger Client.page"]
    print(f"  ratio: {ratio:6.1f}x  (target >= 8x)")


if __name__ == "__main__":
    main()
