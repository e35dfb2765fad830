"""`usageledger sync` says what its flags leave out: a bucket width some endpoints lack names the skipped streams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger.cli import app

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW


def test_hourly_sync_without_endpoints_names_what_it_skips(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync --bucket-width 1h` with no -e syncs the hourly endpoints and notes on stderr that costs is skipped."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    store = tmp_path / "u.duckdb"
    argv = ["sync", "--store", str(store), "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "--quiet"]
    result = CliRunner().invoke(app, [*argv, "--bucket-width", "1h", "--since", "6h"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "--bucket-width 1h skips costs" in notes[0] and "1d" in notes[0], result.stderr
    daily = CliRunner().invoke(app, [*argv, "--bucket-width", "1d", "--since", "2d"])
    assert daily.exit_code == 0 and "skips" not in daily.stderr, daily.stderr


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [("--lag-days", "-1", "at least 0"), ("--concurrency", "0", "at least 1"), ("--concurrency", "-3", "at least 1")],
)
@pytest.mark.parametrize("key", [FAKE_ADMIN_KEY, None], ids=["key", "no key"])
def test_flags_get_the_config_checks(
    tmp_path: Path,
    emulator_url: str,
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
    value: str,
    rule: str,
    key: str | None,
) -> None:
    """--lag-days and --concurrency are refused below the minimum that [sync] has, in one line naming the flag,
    exit 2 as bad input (the same value in the config file is a config error, exit 1); with no key set too, where
    the missing key was named instead, and the typo only on the next try."""
    if key is None:
        monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_ADMIN_KEY", key)
    store = tmp_path / "u.duckdb"
    argv = ["sync", "--store", str(store), "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "--quiet"]
    result = CliRunner().invoke(app, [*argv, flag, value])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}: must be {rule}"), lines
    assert not store.exists(), "a refused sync creates no store"


@pytest.mark.parametrize("command", [["sync", "--quiet"], ["query", "costs", "--start", "2d"]])
def test_plain_http_off_loopback_names_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """A non-loopback http:// base URL is refused in one line that names --allow-insecure-http, before any request;
    the flag's value is bad input, exit 2, from either command."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [*command, "--base-url", "http://usage.invalid/v1"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--allow-insecure-http" in lines[0] and "usage.invalid" in lines[0], lines


