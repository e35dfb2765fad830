"""Many orgs, many workers, one PostgreSQL: `sync --org` shards the work and each (org, stream) has its own lock.

Three emulator processes stand for three organisations (each its own seed, so their data differ). Workers are real
`usageledger sync` processes started together. What must hold:

* two workers on disjoint shards leave the database equal (every endpoint table, every stream's watermark and row
  count) to one worker that syncs every org: no row written twice, none lost;
* two workers on the same org serialise per stream: the later one waits, then re-reads only its lag window, so
  every row is inserted once over both runs, and the store again equals the single-worker sync;
* a worker whose stream another connection holds writes nothing of it until the lock is free.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from usageledger.store import open_store

from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import cli, env, finish
from fixtures.syncing import Snapshot, snapshot

ORGS = ("alpha", "beta", "gamma")
SEEDS = {"alpha": 11, "beta": 12, "gamma": 13}


def _emulator(seed: int, *extra: str) -> tuple[subprocess.Popen[str], str]:
    args = ["--port", "0", "--now", str(EMULATOR_NOW), "--seed", str(seed), "--days", "40"]
    args += ["--projects", "2", "--users", "3", "--models", "2", *extra]
    proc = subprocess.Popen(
        [*cli(), "emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "Emulator ready at " in line, line
    return proc, line.split("Emulator ready at ", 1)[1].strip()


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, str]]:
    """One emulator process per org (20 ms latency, so workers overlap); org name -> base URL."""
    procs: list[subprocess.Popen[str]] = []
    urls: dict[str, str] = {}
    try:
        for org in ORGS:
            proc, url = _emulator(SEEDS[org], "--latency", "20ms")
            procs.append(proc)
            urls[org] = url
        yield urls
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture(scope="module")
def config(emulators: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A usageledger.toml listing the three orgs, each with its emulator's base URL."""
    path = tmp_path_factory.mktemp("workers") / "usageledger.toml"
    path.write_text("".join(f'[[orgs]]\nname = "{o}"\nbase_url = "{u}"\n\n' for o, u in emulators.items()))
    return path


def _db(cluster: Any, what: str) -> str:
    return str(cluster.createdb(f"{what}_{os.getpid()}_{random.randrange(10**9)}"))


