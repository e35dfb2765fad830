"""Directory refresh benchmark: how long the store takes to write an organisation's directory of N users.

A sync refreshes the directory (projects, users, keys, groups) before it reads usage. This bench times
:func:`usageledger.store.directory.refresh` on a fresh migrated store: the first refresh (every user new), then a
second one a day later in which a tenth of the users are renamed and a twentieth are gone (a new version each, and a
``deleted`` version each). The store's own time only: the users are made in memory, no HTTP.

Each measurement runs in a fresh interpreter, ``--runs`` times, alternating between the interpreters given so both meet
the same machine load; the median is reported.

Run: ``.venv/bin/python bench/bench_directory.py --sizes 1000,5000 --before /tmp/before-python`` (``--before``: an
interpreter with the code to compare against; ``--store`` a PostgreSQL URL to measure that back end instead).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, sys, tempfile, time
from usageledger.store import open_store
from usageledger.store.directory import Entry, Snapshot, refresh

n, url = int(sys.argv[1]), sys.argv[2]

def users(day):
    out = []
    for i in range(n):
        if day and i % 20 == 19:
            continue  # gone
        name = f"User {i}" + (" (renamed)" if day and i % 10 == 0 else "")
        record = json.dumps({"id": f"user-{i:06d}", "name": name})
        out.append(Entry("user", "org", f"user-{i:06d}", name, record, f"u{i}@example.com", "active"))
    return out

complete = frozenset({("user", "org")})
with tempfile.TemporaryDirectory() as where:
    with open_store(url if url != "-" else os.path.join(where, "s.duckdb")) as store:
        org = f"bench-{os.getpid()}"
        t = time.perf_counter()
        first = refresh(store, org, Snapshot(users(0), complete), at=1_800_000_000)
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        second = refresh(store, org, Snapshot(users(1), complete), at=1_800_086_400)
        t2 = time.perf_counter() - t
        store.execute("DELETE FROM directory_versions WHERE org = %s", [org])
print(json.dumps({"first": t1, "second": t2, "new": first.inserted, "changed": second.changed, "gone": second.deleted}))
"""


def measure(python: str, n: int, url: str) -> dict[str, float]:
    done = subprocess.run([python, "-c", CHILD, str(n), url], capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000", help="directory sizes (users), comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", help="an interpreter with the code to compare against")
    parser.add_argument("--store", default="-", help="a PostgreSQL URL (default: a fresh DuckDB file per run)")
    args = parser.parse_args()
    pythons = {"after": sys.executable} | ({"before": args.before} if args.before else {})
    with tempfile.TemporaryDirectory():
        for n in (int(s) for s in args.sizes.split(",")):
            runs: dict[str, list[dict[str, float]]] = {label: [] for label in pythons}
            for _ in range(args.runs):
                for label, python in pythons.items():
                    runs[label].append(measure(python, n, args.store))
            for label, results in runs.items():
                first = statistics.median(r["first"] for r in results)
                second = statistics.median(r["second"] for r in results)
                r = results[0]
                print(
                    f"{label:6} n={n:6d}  first refresh {first:8.3f} s ({r['new']:.0f} new)"
                    f"  second {second:8.3f} s ({r['changed']:.0f} renamed, {r['gone']:.0f} gone)"
                )


if __name__ == "__main__":
    main()
