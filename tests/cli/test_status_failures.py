"""`usageledger status` says why streams failed: after a sync that failed (a cron job's, say), its text form showed
each failed stream only as `status: failed` (or a `failed` cell), never why; the reason was only in
`status --format json`. Now, under the streams, each failure is said as the sync's error line said it: the streams
of an org that failed for one reason once, with one request id, shared advice once; at 80 columns, piped."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from usageledger.store import default_streams

from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import cli, emulator_process, env

ENDPOINTS = {s.endpoint.name for s in default_streams()}
POINTER = "Each failed stream's window and request id: `usageledger status --format json`."


def _sync(url: str, cwd: Path, *args: str, max_retries: int) -> None:
    """`usageledger sync -q` (3 days) into ``cwd``'s store, which fails."""
    (cwd / "usageledger.toml").write_text(f"[sync]\nmax_retries = {max_retries}\n")
    argv = ["sync", "-q", "--store", str(cwd / "s.duckdb"), "--now", str(EMULATOR_NOW), "--since", "3d", *args]
    done = subprocess.run([*cli(), *argv], env=env(url), cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr


def _status(cwd: Path, *args: str) -> str:
    """`usageledger status` of ``cwd``'s store, piped, at 80 columns: its stdout."""
    argv = [*cli(), "status", "--store", str(cwd / "s.duckdb"), *args]
    done = subprocess.run(
        argv, env=env("http://127.0.0.1:9/v1", COLUMNS="80"), cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _failures(out: str, failed: int) -> tuple[list[str], list[str]]:
    """The failures `status` lists under ``Why N streams failed:`` (each unwrapped to one line), and the lines
    after them."""
    lines = out.splitlines()
    start = lines.index(f"Why {failed} stream{'s' if failed != 1 else ''} failed:")
    items: list[str] = []
    rest = start + 1
    for line in lines[start + 1 :]:
        if line.startswith("  - "):
            items.append(line[4:])
        elif line.startswith("    ") and items:
            items[-1] += " " + line[4:]
        else:
            break
        rest += 1
    return items, lines[rest:]


def _own(cwd: Path) -> dict[str, str]:
    """Each failed stream's own error, from `status --format json`."""
    streams = json.loads(_status(cwd, "--format", "json"))["streams"]
    return {s["stream"]: s["last_run"]["error"] for s in streams if s["state"] == "failed"}


def _assert_readable(out: str) -> None:
    """Every line fits 80 columns; no colour codes or cut words in a pipe."""
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "\x1b" not in out and "…" not in out, out


def _said_once(cwd: Path) -> str:
    """`status`'s one failure for all 12 streams, readable at 80 columns: one request id whole, one that a stream
    stored with its own error, then the pointer to each stream's window and request id."""
    out = _status(cwd)
    _assert_readable(out)
    (failure,), after = _failures(out, 12)
    (request_id,) = re.findall(r"\[request id (req_\w+) for [a-z_]+\]", failure)
    assert any(f"[request id {request_id}]" in error for error in _own(cwd).values()), request_id
    assert after[0] == POINTER, out
    return failure


def test_status_says_once_why_every_stream_failed(tmp_path: Path) -> None:
    """Twelve streams rate limited on every try: `status` says it once under the streams (all 12 streams, the 429,
    one of their request ids whole, the advice), and where each stream's window and request id is."""
    with emulator_process("--rate-429", "1", "--retry-after-ms", "10") as url:
        _sync(url, tmp_path, "--concurrency", "3", max_retries=1)
    failure = _said_once(tmp_path)
    assert failure.startswith("org 'default': all 12 streams failed: HTTP 429 requests: "), failure
    assert re.search(r"\[request id req_\w+ for [a-z_]+\]\. Rate limited on every try: ", failure), failure
    assert failure.count("Rate limited on every try") == 1, failure
    assert failure.endswith("(now 3), or raise sync.max_retries in usageledger.toml (now 1)"), failure


def test_status_names_each_reason_once_with_its_streams(tmp_path: Path) -> None:
    """Every request a 500 or a 503, no retries: each reason once, with the streams it failed by endpoint (every
    endpoint named once), its own request id; the advice both share once, at the end."""
    with emulator_process("--rate-5xx", "1") as url:
        _sync(url, tmp_path, "--no-directory", max_retries=0)
    out = _status(tmp_path)
    _assert_readable(out)
    failures, after = _failures(out, 12)
    assert len(failures) == 2, failures
    named = [
        n
        for f in failures
        for names in re.findall(r"^org 'default': \d+ streams? failed \(([^)]*)\)", f)
        for n in names.split(", ")
    ]
    assert sorted(named) == sorted(ENDPOINTS), failures
    assert sorted(code for f in failures for code in re.findall(r"HTTP 50\d", f)) == ["HTTP 500", "HTTP 503"]
    assert all(f.count("[request id req_") == 1 for f in failures), failures
    assert " ".join(failures).count("Failed on every try") == 1, failures
    assert failures[-1].endswith(
        "Failed on every try: wait and sync again, or raise sync.max_retries in usageledger.toml (now 0)"
    ), failures
    assert after[0] == POINTER, out


def test_status_says_a_stream_that_failed_alone_whole(tmp_path: Path) -> None:
    """Costs refused for its grouping while completions synced: `status` says the one failure whole (its stream,
    window and request id), so it points nowhere else; the stream that synced is not named."""
    with emulator_process("--refuse-costs-user-by-project") as url:
        _sync(url, tmp_path, "-e", "costs", "-e", "completions", "--group-by", "user_id,project_id", max_retries=0)
    out = _status(tmp_path)
    _assert_readable(out)
    (failure,), after = _failures(out, 1)
    (own,) = _own(tmp_path).values()
    assert failure == own, (failure, own)
    assert failure.startswith("stream default/costs.1d.project_id+user_id, window 2026-"), failure
    assert "HTTP 400" in failure and "[request id req_" in failure, failure
    assert POINTER not in out and "completions" not in failure, out
    assert after[0].startswith("Directory of default:"), out


def test_status_advises_a_failed_directory_refresh_with_the_sync_settings(tmp_path: Path) -> None:
    """Every request a 500 or a 503 (two reasons: the directory is read), no retries: the directory refresh fails
    too, and `status` names it with the advice the sync's error line gave, in its settings (`sync.max_retries`),
    never the library's `max_retries=`, which no command has."""
    with emulator_process("--rate-5xx", "1") as url:
        _sync(url, tmp_path, "--concurrency", "1", max_retries=0)
    out = _status(tmp_path)
    _assert_readable(out)
    _, after = _failures(out, 12)
    directory = " ".join(after[next(i for i, a in enumerate(after) if a.startswith("Directory of default:")) :])
    assert "its refresh of 20" in directory and "HTTP 50" in directory, out
    assert "raise sync.max_retries in usageledger.toml (now 0)" in directory, out
    assert "max_retries=" not in out, out


def test_status_says_a_base_url_without_v1_once(tmp_path: Path) -> None:
    """A base URL without its /v1: every stream a 404, each for its own path. `status` says it once, as the sync's
    error line does (all 12 streams, one request id, the URL meant), not twelve failures of four lines each."""
    with emulator_process() as url:
        bare = url.removesuffix("/v1")
        _sync(url, tmp_path, "--base-url", bare, max_retries=0)
    failure = _said_once(tmp_path)
    assert failure.startswith("org 'default': all 12 streams failed: HTTP 404: "), failure
    assert failure.endswith(f"The base URL (from --base-url) must end in /v1: pass --base-url {url}"), failure
