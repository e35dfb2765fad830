"""Issue 9 replayed as a careless user would: the cases that still went wrong through the real CLI, one test each."""

from __future__ import annotations

import errno
import io
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from usageledger import Client, catalogue
from usageledger._secrets import redact_webhook
from usageledger._uvicorn import bind, listen_address
from usageledger.cli import app
from usageledger.cli._app import sigterm_as_interrupt
from usageledger.cli.commands_sync import _ProgressView
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.errors import AlertDeliveryError, ConfigError, ListenError, ParameterError
from usageledger.report.alerts import post_webhook
from usageledger.store import open_store
from usageledger.timeutil import iso

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import cli, emulator_process, env, finish, sync_args


@pytest.fixture(scope="module")
def slow_emulator() -> Iterator[str]:
    """A `usageledger emulator` subprocess answering every request after 100 ms, so a sync is caught mid-flight."""
    with emulator_process("--latency", "100ms") as url:
        yield url


def _ignore_sigint() -> None:
    """What a shell does to a job it starts with ``&`` in a script: SIGINT ignored (inherited across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _sync_past_its_first_commit(store: str, url: str, cwd: Path, **popen: Any) -> subprocess.Popen[str]:
    """A `usageledger sync` subprocess (JSON logs on stderr), returned once it has committed its first window."""
    proc = subprocess.Popen(
        [*cli(), *sync_args(store, "--log-format", "json")],
        env=env(url),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("{") and json.loads(line).get("message") == "window committed":
            break
    return proc


def test_sigterm_stops_a_sync_started_in_the_background_of_a_script(slow_emulator: str, tmp_path: Path) -> None:
    """`usageledger sync &` in a script (SIGINT ignored), then `kill -TERM`: exit 143 and the run `interrupted`."""
    store = str(tmp_path / "bg.duckdb")
    proc = _sync_past_its_first_commit(store, slow_emulator, tmp_path, preexec_fn=_ignore_sigint)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, timeout=120)
    assert code == 143, err
    assert "error: interrupted by SIGTERM" in err
    with open_store(store) as opened:
        assert opened.query("SELECT status FROM sync_runs") == [("interrupted",)]


def test_a_webhook_that_echoes_its_path_does_not_leak_it(emulator_url: str) -> None:
    """A failed delivery to a server that echoes the request path (`Invalid URL (POST /…)`) shows only the host."""
    url = f"{emulator_url}/hooks/T0/B0/XSECRETPATHX"
    with pytest.raises(AlertDeliveryError) as caught:
        post_webhook(url, {"text": "x"})
    message = str(caught.value)
    assert "HTTP 404" in message and "http://127.0.0.1" in message
    assert "XSECRETPATHX" not in message and "/hooks/" not in message
    assert redact_webhook("Cannot POST /hooks/T0/B0/XSECRETPATHX", "https://h/hooks/T%30/B0/XSECRETPATHX") == (
        "Cannot POST …"
    )


@pytest.mark.parametrize("host", ["xn--zz", "a" * 70 + ".com", "ex\u00e4..mple.com"])
def test_a_webhook_host_that_does_not_encode_is_refused_in_one_line(host: str, tmp_path: Path) -> None:
    """`check --webhook https://xn--zz/...` is refused before anything runs, not a traceback after the alerts fire."""
    url = f"https://{host}/services/T0/B0/XSECRETPATHX"
    done = CliRunner().invoke(app, ["check", "--store", str(tmp_path / "s.duckdb"), "--webhook", url])
    assert done.exit_code == 2, done.output
    assert done.output == f"error: --webhook: https://{host} does not have a valid host name; pass the webhook's " + (
        "whole URL (https://host/path)\n"
    )
    with pytest.raises(ParameterError) as caught:  # the library refuses it the same way, before any request
        post_webhook(url, {"text": "x"})
    assert "XSECRETPATHX" not in repr(caught.value) and str(caught.value).startswith("url: ")


@pytest.mark.parametrize("command", ["query", "sync"])
@pytest.mark.parametrize("value", [",model", "model,,project_id", "model,"])
def test_an_empty_group_by_part_is_refused_not_dropped(
    command: str, value: str, emulator_url: str, tmp_path: Path
) -> None:
    """`--group-by ',model'` is refused naming the flag, as `--project-ids ',,'` is (bad input: exit 2, as that
    one), and no store is created."""
    store = tmp_path / "g.duckdb"
    argv = ["query", "completions", "--start", "2d", "-f", "csv"] if command == "query" else ["sync", "-q"]
    argv += ["--group-by", value] + (["--store", str(store), "-e", "completions"] if command == "sync" else [])
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": emulator_url}).invoke(app, argv)
    assert done.exit_code == 2, done.output
    assert f"--group-by: '{value}' holds an empty value" in done.output
    assert not store.exists()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--bucket-width", "2h"], "--bucket-width: no endpoint has 2h buckets; use one of 1d, 1h, 1m"),
        (
            ["--bucket-width", "1m", "-e", "costs"],
            "--bucket-width: costs has 1d buckets only, not 1m; use --bucket-width 1d",
        ),
        (["--group-by", "nope", "-e", "costs"], "--group-by: costs: Invalid group_by value: 'nope'"),
        (["-e", "images", "--sizes", "1x1"], "--sizes: images: Invalid value for 'sizes': '1x1'"),
    ],
)
def test_a_sync_flag_that_breaks_a_stream_rule_is_named_as_a_flag(
    flags: list[str], expected: str, emulator_url: str, tmp_path: Path
) -> None:
    """`sync --bucket-width 2h` names the flag and the widths; a rule broken by a flag names the flag, not the field."""
    store = tmp_path / "w.duckdb"
    env_vars = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": emulator_url}
    done = CliRunner(env=env_vars).invoke(app, ["sync", "-q", "--store", str(store), *flags])
    assert done.exit_code == 2, done.output
    assert done.output.startswith(f"error: {expected}"), done.output
    assert not store.exists()


@pytest.mark.parametrize("key", [123, b"sk-admin-abc", ["sk-admin-abc"]])
def test_a_key_that_is_not_a_string_is_refused_naming_the_argument(key: object) -> None:
    """`Client(api_key=123)` is a ConfigError naming `api_key=`, not `AttributeError: 'int' ... 'strip'`."""
    with pytest.raises(ConfigError, match=r"^the admin key from api_key= must be a string, got "):
        Client(api_key=key, base_url="http://127.0.0.1:9/v1")  # type: ignore[arg-type]


@pytest.mark.parametrize("base_url", ["http://example.com/v1", "ftp://example.com/v1"])
def test_a_refused_base_url_leaves_no_new_store(base_url: str, tmp_path: Path) -> None:
    """`sync --base-url http://remote` is refused naming --allow-insecure-http, before any store file is made; a
    flag's value refused is bad input, exit 2."""
    store = tmp_path / "z.duckdb"
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(
        app, ["sync", "-q", "--store", str(store), "--base-url", base_url]
    )
    assert done.exit_code == 2, done.output
    assert done.output.startswith("error: "), done.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("host", ["999.1.1.1", "203.0.113.7"])
def test_an_emulator_host_it_cannot_listen_on_blames_host_not_port(host: str) -> None:
    """`emulator --host 999.1.1.1` says to fix --host; it used to say "pick another --port"."""
    done = CliRunner().invoke(app, ["emulator", "--host", host, "--port", "0"])
    assert done.exit_code == 1, done.output
    assert done.output.startswith(f"error: cannot listen on {host}:0: "), done.output
    assert "--host must be an address of this machine" in done.output and "--port" not in done.output


@pytest.mark.parametrize("command", ["emulator", "serve"])
def test_a_taken_port_is_one_line_naming_the_port_for_every_server(command: str, tmp_path: Path) -> None:
    """`serve --port N` on a taken port said only "error: Address already in use"; both servers now say where
    they could not listen and what to change (one bind, one message), and raise ListenError, an OSError too."""
    store = tmp_path / "u.duckdb"
    open_store(str(store)).close()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    with taken:
        argv = [command, "--port", str(port)] + (["--store", str(store)] if command == "serve" else [])
        done = CliRunner().invoke(app, argv)
        assert done.exit_code == 1, done.output
        lines = done.output.strip().splitlines()
        assert lines[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}: "), done.output
        assert lines[-1].endswith("pick another --port (0 = any free)"), done.output
        with pytest.raises(ListenError) as info:
            bind("127.0.0.1", port, backlog=1)
        assert isinstance(info.value, OSError) and info.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize("command", ["emulator", "serve"])
