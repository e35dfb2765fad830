"""Secrets end to end: a full CLI session with a canary admin key, errors included, leaves the key nowhere.

Every command runs as a real process with the canary in ``OPENAI_ADMIN_KEY``, against an emulator process that pins
that key and injects faults: `init`, `sync` at ``-vv`` and with ``--log-format json`` (logs written to files through
redirection), `status`, `export` as CSV, JSON Lines and Parquet, `report` (terminal and ``--html``), `check`,
`reconcile`, `doctor`, a sync into PostgreSQL, and failing syncs (a refused admin key, a project key, a dead port).
Then one grep (:func:`test_secrets.assert_no_secret`) reads stdout, stderr, the log files, the DuckDB file, a
``pg_dump`` of the PostgreSQL store, the exports, the HTML report and the config: zero occurrences.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reliability import cli
from test_secrets import NOW_ISO, Source, assert_no_secret, canary_key, dead_url, start_emulator

from fixtures.postgres import find_pg_bin

pytestmark = pytest.mark.heavy

FAULTS = ("--rate-429", "0.08", "--rate-5xx", "0.08", "--rate-drop", "0.04", "--rate-truncate", "0.05")
"""25% faults: enough for retries and their debug logs in every sync, few enough to keep the session short."""


def _run(cwd: Path, key: str, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`usageledger ARGS` in ``cwd`` with ``key`` in OPENAI_ADMIN_KEY; stderr redirected to ``log`` when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_"))}
    env.update(OPENAI_ADMIN_KEY=key, COLUMNS="200")
    if log is None:
        return subprocess.run([*cli(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    with log.open("w") as fh:
        done = subprocess.run([*cli(), *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=fh, text=True)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout, log.read_text())


def test_a_full_session_with_errors_leaves_the_key_in_no_output_log_store_export_or_report(
    tmp_path: Path, _pg_cluster: Any
) -> None:
    """init, faulty syncs at -vv and JSON, status, exports, reports, check, reconcile, doctor, failures: zero hits."""
    key = canary_key()
    wrong, project = canary_key(fill="w"), canary_key("sk-proj-", "y")
    pg = _pg_cluster.createdb("secrets_e2e")
    out: dict[str, Source] = {}
    codes: dict[str, int] = {}

    def record(name: str, done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        out[f"{name} stdout"], out[f"{name} stderr"] = done.stdout, done.stderr
        codes[name] = done.returncode
        return done

    with start_emulator("-vv", "--admin-key", key, "--seed", "4", *FAULTS) as emulator:
        url = emulator.url
        sync = ("sync", "--base-url", url, "--now", NOW_ISO, "--since", "20d")
        record("init", _run(tmp_path, key, "init"))
        (tmp_path / "usageledger.toml").write_text(
            (tmp_path / "usageledger.toml").read_text().replace("max_retries = 4", "max_retries = 8")
        )
        record("sync -vv", _run(tmp_path, key, *sync, "-vv", log=tmp_path / "sync-debug.log"))
        record("sync json", _run(tmp_path, key, *sync, "-vv", "--log-format", "json", log=tmp_path / "sync.jsonl"))
        record("sync pg", _run(tmp_path, key, *sync, "-vv", "--store", pg, "--quiet"))
        record("status", _run(tmp_path, key, "status"))
        for fmt in ("csv", "jsonl", "parquet"):
            record(f"export {fmt}", _run(tmp_path, key, "export", "-f", fmt, "-o", str(tmp_path / f"export-{fmt}")))
        period = ("--since", "2026-11-01", "--until", "2026-11-20")
        record("report", _run(tmp_path, key, "report", *period))
        record("report html", _run(tmp_path, key, "report", *period, "--html", str(tmp_path / "report.html")))
        record("check", _run(tmp_path, key, "check", "--date", "2026-11-19"))
        record("reconcile", _run(tmp_path, key, "reconcile", *period))
        record("doctor", _run(tmp_path, key, "doctor", "--base-url", url, "-vv"))
        record("refused key", _run(tmp_path, wrong, *sync, "-vv"))
        record("project key", _run(tmp_path, project, *sync, "-vv"))
        record("doctor project key", _run(tmp_path, project, "doctor", "--base-url", url, "-vv"))
    elsewhere = tmp_path / "dead"
    elsewhere.mkdir()
    (elsewhere / "usageledger.toml").write_text("[sync]\nmax_retries = 1\n")
    record("dead port", _run(elsewhere, key, "sync", "--base-url", dead_url(), "--since", "3d", "-vv", "-e", "costs"))
    out |= {"emulator stdout": emulator.stdout, "emulator stderr": emulator.stderr}

    assert {
        name: codes[name] for name in ("init", "sync -vv", "sync json", "sync pg", "status", "doctor")
    } == dict.fromkeys(("init", "sync -vv", "sync json", "sync pg", "status", "doctor"), 0), out
    assert all(codes[f"export {fmt}"] == 0 for fmt in ("csv", "jsonl", "parquet")) and codes["report html"] == 0
    assert codes["refused key"] == 1 and "HTTP 401" in str(out["refused key stderr"])
    assert codes["project key"] == 1 and "HTTP 403" in str(out["project key stderr"])
    assert codes["dead port"] == 1 and "could not reach 127.0.0.1" in str(out["dead port stderr"])
    assert "retry" in str(out["sync -vv stderr"]), "the faults should have caused retries"
    assert stat.S_IMODE((tmp_path / "usageledger.toml").stat().st_mode) == 0o600
    assert "Traceback" not in "".join(str(v) for v in out.values())

    dump = subprocess.run(
        [str(find_pg_bin() / "pg_dump"), "--dbname", pg, "--data-only"], capture_output=True, text=True, timeout=120
    )
    assert dump.returncode == 0 and "COPY public.costs" in dump.stdout, dump.stderr
    out |= {"pg_dump": dump.stdout, "working directory (store, logs, exports, report, config)": tmp_path}
    for secret in (key, wrong, project):
        read = assert_no_secret(out, secret)
    print(f"secrets: {read} sources grepped (stdout, stderr, logs, store, pg_dump, exports, report), 0 hits")


def test_a_config_holding_a_key_must_be_private_or_every_command_refuses_it(tmp_path: Path) -> None:
    """A config with api_key at 0644: status, sync and doctor refuse it with the chmod 600 fix; at 0600 it is read."""
    key = canary_key()
    config = tmp_path / "usageledger.toml"
    config.write_text(f'[[orgs]]\nname = "acme"\napi_key = "{key}"\nbase_url = "{dead_url()}"\n')
    config.chmod(0o644)
    outputs: dict[str, Source] = {}
    for command in ("status", "sync", "doctor"):
        done = _run(tmp_path, "", command)
        outputs[command] = done.stdout + done.stderr
        assert done.returncode == 1 and f"chmod 600 {config.name}" in done.stdout + done.stderr, done.stderr
    config.chmod(0o600)
    done = _run(tmp_path, "", "sync", "--since", "1d")
    outputs["private sync"] = done.stdout + done.stderr
    assert done.returncode == 1 and "could not reach 127.0.0.1" in done.stderr and "chmod" not in done.stderr
    assert_no_secret(outputs, key)
