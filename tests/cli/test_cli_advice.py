"""A request failing past its retries (a 429, a 5xx, a host that does not answer) is told the settings of the command
that met it: `sync` its flag and config keys, `query` and `doctor` none they lack; the library its parameters."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from usageledger import Client
from usageledger.emulator import Emulator, EmulatorConfig, FaultConfig, run_server
from usageledger.errors import RateLimitError
from usageledger.store import Stream, open_store
from usageledger.sync import Org, SyncOptions, sync

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import cli, emulator_process, env

RANGE = ("--start", "2026-11-10", "--end", "2026-11-12")


@pytest.fixture(scope="module")
def limited() -> Iterator[str]:
    """An emulator answering every request 429 (with a 10 ms retry-after-ms, so the retries are quick)."""
    with emulator_process("--rate-429", "1", "--retry-after-ms", "10") as url:
        yield url


@pytest.fixture(scope="module")
def failing() -> Iterator[str]:
    """An emulator answering every request with a 5xx."""
    with emulator_process("--rate-5xx", "1") as url:
        yield url


def _run(url: str, cwd: Path, *args: str) -> tuple[int, str]:
    done = subprocess.run([*cli(), *args], env=env(url), cwd=cwd, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr


def _sync(url: str, cwd: Path, *args: str) -> tuple[int, str]:
    store = str(cwd / "s.duckdb")
    return _run(url, cwd, "sync", "--store", store, "--now", str(EMULATOR_NOW), "--since", "3d", "-e", "costs", *args)


def test_query_rate_limited_is_told_to_wait_not_of_settings_it_lacks(limited: str, tmp_path: Path) -> None:
    """`query` past its retries on 429s: wait and query again; no `max_retries` or concurrency, which it lacks."""
    code, err = _run(limited, tmp_path, "query", "costs", *RANGE)
    assert code == 1, err
    assert err.startswith("error: HTTP 429 requests: "), err
    assert err.rstrip().endswith("Rate limited on every try: wait and query again"), err
    assert "max_retries" not in err and "concurrency" not in err, err


def test_sync_rate_limited_names_its_flag_and_config_keys(limited: str, tmp_path: Path) -> None:
    """`sync` past its retries on 429s names --concurrency, sync.concurrency and sync.max_retries with their values,
    once, never the library's `max_retries=`; the org that got nowhere is not asked for its directory, whose warning
    said the same advice again."""
    code, err = _sync(limited, tmp_path, "--concurrency", "3")
    assert code == 1, err
    fix = (
        "Rate limited on every try: wait and sync again, lower --concurrency or sync.concurrency (now 3), or raise"
        " sync.max_retries in the config (now 4)"
    )
    (error,) = [line for line in err.splitlines() if line.startswith(("error:", "warning:"))]
    assert error.startswith("error: stream default/costs.1d.project_id+line_item, window 2026-"), err
    assert error.endswith(fix) and err.count(fix) == 1, err
    assert "max_retries=" not in err, err


def test_sync_failing_names_the_config_file_it_reads(failing: str, tmp_path: Path) -> None:
    """`sync` past its retries on 5xx names sync.max_retries in the config file it read, with the file's value."""
    (tmp_path / "usageledger.toml").write_text("[sync]\nmax_retries = 0\n")
    code, err = _sync(failing, tmp_path, "--no-directory")
    assert code == 1, err
    assert err.rstrip().endswith(
        "Failed on every try: wait and sync again, or raise sync.max_retries in usageledger.toml (now 0)"
    ), err


def test_query_failing_is_told_to_wait(failing: str, tmp_path: Path) -> None:
    """`query` past its retries on 5xx: wait and query again, with no setting it does not have."""
    code, err = _run(failing, tmp_path, "query", "costs", *RANGE)
    assert code == 1, err
    assert err.rstrip().endswith("Failed on every try: wait and query again"), err


def test_doctor_probe_says_its_own_fix_alone(limited: str, tmp_path: Path) -> None:
    """`doctor`'s failed probe quotes the 429 without the client's advice: its own fix line is the one to follow."""
    done = subprocess.run([*cli(), "doctor"], env=env(limited), cwd=tmp_path, capture_output=True, text=True)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "probe: the probe request failed: HTTP 429" in out, out
    assert "max_retries" not in out and "concurrency" not in out, out


def test_unreachable_host_names_where_the_base_url_came_from(tmp_path: Path) -> None:
    """A host that does not answer: `query` and `sync` name the base URL's source (--base-url, OPENAI_BASE_URL)."""
    with socket.socket() as sock:  # bound and never listened on: connections are refused at once
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        code, err = _run(dead, tmp_path, "query", "costs", *RANGE)
        assert code == 1 and err.rstrip().endswith("Check the base URL (from OPENAI_BASE_URL) and the network"), err
        code, err = _run(dead, tmp_path, "query", "costs", *RANGE, "--base-url", dead)
        assert code == 1 and err.rstrip().endswith("Check the base URL (from --base-url) and the network"), err
        code, err = _sync(dead, tmp_path, "--no-directory")
        assert code == 1 and err.rstrip().endswith("Check the base URL (from OPENAI_BASE_URL) and the network"), err


def test_library_advice_names_library_parameters(tmp_path: Path) -> None:
    """The library's own errors name its parameters: the client's max_retries=, a sync's SyncOptions(...)."""
    faults = FaultConfig(rate_429=1.0, retry_after_ms=1)
    emulator = Emulator(EmulatorConfig(seed=1, days=10, now=EMULATOR_NOW, faults=faults))
    with run_server(emulator) as url, open_store(str(tmp_path / "lib.duckdb")) as store:
        with Client(FAKE_ADMIN_KEY, url) as client, pytest.raises(RateLimitError) as info:
            client.page("costs", start_time=EMULATOR_NOW - 86400)
        result = sync(
            store,
            [Org("main", FAKE_ADMIN_KEY, url)],
            [Stream.create("costs", "1d")],
            SyncOptions(since=EMULATOR_NOW - 86400, max_retries=1),
            clock=lambda: EMULATOR_NOW,
        )
    assert str(info.value).endswith("Rate limited on every try: wait and try again, or raise max_retries="), info.value
    (error,) = result.errors
    assert error.endswith(
        "Rate limited on every try: wait and sync again, lower SyncOptions(concurrency=), or raise"
        " SyncOptions(max_retries=)"
    ), error