def test_both_servers_read_host_and_port_alike(command: str, tmp_path: Path) -> None:
    """`serve --port 99999` said pydantic's "Input should be less than or equal to 65535" (exit 2) where the
    emulator said "--port 99999 is not a port"; `--host ' 127.0.0.1'` (a pasted space) was "not a loopback
    address" for serve and "Name or service not known" for the emulator. One reader (listen_address) now: the same
    line for both, and a padded host is the host."""
    store = tmp_path / "u.duckdb"
    open_store(str(store)).close()
    extra = ["--store", str(store)] if command == "serve" else []
    for port in ("99999", "-1"):  # a refused value: exit 2, as every bad flag value
        done = CliRunner().invoke(app, [command, "--port", port, *extra])
        assert done.exit_code == 2, done.output
        assert done.output.strip() == f"error: --port {port} is not a port; pick one from 1 to 65535 (0 = any free)"
    assert listen_address(" 127.0.0.1\n", 0) == ("127.0.0.1", 0)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    with taken:  # the padded host reaches the listener: the port it then finds taken is the one complaint
        port = str(taken.getsockname()[1])
        done = CliRunner().invoke(app, [command, "--host", " 127.0.0.1", "--port", port, *extra])
        assert done.exit_code == 1 and f"error: cannot listen on 127.0.0.1:{port}: " in done.output, done.output


@pytest.mark.parametrize("command", ["emulator", "serve"])
@pytest.mark.parametrize(
    ("host", "what", "fix"),
    [
        ("http://127.0.0.1", "a URL", "--host 127.0.0.1 --port 19499"),
        ("http://127.0.0.1:19313/v1", "a URL", "--host 127.0.0.1 --port 19313"),
        ("127.0.0.1:19313", "an address with a port", "--host 127.0.0.1 --port 19313"),
        ("[::1]:19313", "an address with a port", "--host ::1 --port 19313"),
        ("localhost/", "an address with a path", "--host localhost --port 19499"),
    ],
)
def test_a_url_or_a_port_given_to_host_is_named_with_the_flags_to_give(
    command: str, host: str, what: str, fix: str, tmp_path: Path
) -> None:
    """`emulator --host http://127.0.0.1` (or `127.0.0.1:19313`) said "cannot listen on http://127.0.0.1:19499:
    Name or service not known" and serve "not a loopback address": one reader (listen_address) now says a URL or a
    port was given where an address belongs, and the two flags to give instead."""
    extra = ["--store", str(tmp_path / "u.duckdb")] if command == "serve" else []
    done = CliRunner().invoke(app, [command, "--host", host, "--port", "19499", *extra])
    assert done.exit_code == 2, done.output
    assert done.output.strip() == (
        f"error: --host {host} is {what}; --host takes the address alone and --port the port: {fix}"
    ), done.output
    assert listen_address("::1", 0) == ("::1", 0)  # an IPv6 address's colons are not a port's


@pytest.mark.parametrize("command", [["status"], ["report"], ["keys"], ["credit", "list"], ["changes"]])
def test_a_refused_store_names_the_config_or_variable_it_came_from(command: list[str], tmp_path: Path) -> None:
    """`[store] url = ":memory:"` in the config was refused as "unsupported store :memory:" with no word of where
    it came from (the user never typed it): one resolver (resolve_store) now starts the refusal with the place to
    change, `[store] url in FILE` or `USAGELEDGER_STORE`; a --store refusal is unchanged."""
    config = tmp_path / "team.toml"
    config.write_text('[store]\nurl = ":memory:"\n')
    done = CliRunner().invoke(app, [*command, "--config", str(config)])
    assert done.exit_code == 1, done.output
    assert done.output.startswith(f"error: [store] url in {config}: unsupported store :memory:"), done.output
    by_env = CliRunner().invoke(app, command, env={"USAGELEDGER_STORE": "sqlite:///x.db"})
    assert by_env.output.startswith("error: USAGELEDGER_STORE: unsupported store sqlite:///x.db"), by_env.output
    flag = CliRunner().invoke(app, [*command, "--store", ":memory:"])
    assert flag.output.startswith("error: unsupported store :memory:"), flag.output


