"""Crash safety: `usageledger sync` killed with SIGKILL at many points, then re-run, equals an uninterrupted sync.

Every process is real: a `usageledger emulator` subprocess (fixed clock, a little latency) and sync subprocesses
started through ``tests/fixtures/kill_launcher.py``,
which SIGKILLs the process from inside at a chosen point of one phase:

* ``request``: the n-th HTTP response has arrived, its body not yet read;
* ``write``: the n-th data statement of a batch ran, its transaction still open;
* ``watermark``: the n-th watermark update ran, its transaction not yet committed;
* ``commit``: the n-th batch transaction committed, the engine has not yet recorded it.

Points are chosen by progress (the n-th event), never by wall time. A run can still finish before its point (a
run batches windows differently each time); that run is checked like any other and the point is replaced by an
earlier one, until the required number of runs were really killed (bounded).

After each kill the store holds only whole buckets equal to the reference and no watermark past a missing bucket;
after the re-run it equals the reference exactly. Points per store: 12 by default (three per phase, drawn afresh each
run), 80 with ``USAGELEDGER_HEAVY=1``; ``USAGELEDGER_KILL_POINTS`` overrides both. ``USAGELEDGER_KILL_SEED`` fixes the
random choice (printed on failure).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from usageledger import timeutil
from usageledger.store import default_streams, open_store
from usageledger.sync import SyncOptions, plan_stream

from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import HEAVY, assert_whole_buckets, emulator_process, finish, launcher, run_cli, sync_args
from fixtures.syncing import Snapshot, snapshot

KILL_POINTS = int(os.environ.get("USAGELEDGER_KILL_POINTS", "80" if HEAVY else "12"))
SEED = int(os.environ.get("USAGELEDGER_KILL_SEED", str(random.SystemRandom().randrange(1_000_000))))
PHASES = ("request", "write", "watermark", "commit")

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def emulator_url_process() -> Iterator[str]:
    """A `usageledger emulator` subprocess with the shared test organisation and 5 ms latency; its base URL."""
    with emulator_process("--latency", "5ms") as url:
        yield url


NO_DIRECTORY = "--no-directory"
"""Every sync here skips the directory refresh: no kill point falls in it (it runs after the sync's last commit, on a
client the launcher does not count), no check reads it, and it cost ~0.3 s of CPU per run, ~50 runs a module."""


FIRST_SINCE = "60d"
"""How far back a stream's first sync reaches (``[sync] since``; a re-run goes on from the watermarks, as before): 60
days, not the default 90. Still two windows of every usage stream (one of costs, as at 90 days), so a kill can fall
between two windows of one stream, and at least ten events of every phase (23 requests, 46 writes, 12 watermarks and
12 commits, against 34, 68, 17 and 17), which the test asserts; each of the ~50 runs of a module reads a third fewer
rows. Not ``--since``: that re-reads the whole span on every re-run instead of going on from the watermarks."""


def _config(cwd: Path) -> Path:
    """The configuration every sync here runs with (:data:`FIRST_SINCE`), written into ``cwd``."""
    path = cwd / "usageledger.toml"
    if not path.exists():
        path.write_text(f'[sync]\nsince = "{FIRST_SINCE}"\n', encoding="utf-8")
    return path


def _sync(store: str, url: str, cwd: Path, **kill: str) -> tuple[int, str]:
    """A sync through the launcher (killed at ``KILL_PHASE``/``KILL_AT`` when given); exit code and stderr."""
    args = sync_args(store, NO_DIRECTORY, "--config", str(_config(cwd)))
    code, _, err = finish(run_cli([*launcher(), *args], url, cwd, **kill))
    return code, err


@pytest.fixture(scope="module")
def reference(emulator_url_process: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, dict[str, int]]:
    """The snapshot of an uninterrupted sync, and how many events of each phase it went through."""
    where = tmp_path_factory.mktemp("ref")
    counts = where / "counts.json"
    code, err = _sync(str(where / "ref.duckdb"), emulator_url_process, where, KILL_COUNTS=str(counts))
    assert code == 0, err
    with open_store(str(where / "ref.duckdb")) as opened:
        return snapshot(opened), json.loads(counts.read_text())


def _points(rng: random.Random, counts: dict[str, int], n: int) -> list[tuple[str, int]]:
    """``n`` points spread over the phases, and within each phase spread over the run (stratified, jittered)."""
    out = []
    for i in range(n):
        phase = PHASES[i % len(PHASES)]
        share = (n - PHASES.index(phase) + len(PHASES) - 1) // len(PHASES)
        slot = i // len(PHASES)
        lo = 1 + slot * counts[phase] // share
        hi = max(lo, (slot + 1) * counts[phase] // share)
        out.append((phase, rng.randint(lo, hi)))
    return out


def _rerun_completes(store: str, url: str, cwd: Path, snap: Snapshot, where: str, **env: str) -> None:
    """The sync run again on a killed run's store (``env``: the launcher's settings) ends well and leaves exactly the
    uninterrupted run's store ``snap``."""
    code, err = _sync(store, url, cwd, **env)
    assert code == 0, f"{where}: the re-run failed: {err}"
    with open_store(store) as opened:
        assert snapshot(opened) == snap, f"{where}: the re-run left a store that differs from the reference"


