"""A sync whose streams fail for one reason says it once: `usageledger sync` against an emulator answering every
request 429 (or 5xx) ended with one `error:` line of ~4,000 characters, the same failure and advice once per stream,
after a directory warning giving the advice again. Each stream's own failure (its window and request id) stays in
`usageledger status --format json`."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from usageledger.store import default_streams

from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import cli, emulator_process, env

ENDPOINTS = {s.endpoint.name for s in default_streams()}


@pytest.fixture(scope="module")
def limited() -> Iterator[str]:
    """An emulator answering every request 429 (with a 10 ms retry-after-ms, so the retries are quick)."""
    with emulator_process("--rate-429", "1", "--retry-after-ms", "10") as url:
        yield url


def _sync(url: str, cwd: Path, *args: str, max_retries: int = 1) -> tuple[int, str]:
    """`usageledger sync -q` of every default stream (3 days) into ``cwd``'s store; its exit code and stderr."""
    (cwd / "usageledger.toml").write_text(f"[sync]\nmax_retries = {max_retries}\n")
    argv = ["sync", "-q", "--store", str(cwd / "s.duckdb"), "--now", str(EMULATOR_NOW), "--since", "3d", *args]
    done = subprocess.run([*cli(), *argv], env=env(url), cwd=cwd, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr


def _own_errors(cwd: Path) -> dict[str, str]:
    """Each stream's own last error, as `usageledger status --format json` shows it."""
    argv = [*cli(), "status", "--store", str(cwd / "s.duckdb"), "--format", "json"]
    done = subprocess.run(argv, env=env("http://127.0.0.1:9/v1"), cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {s["stream"]: s["last_run"]["error"] for s in json.loads(done.stdout)["streams"]}


def _assert_each_stream_keeps_its_own(cwd: Path, status: str) -> None:
    """Every stream failed, and its own error in `status` names its stream, window and request id."""
    own = _own_errors(cwd)
    assert {stream.split(".")[0] for stream in own} == ENDPOINTS, own
    for stream, error in own.items():
        assert error.startswith(f"stream default/{stream}, window 2026-"), error
        assert f"HTTP {status}" in error and "[request id req_" in error, error


def test_every_stream_rate_limited_is_one_short_line(limited: str, tmp_path: Path) -> None:
    """Twelve streams rate limited on every try: one line (not 4,000 characters), saying the 429, all 12 streams,
    one request id and the advice once; the org that got nowhere is not asked for its directory (no warning line
    repeating the advice); each stream's window and request id are in `status`."""
    code, err = _sync(limited, tmp_path, "--concurrency", "3")
    assert code == 1, err
    (line,) = err.splitlines()
    assert line.startswith("error: org 'default': all 12 streams failed: HTTP 429 requests: "), line
    assert len(line) < 450, line
    assert re.search(r"\[request id req_\w+ for [a-z_]+\]\. Rate limited on every try", line), line
    assert line.count("request id") == 1 and line.count("Rate limited on every try") == 1, line
    assert line.endswith("(now 3), or raise sync.max_retries in usageledger.toml (now 1)"), line
    _assert_each_stream_keeps_its_own(tmp_path, "429")


def test_streams_failing_for_two_reasons_name_each_once_and_the_advice_once(tmp_path: Path) -> None:
    """Every request a 500 or a 503, no retries: each reason is said once with the streams it failed, named by
    endpoint (every stream named once) and one request id; the advice both share once, at the end. The directory,
    asked after, fails the same way: its warning says so without the advice the error line gives."""
    with emulator_process("--rate-5xx", "1") as url:
        code, err = _sync(url, tmp_path, max_retries=0)
    assert code == 1, err
    warning, error = err.splitlines()
    assert re.fullmatch(
        r"warning: the directory of default was not refreshed either: HTTP 50[03] .+ \[request id req_\w+\]", warning
    ), err
    assert "every try" not in warning, warning
    assert error.startswith("error: org 'default': "), error
    assert len(error) < 900, error
    named = [n for names in re.findall(r"\d+ streams? failed \(([^)]*)\)", error) for n in names.split(", ")]
    assert sorted(named) == sorted(ENDPOINTS), error
    assert error.count("HTTP 500 server_error") == 1 and error.count("HTTP 503 server_error") == 1, error
    assert error.count("[request id req_") == 2, error
    assert error.count("Failed on every try") == 1, error
    assert error.endswith(
        "Failed on every try: wait and sync again, or raise sync.max_retries in usageledger.toml (now 0)"
    )
    _assert_each_stream_keeps_its_own(tmp_path, "50")