def test_an_emulator_replay_given_a_folder_says_it_is_a_folder(tmp_path: Path) -> None:
    """`emulator --replay DIR` names the real cause (a directory), not "no such file"."""
    done = CliRunner().invoke(app, ["emulator", "--port", "0", "--replay", str(tmp_path)])
    assert done.exit_code == 2, done.output
    assert f"--replay {tmp_path}: a directory, not a file;" in done.output
    device = CliRunner().invoke(app, ["emulator", "--port", "0", "--replay", "/dev/null"])  # it said "no such file"
    assert device.exit_code == 2 and "--replay /dev/null: not a regular file (a device or a pipe);" in device.output


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--path", "{store}", "--force"], "--path {store} is the DuckDB store ({store})"),
        (["--path", "{store}.wal", "--force"], "--path {store}.wal is the DuckDB store's WAL"),
        (["--path", "{store}", "--force", "--store", "{other}"], "{store} is a DuckDB store, not a config file"),
    ],
)
def test_init_force_never_writes_its_config_over_a_store(
    argv: list[str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`init --path usageledger.duckdb --force` replaced the store with the config text; now it is refused."""
    monkeypatch.chdir(tmp_path)
    store, other = "usageledger.duckdb", "other.duckdb"
    with open_store(store) as opened:
        opened.register_org("acme", synthetic=False, source="api", at=0)
    before = Path(store).read_bytes()
    done = CliRunner().invoke(app, ["init", *(a.format(store=store, other=other) for a in argv)])
    assert done.exit_code == 2, done.output  # a flag's value refused: bad input
    assert done.output.startswith(f"error: {expected.format(store=store)}"), done.output
    assert Path(store).read_bytes() == before
    assert not Path(other).exists() and not Path(f"{store}.wal").exists()


@pytest.mark.parametrize("argv", [["--path", "."], ["--path", ".", "--force"], ["--path", "sub"]])
def test_init_with_a_folder_for_its_path_is_refused_before_the_store_is_made(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`init --path .` said "already exists; pass --force", and with --force made the store, then failed on the
    folder. Now a folder is refused first, with a file name to use, and nothing is created."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    done = CliRunner().invoke(app, ["init", *argv])
    assert done.exit_code == 2, done.output  # a flag's value refused: bad input
    assert done.output.startswith(f"error: --path {argv[1]} is a folder; give the config a file name, such as "), (
        done.output
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"] and not any((tmp_path / "sub").iterdir())


def test_init_over_an_existing_store_says_it_kept_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`init` beside a store holding data said "prepared the store ... (9 migrations applied)", as if it had made it
    anew: it counted every migration ever applied. It now says it kept the store and its data, and a new store
    still gets its count."""
    monkeypatch.chdir(tmp_path)
    with open_store("held.duckdb") as opened:
        opened.register_org("acme", synthetic=False, source="api", at=0)
    kept = CliRunner().invoke(app, ["init", "--store", "held.duckdb"])
    assert kept.exit_code == 0, kept.output
    assert "kept the store held.duckdb and its data (its schema is current)" in " ".join(kept.stdout.split())
    assert "migrations applied" not in kept.stdout
    with open_store("held.duckdb") as opened:
        assert opened.query("SELECT org FROM orgs") == [("acme",)]
    made = CliRunner().invoke(app, ["init", "--path", "second.toml", "--store", "new.duckdb"])
    assert made.exit_code == 0, made.output
    assert "prepared the store new.duckdb (" in made.stdout and " migrations applied)" in made.stdout


def test_init_prepares_the_store_usageledger_store_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With USAGELEDGER_STORE set, `init` made usageledger.duckdb and wrote it in the config, while `status` and every
    other command then used the variable's store, which init had never made. It now prepares that store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USAGELEDGER_STORE", "team.duckdb")
    done = CliRunner().invoke(app, ["init"])
    assert done.exit_code == 0, done.output
    assert "prepared the store team.duckdb (" in done.stdout
    assert (tmp_path / "team.duckdb").is_file() and not (tmp_path / "usageledger.duckdb").exists()
    assert 'url = "team.duckdb"' in (tmp_path / "usageledger.toml").read_text()
    status = CliRunner().invoke(app, ["status", "--format", "json"])
    assert status.exit_code == 0, status.output


def test_a_failed_init_leaves_no_half_written_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`init --store missing/x.duckdb` fails on the store and leaves no config behind (a rerun is not refused)."""
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["init", "--store", "missing/x.duckdb"])
    assert done.exit_code == 1, done.output
    assert "missing" in done.output and "does not exist" in done.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("width", [60, 80, 100])
def test_the_sync_progress_never_cuts_a_count_or_a_time(width: int) -> None:
    """At 60 to 100 columns the progress lines keep `135/135`, the row counts and `0:00:00`; only labels shorten."""
    view = _ProgressView(quiet=False)
    view.progress.add_task("[bold]12 streams", total=135, completed=135, detail="135 requests, 110,971 rows")
    label = "  default/web_search_calls.1d.project_id+model+context_level"
    view.progress.add_task(label, total=12, completed=12, detail="10,037 rows")
    out = Console(file=io.StringIO(), width=width, force_terminal=False)
    out.print(view.progress.make_tasks_table(view.progress.tasks))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    for shown in ("135/135", "135 requests, 110,971 rows", "12/12", "10,037 rows"):
        assert shown in text, text
    assert text.count("0:00:00") == 2, text
    assert all(len(line) <= width for line in text.splitlines()), text


def test_the_apis_echo_of_a_short_rejected_key_is_not_printed(emulator_url: str, tmp_path: Path) -> None:
    """A short non-key (`SECRETgarbage`) came back as `SECRETga****bage` in a 401 message; now the echo is cut."""
    env_vars = {"OPENAI_ADMIN_KEY": "SECRETgarbage", "OPENAI_BASE_URL": emulator_url}
    store = str(tmp_path / "k.duckdb")
    runner = CliRunner(env=env_vars)
    queried = runner.invoke(app, ["query", "costs", "--start", "2d"])
    synced = runner.invoke(app, ["sync", "-q", "-e", "costs", "--no-directory", "--store", store])
    assert queried.exit_code == 1 and synced.exit_code == 1, queried.output + synced.output
    # the API's text is left out of the one refusal line `query` and `sync` share (`_options.key_refusal`)
    assert "the API refused the admin key from OPENAI_ADMIN_KEY (HTTP 401 invalid_api_key)" in queried.output
    assert "Incorrect API key" not in queried.output + synced.output
    assert "SECRETga" not in queried.output + synced.output
    with open_store(store) as opened:
        assert "SECRETga" not in str(opened.query("SELECT error FROM sync_runs"))


@pytest.mark.parametrize("command", ["status", "report", "export", "sync"])
def test_the_store_given_as_config_is_named_as_a_store(command: str, tmp_path: Path) -> None:
    """`--store u.duckdb --config u.duckdb` says the config is a DuckDB store, not "not valid TOML"; nothing changes."""
    store = tmp_path / "u.duckdb"
    with open_store(str(store)) as opened:
        opened.register_org("acme", synthetic=False, source="api", at=0)
    before = store.read_bytes()
    argv = [command, "--store", str(store), "--config", str(store)] + (["-q"] if command == "sync" else [])
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, argv)
    assert done.exit_code == 1, done.output
    assert done.output.startswith(f"error: {store} is a DuckDB store, not a config file"), done.output
    assert store.read_bytes() == before


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("u.duckdb", "is the DuckDB store (u.duckdb)"),
        ("./u.duckdb.wal", "is the DuckDB store's WAL"),
        ("link.duckdb", "is the DuckDB store (u.duckdb)"),
        ("usageledger.toml", "is the config file in use"),
        ("other.duckdb", "is a DuckDB store"),
    ],
)
def test_report_html_never_overwrites_the_store_or_the_config(
    target: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`report --html usageledger.duckdb` replaced the store with HTML; now it is refused and nothing changes."""
    monkeypatch.chdir(tmp_path)
    for name in ("u.duckdb", "other.duckdb"):
        with open_store(name) as opened:
            opened.register_org("acme", synthetic=False, source="api", at=0)
    Path("link.duckdb").symlink_to("u.duckdb")
    Path("usageledger.toml").write_text('[store]\nurl = "u.duckdb"\n', encoding="utf-8")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    done = CliRunner().invoke(app, ["report", "--html", target])
    assert done.exit_code == 2, done.output
    assert done.output.startswith(f"error: --html: {target.removeprefix('./')} {expected}"), done.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_doctor_during_a_sync_reads_the_store_instead_of_failing(slow_emulator: str, tmp_path: Path) -> None:
    """`doctor` while a sync writes the store says so and passes; it used to fail with "another process is writing"."""
    store = str(tmp_path / "busy.duckdb")
    proc = _sync_past_its_first_commit(store, slow_emulator, tmp_path)
    try:
        env_vars = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": slow_emulator}
        done = CliRunner(env=env_vars).invoke(app, ["doctor", "--store", store])
        assert proc.poll() is None, "the sync ended before doctor ran"
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, timeout=120)
    assert done.exit_code == 0, done.output
    assert f"{store} is being written by a running sync (PID {proc.pid})" in done.output


@pytest.mark.parametrize("flag", ["--date", "--anomaly-date"])
def test_check_refuses_a_day_after_today_instead_of_an_all_clear(flag: str, tmp_path: Path) -> None:
    """`check --date 2027-01-01` printed "OK: no alerts" for a day with no data yet; now it names the flag and today."""
    store = tmp_path / "u.duckdb"
    with open_store(str(store)) as opened:
        opened.register_org("acme", synthetic=False, source="api", at=0)
    done = CliRunner().invoke(
        app, ["check", "--store", str(store), "--now", "2026-11-20T12:00:00Z", flag, "2027-01-01"]
    )
    assert done.exit_code != 0, done.output
    assert "2027-01-01 is after today (2026-11-20)" in done.output and flag in done.output, done.output
    assert "no alerts" not in done.output.lower()


@pytest.mark.parametrize(("flag", "value", "limit"), [("--lag-days", "100000", 366), ("--concurrency", "500", 64)])
def test_a_sync_setting_far_out_of_range_is_refused(flag: str, value: str, limit: int, tmp_path: Path) -> None:
    """`--lag-days 100000` would re-read the API's whole history on every run; it is refused, naming the bound."""
    store = tmp_path / "u.duckdb"
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, ["sync", "--store", str(store), flag, value])
    assert done.exit_code == 2, done.output
    assert f"{flag}: must be at most {limit}, got {value}" in done.output, done.output
    assert not store.exists()


def test_the_demo_reports_the_same_30_days_as_report(tmp_path: Path) -> None:
    """The demo reported 31 days (`--days 30`) while `report` reports 30: both follow the one period rule now."""
    store = str(tmp_path / "demo.duckdb")
    demo = CliRunner().invoke(app, ["demo", "--store", store], env={"COLUMNS": "200"})
    assert demo.exit_code == 0, demo.output
    assert "(30 days)" in demo.output, demo.output
    report = CliRunner().invoke(app, ["report", "--store", store])
    first_line = report.output.splitlines()[0]
    assert first_line.split("  ")[0] in demo.output, (first_line, demo.output)
    refused = CliRunner().invoke(app, ["demo", "--store", store, "--days", "0"])
    assert refused.exit_code == 2 and "--days: must be at least 1" in refused.output
    # `--days 100000` synced 200,000 days of buckets (for hours); past its org's history it is refused at once
    huge = CliRunner().invoke(app, ["demo", "--store", str(tmp_path / "huge.duckdb"), "--days", "100000"])
    assert huge.exit_code == 2 and huge.output.startswith("error: --days: at most 200, got 100,000"), huge.output
    assert not (tmp_path / "huge.duckdb").exists()