def _crash_and_recover(
    url: str, cwd: Path, make_store: Callable[[int], str], reference: tuple[Snapshot, dict[str, int]], label: str
) -> Counter[str]:
    """Kill at ``KILL_POINTS`` points, check, re-run, compare; the real interruptions per phase."""
    snap, counts = reference
    rng = random.Random(f"{SEED}-{label}")
    todo = _points(rng, counts, KILL_POINTS)
    killed: Counter[str] = Counter()
    finished_first = 0
    attempts = 0
    while todo:
        attempts += 1
        assert attempts <= 3 * KILL_POINTS, f"seed {SEED}: too many runs finished before their kill point"
        phase, at = todo.pop(0)
        store = make_store(attempts)
        where = f"seed {SEED}, {label}, {phase} #{at}"
        code, err = _sync(store, url, cwd, KILL_PHASE=phase, KILL_AT=str(at))
        if code == -signal.SIGKILL:
            killed[phase] += 1
            with open_store(store) as opened:
                assert_whole_buckets(snapshot(opened), snap, where)
        else:
            # Finished before the point: a valid run, checked below; an earlier point of the phase replaces it.
            assert code == 0, f"{where}: {err}"
            finished_first += 1
            todo.append((phase, rng.randint(1, max(1, at - 1))))
        _rerun_completes(store, url, cwd, snap, where)
    assert sum(killed.values()) == KILL_POINTS
    print(f"{label}: {dict(killed)} killed, {finished_first} finished before their point (seed {SEED})")
    return killed


# The stores killed and re-run start migrated and empty, copied from a template migrated once: what they are checked
# on (the sync's requests, writes, watermarks and commits) is the same, and each run no longer pays the ~120 DDL
# statements of a new store (the reference sync still makes its store from nothing).


@pytest.fixture(scope="module")
def duckdb_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty DuckDB store with every migration applied, closed (its one file is whole)."""
    path = tmp_path_factory.mktemp("template") / "template.duckdb"
    with open_store(str(path)):
        pass
    return path


@pytest.fixture
def duckdb_stores(duckdb_template: Path, tmp_path: Path) -> Callable[[int], str]:
    """A factory of empty migrated DuckDB stores, copies of the template."""

    def make(i: int) -> str:
        path = tmp_path / f"kill{i}.duckdb"
        shutil.copyfile(duckdb_template, path)
        return str(path)

    return make


@pytest.fixture
def pg_databases(_pg_cluster: object) -> Callable[[int], str]:
    """A factory of empty migrated PostgreSQL databases on the session cluster, copies of one migrated here."""
    tag = f"{os.getpid()}_{random.randrange(10**9)}"
    template = f"kill_{tag}_template"
    with open_store(_pg_cluster.createdb(template)):  # type: ignore[attr-defined]
        pass

    def make(i: int) -> str:
        return _pg_cluster.createdb(f"kill_{tag}_{i}", template=template)  # type: ignore[attr-defined, no-any-return]

    return make


def test_sigkill_at_points_across_every_phase_then_rerun_equals_uninterrupted_duckdb_and_postgres(
    emulator_url_process: str,
    reference: tuple[Snapshot, dict[str, int]],
    tmp_path: Path,
    duckdb_stores: Callable[[int], str],
    pg_databases: Callable[[int], str],
) -> None:
    """SIGKILL mid-request, mid-write, mid-watermark, after commit; re-run: both stores equal the reference."""
    assert min(reference[1].values()) >= 10
    with ThreadPoolExecutor(2) as pool:
        duck = pool.submit(_crash_and_recover, emulator_url_process, tmp_path, duckdb_stores, reference, "duckdb")
        pg = pool.submit(_crash_and_recover, emulator_url_process, tmp_path, pg_databases, reference, "postgres")
        for killed in (duck.result(), pg.result()):
            assert sum(killed.values()) == KILL_POINTS
            assert set(killed) == set(PHASES) or len(PHASES) > KILL_POINTS


PIECES = {"KILL_PAGE_RESULTS": "200"}
"""A page budget of a few buckets' results (the launcher's ``KILL_PAGE_RESULTS``): the test organisation's windows
commit in pieces, as a big organisation's do (50 commits where whole windows take 12)."""


