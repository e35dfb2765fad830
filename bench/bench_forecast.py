"""Backtest of the month-end forecast (:mod:`usageledger.report.forecast`) on the emulator's 400 days.

The emulator's default organisation (400 days of history before the tests' fixed clock, 2026-11-20T12:00Z) is synced
in-process into a fresh DuckDB store (the costs stream only, daily). Then, for every whole month in the synced data and
N = 7, 14 and 21, the month is forecast from the store's daily spend through its N-th day (what ``usageledger
forecast`` would have said that evening), and compared with the month's actual spend:

* **MAPE**: the mean of ``|forecast - actual| / actual`` over the months;
* **coverage**: the share of months whose actual spend lies within the forecast's range (it is meant as an 80%
  interval); and the mean width of the range relative to the actual spend;
* beside it, the naive **run rate** (spend so far / N x days in the month), measured on the same months.

    .venv/bin/python bench/bench_forecast.py [--days 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from usageledger import timeutil
from usageledger.emulator import Emulator, EmulatorConfig
from usageledger.report.forecast import fill_days, forecast_month, month_days
from usageledger.report.forecasting import daily_spend
from usageledger.store import default_streams, open_store
from usageledger.sync import Org, SyncOptions
from usageledger.sync._engine import run_sync

NOW = 1795176000  # 2026-11-20T12:00:00Z, the tests' fixed clock
KEY = "sk-admin-bench-key"
HORIZONS = (7, 14, 21)


def synced_series(days: int, seed: int, folder: Path) -> list[tuple[date, Decimal]]:
    """Sync the emulator's costs into a DuckDB store; the org's daily spend, every day from the first."""
    emulator = Emulator(EmulatorConfig(seed=seed, days=days, now=NOW))
    costs = [s for s in default_streams() if s.endpoint.is_costs]
    with open_store(folder / "bench.duckdb") as store:
        result = asyncio.run(
            run_sync(
                store,
                [Org("org-bench", KEY, "http://127.0.0.1/v1")],
                costs,
                SyncOptions(since=timeutil.floor(NOW - days * 86400, "1d")),
                transport=emulator.transport(),
                clock=lambda: NOW,
            )
        )
        assert result.ok, result.errors
        first = date.fromtimestamp(timeutil.floor(NOW - days * 86400, "1d"))
        last = date.fromtimestamp(NOW) - timedelta(days=1)
        spend = daily_spend(store, first, last).get(None, [])
    series = fill_days(spend, min(d for d, _ in spend), last)
    return series


def backtest(series: list[tuple[date, Decimal]]) -> dict[int, dict[str, Decimal | int]]:
    first, last = series[0][0], series[-1][0]
    months = []
    month = (first.replace(day=1) + timedelta(days=32)).replace(day=1)
    while month_days(month)[-1] <= last:
        months.append(month)
        month = (month + timedelta(days=32)).replace(day=1)
    out: dict[int, dict[str, Decimal | int]] = {}
    for n in HORIZONS:
        errors, naive_errors, widths, covered = [], [], [], 0
        for month in months:
            days = month_days(month)
            actual = sum((v for d, v in series if days[0] <= d <= days[-1]), Decimal(0))
            as_of = days[n - 1]
            fc = forecast_month([(d, v) for d, v in series if d <= as_of], month, as_of=as_of)
            errors.append(abs(fc.month_end - actual) / actual)
            naive = fc.actual_to_date / n * len(days)
            naive_errors.append(abs(naive - actual) / actual)
            widths.append((fc.high - fc.low) / actual)
            covered += fc.low <= actual <= fc.high
        out[n] = {
            "months": len(months),
            "mape": sum(errors, Decimal(0)) / len(errors),
            "max": max(errors),
            "coverage": Decimal(covered) / len(months),
            "width": sum(widths, Decimal(0)) / len(widths),
            "naive_mape": sum(naive_errors, Decimal(0)) / len(naive_errors),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        series = synced_series(args.days, args.seed, Path(tmp))
        synced = time.perf_counter() - started
    started = time.perf_counter()
    results = backtest(series)
    elapsed = time.perf_counter() - started
    print(f"emulator seed {args.seed}, {args.days} days: {len(series)} days of spend {series[0][0]} .. {series[-1][0]}")
    print(f"sync {synced:.1f} s, backtest {elapsed:.1f} s")
    print("| first N days | months | MAPE | worst | range coverage (80% meant) | mean range width | run-rate MAPE |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in results.items():
        print(
            f"| {n} | {r['months']} | {Decimal(r['mape']) * 100:.1f}% | {Decimal(r['max']) * 100:.1f}% "
            f"| {Decimal(r['coverage']) * 100:.0f}% | {Decimal(r['width']) * 100:.1f}% "
            f"| {Decimal(r['naive_mape']) * 100:.1f}% |"
        )


if __name__ == "__main__":
    main()
