"""Workers benchmark: many orgs synced into one PostgreSQL by 1, 2 and 4 `usageledger sync` worker processes.

Setting: ``--emulator-processes`` helper processes serve ``--orgs`` synthetic organisations, each its own emulator
(own seed, own port, ``--latency`` on every response, fixed clock). A config lists every org with its base URL. For
each worker count W the orgs are dealt round-robin into W shards, and W ``usageledger sync --org <shard>`` processes
(each with ``--concurrency``) start together against one fresh PostgreSQL database. After one unmeasured warm-up pass
(the emulators' page caches filled), measured side by side in one run: wall time from the first start to the last
exit, rows, rows/s, the CPU time of the workers, the emulators and the PostgreSQL server; then every database is
compared with the single-worker one, table by table (every endpoint table without ``synced_at``, every stream's
watermark and row count): nothing written twice, nothing lost. The sum of rows inserted over all runs equals the
rows stored (each row inserted once).

Run: ``.venv/bin/python bench/bench_workers.py`` (``--orgs 20 --workers 1,2,4 --days 90 --latency 200ms``;
``--pg-url postgresql://.../postgres`` to use an existing server: databases are created in it).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from usageledger import timeutil
from usageledger.store import open_store

KEY = "sk-admin-bench-key"
NOW = 1795176000  # 2026-11-20T12:00:00Z, the tests' fixed clock
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fixtures.syncing import snapshot  # noqa: E402

_SERVE = """
import signal, sys, threading
from contextlib import ExitStack
from usageledger.emulator import Emulator, EmulatorConfig, FaultConfig, run_server
now, first, count, days, latency = (float(a) for a in sys.argv[1:6])
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
with ExitStack() as stack:
    for i in range(int(first), int(first + count)):
        config = EmulatorConfig(
            seed=100 + i, now=int(now), days=int(days) + 10, projects=3, users=5, models=3,
            faults=FaultConfig(latency=latency),
        )
        print(stack.enter_context(run_server(Emulator(config))), flush=True)
    print("ready", flush=True)
    stop.wait()
"""


@contextmanager
def emulators(orgs: int, days: int, latency: float, processes: int) -> Iterator[tuple[list[str], list[int]]]:
    """``orgs`` emulators spread over ``processes`` helper processes; their base URLs, and the helpers' pids."""
    per = -(-orgs // processes)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(NOW), str(first), str(min(per, orgs - first)), str(days), str(latency)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for first in range(0, orgs, per)
    ]
    try:
        urls = []
        for proc in procs:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.strip() == "ready":
                    break
                urls.append(line.strip())
        yield urls, [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)


def process_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes ``pids`` have used so far."""
    import psutil

    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def server_cpu(server: object) -> float | None:
    """CPU seconds of the temporary PostgreSQL cluster: its postmaster, its live children and its reaped backends."""
    import psutil

    data = getattr(server, "data", None)
    if data is None:
        return None
    postmaster = psutil.Process(int((Path(data) / "postmaster.pid").read_text().split()[0]))
    total = sum(postmaster.cpu_times())  # user, system, and the reaped children's user and system
    return total + sum(sum(c.cpu_times()[:2]) for c in postmaster.children(recursive=True))


@contextmanager
def postgres(url: str | None) -> Iterator[object]:
    """A server to create databases in: an existing one, or the test fixture's temporary cluster."""
    if url:

        class _Existing:
            def createdb(self, name: str) -> str:
                import psycopg

                with psycopg.connect(url, autocommit=True) as con:
                    con.execute(f"CREATE DATABASE {name}")
                return url.rsplit("/", 1)[0] + "/" + name

        yield _Existing()
        return
    from fixtures.postgres import _Cluster

    with _Cluster() as cluster:
        yield cluster