def _worker(config: Path, store: str, *extra: str) -> subprocess.Popen[str]:
    args = [*cli(), "sync", "--config", str(config), "--store", store, "--now", str(EMULATOR_NOW)]
    args += ["--since", "20d", "--concurrency", "3", "--quiet", "--no-directory", *extra]
    environ = env("http://127.0.0.1:9/v1")  # every org names its own base URL; this one is never used
    return subprocess.Popen(
        args, env=environ, cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _ok(proc: subprocess.Popen[str]) -> str:
    code, _, err = finish(proc)
    assert code == 0 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def reference(config: Path, _pg_cluster: Any) -> Snapshot:
    """The database one worker leaves after syncing every org."""
    url = _db(_pg_cluster, "single")
    _ok(_worker(config, url))
    with open_store(url) as opened:
        shot = snapshot(opened)
    assert {row[0] for row in shot["streams"]} == set(ORGS)
    assert sum(len(rows) for name, rows in shot.items() if name != "streams") > 1000
    return shot


def test_two_workers_on_disjoint_shards_equal_one_worker(config: Path, reference: Snapshot, _pg_cluster: Any) -> None:
    """`--org alpha,beta` and `--org gamma` in parallel: the database equals a single worker's, row for row."""
    url = _db(_pg_cluster, "shards")
    procs = [_worker(config, url, "--org", "alpha,beta"), _worker(config, url, "--org", "gamma")]
    errs = [_ok(p) for p in procs]
    assert not any("waiting for stream" in e for e in errs), errs  # different orgs never wait for each other
    with open_store(url) as opened:
        assert snapshot(opened) == reference
        runs = opened.query("SELECT status, inserted FROM sync_runs ORDER BY started_at")
        orgs_by_run = opened.query("SELECT last_run_id, COUNT(DISTINCT org) FROM streams GROUP BY last_run_id")
    assert [r[0] for r in runs] == ["ok", "ok"]
    rows = sum(len(v) for k, v in reference.items() if k != "streams")
    assert sum(r[1] for r in runs) == rows  # every row inserted once, by one of the two workers
    assert sorted(n for _, n in orgs_by_run) == [1, 2]  # one worker wrote gamma, the other alpha and beta


def test_two_workers_on_the_same_org_serialise_per_stream(config: Path, reference: Snapshot, _pg_cluster: Any) -> None:
    """Two workers both syncing every org at once: each row is inserted once over both runs; equal to one worker."""
    url = _db(_pg_cluster, "same")
    procs = [_worker(config, url), _worker(config, url)]
    for p in procs:
        _ok(p)
    with open_store(url) as opened:
        assert snapshot(opened) == reference
        runs = opened.query("SELECT status, inserted FROM sync_runs")
    assert [r[0] for r in runs] == ["ok", "ok"]
    rows = sum(len(v) for k, v in reference.items() if k != "streams")
    assert sum(r[1] for r in runs) == rows  # racing writers would each insert the fresh windows (or fail on the key)


def test_a_worker_waits_for_a_stream_another_connection_holds(config: Path, _pg_cluster: Any) -> None:
    """While the lock of (beta, costs) is held elsewhere, a worker writes none of it; once freed, it syncs it."""
    url = _db(_pg_cluster, "held")
    with open_store(url) as holder:
        assert holder.try_lock_stream("beta", "costs.1d.project_id+line_item")
        proc = _worker(config, url, "--org", "beta", "--endpoint", "costs")
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert (
            "waiting for stream costs.1d.project_id+line_item of org beta: another usageledger worker is syncing it"
            in line
        ), line
        time.sleep(1.0)
        assert proc.poll() is None
        assert holder.query("SELECT COUNT(*) FROM costs") == [(0,)]
        assert holder.query("SELECT COUNT(*) FROM sync_runs") == [(0,)]
        holder.unlock_stream("beta", "costs.1d.project_id+line_item")
        _ok(proc)
        assert holder.query("SELECT COUNT(*) FROM costs WHERE org = 'beta'")[0][0] > 0
        assert holder.query("SELECT status FROM sync_runs") == [("ok",)]


def test_a_worker_needs_only_the_keys_of_its_shard(emulators: dict[str, str], tmp_path: Path) -> None:
    """Each org's key in its own variable: a machine holding alpha's key only syncs `--org alpha`; all orgs need all."""
    config = tmp_path / "usageledger.toml"
    config.write_text(
        "".join(
            f'[[orgs]]\nname = "{o}"\nkey_env = "KEY_{o.upper()}"\nbase_url = "{u}"\n\n' for o, u in emulators.items()
        )
    )
    store = str(tmp_path / "alpha.duckdb")
    base = [*cli(), "sync", "--config", str(config), "--store", store, "--now", str(EMULATOR_NOW), "--since", "5d"]
    base += ["--endpoint", "costs", "--quiet", "--no-directory"]
    environ = env("http://127.0.0.1:9/v1", KEY_ALPHA="sk-admin-alpha-only")
    environ.pop("OPENAI_ADMIN_KEY")
    every = subprocess.run(base, env=environ, capture_output=True, text=True, timeout=120, check=False)
    assert every.returncode == 1
    assert every.stderr.strip() == "error: org 'beta': no admin key: set KEY_BETA (orgs.key_env names the variable)"
    assert "sk-admin-alpha-only" not in every.stderr + every.stdout
    shard = subprocess.run(
        [*base, "--org", "alpha"], env=environ, capture_output=True, text=True, timeout=120, check=False
    )
    assert shard.returncode == 0, shard.stderr
    with open_store(store) as opened:
        assert opened.query("SELECT DISTINCT org FROM costs") == [("alpha",)]
