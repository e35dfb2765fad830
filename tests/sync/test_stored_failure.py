"""A failed stream's error as the store keeps it, read back (`stored_failure`): the cause, request id and advice the
run had, so `status` says the failures of streams that failed for one reason once, as the run's error line did."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from usageledger.emulator import Emulator, EmulatorConfig, FaultConfig, run_server
from usageledger.store import open_store
from usageledger.sync import SyncResult
from usageledger.sync._model import StreamResult, said_once, stored_failure

from fixtures.emulator import EMULATOR_NOW
from fixtures.syncing import DAY, run

SINCE = EMULATOR_NOW - 3 * DAY


def _faulty(path: Path, faults: FaultConfig, **options: object) -> SyncResult:
    """A sync of every default stream from an emulator answering with ``faults``."""
    emu = Emulator(EmulatorConfig(seed=1, days=10, now=EMULATOR_NOW, faults=faults))
    with run_server(emu) as url, open_store(path) as store:
        return run(store, url, since=SINCE, **options)


def _rate_limited(path: Path) -> SyncResult:
    return _faulty(path, FaultConfig(rate_429=1.0, retry_after_ms=10), max_retries=1, concurrency=3)


def _failing_5xx(path: Path) -> SyncResult:
    return _faulty(path, FaultConfig(rate_5xx=1.0), max_retries=0)


def _clock_ahead(path: Path) -> SyncResult:
    with run_server(Emulator(EmulatorConfig(seed=1, days=10, now=EMULATOR_NOW))) as url, open_store(path) as store:
        return run(store, url, now=EMULATOR_NOW + 3 * DAY, since=EMULATOR_NOW + DAY, max_retries=0)


def _unreachable(path: Path) -> SyncResult:
    with socket.socket() as sock, open_store(path) as store:  # bound, never listened on: refused at once
        sock.bind(("127.0.0.1", 0))
        return run(store, f"http://127.0.0.1:{sock.getsockname()[1]}/v1", since=SINCE, max_retries=0)


def _key_refused(path: Path) -> SyncResult:
    emu = Emulator(EmulatorConfig(seed=1, days=10, admin_key="sk-admin-the-right-one", now=EMULATOR_NOW))
    with run_server(emu) as url, open_store(path) as store:
        return run(store, url, since=SINCE, max_retries=0)


@pytest.mark.parametrize(
    "fail", [_rate_limited, _failing_5xx, _clock_ahead, _unreachable, _key_refused], ids=lambda f: f.__name__[1:]
)
def test_a_stored_failure_reads_back_as_the_run_had_it(fail: Callable[[Path], SyncResult], tmp_path: Path) -> None:
    """Each stream's error as the store keeps it reads back to the cause and request id the run gave the stream
    (and its advice, when the API answered), and the failures said once from them are the run's own errors, word
    for word."""
    result = fail(tmp_path / "s.duckdb")
    assert not result.ok and result.errors
    with open_store(tmp_path / "s.duckdb") as store:
        kept = {(s.org, s.stream): s.last_error for s in store.stream_states()}
    read: list[StreamResult] = []
    for s in result.streams:
        error = kept[(s.org, s.stream)]
        assert error == s.error and error is not None
        back = stored_failure(s.org, s.stream, error)
        assert (back.cause, back.request_id) == (s.cause, s.request_id), error
        if s.request_id is not None:
            assert back.advice == s.advice, error
        read.append(back)
    assert said_once(read) == result.errors
