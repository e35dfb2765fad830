"""Secrets: a distinctive canary key never shows up in any output, log, exception or traceback.

The CLI runs as a real process with the key in ``OPENAI_ADMIN_KEY`` and debug logging, against an emulator process
that injects faults (so retries and errors happen), against a dead port, and with keys the emulator refuses (401,
403). The library side grepped: reprs, exception texts and tracebacks (with their chained causes), and every log
record at DEBUG (including httpx and httpcore) as text and as JSON lines.

:func:`assert_no_secret` is the one grep; the sync, store, export and config suites add their files to it::

    from fixtures.leaks import assert_no_secret, canary_key
    assert_no_secret({"store": store_path, "export": export_dir, "stderr": result.stderr}, key)
"""

from __future__ import annotations

import base64
import io
import logging
import pickle
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from usageledger import AsyncClient, Client, UsageApi
from usageledger._http import RetryPolicy
from usageledger.cli._jsonlog import JsonFormatter
from usageledger.emulator import Emulator, EmulatorConfig, FaultConfig, run_server
from usageledger.errors import (
    APIConnectionError,
    AuthenticationError,
    InsecureURLError,
    ParameterError,
    PermissionDeniedError,
    UsageLedgerError,
)

from fixtures.emulator import EMULATOR_NOW
from fixtures.leaks import (
    FAST_429,
    FAULT_FLAGS,
    START,
    Source,
    assert_no_secret,
    canary_key,
    dead_url,
    find_secret,
    run_cli,
    start_emulator,
)


def test_the_grep_finds_every_spelling_of_the_key(tmp_path: Path) -> None:
    """The helper catches the key verbatim, percent-encoded, in base64, by its tail, in files and directories."""
    key = canary_key()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "export.csv").write_text(f"a,b\n1,{quote(key, safe='')}\n")
    samples: dict[str, Source] = {
        "verbatim": f"Bearer {key}",
        "tail": key[9:],
        "basic": base64.b64encode(key.encode()),
        "dir": tmp_path,
    }
    hits = find_secret(samples, key)
    assert all(any(hit.startswith(label) for hit in hits) for label in samples), hits
    assert assert_no_secret({"clean": "sk-admin-…", "empty dir": tmp_path / "none"}, key) == 1


# --- the CLI as a real process ----------------------------------------------------------------------------


def test_the_cli_never_shows_the_key_through_faults_dead_ports_and_refused_keys() -> None:
    """Debug-level CLI runs with retries, failures, 401 and 403: zero occurrences in stdout, stderr or exit text."""
    admin, project = canary_key(), canary_key("sk-proj-", "y")
    outputs: dict[str, Source] = {}
    with start_emulator("-vv", "--seed", "3", *FAULT_FLAGS, *FAST_429) as faulty:
        url = faulty.url
        # Each query ends at the emulator's now: without --end it ran to today's date, so the minute query read every
        # day since 2026-11-20 (14 windows of retries and paused 429s, ~6 s, on 2026-12-04) and grew by a window a day.
        end = ("--end", str(EMULATOR_NOW))
        runs = {
            "hourly": ("completions", "--start", str(START), *end, "--bucket-width", "1h", "--group-by", "model"),
            "costs": ("costs", "--start", str(START - 20 * 86400), *end, "--group-by", "line_item", "-f", "jsonl"),
            "minutes": ("images", "--start", str(EMULATOR_NOW - 7200), *end, "--bucket-width", "1m", "-f", "csv"),
            "daily": ("embeddings", "--start", str(START), "--end", str(EMULATOR_NOW - 86400)),
        }
        codes = []
        for name, args in runs.items():
            result = run_cli(admin, "query", *args, "--base-url", url, "-vv")
            codes.append(result.returncode)
            outputs |= {f"{name} stdout": result.stdout, f"{name} stderr": result.stderr}
    outputs |= {"faulty emulator stdout": faulty.stdout, "faulty emulator stderr": faulty.stderr}
    debug_log = "".join(str(v) for k, v in outputs.items() if k.endswith(" stderr"))
    assert "retry 1/2" in debug_log, "the fault flags should have caused at least one retry"
    assert 0 in codes, "at least one run should get through the faults"

    dead = run_cli(admin, "query", "costs", "--start", "3d", "--base-url", dead_url(), "-vv")
    assert dead.returncode == 1 and "could not reach 127.0.0.1" in dead.stderr
    outputs |= {"dead port stdout": dead.stdout, "dead port stderr": dead.stderr}

    with start_emulator("-vv", "--admin-key", canary_key(fill="z")) as pinned:
        refused = run_cli(admin, "query", "costs", "--start", "3d", "--base-url", pinned.url, "-vv")
        denied = run_cli(project, "query", "costs", "--start", "3d", "--base-url", pinned.url, "-vv")
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    assert denied.returncode == 1 and "HTTP 403" in denied.stderr and "lacks api.usage.read" in denied.stderr
    outputs |= {"401 stdout": refused.stdout, "401 stderr": refused.stderr, "403 stderr": denied.stderr}
    outputs |= {
        "403 stdout": denied.stdout,
        "pinned emulator stdout": pinned.stdout,
        "pinned emulator stderr": pinned.stderr,
    }

    assert "Traceback" not in "".join(str(v) for v in outputs.values())
    assert_no_secret(outputs, admin)
    assert_no_secret(outputs, project)