def children_cpu() -> float:
    """CPU seconds (user + system) of the waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_workers(config: Path, store: str, shards: list[list[str]], days: int, concurrency: int) -> float:
    """Start one worker per shard together; the wall time until the last one exits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_"))}
    env["OPENAI_ADMIN_KEY"] = KEY
    exe = [sys.executable, "-c", "from usageledger.cli import main; main()"]
    base = ["sync", "--config", str(config), "--store", store, "--now", str(NOW), "--since", f"{days}d"]
    base += ["--concurrency", str(concurrency), "--quiet", "--no-directory"]
    started = time.perf_counter()
    procs = [
        subprocess.Popen([*exe, *base, "--org", ",".join(shard)], env=env, stderr=subprocess.PIPE, text=True)
        for shard in shards
    ]
    for p in procs:
        _, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise SystemExit(f"a worker failed ({p.returncode}): {err.strip()}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=20)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--latency", default="200ms")
    parser.add_argument("--concurrency", type=int, default=4, help="Parallel requests per worker.")
    parser.add_argument("--emulator-processes", type=int, default=4, help="Helper processes serving the orgs.")
    parser.add_argument("--pg-url", default=None)
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    latency = timeutil.parse_duration(args.latency, param="--latency")
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores")
    print(
        f"{args.orgs} orgs (one emulator each, {args.latency} latency), {args.days} days of every default daily "
        f"stream, --concurrency {args.concurrency} per worker, into one PostgreSQL database per worker count"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulators(args.orgs, args.days, latency, args.emulator_processes) as (
            urls,
            helpers,
        ),
    ):
        names = [f"org{i + 1:02d}" for i in range(len(urls))]
        config = Path(tmp) / "usageledger.toml"
        config.write_text(
            "".join(f'[[orgs]]\nname = "{n}"\nbase_url = "{u}"\n\n' for n, u in zip(names, urls, strict=True))
        )
        with postgres(args.pg_url) as server:
            # A warm-up pass (not measured) so every measured run finds the emulators' pages computed: the
            # emulators share one helper process, whose cold page CPU would otherwise be what the runs measure.
            warm_db = server.createdb(f"bench_workers_warm_{os.getpid()}")  # type: ignore[attr-defined]
            warm = run_workers(config, warm_db, [names], args.days, 8)
            print(f"warm-up (1 worker, not measured): {warm:.2f}s", flush=True)
            results = []
            reference = None
            for w in counts:
                store = server.createdb(f"bench_workers_{w}_{os.getpid()}")  # type: ignore[attr-defined]
                shards = [names[i::w] for i in range(w)]
                cpu, served, db = children_cpu(), process_cpu(helpers), server_cpu(server)
                wall = run_workers(config, store, shards, args.days, args.concurrency)
                cpu, served = children_cpu() - cpu, process_cpu(helpers) - served
                db_after = server_cpu(server)
                db_text = "" if db is None or db_after is None else f", PostgreSQL {db_after - db:.1f}s"
                with open_store(store) as opened:
                    shot = snapshot(opened)
                    inserted = sum(r[0] for r in opened.query("SELECT inserted FROM sync_runs"))
                    requests = sum(r[0] for r in opened.query("SELECT requests FROM sync_runs"))
                rows = sum(len(v) for k, v in shot.items() if k != "streams")
                assert inserted == rows, f"{w} workers: {inserted} rows inserted for {rows} stored"
                if reference is None:
                    reference = shot
                same = shot == reference
                results.append((w, wall, rows, requests, same))
                print(
                    f"{w} worker(s): {wall:6.2f}s wall, {requests:,} requests, {rows:,} rows,"
                    f" {rows / wall:,.0f} rows/s; CPU: workers {cpu:.1f}s, emulators {served:.1f}s{db_text};"
                    f" equal to 1 worker: {'yes' if same else 'NO'}",
                    flush=True,
                )
    base_wall = results[0][1]
    print("speed-up over 1 worker: " + ", ".join(f"{w} workers {base_wall / wall:.2f}x" for w, wall, *_ in results))
    if not all(r[4] for r in results):
        raise SystemExit("a multi-worker store differs from the single-worker one")


if __name__ == "__main__":
    main()
