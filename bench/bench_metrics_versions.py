"""Benchmark: ``render_metrics`` of two checkouts side by side, on the generated store of ``bench_report.py``.

Each render runs in its own process under ``PYTHONPATH=<checkout>/src`` (three renders, the best and the median
kept), the two checkouts alternating ``--rounds`` times, with "now" at noon on day 19 of the last generated month
and on its 1st. For a change to the scrape's queries, measured against the code before it on one noisy machine.

    .venv/bin/python bench/bench_metrics_versions.py --old /path/to/old/checkout --new . [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_report import FIRST_DAY, generated_store

ONE = r"""
import sys, time
from datetime import datetime
from usageledger.report.metrics import render_metrics
from usageledger.store import open_existing_store
now = datetime.fromisoformat(sys.argv[2])
times = []
for _ in range(3):
    began = time.perf_counter()
    with open_existing_store(sys.argv[1]) as store:
        body, _ = render_metrics(store, now=now)
    times.append(time.perf_counter() - began)
series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
print(f"best {min(times):.3f} s, median {sorted(times)[1]:.3f} s, {series:,} series")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="the checkout before the change")
    parser.add_argument("--new", type=Path, default=Path(), help="the checkout with it (default: this one)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with generated_store(5_000_000, 365) as path:
        last = FIRST_DAY + timedelta(days=364)
        for label, day in (("day 19", last), ("the 1st", last.replace(day=1))):
            now = f"{day.isoformat()}T12:00:00+00:00"
            for _ in range(args.rounds):
                for name, checkout in (("old", args.old), ("new", args.new)):
                    env = {**os.environ, "PYTHONPATH": str(checkout.resolve() / "src")}
                    done = subprocess.run(
                        [sys.executable, "-c", ONE, str(path), now], env=env, capture_output=True, text=True, check=True
                    )
                    print(f"{label:8} {name}: {done.stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