# --- the library ------------------------------------------------------------------------------------------


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Every logger at DEBUG, captured as text (caplog) and as the CLI's JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def _exception_texts(exc: BaseException) -> dict[str, str]:
    name = type(exc).__name__
    return {
        f"{name} str": str(exc),
        f"{name} repr": repr(exc),
        f"{name} args": repr(exc.args),
        f"{name} attributes": repr(vars(exc)),
        f"{name} traceback": "".join(traceback.format_exception(exc)),
    }


def _no_sleep() -> RetryPolicy:
    return RetryPolicy(max_retries=3, sleep=lambda _: None)


def test_the_library_never_shows_the_key_in_reprs_exceptions_tracebacks_or_debug_logs(
    debug_logs: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    """Reprs of every object holding the key, every error's text and traceback, and all DEBUG logs: zero hits."""
    admin, project = canary_key(), canary_key("sk-proj-", "y")
    texts: dict[str, Source] = {}
    faults = FaultConfig(rate_429=0.15, rate_5xx=0.2, rate_drop=0.1, rate_truncate=0.1, seed=5)
    faulty = Emulator(EmulatorConfig(days=30, projects=2, now=EMULATOR_NOW, faults=faults))
    pinned = Emulator(EmulatorConfig(days=5, projects=1, now=EMULATOR_NOW, admin_key=canary_key(fill="z")))
    errors: list[BaseException] = []

    with run_server(faulty) as url, Client(admin, url, retry=_no_sleep(), clock=lambda: EMULATOR_NOW) as client:
        query = client.query("completions", start_time=START, bucket_width="1h", group_by=["model"])
        api = UsageApi(admin, url, retry=_no_sleep())
        texts |= {
            "Client": repr(client),
            "Query": repr(query),
            "UsageApi": repr(api),
            "vars(UsageApi)": repr(vars(api)),
        }
        texts |= {"HTTPConfig": repr(client._config), "SyncHTTP": repr(client._http)}
        for _ in range(6):  # over a real socket through the fault mix: retries, and some failures
            try:
                list(query.rows())
            except UsageLedgerError as exc:
                errors.append(exc)
        api.close()
    for key in (admin, project):
        with Client(key, "http://127.0.0.1/v1", transport=pinned.transport(), retry=_no_sleep()) as client:
            try:
                client.page("costs", start_time=EMULATOR_NOW - 86400)
            except (AuthenticationError, PermissionDeniedError) as exc:
                errors.append(exc)
    with Client(admin, dead_url(), retry=RetryPolicy(max_retries=1, sleep=lambda _: None)) as client:
        with pytest.raises(APIConnectionError) as no_answer:
            client.page("costs", start_time=START)
        errors.append(no_answer.value)
        with pytest.raises(ParameterError) as bad:
            client.page("costs", start_time=START, bucket_width="1h")
        errors.append(bad.value)
        with pytest.raises(TypeError) as unpicklable:
            pickle.dumps(client)
        errors.append(unpicklable.value)
    with pytest.raises(InsecureURLError) as insecure:
        Client(admin, "http://usage.example.com/v1")
    errors.append(insecure.value)
    texts["AsyncClient"] = repr(AsyncClient(admin, "https://api.openai.com/v1"))

    kinds = {type(e).__name__ for e in errors}
    assert {"AuthenticationError", "PermissionDeniedError", "APIConnectionError", "InsecureURLError"} <= kinds
    assert any("retry" in r.getMessage() for r in caplog.records), "the fault mix should have caused retries"
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    for exc in errors:
        texts |= _exception_texts(exc)
    texts |= {
        "log text": caplog.text,
        "log records": repr([(r.getMessage(), r.args, vars(r)) for r in caplog.records]),
        "json log": debug_logs.getvalue(),
    }
    assert_no_secret(texts, admin)
    assert_no_secret(texts, project)


def test_the_objects_a_library_user_makes_never_show_a_key_or_a_store_password_in_their_repr(tmp_path: Path) -> None:
    """`EmulatorConfig(admin_key=...)` showed the pinned key in its repr, the one place the emulator keeps it; the
    sync engine's `Org`, the config's `OrgConfig` and the loaded `Config` are checked beside it."""
    from usageledger.config import load_config
    from usageledger.sync import Org

    key = canary_key(fill="q")
    path = tmp_path / "usageledger.toml"
    path.write_text(f'[store]\nurl = "postgresql://u:PWCANARY@db/x"\n[[orgs]]\nname = "a"\napi_key = "{key}"\n')
    path.chmod(0o600)
    config = load_config(path)
    objects = [EmulatorConfig(admin_key=key), Org("a", key, "https://api.openai.com/v1"), config, config.orgs[0]]
    for shown in [text for o in objects for text in (repr(o), str(o))]:
        assert key not in shown and "PWCANARY" not in shown, shown