def test_endpoints_orgs_and_streams_take_a_comma_list_as_group_by_does(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync -e images,costs` syncs both (it was refused as one unknown endpoint 'images,costs'), and export's
    --endpoint, --org and --stream read a comma list the same way; an empty part is refused, never dropped."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    store = tmp_path / "u.duckdb"
    argv = ["sync", "--store", str(store), "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "--quiet"]
    result = CliRunner().invoke(app, [*argv, "-e", "images,costs", "--since", "3d"])
    assert result.exit_code == 0, result.output
    status = CliRunner().invoke(app, ["status", "--store", str(store), "--format", "json"])
    assert status.exit_code == 0, status.output
    assert sorted(s["stream"].split(".")[0] for s in json.loads(status.stdout)["streams"]) == ["costs", "images"]

    streams = sorted(s["stream"] for s in json.loads(status.stdout)["streams"])
    out = tmp_path / "out"
    export = ["export", "--store", str(store)]
    both = CliRunner().invoke(app, [*export, "-o", str(out), "-e", "images,costs", "--org", "default,default"])
    assert both.exit_code == 0, both.output
    assert sorted(p.name for p in out.iterdir()) == ["costs.csv", "usage_images.csv"]
    one = CliRunner().invoke(app, [*export, "-o", str(tmp_path / "s.jsonl"), "-f", "jsonl", "--stream", streams[0]])
    assert one.exit_code == 0, one.output
    by_stream = CliRunner().invoke(app, [*export, "-o", "-", "-f", "jsonl", "--stream", ",".join(streams)])
    assert {json.loads(line)["stream"] for line in by_stream.stdout.splitlines()} == set(streams)

    for command in (["sync", *argv[1:], "-e", "images,"], [*export, "-e", "images,,costs"], [*export, "--org", ","]):
        refused = CliRunner().invoke(app, command)
        assert refused.exit_code == 2, refused.output
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "holds an empty value" in lines[0], lines


@pytest.mark.parametrize("command", [["sync", "--quiet", "-e", "costs"], ["query", "costs", "--start", "2d"]])
def test_a_base_url_with_credentials_is_refused_naming_where_it_came_from(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """httpx sent a base URL's `user:password@` as Basic auth in place of the key: `query` got "Authorization header
    is malformed" and `doctor` blamed the key. Now --base-url, OPENAI_BASE_URL and a config org's base_url are refused
    up front, in one line naming that source, without the password; no store is made."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    monkeypatch.chdir(tmp_path)
    url = emulator_url.replace("http://", "http://user:pw-SECRET@")
    flag = CliRunner().invoke(app, [*command, "--base-url", url])
    env = CliRunner(env={"OPENAI_BASE_URL": url}).invoke(app, command)
    Path("usageledger.toml").write_text(f'[[orgs]]\nname = "acme"\nbase_url = "{url}"\n')
    Path("usageledger.toml").chmod(0o600)  # else its password is refused first, for the file's mode
    config = CliRunner().invoke(app, command)
    outcomes = {"--base-url": flag, "OPENAI_BASE_URL": env}
    if command[0] == "sync":  # query reads no config file
        outcomes["usageledger.toml: orgs[0].base_url"] = config
    for source, done in outcomes.items():
        assert done.exit_code == (2 if source == "--base-url" else 1), done.output  # a flag's value: bad input
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"error: {source}: the base URL http://…@127.0.0.1:"), line
        assert "holds a user name or password" in line and "SECRET" not in done.output and "user" not in line[:60]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["usageledger.toml"], "a refused sync creates no store"


def test_white_space_around_the_base_url_is_trimmed_as_the_keys_is(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`OPENAI_BASE_URL='http://host/v1 '` gave "HTTP 404 ... Invalid URL (GET /v1 /organization/costs)" while a key
    with the same space worked: the white space around a base URL is trimmed (query and sync then reach the
    emulator), and white space inside it is refused in one line naming the variable."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", f" {FAKE_ADMIN_KEY}\n")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{emulator_url} ")
    queried = CliRunner().invoke(app, ["query", "costs", "--start", "2026-11-18", "--end", "2026-11-20", "-f", "csv"])
    assert queried.exit_code == 0, queried.output
    assert len(queried.stdout.splitlines()) > 1
    store = tmp_path / "u.duckdb"
    argv = ["sync", "--store", str(store), "--now", str(EMULATOR_NOW), "--quiet", "-e", "costs", "--since", "3d"]
    synced = CliRunner().invoke(app, argv)
    assert synced.exit_code == 0, synced.output
    monkeypatch.setenv("OPENAI_BASE_URL", emulator_url.replace("/v1", " /v1"))
    inside = CliRunner().invoke(app, ["query", "costs", "--start", "2d"])
    assert inside.exit_code == 1
    (line,) = inside.stderr.strip().splitlines()
    assert line.startswith("error: OPENAI_BASE_URL: the base URL") and "white space" in line, line


def test_a_missing_key_is_told_as_the_command_line_takes_it(tmp_path: Path, emulator_url: str) -> None:
    """`query` without a key said "set OPENAI_ADMIN_KEY or pass api_key=": a keyword of the Python library. It says
    how the command line takes the key (the variable); the library keeps its own hint."""
    done = CliRunner(env={"OPENAI_ADMIN_KEY": None}).invoke(
        app, ["query", "costs", "--start", "2d", "--base-url", emulator_url]
    )
    assert done.exit_code == 1
    (line,) = done.stderr.strip().splitlines()
    assert line == (
        "error: no admin API key: set OPENAI_ADMIN_KEY to an organization admin key:"
        " export OPENAI_ADMIN_KEY=sk-admin-..."
    )
    assert "api_key=" not in done.output


def test_sync_without_a_key_or_a_config_gives_the_export_as_the_fix(tmp_path: Path, emulator_url: str) -> None:
    """`sync` with no config and no OPENAI_ADMIN_KEY said "set OPENAI_ADMIN_KEY (orgs.key_env names the variable)":
    a config key the newcomer has not written. With no [[orgs]] it gives the export, as `query` does; an org of the
    config still names its key_env."""
    argv = ["sync", "-q", "--since", "2d", "--store", str(tmp_path / "s.duckdb"), "--base-url", emulator_url]
    done = CliRunner(env={"OPENAI_ADMIN_KEY": None}).invoke(app, argv)
    assert done.exit_code == 1
    assert done.stderr == (
        "error: org 'default': no admin key: set OPENAI_ADMIN_KEY to an organization admin key:"
        " export OPENAI_ADMIN_KEY=sk-admin-...\n"
    )
    (tmp_path / "c.toml").write_text('[[orgs]]\nname = "acme"\nkey_env = "ACME_KEY"\n')
    listed = CliRunner(env={"ACME_KEY": None}).invoke(app, [*argv, "--config", str(tmp_path / "c.toml")])
    assert listed.stderr == "error: org 'acme': no admin key: set ACME_KEY (orgs.key_env names the variable)\n"


def test_a_width_an_endpoint_lacks_names_that_endpoint_and_the_fix(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync -e completions,costs --bucket-width 1h` said only "Invalid bucket_width provided: '1h'. Supported values
    are: '1d'.", as if completions had no hourly buckets. It names costs, its widths and both fixes, before any store
    is made; the same width with -e completions alone syncs."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    store = tmp_path / "u.duckdb"
    argv = ["sync", "--store", str(store), "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "--quiet"]
    mixed = CliRunner().invoke(app, [*argv, "-e", "completions,costs", "--bucket-width", "1h", "--since", "3h"])
    assert mixed.exit_code == 2, mixed.output
    assert mixed.stderr.strip().splitlines() == [
        "error: --bucket-width: costs has 1d buckets only, not 1h; leave costs out of --endpoint, or sync it"
        " separately: -e costs --bucket-width 1d"
    ]
    alone = CliRunner().invoke(app, [*argv, "-e", "costs", "--bucket-width", "1h"])
    assert alone.stderr.strip() == "error: --bucket-width: costs has 1d buckets only, not 1h; use --bucket-width 1d"
    assert not store.exists()
    fixed = CliRunner().invoke(app, [*argv, "-e", "completions", "--bucket-width", "1h", "--since", "3h"])
    assert fixed.exit_code == 0, fixed.output


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["-e", "costs", "--filter", "bogus=1"],
            "error: --filter bogus: costs: Unrecognized request argument supplied: bogus. Supported filters are:"
            " 'project_ids', 'api_key_ids', 'line_items'.",
        ),
        (
            ["-e", "costs", "--models", "gpt-4o"],
            "error: --models: costs: Unrecognized request argument supplied: models.",
        ),
        (
            ["-e", "completions,costs", "--filter", "line_items=x"],
            "error: --filter line_items: completions: Unrecognized request argument supplied: line_items.",
        ),
        (
            ["-e", "completions,costs", "--line-items", "x"],
            "error: --line-items: completions: Unrecognized request argument supplied: line_items.",
        ),
        (
            ["--filter", "bogus=1"],
            "error: --filter bogus: no endpoint synced takes the filter bogus (allowed: api_key_ids",
        ),
    ],
    ids=["one-endpoint", "one-endpoint-own-option", "two-endpoints", "own-option", "no-endpoint-named"],
)
def test_a_refused_filter_is_named_as_it_was_given(
    flags: list[str], expected: str, tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync -e costs --filter bogus=1` blamed `--bogus`, an option that does not exist: a filter is named as it was
    given (`--filter bogus`, or its own option), with the endpoint that refuses it (also when -e names only one) and the
    filters accepted.
    Without -e an unknown --filter was dropped from every stream and the sync ran unfiltered; it is refused too."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    store = tmp_path / "u.duckdb"
    argv = ["sync", "--store", str(store), "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "--quiet"]
    result = CliRunner().invoke(app, [*argv, *flags])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(expected), line
    assert not store.exists()


@pytest.mark.parametrize(
    ("command", "where"),
    [("sync", "flag"), ("sync", "variable"), ("sync", "config"), ("query", "flag"), ("query", "variable")],
)
def test_a_base_url_without_v1_names_where_it_came_from(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch, where: str, command: str
) -> None:
    """`--base-url http://host:port` (no /v1) made every request a 404, and the error said "use .../v1" without saying
    which setting held the URL; sync and query now name the flag, the variable or the config key, and the fix there,
    as doctor does."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    monkeypatch.chdir(tmp_path)
    bare = emulator_url.removesuffix("/v1")
    argv = ["--base-url", bare] if where == "flag" else []
    if where == "variable":
        monkeypatch.setenv("OPENAI_BASE_URL", bare)
    if where == "config":  # query reads no config
        (tmp_path / "usageledger.toml").write_text(f'[[orgs]]\nname = "acme"\nbase_url = "{bare}"\n')
    if command == "sync":
        argv += ["--store", str(tmp_path / "u.duckdb"), "--now", str(EMULATOR_NOW), "--since", "2d", "-e", "costs"]
        argv += ["--quiet", "--no-directory"]
    else:
        argv += ["costs", "--start", "2d"]
    result = CliRunner().invoke(app, [command, *argv])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    fix = {
        "flag": f"The base URL (from --base-url) must end in /v1: pass --base-url {emulator_url}",
        "variable": f"The base URL (from OPENAI_BASE_URL) must end in /v1: set OPENAI_BASE_URL={emulator_url}",
        "config": "The base URL (from base_url of org 'acme' in usageledger.toml) must end in /v1: set base_url of"
        f" org 'acme' in usageledger.toml to {emulator_url}",
    }[where]
    assert line.endswith(fix), line
