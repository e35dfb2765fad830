"""Benchmark: the full report over a DuckDB store of 5 million rows must finish in under 2 s.

The rows are generated with DuckDB SQL straight into a migrated store's tables (``costs``, ``usage_completions``,
``usage_embeddings``; one org, its registered default daily streams, which the ``*_daily`` views read): a year of
days, 40 projects, 12 models, every token line-item kind. The timed part is what ``usageledger report`` does:
every query of the report, then the terminal rendering, in-process, on a read-only store; and the same report as
the CLI command in a fresh process, start-up and imports included.

With ``--hourly`` the usage rows are hourly buckets in time order (as a sync writes them) of hourly streams only, so
the daily views sum them to days (docs/STORE.md, "The daily views"); costs stay daily.

    .venv/bin/python bench/bench_report.py [--rows 5000000] [--days 365] [--hourly]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

from rich.console import Console

from usageledger.report.queries import Period, build_report
from usageledger.report.terminal import render_report
from usageledger.store import BaseStore, Stream, default_streams, open_store

TARGET_SECONDS = 2.0
FIRST_DAY = date(2025, 11, 20)
ORG = "org-bench"


def _stream_id(endpoint: str) -> str:
    return next(s for s in default_streams() if s.endpoint.name == endpoint).id


def generate(store: BaseStore, rows: int, days: int, *, hourly: bool = False) -> dict[str, int]:
    """Fill a migrated store: half the rows in costs, 40% in completions, 10% in embeddings, each in org-bench's
    default daily stream (registered, so the ``*_daily`` views show them); with ``hourly``, the usage in hourly
    streams grouped by project and model instead, a year of hours in time order."""
    usage = {e: Stream.create(e, "1h", ("project_id", "model")) for e in ("completions", "embeddings")}
    for endpoint in ("costs", "completions", "embeddings"):
        daily = next(s for s in default_streams() if s.endpoint.name == endpoint)
        store.register_stream(ORG, usage[endpoint] if hourly and endpoint in usage else daily)
    start = f"TIMESTAMPTZ '{FIRST_DAY.isoformat()} 00:00:00+00'"
    costs, completions = rows // 2, rows * 2 // 5
    embeddings = rows - costs - completions
    kinds = "['input', 'cached input', 'cache write', 'audio input', 'output', 'audio output']"
    day = f"{start} + (i % {days}) * INTERVAL 1 DAY, {start} + (i % {days} + 1) * INTERVAL 1 DAY"
    project = f"'proj_' || ((i // {days}) % 40)"
    model = f"'model-' || ((i // ({days} * 40)) % 12)"
    store.execute(
        "INSERT INTO costs (org, stream, bucket_start, bucket_end, group_key, project_id, line_item, amount_value, "
        "currency, quantity, quantity_unit, synced_at) "
        f"SELECT %s, %s, {day}, CAST(i AS VARCHAR), {project}, "
        f"{model} || ', ' || {kinds}[1 + (i // ({days} * 480)) % 6], "
        "CAST(((i * 7919) % 100000) AS DECIMAL(38,18)) / 10000, 'usd', "
        "CAST(((i * 7919) % 100000) * 40 AS DECIMAL(38,18)), 'tokens', now() "
        f"FROM range({costs}) t(i)",
        [ORG, _stream_id("costs")],
    )
    for endpoint, n, has_output in (("completions", completions, True), ("embeddings", embeddings, False)):
        out = ", output_tokens" if has_output else ""
        out_value = ", (i * 31) % 5000" if has_output else ""
        bucket, keys, stream = day, f"{project}, {model}", _stream_id(endpoint)
        if hourly:
            per = -(-n // (days * 24))  # rows an hour
            bucket = f"{start} + (i // {per}) * INTERVAL 1 HOUR, {start} + (i // {per} + 1) * INTERVAL 1 HOUR"
            keys = f"'proj_' || ((i % {per}) % 40), 'model-' || ((i % {per}) // 40 % 12)"
            stream = usage[endpoint].id
        store.execute(
            f"INSERT INTO usage_{endpoint} (org, stream, bucket_start, bucket_end, group_key, project_id, model, "
            f"input_tokens{out}, num_model_requests, synced_at) "
            f"SELECT %s, %s, {bucket}, CAST(i AS VARCHAR), {keys}, (i * 7919) % 20000{out_value}, "
            f"1 + i % 50, now() FROM range({n}) t(i)",
            [ORG, stream],
        )
    return {"costs": costs, "usage_completions": completions, "usage_embeddings": embeddings}


def timed_report(path: Path, period: Period) -> tuple[float, int]:
    """Seconds for every report query plus the terminal rendering; returns the rendered length too."""
    began = time.perf_counter()
    store = open_store(path, migrate=False, read_only=True)
    try:
        data = build_report(store, period)
        sink = Console(file=io.StringIO(), width=140)
        sink.print(render_report(data))
        rendered = len(sink.file.getvalue())  # type: ignore[attr-defined]
    finally:
        store.close()
    return time.perf_counter() - began, rendered


def cli_report(path: Path, period: Period) -> float:
    """Wall time of the command a user runs, in a fresh process (interpreter start-up and imports included)."""
    command = [
        str(Path(sys.executable).with_name("usageledger")),
        "report",
        "--store",
        str(path),
        "--since",
        period.since.isoformat(),
        "--until",
        period.until.isoformat(),
    ]
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "140"})
    return time.perf_counter() - began


def _verdict(label: str, times: list[float]) -> bool:
    """Print the timings; True when the target was missed."""
    ok = max(times) < TARGET_SECONDS
    print(
        f"report, {label}: first {times[0]:.3f} s, best {min(times):.3f} s, median {statistics.median(times):.3f} s, "
        f"worst {max(times):.3f} s over {len(times)} runs -> {'PASS' if ok else 'FAIL'} (target < {TARGET_SECONDS} s)"
    )
    return not ok


@contextmanager
def generated_store(rows: int, days: int, *, hourly: bool = False) -> Iterator[Path]:
    """A temporary DuckDB file of ``rows`` generated rows over ``days`` days (checkpointed), for the block."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        began = time.perf_counter()
        with open_store(path) as store:
            counts = generate(store, rows, days, hourly=hourly)
            store.execute("CHECKPOINT")
        print(f"generated {sum(counts.values()):,} rows {counts} in {time.perf_counter() - began:.1f} s")
        yield path


def store_args(doc: str | None) -> argparse.Namespace:
    """The command line of a bench over a :func:`generated_store`: ``--rows``, ``--days``, ``--repeat``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hourly", action="store_true", help="usage in hourly streams only (the views sum them)")
    return parser.parse_args()


def main() -> None:
    args = store_args(__doc__)
    with generated_store(args.rows, args.days, hourly=args.hourly) as path:
        last = FIRST_DAY + timedelta(days=args.days)
        periods = {
            "every row": Period(FIRST_DAY + timedelta(days=args.days // 2), last),
            "last 30 days": Period(last - timedelta(days=30), last),
        }
        failed = False
        for label, period in periods.items():
            times = []
            for _ in range(args.repeat):
                seconds, rendered = timed_report(path, period)
                times.append(seconds)
            failed |= _verdict(f"in-process, {label} ({period}; movers read the period before too)", times)
            print(f"  ({rendered:,} chars rendered)")
            failed |= _verdict(f"CLI `usageledger report`, {label}", [cli_report(path, period) for _ in times])
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
