"""Secrets end to end: a full CLI session with a canary admin key, errors included, leaves the key nowhere.

Every command runs as a real process with the canary in ``OPENAI_ADMIN_KEY``, against an emulator process that pins
that key and injects faults: `init`, `sync` at ``-vv`` and with ``--log-format json`` (logs written to files through
redirection), `status`, `export` as CSV, JSON Lines and Parquet, `report` (terminal and ``--html``), `check`,
`reconcile`, `doctor`, a sync into PostgreSQL, and failing syncs (a refused admin key, a project key, a dead port).
Then one grep (:func:`test_secrets.assert_no_secret`) reads stdout, stderr, the log files, the DuckDB file, a
``pg_dump`` of the PostgreSQL store, the exports, the HTML report and the config: zero occurrences.

Then the same channels once per malformed key (a trailing newline, space or tab, an inner tab, a non-ASCII letter,
and a well-formed key for comparison), grepping every spelling of the key and its middle part ``CANARY``.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import pytest

from usageledger import Client, UsageApi
from usageledger._http import RetryPolicy
from usageledger.config import OrgConfig
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.errors import UsageLedgerError
from usageledger.sync import Org as SyncOrg

from fixtures.emulator import EMULATOR_NOW
from fixtures.leaks import NOW_ISO, Source, assert_no_secret, canary_key, dead_url, start_emulator
from fixtures.postgres import find_pg_bin
from fixtures.reliability import cli

pytestmark = pytest.mark.heavy

FAULTS = ("--rate-429", "0.08", "--rate-5xx", "0.08", "--rate-drop", "0.04", "--rate-truncate", "0.05")
"""25% faults: enough for retries and their debug logs in every sync, few enough to keep the session short."""
FAST_429 = ("--retry-after-ms", "30")
"""Each 429 also says retry-after-ms: 30, which the CLI waits instead of the whole second of Retry-After: the subject
here is what the output shows, not the wait (test_client_e2e and test_http keep the real 1 s)."""


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

    with start_emulator("-vv", "--admin-key", key, "--seed", "4", *FAULTS, *FAST_429) as emulator:
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
    # One retry, not the default four: the private sync fails at the dead port either way, without ~6 s of back-off.
    config.write_text(
        f'[sync]\nmax_retries = 1\n\n[[orgs]]\nname = "acme"\napi_key = "{key}"\nbase_url = "{dead_url()}"\n'
    )
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


# --- malformed keys, every channel ------------------------------------------------------------------------

MALFORMED_KEYS = {
    "well-formed": lambda key: key,
    # A newline, a space and a tab at once: one normalisation strips them all (each alone: test_secrets_keys.py).
    "trailing newline, space and tab": lambda key: key + " \t\n",
    "inner tab": lambda key: key[:15] + "\t" + key[15:],
    "non-ASCII": lambda key: key[:15] + "é" + key[15:],
}
"""How a key gets pasted wrong. Surrounding whitespace is stripped (the key works); the rest is refused up front."""


def _canary_needles(raw: str) -> set[str]:
    """Every spelling of a (possibly malformed) key: raw, stripped, repr-, JSON-, TOML- and percent-escaped, base64,
    and its distinctive middle (``CANARY``, which survives whatever a bad character splits the key into)."""
    found = {raw, raw.strip(), repr(raw)[1:-1], json.dumps(raw)[1:-1], quote(raw, safe=""), "CANARY"}
    found |= {base64.b64encode(raw.encode()).decode(), base64.b64encode(raw.strip().encode()).decode()}
    return {n for n in found if n}


def _store_dump(path: Path) -> str:
    """Every row of every table of the DuckDB store at ``path``, every column, as text (pages may be compressed)."""
    if not path.exists():
        return ""
    with duckdb.connect(str(path), read_only=True) as db:
        tables = [r[0] for r in db.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        assert "sync_runs" in tables and "streams" in tables, tables
        rows = {t: db.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}
    return "\n".join(f"{t}: {r!r}" for t, r in rows.items())


def _library_texts(raw: str) -> dict[str, str]:
    """str, repr and traceback of what the library raises for ``raw`` (a refused key, or a dead port), and reprs."""
    texts: dict[str, str] = {
        "OrgConfig repr": repr(OrgConfig("acme", api_key=raw)),
        "Org repr": repr(SyncOrg("acme", raw, dead_url())),
    }
    try:
        with Client(raw, dead_url(), retry=RetryPolicy(max_retries=0, sleep=lambda _: None)) as client:
            texts["Client repr"] = repr(client)
            client.page("costs", start_time=EMULATOR_NOW - 86400)
    except UsageLedgerError as exc:
        texts |= {
            "error str": str(exc),
            "error repr": repr(exc),
            "error traceback": "".join(traceback.format_exception(exc)),
        }
    try:
        texts["UsageApi repr"] = repr(UsageApi(access_token=raw, base_url=dead_url()))
    except UsageLedgerError as exc:
        texts["UsageApi error"] = "".join(traceback.format_exception(exc))
    return texts


@pytest.mark.parametrize("form", list(MALFORMED_KEYS))
def test_a_malformed_key_leaves_no_trace_in_any_channel(tmp_path: Path, emulator_url: str, form: str) -> None:
    """A key pasted with a trailing newline, space and tab, an inner tab or a non-ASCII letter (and a well-formed one):
    through the CLI against the emulator over HTTP, stdout, stderr, text and JSON logs, every file written (config by
    `init`, exports, HTML report), every table and column of the store (failed runs included), doctor, the library's
    exceptions and reprs hold neither the key in any spelling nor its middle part."""
    raw = MALFORMED_KEYS[form](canary_key())
    works = raw.strip() == canary_key()
    work = tmp_path / "work"
    work.mkdir()
    store = work / "u.duckdb"
    out: dict[str, Source] = {}
    codes: dict[str, int] = {}

    def run(name: str, *args: str, key: str = raw, cwd: Path = work) -> subprocess.CompletedProcess[str]:
        done = _run(cwd, key, *args)
        out[f"{name} stdout"], out[f"{name} stderr"] = done.stdout, done.stderr
        codes[name] = done.returncode
        return done

    sync = ("sync", "--store", str(store), "--now", NOW_ISO, "-e", "costs", "-e", "completions")
    run("init", "init", "--path", str(work / "written.toml"), "--store", str(store))
    run("sync text", *sync, "--base-url", emulator_url, "--since", "3d", "-vv")
    run("sync json", *sync, "--base-url", emulator_url, "--since", "4d", "-vv", "--log-format", "json")
    pinned = Emulator(EmulatorConfig(days=5, projects=1, now=EMULATOR_NOW, admin_key="sk-admin-" + "pinned" * 4))
    with run_server(pinned) as refusing:
        run("sync refused", *sync, "--base-url", refusing, "--since", "2d", "-vv")
    (work / "dead.toml").write_text("[sync]\nmax_retries = 1\n")
    run("sync dead", *sync, "--base-url", dead_url(), "--since", "2d", "-vv", "--config", str(work / "dead.toml"))
    run("query", "query", "costs", "--base-url", emulator_url, "--start", "2026-11-18", "-f", "jsonl", "-vv")
    run("status", "status", "--store", str(store))
    run("export", "export", "--store", str(store), "-f", "jsonl", "-o", str(work / "export.jsonl"))
    run("report", "report", "--store", str(store), "--since", "2026-11-15", "--html", str(work / "report.html"))
    run("check", "check", "--store", str(store), "--date", "2026-11-19")
    run("doctor", "doctor", "--store", str(store), "--base-url", emulator_url, "-vv")
    # The key written into a config file (0600, outside the scanned folder: the user's own copy of the key).
    keyed = tmp_path / "keyed"
    keyed.mkdir()
    config = keyed / "usageledger.toml"
    config.write_text(f'[[orgs]]\nname = "acme"\napi_key = {json.dumps(raw)}\nbase_url = "{emulator_url}"\n')
    config.chmod(0o600)
    run("sync config key", *sync, "--since", "2d", "-vv", "--config", str(config), key="")
    run("doctor config key", "doctor", "--config", str(config), "--store", str(store), key="")

    text = "".join(str(v) for v in out.values())
    assert "Traceback" not in text, text
    if works:
        assert {
            n: codes[n] for n in ("sync text", "sync json", "query", "export", "report", "doctor")
        } == dict.fromkeys(("sync text", "sync json", "query", "export", "report", "doctor"), 0), text
        assert codes["sync refused"] == 1 and "HTTP 401" in str(out["sync refused stderr"])
        assert codes["sync dead"] == 1 and "could not reach 127.0.0.1" in str(out["sync dead stderr"])
        assert codes["sync config key"] == 0, out["sync config key stderr"]
        dump = _store_dump(store)
        assert "HTTP 401" in dump and "could not reach" in dump, "the failed runs should be in the store"
    else:
        for name in ("sync text", "sync json", "sync refused", "query", "doctor", "sync config key"):
            assert codes[name] == 1 and "sk-admin-…" in str(out[f"{name} stderr"]) + str(out[f"{name} stdout"]), name
        assert "OPENAI_ADMIN_KEY" in str(out["sync text stderr"]) and "api_key" in str(out["sync config key stderr"])
        dump = _store_dump(store)
    out |= {"store (every table, every column)": dump, "files written (config, logs, store, exports)": work}
    out |= _library_texts(raw)

    needles = _canary_needles(raw)
    blobs = {
        label: [(p.name, p.read_bytes()) for p in sorted(src.rglob("*")) if p.is_file()]
        if isinstance(src, Path)
        else [("", src.encode("utf-8", "surrogateescape") if isinstance(src, str) else src)]
        for label, src in out.items()
    }
    hits = [
        f"{label} {name}: {needle!r}"
        for label, files in blobs.items()
        for name, blob in files
        for needle in needles
        if needle.encode() in blob
    ]
    assert not hits, "the key leaked:\n" + "\n".join(hits)
    assert (work / "written.toml").exists() and len(blobs["files written (config, logs, store, exports)"]) >= 3