def _window_bounds() -> dict[str, set[int]]:
    """Per default stream, where the windows of a first sync (:data:`FIRST_SINCE`) end: a watermark anywhere else
    was set by a piece of a window."""
    since = timeutil.since_unix(FIRST_SINCE, now=EMULATOR_NOW, param="since")
    return {
        s.id: {timeutil.floor(min(w.end, EMULATOR_NOW), s.bucket_width) for w in plan.windows}
        for s in default_streams()
        for plan in [plan_stream("default", s, None, SyncOptions(since=since), now=EMULATOR_NOW)]
    }


def _kill_between_pieces(
    url: str, cwd: Path, make_store: Callable[[int], str], snap: Snapshot, commits: int, label: str
) -> int:
    """SIGKILL right after a commit at three points spread over a run in pieces, check, re-run, compare; how many
    kills left a watermark inside a window (its earlier pieces committed, its later ones not)."""
    bounds = _window_bounds()
    inside = 0
    todo = [commits // 4, commits // 2, 3 * commits // 4]
    attempts = 0
    while todo:
        attempts += 1
        assert attempts <= 9, f"{label}: too many runs finished before their kill point"
        at = todo.pop(0)
        store = make_store(100 + attempts)
        where = f"{label}, commit #{at} of a run in pieces"
        code, err = _sync(store, url, cwd, KILL_PHASE="commit", KILL_AT=str(at), **PIECES)
        if code != -signal.SIGKILL:
            assert code == 0, f"{where}: {err}"
            todo.append(max(1, at - 5))
            continue
        with open_store(store) as opened:
            partial = snapshot(opened)
        assert_whole_buckets(partial, snap, where)
        marks = [(stream, int(mark.timestamp())) for _, stream, mark, _ in partial["streams"] if mark is not None]
        inside += any(mark not in bounds[stream] for stream, mark in marks)
        _rerun_completes(store, url, cwd, snap, where, **PIECES)
    return inside


def test_sigkill_between_the_pieces_of_a_window_then_rerun_equals_uninterrupted(
    emulator_url_process: str,
    reference: tuple[Snapshot, dict[str, int]],
    tmp_path: Path,
    duckdb_stores: Callable[[int], str],
    pg_databases: Callable[[int], str],
) -> None:
    """Windows committed in pieces store what whole windows store; SIGKILL right after a piece's commit leaves whole
    buckets and a watermark inside its window, never past a missing bucket, and the re-run completes the store
    exactly: DuckDB and PostgreSQL."""
    snap, _ = reference
    counts = tmp_path / "pieces.json"
    store = duckdb_stores(0)
    code, err = _sync(store, emulator_url_process, tmp_path, KILL_COUNTS=str(counts), **PIECES)
    assert code == 0, err
    with open_store(store) as opened:
        assert snapshot(opened) == snap
    commits = json.loads(counts.read_text())["commit"]
    assert commits > 2 * reference[1]["commit"]
    with ThreadPoolExecutor(2) as pool:
        kills = [
            pool.submit(_kill_between_pieces, emulator_url_process, tmp_path, make, snap, commits, label)
            for make, label in ((duckdb_stores, "duckdb"), (pg_databases, "postgres"))
        ]
        for inside in kills:
            assert inside.result() >= 1


def _interrupt_after(store: str, url: str, cwd: Path, windows: int) -> tuple[int, str]:
    """Start a sync, send SIGINT (Ctrl-C) after its ``windows``-th committed window; its exit code and stderr."""
    args = sync_args(store, "--log-format", "json", NO_DIRECTORY, "--config", str(_config(cwd)))
    proc = run_cli([*launcher(), *args], url, cwd)
    assert proc.stderr is not None
    seen = 0
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("{") and json.loads(line).get("message") == "window committed":
            seen += 1
            if seen == windows:
                proc.send_signal(signal.SIGINT)
    code, _, rest = finish(proc, timeout=60)
    return code, "".join(lines) + rest


def test_ctrl_c_exits_cleanly_and_the_rerun_finishes_the_job(
    emulator_url_process: str, reference: tuple[Snapshot, dict[str, int]], tmp_path: Path
) -> None:
    """SIGINT mid-run: exit code 130 with one 'interrupted' line, the run recorded as interrupted, re-run completes."""
    snap, _ = reference
    store = str(tmp_path / "ctrl_c.duckdb")
    code, stderr = _interrupt_after(store, emulator_url_process, tmp_path, random.Random(SEED).randrange(1, 10))
    assert code == 130, stderr
    assert "error: interrupted" in stderr and "Traceback" not in stderr
    with open_store(store) as opened:
        assert opened.query("SELECT status FROM sync_runs") == [("interrupted",)]
    code, err = _sync(store, emulator_url_process, tmp_path)
    assert code == 0, err
    with open_store(store) as opened:
        assert snapshot(opened) == snap
