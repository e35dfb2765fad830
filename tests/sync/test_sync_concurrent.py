"""Concurrency: two `usageledger sync` processes started together on one store serialise or both finish.

A DuckDB store is written by one process only (it holds ``<store>.lock``): the second sync is refused at once with a
message naming the PID of the sync that holds the store. On PostgreSQL syncs lock per (org, stream): the second
waits for the streams the first holds and then runs as an ordinary re-run (both finish). Either way the store
equals one clean sync (never corrupted, never double-counted), and a refused sync run again afterwards changes
nothing.
Rounds per store: 3 by default, 10 with ``USAGELEDGER_HEAVY=1``.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from usageledger.store import open_store

from fixtures.reliability import HEAVY, cli, emulator_process, finish, run_cli, sync_args
from fixtures.syncing import Snapshot, snapshot

pytestmark = pytest.mark.heavy

ROUNDS = 10 if HEAVY else 3
REFUSED = (
    "error: another usageledger sync is writing to this store; wait for it to finish and run again",
    "a running sync) is writing to the store",
)


FIRST_SINCE = "60d"
"""How far back a first sync reaches (``[sync] since``; the re-runs go on from the watermarks): 60 days, not the
default 90, as in test_sync_kill.py. Every usage stream still takes two windows and the costs one, so the two syncs of
a round still overlap (the second is refused at the lock, or waits for the streams the first holds); each of the ~20
syncs of the module writes a third fewer rows, which is most of a sync's time (its CPU, not the emulator's latency)."""


def _sync_args(store: str, cwd: Path) -> list[str]:
    """The CLI's `sync` of ``store`` with the configuration above, written into ``cwd``."""
    config = cwd / "usageledger.toml"
    if not config.exists():
        config.write_text(f'[sync]\nsince = "{FIRST_SINCE}"\n', encoding="utf-8")
    return [*cli(), *sync_args(store, "--config", str(config))]


@pytest.fixture(scope="module")
def slow_emulator() -> Iterator[str]:
    """An emulator subprocess with 20 ms latency, so two syncs overlap for a second or more."""
    with emulator_process("--latency", "20ms") as url:
        yield url


@pytest.fixture(scope="module")
def reference(slow_emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """The snapshot of one clean CLI sync."""
    where = tmp_path_factory.mktemp("ref")
    code, _, err = finish(run_cli(_sync_args(str(where / "ref.duckdb"), where), slow_emulator, where))
    assert code == 0, err
    with open_store(str(where / "ref.duckdb")) as opened:
        return snapshot(opened)


def _race(url: str, cwd: Path, make_store: Callable[[int], str], reference: Snapshot) -> Counter[str]:
    """``ROUNDS`` rounds of two syncs started together on a fresh store; the outcomes seen."""
    outcomes: Counter[str] = Counter()
    for i in range(ROUNDS):
        store = make_store(i)
        procs = [run_cli(_sync_args(store, cwd), url, cwd) for _ in range(2)]
        results = [finish(p) for p in procs]
        refused = 0
        for code, _, err in results:
            assert "Traceback" not in err, err
            if code != 0:
                assert code == 1 and any(r in err for r in REFUSED), err
                assert len(err.strip().splitlines()) == 1, err
                refused += 1
        assert refused < 2, results
        outcomes["serialised" if refused else "both finished"] += 1
        outcomes.update(next(r for r in REFUSED if r in err) for code, _, err in results if code)
        with open_store(store) as opened:
            assert snapshot(opened) == reference, f"round {i}: the store differs from one clean sync"
        code, _, err = finish(run_cli(_sync_args(store, cwd), url, cwd))
        assert code == 0, err
        with open_store(store) as opened:
            assert snapshot(opened) == reference, f"round {i}: a later re-run changed the store"
    print(dict(outcomes))
    return outcomes


def test_two_syncs_at_once_on_one_duckdb_file_serialise_and_never_double_count(
    slow_emulator: str, reference: Snapshot, tmp_path: Path
) -> None:
    """Two syncs on one DuckDB file: one is refused with a clear line (or both finish); the store equals one sync."""
    _race(slow_emulator, tmp_path, lambda i: str(tmp_path / f"race{i}.duckdb"), reference)


def test_two_syncs_at_once_on_one_postgres_database_serialise_and_never_double_count(
    slow_emulator: str, reference: Snapshot, tmp_path: Path, _pg_cluster: object
) -> None:
    """Two syncs on one PostgreSQL database: the advisory lock refuses one (or both finish); it equals one sync."""
    tag = f"{os.getpid()}_{random.randrange(10**9)}"
    make = lambda i: _pg_cluster.createdb(f"race_{tag}_{i}")  # type: ignore[attr-defined]  # noqa: E731
    _race(slow_emulator, tmp_path, make, reference)
