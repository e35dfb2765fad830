"""Emulator: pages computed from nothing (before vs after), throughput, memory and start-up.

Cold pages: every endpoint's 31-day daily page, grouped (completions and decisions by ``project_id,model``, costs
by ``project_id,line_item``, the others by ``project_id`` and ``model`` where they have it), and every usage
endpoint's week of hours (168 buckets, its default grouping), each from a fresh ``Emulator(EmulatorConfig(now=...))``,
timed in a child process per code version: *before* is another checkout's code (``--before-python``/``--before-src``,
default /work/main), *after* this one. The two run interleaved, round by
round, so load on the machine hits both alike; the child also hashes each body, so the bench shows the bytes agree.

The server runs in its own process (``usageledger emulator --port 0``, default size, fixed ``--now``), exactly as
users run it; the load generator is a minimal asyncio HTTP/1.1 keep-alive client in this process (httpx itself
would be the bottleneck on a 2-core machine). Each scenario runs C concurrent connections for T seconds after a
warm-up and counts complete 200 responses.

A year of hourly pages: in a child per version, every usage endpoint's 375 days of hourly buckets (default
grouping, 168 a page, the cursor followed) through one ``Emulator(EmulatorConfig(days=375))`` with the default
cache, as ``usageledger sync --bucket-width 1h`` asks them of ``usageledger emulator --days 375``: the emulator's
CPU seconds for such a sync (HTTP not included). ``--cli-sync N`` runs that sync for real (CLI emulator with
``--latency 100ms``, CLI sync with ``--concurrency 8`` into a temporary store) and reports the emulator process's CPU.

Usage: .venv/bin/python bench/bench_emulator.py [--seconds 10] [--connections 8] [--server cli|asgi|starlette]
       [--rounds 5] [--repeats 3] [--year-rounds 1] [--cli-sync 0] [--before-python PATH --before-src DIR]
       [--no-before] [--cold-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psutil

NOW = 1795176000  # 2026-11-20T12:00:00Z
DAY = 86400
KEY = "sk-admin-bench"

_BARE = textwrap.dedent(
    """
    import sys, uvicorn
    from usageledger.emulator import Emulator, EmulatorConfig, Request

    emulator = Emulator(EmulatorConfig(now=int(sys.argv[1])))
    if sys.argv[3] == "starlette":
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        async def endpoint(request):
            r = emulator.handle(Request(request.method, request.url.path, request.url.query, dict(request.headers)))
            return Response(r.body, status_code=r.status, headers=dict(r.headers))

        app = Starlette(routes=[Route("/{path:path}", endpoint)])
    else:
        from usageledger.emulator.server import asgi_app

        app = asgi_app(emulator.handle)
    config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[2]), http="h11", ws="none", lifespan="off",
                            loop="asyncio", access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    original = server.startup

    async def startup(sockets=None):
        await original(sockets)
        print(f"Emulator ready at http://127.0.0.1:{sys.argv[2]}/v1", flush=True)

    server.startup = startup
    server.run()
    """
)


_COLD = textwrap.dedent(
    """
    import hashlib, json, sys, time
    from urllib.parse import urlencode
    from usageledger import catalogue
    from usageledger.emulator import Emulator, EmulatorConfig, Request

    now, day = int(sys.argv[1]), 86400
    today = now - now % day
    headers = {"authorization": "Bearer sk-admin-bench"}
    out = {}
    pages = []
    for endpoint in catalogue.ENDPOINTS:
        if endpoint.is_costs:
            group = "project_id,line_item"
        else:
            group = ",".join(g for g in endpoint.group_by if g in ("project_id", "model"))
        query = {"start_time": today - 31 * day, "end_time": today, "limit": 31, "group_by": group}
        pages.append(("1d", endpoint, group, query))
    for endpoint in catalogue.USAGE_ENDPOINTS:  # a week of hours, grouped as `sync --bucket-width 1h` groups them
        group = ",".join(endpoint.default_group_by)
        query = {"start_time": today - 60 * day, "end_time": today - 53 * day, "bucket_width": "1h", "limit": 168,
                 "group_by": group}
        pages.append(("1h", endpoint, group, query))
    for width, endpoint, group, query in pages:
        emulator = Emulator(EmulatorConfig(now=now))
        wall, cpu = time.perf_counter(), time.process_time()
        response = emulator.handle(Request("GET", "/v1" + endpoint.path, urlencode(query), headers))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert response.status == 200, response.body[:200]
        digest = hashlib.sha256(response.body).hexdigest()
        out[f"{width} {endpoint.name}"] = [group, cpu, wall, len(response.body), digest]
    print(json.dumps(out))
    """
)

_YEAR = textwrap.dedent(
    """
    import hashlib, json, resource, sys, time
    from urllib.parse import urlencode
    from usageledger import catalogue
    from usageledger.emulator import Emulator, EmulatorConfig, Request

    # What `usageledger emulator --days 375` computes for `usageledger sync --bucket-width 1h`: every usage
    # endpoint's year of hourly buckets, default grouping, pages of 168 buckets, default cache (128 MB).
    now, day = int(sys.argv[1]), 86400
    emulator = Emulator(EmulatorConfig(now=now, days=375))
    first = (now // day - 375) * day
    headers = {"authorization": "Bearer sk-admin-bench"}
    digest = hashlib.sha256()
    pages = results = 0
    cpu = wall = 0.0  # of handle() alone: reading the pages (json.loads) is the sync's work, not the emulator's
    for endpoint in catalogue.USAGE_ENDPOINTS:
        query = {"start_time": first, "end_time": now - now % 3600, "bucket_width": "1h", "limit": 168,
                 "group_by": ",".join(endpoint.default_group_by)}
        while True:
            request = Request("GET", "/v1" + endpoint.path, urlencode(query), headers)
            started, begun = time.perf_counter(), time.process_time()
            response = emulator.handle(request)
            cpu, wall = cpu + time.process_time() - begun, wall + time.perf_counter() - started
            assert response.status == 200, response.body[:200]
            digest.update(response.body)
            body = json.loads(response.body)
            pages += 1
            results += sum(len(b["results"]) for b in body["data"])
            if not body["has_more"]:
                break
            query["page"] = body["next_page"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB, the child's peak
    print(json.dumps([cpu, wall, pages, results, digest.hexdigest(), peak]))
    """
)


def cold_pages(versions: dict[str, tuple[str, str]], rounds: int) -> dict[str, dict[str, list[list[object]]]]:
    """Per version, per page, one ``[group, cpu, wall, size, sha256]`` per round; versions interleaved."""
    runs: dict[str, dict[str, list[list[object]]]] = {v: {} for v in versions}
    for _ in range(rounds):
        for version, (python, src) in versions.items():
            env = {**os.environ, "PYTHONPATH": src}
            done = subprocess.run([python, "-c", _COLD, str(NOW)], env=env, capture_output=True, text=True, check=True)
            for name, row in json.loads(done.stdout).items():
                runs[version].setdefault(name, []).append(row)
    return runs


def print_cold(runs: dict[str, dict[str, list[list[object]]]]) -> None:
    versions = list(runs)
    print(f"load average {os.getloadavg()[0]:.1f} (1 min)")
    print("cold pages from a fresh Emulator: 31-day grouped daily (1d) and 168-hour grouped hourly (1h)")
    print("(median CPU ms [wall ms] over the rounds)")
    head = "".join(f" | {v:>18}" for v in versions)
    print(f"{'page':34} {'group_by':36}{head} | ratio | bytes agree")
    for name, rows in runs[versions[-1]].items():
        cells, cpus = [], []
        for v in versions:
            cpu = statistics.median(float(r[1]) for r in runs[v][name]) * 1000  # type: ignore[arg-type]
            wall = statistics.median(float(r[2]) for r in runs[v][name]) * 1000  # type: ignore[arg-type]
            cells.append(f" | {cpu:7.1f} [{wall:7.1f}]")
            cpus.append(cpu)
        ratio = f"{cpus[0] / cpus[-1]:5.1f}x" if len(cpus) > 1 else "  -  "
        same = len({r[4] for v in versions for r in runs[v][name]}) == 1
        print(f"{name:34} {rows[0][0]!s:36}{''.join(cells)} | {ratio} | {'yes' if same else 'NO'} "
              f"({int(rows[0][3]) // 1024} KiB)")  # type: ignore[call-overload]  # fmt: skip


def year_hourly(versions: dict[str, tuple[str, str]], rounds: int) -> None:
    """The emulator's CPU for a year of hourly pages of every usage endpoint, versions interleaved."""
    runs: dict[str, list[list[object]]] = {v: [] for v in versions}
    for _ in range(rounds):
        for version, (python, src) in versions.items():
            env = {**os.environ, "PYTHONPATH": src}
            done = subprocess.run([python, "-c", _YEAR, str(NOW)], env=env, capture_output=True, text=True, check=True)
            runs[version].append(json.loads(done.stdout))
    print(f"load average {os.getloadavg()[0]:.1f} (1 min)")
    print("a year of hourly pages (--days 375, every usage endpoint, default group_by, 168 buckets a page):")
    for version, rows in runs.items():
        cpus = ", ".join(f"{float(r[0]):.2f}" for r in rows)  # type: ignore[arg-type]
        walls = ", ".join(f"{float(r[1]):.2f}" for r in rows)  # type: ignore[arg-type]
        peak = max(float(r[5]) for r in rows)  # type: ignore[arg-type]
        print(f"  {version}: CPU s {cpus}; wall s {walls}; {rows[0][2]} pages, {rows[0][3]:,} results; "
              f"peak RSS {peak:.0f} MiB")  # fmt: skip
    same = len({r[4] for rows in runs.values() for r in rows}) == 1
    print(f"  bytes agree: {'yes' if same else 'NO'}")


def cli_sync(versions: dict[str, tuple[str, str]], rounds: int) -> None:
    """The lead's scenario for real: ``usageledger emulator --latency 100ms --now NOW --days 375`` in one process,
    ``usageledger sync --bucket-width 1h --concurrency 8`` of the year into a fresh store; the emulator process's
    CPU (psutil, user + system, HTTP serving included) and the sync's wall time, versions interleaved."""
    import tempfile

    until = str(NOW)  # the emulator's clock, not the wall clock: no window past its now
    for _ in range(rounds):
        for version, (python, src) in versions.items():
            env = {**os.environ, "PYTHONPATH": src, "OPENAI_ADMIN_KEY": KEY}
            emulator, base, _ = start_server("cli", python, src, ("--latency", "100ms", "--days", "375"))
            try:
                process = psutil.Process(emulator.pid)
                before = process.cpu_times()
                with tempfile.TemporaryDirectory() as tmp:
                    command = [python, "-c", "from usageledger.cli import main; main()", "sync", "--bucket-width",
                               "1h", "--concurrency", "8", "--since", "375d", "--until", until,
                               "--store", str(Path(tmp) / "bench.duckdb")]  # fmt: skip
                    started = time.perf_counter()
                    done = subprocess.run(command, env={**env, "OPENAI_BASE_URL": base}, capture_output=True, text=True)
                    wall = time.perf_counter() - started
                after = process.cpu_times()
            finally:
                emulator.terminate()
                emulator.wait(timeout=30)
            cpu = after.user + after.system - before.user - before.system
            print(f"[{version}] CLI year-hourly sync: exit {done.returncode}, sync wall {wall:.1f} s, emulator CPU "
                  f"{cpu:.2f} s (load average {os.getloadavg()[0]:.1f})")  # fmt: skip


def start_server(
    kind: str, python: str = sys.executable, src: str | None = None, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[str], str, float]:
    started = time.perf_counter()
    env = None if src is None else {**os.environ, "PYTHONPATH": src}
    if kind == "cli":
        command = [python, "-c", "from usageledger.cli import main; main()", "emulator", "--port", "0",
                   "--now", str(NOW), *extra]  # fmt: skip
    else:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [python, "-c", _BARE, str(NOW), str(port), kind]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("Emulator ready at "):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.split(" at ", 1)[1].strip(), time.perf_counter() - started


async def _fetch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def load(
    base: str, targets: list[str], connections: int, seconds: float, warm: bool = True
) -> tuple[int, float, int]:
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    requests = [f"GET {t} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode() for t in targets]
    done = 0
    size = 0
    stop = 0.0

    async def worker(offset: int) -> None:
        nonlocal done, size
        reader, writer = await asyncio.open_connection(host, port)
        i = offset
        while time.perf_counter() < stop:
            status, body = await _fetch(reader, writer, requests[i % len(requests)])
            if status != 200:
                raise SystemExit(f"unexpected status {status}: {body[:200]!r}")
            size = len(body)
            done += 1
            i += connections
        writer.close()
        await writer.wait_closed()

    # warm-up: every target once (the cold scenario only checks its first target)
    reader, writer = await asyncio.open_connection(host, port)
    for r in requests if warm else requests[:1]:
        status, body = await _fetch(reader, writer, r)
        assert status == 200, body[:200]
        json.loads(body)
    writer.close()
    await writer.wait_closed()
    begin = time.perf_counter()
    stop = begin + seconds
    await asyncio.gather(*(worker(k) for k in range(connections)))
    return done, time.perf_counter() - begin, size


def scenarios(base_path: str) -> dict[str, list[str]]:
    today = NOW - NOW % DAY
    completions = f"{base_path}/organization/usage/completions"

    def daily(start: int) -> str:
        query = {"start_time": start, "end_time": start + 31 * DAY, "bucket_width": "1d", "limit": 31,
                 "group_by": "project_id,model"}  # fmt: skip
        return f"{completions}?{urlencode(query)}"

    fields = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source")
    combos = [",".join(f for bit, f in enumerate(fields) if mask >> bit & 1) for mask in range(1, 1 << len(fields))]
    distinct = [
        f"{completions}?{urlencode({'start_time': today - (31 + k) * DAY, 'limit': 31, 'group_by': combo})}"
        for k in range(20)
        for combo in combos
    ]
    minute = {"start_time": today - DAY, "end_time": today, "bucket_width": "1m", "limit": 1440}
    return {
        "daily grouped page (31 buckets, project_id,model), same page": [daily(today - 31 * DAY)],
        "daily grouped page (31 buckets, project_id,model), 60 sliding windows": [
            daily(today - 31 * DAY - k * DAY) for k in range(60)
        ],
        "minute page (1440 buckets, ungrouped), same page": [f"{completions}?{urlencode(minute)}"],
        "daily page (31 buckets), 2540 distinct queries (127 group_by combinations x 20 windows), cold": distinct,
    }


def cold_page_seconds() -> tuple[float, float, float]:
    """In-process: construction time, and the first (uncached) 31-day grouped daily page and 1440-minute page."""
    from usageledger.emulator import Emulator, EmulatorConfig, Request

    started = time.perf_counter()
    emulator = Emulator(EmulatorConfig(now=NOW))
    built = time.perf_counter() - started
    headers = {"authorization": f"Bearer {KEY}"}
    today = NOW - NOW % DAY
    query = urlencode({"start_time": today - 31 * DAY, "end_time": today, "limit": 31, "group_by": "project_id,model"})
    started = time.perf_counter()
    assert emulator.handle(Request("GET", "/v1/organization/usage/completions", query, headers)).status == 200
    daily = time.perf_counter() - started
    query = urlencode({"start_time": today - DAY, "end_time": today, "bucket_width": "1m", "limit": 1440})
    started = time.perf_counter()
    assert emulator.handle(Request("GET", "/v1/organization/usage/completions", query, headers)).status == 200
    minute = time.perf_counter() - started
    return built, daily, minute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--server",
        choices=("cli", "asgi", "starlette"),
        default="cli",
        help="cli: `usageledger emulator`; asgi/starlette: uvicorn with the bare ASGI app or a Starlette wrapper",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of cold pages per version")
    parser.add_argument("--before-python", default="/work/main/.venv/bin/python")
    parser.add_argument("--before-src", default="/work/main/src")
    parser.add_argument("--no-before", action="store_true", help="time this checkout only")
    parser.add_argument("--cold-only", action="store_true", help="skip the server scenarios")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each server scenario")
    parser.add_argument("--year-rounds", type=int, default=1, help="rounds of the year of hourly pages (0: skip)")
    parser.add_argument("--cli-sync", type=int, default=0, help="rounds of the real CLI year-hourly sync (slow)")
    args = parser.parse_args()

    here = str(Path(__file__).resolve().parents[1] / "src")
    versions = {"after": (sys.executable, here)}
    if not args.no_before:
        versions = {"before": (args.before_python, args.before_src), **versions}
    print_cold(cold_pages(versions, args.rounds))
    if args.year_rounds:
        year_hourly(versions, args.year_rounds)
    if args.cli_sync:
        cli_sync(versions, args.cli_sync)
    if args.cold_only:
        return

    built, cold_daily, cold_minute = cold_page_seconds()
    print(f"in-process: Emulator() {built * 1000:.1f} ms; first daily grouped page {cold_daily * 1000:.1f} ms; "
          f"first 1440-minute page {cold_minute * 1000:.1f} ms")  # fmt: skip

    serve(versions, args)


def serve(versions: dict[str, tuple[str, str]], args: argparse.Namespace) -> None:
    """The throughput scenarios against every version's server, both up at once, interleaved ``--repeats`` times."""
    servers = {v: start_server(args.server, python, src) for v, (python, src) in versions.items()}
    try:
        for version, (proc, _, startup) in servers.items():
            mib = psutil.Process(proc.pid).memory_info().rss / 2**20
            print(f"[{version}] server ({args.server}): ready in {startup:.2f} s (spawn to 'ready'); RSS {mib:.0f} MiB")
        for name in scenarios(""):
            rates: dict[str, list[float]] = {v: [] for v in servers}
            for _ in range(args.repeats):
                for version, (_, base, _) in servers.items():
                    targets = scenarios(urlsplit(base).path)[name]
                    warm = not name.endswith("cold")
                    done, elapsed, _ = asyncio.run(load(base, targets, args.connections, args.seconds, warm))
                    rates[version].append(done / elapsed)
            shown = "; ".join(
                f"{v} {statistics.median(r):,.0f} req/s ({min(r):,.0f}-{max(r):,.0f})" for v, r in rates.items()
            )
            print(f"{name}: {shown}")
        for version, (proc, _, _) in servers.items():
            print(
                f"[{version}] server RSS after the runs: {psutil.Process(proc.pid).memory_info().rss / 2**20:.0f} MiB"
            )
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