def test_certificates_that_cannot_be_loaded_are_one_line_naming_the_variable(tmp_path: Path, emulator_url: str) -> None:
    """SSL_CERT_FILE left pointing at a file that is gone (or at something that is no CA bundle): `sync`, `query`
    end with one line naming the variable and the fix, leaving no run `running` in the store; `doctor` shows it as
    the base URL's problem; never a bare "No such file or directory" or a traceback."""
    for bad, reason in ((tmp_path / "gone.pem", "No such file or directory"), (tmp_path / "x.pem", "no certificate")):
        if bad.name == "x.pem":
            bad.write_text("not a certificate\n")
        environ = env(emulator_url, SSL_CERT_FILE=str(bad))
        store = str(tmp_path / "u.duckdb")
        for args in (
            ["sync", "--store", store, "--since", "2d", "-e", "costs", "--quiet"],
            ["query", "costs", "--start", "2026-11-18", "-f", "jsonl"],
        ):
            done = subprocess.run([*cli(), *args], env=environ, cwd=tmp_path, capture_output=True, text=True)
            line = f"could not load the TLS certificates from SSL_CERT_FILE={bad}"
            assert done.returncode == 1 and done.stderr.count("\n") == 1, (args, done.stderr)
            assert line in done.stderr and reason in done.stderr and "unset it" in done.stderr, (args, done.stderr)
        with open_store(store) as opened:  # the sync stopped before recording a run: none is left `running`
            assert opened.query("SELECT COUNT(*) FROM sync_runs WHERE status = 'running'") == [(0,)]
        done = subprocess.run(
            [*cli(), "doctor", "--store", store], env=environ, cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
        assert (
            f"SSL_CERT_FILE={bad}" in done.stdout and "fix: point it at a readable CA bundle or unset it" in done.stdout
        )


@pytest.mark.parametrize(
    ("toml", "shown"),
    [
        ('[[streams]]\nendpoint = "costs"\nfilters = { "a\\nb" = 1 }', "streams[0].filters.a\\nb:"),
        ('[[streams]]\nendpoint = "costs"\ngroup_by = ["pro\\nject_id"]', "'pro\\nject_id'"),
        ('[[streams]]\nendpoint = "costs"\ngroup_by = ["\\u001b[2Jx"]', "'\\u001b[2Jx'"),
        ('[store]\n"\\r" = 1', 'store."\\r":'),
    ],
    ids=["newline in a filter name", "newline in a value", "escape sequence in a value", "carriage return in a key"],
)
def test_an_error_that_quotes_what_was_typed_stays_one_line(
    toml: str, shown: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config value or key holding a newline or an escape sequence split the error over two lines (or could clear
    the screen): every `error:` line shows such characters as escapes, on one line."""
    (tmp_path / "usageledger.toml").write_text(toml, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["status"])
    assert done.exit_code == 1, done.output
    assert len(done.output.splitlines()) == 1 and done.output.startswith("error: "), done.output
    assert "\x1b" not in done.output and shown in done.output, done.output


def test_a_name_holding_an_escape_sequence_is_shown_not_run(demo_store: Path, tmp_path: Path) -> None:
    """Project names come from the API and from names files: one named ``ESC[2J`` cleared the screen of whoever ran
    `report`. The CLI's consoles now show such characters escaped, in tables and in every other line, while rich's
    own colours still reach a colour terminal."""
    with open_store(str(demo_store)) as db:
        project = db.query("SELECT project_id FROM costs WHERE project_id IS NOT NULL LIMIT 1")[0][0]
    names = tmp_path / "names.csv"
    names.write_text(f"kind,id,name\nproject,{project},\x1b[2J\x1b]0;pwned\x07Evil\u202eexe\n", encoding="utf-8")
    argv = ["report", "--store", str(demo_store), "--names", str(names)]
    done = subprocess.run(
        [sys.executable, "-c", "from usageledger.cli import main; main()", *argv],
        capture_output=True,
        text=True,
        env=env("http://127.0.0.1:9/v1", FORCE_COLOR="1", COLUMNS="120"),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "\\u001b[2J\\u001b]0;pwned\\u0007Evil\\u202eexe" in done.stdout
    assert "\x1b[2J" not in done.stdout and "\x07" not in done.stdout and "\u202e" not in done.stdout
    assert "\x1b[1m" in done.stdout or "\x1b[3" in done.stdout  # rich's styling is untouched


def test_a_joined_emoji_prints_as_the_name_and_an_override_stays_escaped(demo_store: Path, tmp_path: Path) -> None:
    """A big org's ``👩\u200d💻 Developer Tools`` printed in `report`'s tables with its joiner escaped
    (``👩\\u200d💻``), and `--project` by that name was refused as holding "a control character". The name now
    prints as itself and is taken, while a right-to-left override and a newline in another name stay escaped, so no
    name reorders or forges a row."""
    with open_store(str(demo_store)) as db:
        first, second = [
            p for (p,) in db.query("SELECT DISTINCT project_id FROM costs WHERE project_id IS NOT NULL ORDER BY 1")
        ][:2]
    joined = "\U0001f469\u200d\U0001f4bb Developer Tools"
    names = tmp_path / "names.csv"
    names.write_text(
        f'kind,id,name\nproject,{first},{joined}\nproject,{second},"Evil\u202eexe\n| forged | $0.00 |"\n',
        encoding="utf-8",
    )
    cli = [sys.executable, "-c", "from usageledger.cli import main; main()", "report", "--store", str(demo_store)]
    for extra in ([], ["--project", joined]):
        done = subprocess.run(
            [*cli, "--names", str(names), *extra],
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=env("http://127.0.0.1:9/v1", COLUMNS="120"),
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert joined in done.stdout and "\\u200d" not in done.stdout + done.stderr
    whole = subprocess.run(
        [*cli, "--names", str(names)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env("http://127.0.0.1:9/v1", COLUMNS="120"),
        check=False,
    ).stdout
    assert "Evil\\u202eexe\\n| forged | $0.00 |" in whole
    assert "\u202e" not in whole and not any(line.startswith("| forged") for line in whole.splitlines())


@pytest.mark.parametrize("png", ["r.html", "./r.html", "store.duckdb", "notes.txt"])
def test_report_refuses_a_png_path_that_is_not_a_directory_before_writing(
    demo_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, png: str
) -> None:
    """`report --html r.html --png r.html` wrote the page, then failed on the charts; a --png that names the page
    or any existing file is now refused first, in one line, and nothing is written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("keep me\n")
    store = tmp_path / "store.duckdb"
    store.write_bytes(demo_store.read_bytes())
    done = CliRunner().invoke(app, ["report", "--store", str(store), "--html", "r.html", "--png", png])
    assert done.exit_code == 2, done.output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --png: "), lines
    assert not (tmp_path / "r.html").exists()
    assert (tmp_path / "notes.txt").read_text() == "keep me\n" and store.read_bytes() == demo_store.read_bytes()


def _run_on_a_terminal(argv: list[str]) -> tuple[int, bytes, str]:
    """Run ``argv`` with stdout on a pseudo-terminal, read as it writes (a full terminal would block it): its exit
    status, what reached the terminal and its stderr."""
    leader, follower = pty.openpty()
    written = bytearray()
    try:
        proc = subprocess.Popen(argv, stdout=follower, stderr=subprocess.PIPE, text=True)
        os.close(follower)
        follower = -1
        while True:  # until the last holder of the terminal's other end has gone (EIO on Linux)
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            written += chunk
        _, err = proc.communicate(timeout=120)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    return proc.returncode, bytes(written), err


@pytest.mark.parametrize("fmt", [["-f", "parquet", "-e", "costs"], ["-f", "focus", "--focus-format", "parquet"]])
def test_parquet_is_never_written_to_a_terminal(demo_store: Path, fmt: list[str]) -> None:
    """`export -f parquet -e costs` with no -o dumped Parquet bytes onto the terminal; with stdout a terminal it is
    now one line naming --output, and through a pipe the bytes still flow."""
    argv = [sys.executable, "-c", "from usageledger.cli import main; main()", "export", "--store", str(demo_store)]
    argv += ["--since", "2026-11-19"]  # where the bytes go is checked, not how many: the store's last days
    code, written, err = _run_on_a_terminal([*argv, *fmt])
    assert code == 2, err
    assert err.strip() == "error: --output: Parquet is binary and stdout is a terminal; pass --output FILE, or pipe it"
    assert b"PAR1" not in written
    piped = subprocess.run([*argv, *fmt], capture_output=True, check=False)
    assert piped.returncode == 0 and piped.stdout.startswith(b"PAR1"), piped.stderr


@pytest.mark.parametrize(
    ("period", "why", "field", "day"),
    [
        (  # synced 90 days, asked for the last 50: the previous 50 begin before the store's first costs
            ("2026-10-01", "2026-11-20"),
            "the store's costs start on 2026-08-22, inside the previous 50 days; sync further back to compare",
            "previous_partial_from",
            "2026-08-22",
        ),
        (  # said "inside the previous 31 days": the period's own first days are not in the store either
            ("2026-08-01", "2026-09-01"),
            "the store's costs start on 2026-08-22, inside the period, so its first 21 days and the previous period"
            " are missing; sync further back to compare",
            "previous_partial_from",
            "2026-08-22",
        ),
        (  # said "inside the previous 10 days": the previous period ends where the store's costs start
            ("2026-08-22", "2026-09-01"),
            "the store's costs start on 2026-08-22, the period's first day, so none of the previous 10 days are in"
            " the store; sync further back to compare",
            "previous_partial_from",
            "2026-08-22",
        ),
        (  # said "inside the previous 31 days" of a period wholly before the store's data, reported as $0.00
            ("2026-07-01", "2026-08-01"),
            "the store's costs start on 2026-08-22, after the period ends, so it holds none of the period's days;"
            " sync further back, or pick a later period",
            "previous_partial_from",
            "2026-08-22",
        ),
        (  # a store last synced weeks ago: the period's last days were never synced
            ("2026-11-01", "2026-11-30"),
            "the store's costs are whole only through 2026-11-19, so the period's last 10 days are missing or"
            " partial; run `usageledger sync` to compare",
            "unsynced_from",
            "2026-11-20",
        ),
    ],
)
def test_a_period_compared_with_days_never_synced_is_not_compared(
    demo_store: Path, tmp_path: Path, period: tuple[str, str], why: str, field: str, day: str
) -> None:
    """ "+711% against the previous 50 days" (the previous period began before the store's first costs) and "-20%
    against the previous 30 days" (the period's last days were never synced, read as $0) compared with days the
    store does not hold. The terminal, the JSON and the HTML report now say there is no comparison and why, with no
    movers."""
    argv = ["report", "--store", str(demo_store), "--since", period[0], "--until", period[1]]
    text = CliRunner().invoke(app, argv, env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert f"(no comparison: {why})" in text.stdout and "Top movers" not in text.stdout, text.stdout
    doc = json.loads(CliRunner().invoke(app, [*argv, "-f", "json"]).stdout)
    assert doc[field] == day and doc["totals"]["previous_spend"] is None
    assert doc["movers_by_project"] == doc["movers_by_model"] == []
    html = tmp_path / "r.html"
    assert CliRunner().invoke(app, [*argv, "--html", str(html)]).exit_code == 0
    page = html.read_text(encoding="utf-8")
    assert f"no comparison: {why.split(',')[0]}".replace("'", "&#x27;") in page and "movers-by-project" not in page


def test_periods_the_store_holds_with_their_previous_ones_are_compared(demo_store: Path) -> None:
    """A period whose previous one is in the store compares; so does one a day past the costs watermark, as a
    daily cron leaves the store."""
    for since, until in (("2026-10-20", "2026-11-20"), ("2026-11-01", "2026-11-21")):
        argv = ["report", "--store", str(demo_store), "--since", since, "--until", until, "-f", "json"]
        doc = json.loads(CliRunner().invoke(app, argv).stdout)
        assert doc["previous_partial_from"] is None and doc["unsynced_from"] is None, (since, until)
        assert doc["totals"]["previous_spend"] is not None and doc["movers_by_project"]


@pytest.mark.parametrize("command", [["report"], ["changes"], ["statement", "2026-10"]])
def test_a_names_file_that_cannot_be_read_names_the_flag(demo_store: Path, tmp_path: Path, command: list[str]) -> None:
    """`changes --names DIR` said "DIR: a names file must end in ..." without naming --names; a names file that is
    not TOML likewise. Each is one line that starts with the flag."""
    broken = tmp_path / "names.toml"
    broken.write_text("x\n")
    for given, says in ((tmp_path, "a names file must end in .toml, .json or .csv"), (broken, "not valid TOML")):
        done = CliRunner().invoke(app, [*command, "--store", str(demo_store), "--names", str(given)])
        assert done.exit_code == 2, done.output
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"error: --names: {given}: {says}"), line


def test_a_one_day_report_and_a_start_after_today(demo_store: Path) -> None:
    """`report --since 1d` said "(1 days)"; `report --since <tomorrow>` blamed --until, which was not given."""
    one = CliRunner().invoke(app, ["report", "--store", str(demo_store), "--since", "1d"], env={"COLUMNS": "200"})
    assert one.exit_code == 0, one.output
    assert "(1 day)" in one.stdout.splitlines()[0], one.stdout
    # the demo store's costs end on 2026-11-20 (the emulator's clock): no change against the day before today
    assert "through 2026-11-19, before the period starts; run `usageledger sync` to compare" in one.stdout
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    late = CliRunner().invoke(app, ["report", "--store", str(demo_store), "--since", tomorrow])
    assert late.exit_code == 2, late.output
    assert late.stderr.startswith(f"error: --since: the period is empty: {tomorrow} is after today"), late.stderr


def test_export_to_a_file_where_a_directory_is_needed_and_a_name_that_says_another_format(
    demo_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`export -o out.csv` of every endpoint into an existing file said "File exists: pick a path that does not
    exist yet"; it now says a directory is needed, or one --endpoint, and leaves the file. `-f parquet -o x.csv`
    writes what was asked and notes that the name says csv."""
    monkeypatch.chdir(tmp_path)
    Path("out.csv").write_text("mine\n")
    done = CliRunner().invoke(app, ["export", "--store", str(demo_store), "-o", "out.csv"])
    assert done.exit_code == 2, done.output
    assert done.stderr.strip() == (
        f"error: --output: out.csv is a file, and csv of {len(catalogue.ENDPOINTS)} endpoints writes a directory of"
        " files; pass a directory, or one --endpoint for one file"
    )
    assert Path("out.csv").read_text() == "mine\n"
    named = CliRunner().invoke(
        app, ["export", "--store", str(demo_store), "-o", "x.csv", "-f", "parquet", "-e", "costs"]
    )
    assert named.exit_code == 2 and not Path("x.csv").exists(), named.output
    assert named.stderr == (
        "error: --output: x.csv names a csv file, but --format parquet was given; name it .parquet, or pass --format"
        " csv\n"
    )
    plain = CliRunner().invoke(
        app, ["export", "--store", str(demo_store), "-o", "y.parquet", "-f", "parquet", "-e", "costs"]
    )
    assert plain.exit_code == 0 and "note:" not in plain.stderr, plain.stderr


@pytest.mark.parametrize(
    ("argv", "magic"),
    [
        (["-o", "data.parquet"], b"PAR1"),  # CSV under a Parquet name, before
        (["-o", "rows.jsonl"], b'{"'),
        (["-o", "rows.NDJSON"], b'{"'),
        (["-o", "rows.csv"], b"org,stream,"),
        (["-o", "rows.txt"], b"org,stream,"),  # a suffix naming no format: today's default, CSV
        (["-o", "rows.jsonl", "-f", "jsonl"], b'{"'),
        (["-f", "focus", "-o", "focus.parquet"], b"PAR1"),  # --focus-format likewise
    ],
)
def test_export_takes_the_format_its_output_names(
    demo_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], magic: bytes
) -> None:
    """`export -o data.parquet` (no --format) wrote CSV into a file whose name says Parquet: a known suffix now
    chooses the format when --format (or, for FOCUS, --focus-format) is not given."""
    monkeypatch.chdir(tmp_path)
    extra = [] if "focus" in argv else ["-e", "costs"]
    done = CliRunner().invoke(app, ["export", "--store", str(demo_store), *extra, *argv])
    assert done.exit_code == 0, done.output
    (written,) = [p for p in tmp_path.iterdir()]
    assert written.read_bytes().startswith(magic), written.read_bytes()[:40]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["-o", "report.html"],
            "report.html names an HTML page, which export does not write (`usageledger report --html report.html`"
            " does); name it .csv, .jsonl or .parquet",
        ),
        (
            ["-o", "x.jsonl", "-f", "csv"],
            "x.jsonl names a jsonl file, but --format csv was given; name it .csv, or pass --format jsonl",
        ),
        (
            ["-f", "focus", "-o", "f.parquet", "--focus-format", "csv"],
            "f.parquet names a parquet file, but --focus-format csv was given; name it .csv, or pass --focus-format"
            " parquet",
        ),
        (
            ["-f", "focus", "-o", "f.jsonl"],
            "f.jsonl names jsonl, and FOCUS rows are written as CSV or Parquet; name it .csv or .parquet",
        ),
    ],
)
def test_export_refuses_an_output_named_as_another_format(
    demo_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], said: str
) -> None:
    """`export -o report.html` wrote CSV under an HTML name, `-f csv -o x.jsonl` CSV under a JSON Lines one: a
    suffix saying another format than the one given, or one export never writes, is refused in one line naming
    --output and the fix, before anything is written."""
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["export", "--store", str(demo_store), *argv])
    assert done.exit_code == 2 and done.stderr == f"error: --output: {said}\n", done.output
    assert list(tmp_path.iterdir()) == []


def test_a_path_with_brackets_is_named_as_written(demo_store: Path, tmp_path: Path) -> None:
    """`export -o 'data[raw].csv'` said "Exported ... to data.csv": rich read ``[raw]`` as markup and the user was
    sent to look for a file that does not exist. What a command says it wrote is printed as written."""
    for name in ("data[raw].csv", "x[bold]y.csv"):
        out = tmp_path / name
        done = CliRunner().invoke(app, ["export", "--store", str(demo_store), "-e", "costs", "-o", str(out)])
        assert done.exit_code == 0, done.output
        assert out.is_file() and f"to {out} (1 file)." in done.stderr, done.stderr


def test_sigterm_stops_an_export_as_ctrl_c_does(demo_store: Path) -> None:
    """Only `sync` and `demo` turned SIGTERM into an interrupt: an export killed by it left its staged
    ``.NAME.tmp`` files behind and ended without a word. Every command now stops on SIGTERM as on Ctrl-C (staged
    files removed, one line, exit 143). Here the export blocks on a full pipe that nobody reads, then gets it."""
    argv = [sys.executable, "-c", "from usageledger.cli import main; main()", "export", "--store", str(demo_store)]
    proc = subprocess.Popen([*argv, "-f", "jsonl", "-o", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        first = proc.stdout.read(1)  # the export is writing: the pipe is full behind this byte
        assert first == b"{"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.decode().strip() == "error: interrupted by SIGTERM"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("nan", "error: --anomaly-threshold: 'nan' is not a finite number; write it like 3.5"),
        ("inf", "error: --anomaly-threshold: 'inf' is not a finite number; write it like 3.5"),
        ("-1", "error: --anomaly-threshold: a threshold must be zero or more, got '-1'; write it like 3.5"),
        ("1e400", "error: --anomaly-threshold: '1e400' is too large; a threshold is below 1,000,000,000,000,000"),
    ],
)
def test_a_bad_anomaly_threshold_is_refused_as_a_threshold(demo_store: Path, value: str, says: str) -> None:
    """`check --anomaly-threshold nan` was refused as "an amount" (money); it is a robust z-score threshold."""
    done = CliRunner().invoke(app, ["check", "--store", str(demo_store), "--anomaly-threshold", value])
    assert done.exit_code == 2, done.output
    assert done.stderr.strip() == says


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["reconcile", "--tolerance", "nan"],
            "error: --tolerance: 'nan' is not a finite number; write it like 0.01 or 1%",
        ),
        (
            ["reconcile", "--tolerance", "inf%"],
            "error: --tolerance: 'inf%' is not a finite number; write it like 0.01 or 1%",
        ),
        (
            ["check", "--daily-budget", "inf"],
            "error: --daily-budget: 'inf' is not a finite number; write it like 150 or 12.50",
        ),
        (["emulator", "--rate-429", "nan"], "error: --rate-429: nan is not a finite number; write it like 0.05"),
        (["emulator", "--rate-5xx", "inf"], "error: --rate-5xx: inf is not a finite number; write it like 0.05"),
        (
            ["emulator", "--rate-drop", "-1"],
            "error: --rate-drop: a rate must be zero or more, got -1.0; write it like 0.05",
        ),
    ],
    ids=["tolerance-nan", "tolerance-inf%", "budget-inf", "rate-nan", "rate-inf", "rate-negative"],
)
def test_nan_and_inf_in_any_number_option_are_one_line_naming_the_option_and_an_example(
    demo_store: Path, argv: list[str], says: str
) -> None:
    """Every number a flag takes goes through one reader (parse_amount / finite_decimal): `nan`, `inf` and `-1` were
    "must be zero or more, got 'nan'" (or "a rate must be between 0 and 1"), with no example to copy."""
    store = ["--store", str(demo_store)] if argv[0] != "emulator" else []
    done = CliRunner().invoke(app, [*argv, *store])
    assert done.exit_code == 2, done.output
    assert done.stderr.strip().removesuffix(" (see `usageledger emulator --help`)") == says


def test_a_stop_that_duckdb_reports_as_its_own_error_is_an_interruption_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """DuckDB stops a statement on SIGINT and raises its own error ("Query interrupted") in place of
    KeyboardInterrupt: SIGTERM to `mcp` while it opened its store printed that traceback. The block every command
    runs in (`sigterm_as_interrupt`, from friendly_errors) now ends such a stop with one line and the exit code.
    The signal is delivered by calling the installed SIGTERM handler, which raises SIGINT in this thread, as the
    kernel's delivery does; DuckDB's part is played by turning the KeyboardInterrupt into its error."""
    with pytest.raises(typer.Exit) as info, sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        try:
            handler(signal.SIGTERM, None)
        except KeyboardInterrupt:
            raise RuntimeError("Query interrupted") from None
    assert info.value.exit_code == 143
    assert capsys.readouterr().err.strip() == "error: interrupted by SIGTERM"
    # Ctrl-C inside a statement: DuckDB's error alone, no SIGTERM seen
    with pytest.raises(typer.Exit) as info, sigterm_as_interrupt():
        raise RuntimeError("Query interrupted")
    assert info.value.exit_code == 130
    assert capsys.readouterr().err.strip() == "error: interrupted"
    # any other error is not taken for an interruption
    with pytest.raises(RuntimeError, match="something else"), sigterm_as_interrupt():
        raise RuntimeError("something else")


_SWALLOWS_INTERRUPTS = """
import signal, sys, time
from usageledger.cli import _app
_app.STOP_GRACE = 1.0
with _app.sigterm_as_interrupt():
    signal.signal(signal.SIGINT, lambda signum, frame: None)  # swallowed, as in an import's module-lock callback
    print("ready", flush=True)
    time.sleep(60)
sys.exit(0)
"""


def test_sigterm_ends_a_command_that_swallowed_the_interruption(tmp_path: Path) -> None:
    """SIGTERM reached a sync while its threads were importing: the KeyboardInterrupt it becomes was "ignored" in
    importlib's module-lock callback, the import lock stayed held, and the sync hung for ever (a second SIGTERM too).
    A command whose block has not ended STOP_GRACE seconds after SIGTERM now ends at once, exit 143, in one line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SWALLOWS_INTERRUPTS],
        env=env("http://127.0.0.1:9/v1"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, timeout=30)
    assert code == 143, err
    assert err.strip() == "error: interrupted by SIGTERM, and not stopped within 1 s: ended at once", err


def test_a_block_that_stops_in_time_is_not_ended_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """The grace ends with the block: a SIGTERM handled in time (here in-process) never ends the process later."""
    told: list[threading.Event] = []
    monkeypatch.setattr("usageledger.cli._app._end_unless_stopped", lambda stopped, grace: told.append(stopped))
    with pytest.raises(typer.Exit), sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)
    for _ in range(100):  # the watchdog thread records its event as it starts
        if told:
            break
        threading.Event().wait(0.01)
    assert len(told) == 1 and told[0].is_set()


def test_sigterm_inside_the_import_machinery_is_delivered_again_outside_it() -> None:
    """The hang's cause: SIGTERM became a KeyboardInterrupt inside importlib's module-lock callback, which swallowed
    it with the import lock held. Caught inside importlib's code, the stop is now delivered again a moment later,
    and the command stops as it should (exit 143). importlib's frame is played by code compiled under its name."""
    inside_importlib = compile("handler(signal.SIGTERM, sys._getframe())", "<frozen importlib._bootstrap>", "exec")
    returned = False
    with pytest.raises(typer.Exit) as info, sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        exec(inside_importlib, {"handler": handler, "signal": signal, "sys": sys})
        returned = True  # no KeyboardInterrupt inside importlib's code
        threading.Event().wait(10)  # the signal delivered again interrupts this wait
    assert returned and info.value.exit_code == 143


@pytest.mark.parametrize("wrong", ["without /v1", "no connection"])
def test_an_org_that_got_nowhere_is_not_asked_for_its_directory(wrong: str, emulator_url: str, tmp_path: Path) -> None:
    """A base URL without /v1 (every path a 404) or a host no attempt reaches said it twice: a warning that the
    directory was not refreshed, with the same cause, then the error. One line now."""
    url = emulator_url.removesuffix("/v1") if wrong == "without /v1" else "http://127.0.0.1:9/v1"
    # One retry, not the default four: the dead port is met either way, without seconds of back-off.
    (tmp_path / "one-retry.toml").write_text("[sync]\nmax_retries = 1\n")
    argv = ["sync", "-q", "-e", "costs", "--since", "3d", "--store", str(tmp_path / "s.duckdb"), "--base-url", url]
    argv += ["--config", str(tmp_path / "one-retry.toml")]
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, argv)
    assert done.exit_code == 1, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.output


def test_a_server_with_usage_but_no_directory_is_named_as_such_not_as_a_wrong_base_url(tmp_path: Path) -> None:
    """`emulator --replay usage.jsonl` (no --replay-directory) answers the directory's lists 404: the sync's
    warning ended in the client's "Check the base URL: it must end in /v1", a URL the usage had just synced
    through. It now says what such a server is and how to skip the names; the usage is synced (exit 0). The run
    records the failure as its error, and `status` says the refresh failed, why, and that the next sync tries again
    (it said nothing of it: a directory never read looked like one never asked for)."""
    usage = tmp_path / "usage.jsonl"
    record = {"endpoint": "completions", "time": EMULATOR_NOW - 86400, "project_id": "proj_r", "input_tokens": 10}
    usage.write_text(json.dumps(record | {"output_tokens": 5, "num_model_requests": 1}) + "\n")
    with run_server(Emulator(EmulatorConfig(replay=usage, now=EMULATOR_NOW))) as url:
        argv = ["sync", "-q", "-e", "completions", "--since", "3d", "--store", str(tmp_path / "s.duckdb")]
        done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(
            app, [*argv, "--base-url", url, "--now", str(EMULATOR_NOW)]
        )
    assert done.exit_code == 0, done.output
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("warning: the directory of default was not refreshed: HTTP 404"), line
    assert "has no directory lists" in line and "--no-directory" in line and "must end in /v1" not in line, line
    with open_store(str(tmp_path / "s.duckdb")) as store:
        assert store.query("SELECT SUM(input_tokens) FROM usage_completions")[0][0] == 10
        assert store.query("SELECT status, error FROM sync_runs") == [("ok", line.removeprefix("warning: "))]
    shown = CliRunner().invoke(app, ["status", "--store", str(tmp_path / "s.duckdb"), "--format", "json"])
    (directory,) = json.loads(shown.stdout)["directory"]
    refresh = directory["last_refresh"]
    assert refresh["status"] == "failed" and refresh["error"] == line.split(" was not refreshed: ", 1)[1], refresh
    shown = CliRunner().invoke(app, ["status", "--store", str(tmp_path / "s.duckdb")])
    said = " ".join(shown.stdout[shown.stdout.index("Directory of") :].split())
    assert said == (
        f"Directory of default: not read yet; its refresh of {refresh['started_at']} failed: {refresh['error']};"
        " the next `usageledger sync` tries it again"
    )


_ORG_READERS: list[list[str]] = [
    ["report"],
    ["reconcile", "--fail-over"],
    ["check"],
    ["forecast", "--now", "2026-11-20T12:00:00Z"],
    ["statement", "2026-11"],
    ["export", "-e", "costs"],
    ["export", "-f", "focus"],
    ["changes"],
    ["keys"],
    ["credit", "list"],
    ["close", "2026-10", "--now", "2026-12-02"],
]
"""Every command whose --org names orgs to read from the store (``sync --org`` names configured orgs instead)."""


def _org_commands() -> set[str]:
    """The commands (``credit list``) that take an ``--org`` option, found from the CLI itself."""
    import click
    import typer.main

    from usageledger.cli._commands import COMMANDS

    root = typer.main.get_command(app)
    ctx = click.Context(root)
    found: set[str] = set()
    for entry in COMMANDS:
        command = root.get_command(ctx, entry.name)  # type: ignore[attr-defined]
        subs = getattr(command, "commands", None) or {"": command}
        for sub_name, sub in subs.items():
            if any("--org" in p.opts for p in sub.params):
                found.add(f"{entry.name} {sub_name}".strip())
    return found


def test_every_command_with_an_org_option_checks_it() -> None:
    """The list below is every --org of the CLI: a new command with one gets the check and a case here."""
    listed = {" ".join(a for a in argv[:2] if not a.startswith("-") and not a[0].isdigit()) for argv in _ORG_READERS}
    assert _org_commands() == listed | {"sync", "credit add"}


@pytest.mark.parametrize("argv", _ORG_READERS, ids=lambda argv: "-".join(argv[:2]))
def test_a_mistyped_org_is_refused_by_every_command_that_reads_one(demo_store: Path, argv: list[str]) -> None:
    """Only `close` checked --org: `check --org nope` said "stale store" (exit 3), `forecast` "no costs", `report` and
    `statement` printed $0.00, `reconcile --fail-over` passed with 0 pairs, `export` wrote a header. Every command
    now refuses it with close's one line, naming the orgs the store holds."""
    done = CliRunner().invoke(app, [*argv, "--store", str(demo_store), "--org", "nope"])
    assert done.exit_code == 2, done.output
    assert done.stderr.strip() == "error: --org: nope holds no data in this store (orgs: org-demo)", done.stderr
    assert done.stdout == ""
    last_day = ["--since", "2026-11-19"] if argv[0] == "export" else []  # the org is read, not the 90 days' rows
    known = CliRunner().invoke(app, [*argv, "--store", str(demo_store), "--org", "org-demo", *last_day])
    assert "holds no data" not in known.output, known.output


def test_export_names_each_unknown_org_of_its_list(demo_store: Path) -> None:
    done = CliRunner().invoke(app, ["export", "-e", "costs", "--store", str(demo_store), "--org", "org-demo,x,y"])
    assert done.exit_code == 2 and done.stderr.strip() == (
        "error: --org: x, y hold no data in this store (orgs: org-demo)"
    ), done.stderr


def test_a_list_given_to_a_one_org_reader_is_said_to_be_a_list(demo_store: Path) -> None:
    """`changes --org org-demo,org-demo` said "org-demo,org-demo holds no data in this store (orgs: org-demo)", and
    `--org 'org-demo '` "org-demo  holds no data (orgs: org-demo)": an org the store lists, read as refused. The one
    check of orgs says a list is one where a command takes one org, and quotes a name with a blank around it."""
    store = ["--store", str(demo_store)]
    for argv in (["changes"], ["statement", "2026-10"], ["forecast"], ["credit", "list"]):
        done = CliRunner().invoke(app, [*argv, *store, "--org", "org-demo,org-demo"])
        assert done.exit_code == 2 and done.stderr.strip() == (
            "error: --org: org-demo,org-demo is a list, and this takes one org (orgs: org-demo); run it once for each"
        ), (argv, done.stderr)
    padded = CliRunner().invoke(app, ["changes", *store, "--org", "org-demo "])
    assert padded.exit_code == 2 and padded.stderr.strip() == (
        "error: --org: 'org-demo ' holds no data in this store (orgs: org-demo)"
    ), padded.stderr


def test_an_org_given_to_an_empty_store_keeps_its_sync_first_message(tmp_path: Path) -> None:
    """A store with no org yet has no orgs to list: each command says "run usageledger sync first" as before."""
    store = tmp_path / "empty.duckdb"
    open_store(str(store)).close()
    forecast = CliRunner().invoke(app, ["forecast", "--store", str(store), "--org", "x"])
    assert forecast.exit_code == 1 and "run `usageledger sync` first" in forecast.stderr, forecast.output
    close = CliRunner().invoke(app, ["close", "2026-10", "--store", str(store), "--org", "x", "--now", "2026-12-02"])
    assert close.exit_code == 2 and close.stderr.strip() == (
        "error: MONTH: the store holds no org yet: run `usageledger sync` first"
    ), close.output


def test_a_directory_given_for_an_output_file_names_the_flag(demo_store: Path, tmp_path: Path) -> None:
    """`report --html DIR` built the whole report, then said only "Is a directory: DIR; give a file name, not a
    folder". The one check of output files (`refuse_overwriting`) now refuses a directory first, naming the flag and
    a file in it; `statement --csv DIR` goes through the same check."""
    for argv, flag, name in (
        (["report", "--html", str(tmp_path)], "--html", "report.html"),
        (["statement", "2026-10", "--csv", str(tmp_path)], "--csv", "statements.csv"),
    ):
        done = CliRunner().invoke(app, [*argv, "--store", str(demo_store)])
        assert done.exit_code == 2, done.output
        assert done.stderr.strip() == (
            f"error: {flag}: {tmp_path} is a directory; give a file name, such as {tmp_path / name}"
        ), done.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_output_file_given_as_a_folder_that_does_not_exist_is_refused(demo_store: Path, tmp_path: Path) -> None:
    """`report --html out/` (no folder `out` yet) wrote a file named `out` and said "wrote out": the path option's
    `Path` dropped the `/`. The text as typed is kept for the one check of output files, which refuses it, naming
    the flag and a file in that folder, whichever way the option is spelled."""
    out = tmp_path / "out"
    for argv, flag, name in (
        (["report", "--html", f"{out}/"], "--html", "report.html"),
        (["statement", "2026-10", f"--csv={out}/"], "--csv", "statements.csv"),
        (["statement", "2026-10", "--html", f"{out}/"], "--html", "statements.html"),
    ):
        done = CliRunner().invoke(app, [*argv, "--store", str(demo_store)])
        assert done.exit_code == 2, done.output
        assert done.stderr.strip() == (
            f"error: {flag}: {out}/ names a folder; give a file name in it, such as {out / name}"
        ), done.stderr
    assert list(tmp_path.iterdir()) == []
    written = CliRunner().invoke(app, ["report", "--html", str(out / "r.html"), "--store", str(demo_store)])
    assert written.exit_code == 0 and (out / "r.html").is_file(), written.output


def test_a_model_the_store_never_saw_is_said(demo_store: Path) -> None:
    """`report --model gpt-4o` printed "Spend $0.00" without a word, while `--project nope` warned: the store names
    the model gpt-4o-2024-08-06. A model no row names is now a warning on stderr with the store's models like it;
    a model the store holds reports without one."""
    argv = ["report", "--store", str(demo_store), "--since", "2026-11-01", "--until", "2026-11-20", "-f", "json"]
    base = CliRunner().invoke(app, [*argv, "--model", "GPT-4o"])
    assert base.exit_code == 0, base.output
    (line,) = base.stderr.strip().splitlines()
    assert line.startswith("warning: --model GPT-4o appears in no cost or usage row of this store; did you mean "), line
    assert "gpt-4o-2024-08-06" in line and "gpt-4o-mini-2024-07-18" in line and "gpt-4.1" not in line, line
    typo = CliRunner().invoke(app, [*argv, "--model", "nope"])
    assert typo.stderr.strip() == (
        "warning: --model nope appears in no cost or usage row of this store; check the name (usageledger report "
        "lists the models)"
    )
    known = CliRunner().invoke(app, [*argv, "--model", "gpt-4o-2024-08-06"])
    assert known.exit_code == 0 and known.stderr == "", known.stderr
    assert json.loads(known.stdout)["totals"]["spend"] != "0"


def test_reconcile_over_days_the_store_lacks_says_there_is_nothing_to_compare(demo_store: Path) -> None:
    """`reconcile --since 2026-07-01 --until 2026-08-01`, before the store's first day, said in green "No
    differences beyond the tolerance across 0 day/model pairs", an all-clear for a period it holds nothing of."""
    argv = ["reconcile", "--store", str(demo_store), "--since", "2026-07-01", "--until", "2026-08-01"]
    done = CliRunner().invoke(app, argv, env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "No differences" not in done.stdout, done.stdout
    assert (
        "Nothing to compare: the store holds no token usage and no billed tokens in this period; check the period,"
        " or sync it." in done.stdout
    ), done.stdout
    held = CliRunner().invoke(app, [*argv[:3], "--since", "2026-11-01", "--until", "2026-11-03"])
    assert "No differences beyond the tolerance across" in held.stdout, held.stdout


# the report of days the store's costs cover: a later period warns that they are not synced
REPORT_HELD = ["report", "--since", "2026-10-22", "--until", "2026-11-21"]


@pytest.mark.parametrize("command", [REPORT_HELD, ["export", "-f", "csv", "-e", "costs", "-o", "-"]])
def test_as_of_a_time_the_ledger_cannot_answer_is_said(command: list[str], demo_store: Path) -> None:
    """`report --as-of 2099-01-01` printed today's figures stamped "As of 2099-01-01", and `--as-of 2026-11-01` on a
    store first synced later printed $0.00 with no word of why. A time after now is refused naming --as-of; a time
    before the revision log begins is answered, with a warning that says when the log begins and what --since is
    for; a time after the store's first sync had ended has no warning."""
    store = ["--store", str(demo_store)]
    future = CliRunner().invoke(app, [*command, *store, "--as-of", "2099-01-01"])
    assert future.exit_code == 2, future.output
    (line,) = future.stderr.strip().splitlines()
    assert line.startswith("error: --as-of: '2099-01-01' is 2099-01-01T00:00:00Z, after now"), line
    assert "leave --as-of out" in line and "As of" not in future.stdout
    with open_store(str(demo_store), migrate=False, read_only=True) as opened:
        first, last = opened.query("SELECT MIN(seen_at), MAX(seen_at) FROM revisions")[0]
    began = int(first.timestamp())
    early = CliRunner().invoke(app, [*command, *store, "--as-of", "2020-01-01"])
    assert early.exit_code == 0, early.output
    warning = f"warning: --as-of 2020-01-01T00:00:00Z: the store's revision log begins at {iso(began)}"
    assert warning in early.stderr and "use --since and --until" in early.stderr, early.stderr
    # after the demo's last revision, not one second after its first: on a loaded machine the demo's costs were
    # committed more than a second after its first stream, and the report rightly warned they were not synced yet
    later = CliRunner().invoke(app, [*command, *store, "--as-of", str(int(last.timestamp()) + 1)])
    assert later.exit_code == 0, later.output
    assert "warning" not in later.stderr, later.stderr
