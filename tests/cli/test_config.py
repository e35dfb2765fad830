"""usageledger.toml: defaults, validation that names the key, the 0600 rule for keys, and `init`."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path
from subprocess import PIPE

import pytest
from typer.testing import CliRunner

from usageledger import catalogue
from usageledger.cli import app
from usageledger.config import Config, load_config, parse_config, write_default_config
from usageledger.errors import ConfigError
from usageledger.store import Stream, default_streams

from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import cli, env, finish


def write(tmp_path: Path, text: str, mode: int = 0o644) -> Path:
    path = tmp_path / "usageledger.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_no_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a config file: the DuckDB default, one org keyed by OPENAI_ADMIN_KEY, the default streams."""
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config == Config()
    assert config.store_url == "usageledger.duckdb"
    assert [o.key_env for o in config.effective_orgs] == ["OPENAI_ADMIN_KEY"]
    assert config.effective_streams == default_streams()


def test_default_streams_follow_the_catalogue() -> None:
    """Every endpoint daily by its catalogue default_group_by; costs by project and line item."""
    streams = {s.endpoint.name: s for s in default_streams()}
    assert set(streams) == set(catalogue.ENDPOINT_NAMES)
    assert all(s.bucket_width == "1d" and not s.filters for s in streams.values())
    assert streams["costs"].group_by == ("project_id", "line_item")
    for ep in catalogue.USAGE_ENDPOINTS:
        assert set(streams[ep.name].group_by) == set(ep.default_group_by)
        if "model" in ep.group_by:
            assert {"project_id", "model"} <= set(streams[ep.name].group_by)


def test_init_writes_a_commented_private_file_that_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file `init` writes is 0600, commented, and loads back to the defaults."""
    monkeypatch.chdir(tmp_path)
    path = write_default_config(Path("usageledger.toml"), store_url="x.duckdb")
    assert os.stat(path).st_mode & 0o777 == 0o600
    text = path.read_text()
    assert text.count("#") > 20 and "lag_days = 3" in text
    config = load_config(path)
    assert config.store_url == "x.duckdb" and config.sync.lag_days == 3 and config.sync.minute_grace == 900
    assert config.sync.hour_grace == 7200 and config.streams == ()
    with pytest.raises(ConfigError, match="already exists"):
        write_default_config(path)


def test_the_config_writer_never_keeps_a_store_password(tmp_path: Path) -> None:
    """The one writer of the config refuses a store URL with a password (in its user info or its query), naming the
    URL without it and where the password goes, and writes nothing: a config gets copied, shared and committed."""
    for url in ("postgresql://ann:s3cret@db.example/ledger", "postgresql://ann@db.example/ledger?password=s3cret"):
        with pytest.raises(ConfigError, match="store_url: a config never keeps the store's password") as caught:
            write_default_config(tmp_path / "usageledger.toml", store_url=url)
        assert "s3cret" not in str(caught.value) and "postgresql://ann@db.example/ledger" in str(caught.value)
        assert list(tmp_path.iterdir()) == []
    written = write_default_config(tmp_path / "usageledger.toml", store_url="postgresql://ann@db.example/ledger")
    assert load_config(written).store_url == "postgresql://ann@db.example/ledger"


def test_a_relative_store_path_is_read_from_the_configs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`url = "ledger.duckdb"` in team/usageledger.toml named ./ledger.duckdb of wherever the command ran: a sync
    run from another folder made a new empty store there, and reports read it. It is the config's folder's file, as
    a path written in a file is read; `init --path team/x.toml --store s.duckdb` writes the path that reads back as
    the store it made. Absolute paths, URLs and a config read from the working directory are as before."""
    team = tmp_path / "team"
    team.mkdir()
    (team / "usageledger.toml").write_text('[store]\nurl = "ledger.duckdb"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert Path(load_config(team / "usageledger.toml").store_url).resolve() == team / "ledger.duckdb"
    assert load_config(Path("../team/usageledger.toml")).store_url == "../team/ledger.duckdb"
    for kept in ("/srv/ledger.duckdb", "postgresql://u@h/db", "md:ledger"):
        (team / "kept.toml").write_text(f'[store]\nurl = "{kept}"\n')
        assert load_config(team / "kept.toml").store_url == kept
    monkeypatch.chdir(tmp_path)
    written = write_default_config(Path("team/init.toml"), store_url="s.duckdb")
    assert 'url = "../s.duckdb"' in written.read_text()
    monkeypatch.chdir(elsewhere)
    assert Path(load_config(team / "init.toml").store_url).resolve() == tmp_path / "s.duckdb"


def test_full_config_is_typed(tmp_path: Path) -> None:
    """Orgs, streams (group_by normalised, filters sorted), alerts and names are read."""
    path = write(
        tmp_path,
        """
[store]
url = "postgresql://u@localhost/db"
[sync]
lag_days = 5
minute_grace = "20m"
hour_grace = "1h"
concurrency = 4
max_retries = 6
since = "30d"
[[orgs]]
name = "acme"
key_env = "ACME_KEY"
[[orgs]]
name = "beta"
base_url = "http://127.0.0.1:9/v1"
[[streams]]
endpoint = "completions"
bucket_width = "1h"
group_by = ["model", "project_id"]
filters = { models = ["b", "a"], batch = false }
[[streams]]
endpoint = "costs"
[alerts]
daily_budget = "100"
[names.projects]
proj_1 = "Search"
""",
    )
    config = load_config(path)
    assert config.store_url.startswith("postgresql://")
    assert (config.sync.lag_days, config.sync.minute_grace, config.sync.hour_grace) == (5, 1200, 3600)
    assert (config.sync.concurrency, config.sync.max_retries, config.sync.since) == (4, 6, 30 * 86400)
    assert [(o.name, o.key_env, o.base_url) for o in config.orgs] == [
        ("acme", "ACME_KEY", None),
        ("beta", "OPENAI_ADMIN_KEY", "http://127.0.0.1:9/v1"),
    ]
    first, second = config.streams
    assert first == Stream.create("completions", "1h", ("project_id", "model"), {"batch": False, "models": ["a", "b"]})
    assert first.group_by == ("project_id", "model") and first.query_filters() == {"batch": False, "models": ["a", "b"]}
    assert second.group_by == ("project_id", "line_item")
    assert dict(config.alerts) == {"daily_budget": "100"} and dict(config.names) == {"projects": {"proj_1": "Search"}}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("colour = 1", "colour"),
        ("[sync]\nlag_dayz = 1", "sync.lag_dayz"),
        ("[sync]\nlag_days = '3'", "sync.lag_days"),
        ("[sync]\nlag_days = true", "sync.lag_days"),
        ("[sync]\nconcurrency = 0", "sync.concurrency"),
        ("[sync]\nminute_grace = 'soon'", "sync.minute_grace"),
        ("[store]\nurl = 3", "store.url"),
        ("store = 'x'", "store"),
        ("[[orgs]]\nkey_env = 'A'", "orgs[0].name"),
        ("[[orgs]]\nname = 'a'\nkey_env = 'not a var'", "orgs[0].key_env"),
        ("[[orgs]]\nname = 'a'\n[[orgs]]\nname = 'a'", "orgs.name"),
        ("[[orgs]]\nname = 'a'\nsecret = 1", "orgs[0].secret"),
        ("[[orgs]]\nname = 'acme '", "orgs[0].name"),
        ("[[orgs]]\nname = '  '", "orgs[0].name"),
        ('[[orgs]]\nname = "ac\\nme"', "orgs[0].name"),
        ("[[orgs]]\nname = 'a'\n[[orgs]]\nname = 'Acme, Inc'", "orgs[1].name"),
        ("[[streams]]\nbucket_width = '1d'", "streams[0].endpoint"),
        ("[[streams]]\nendpoint = 'nope'", "streams[0].endpoint"),
        ("[[streams]]\nendpoint = 'costs'\nbucket_width = '1h'", "streams[0].bucket_width"),
        ("[[streams]]\nendpoint = 'costs'\ngroup_by = ['model']", "streams[0].group_by"),
        ("[[streams]]\nendpoint = 'costs'\ngroup_by = 'project_id'", "streams[0].group_by"),
        ("[[streams]]\nendpoint = 'images'\nfilters = { sizes = ['huge'] }", "streams[0].filters.sizes"),
        ("[[streams]]\nendpoint = 'images'\nfilters = { batch = true }", "streams[0].filters.batch"),
        ("[[streams]]\nendpoint = 'completions'\nfilters = { batch = 'yes' }", "streams[0].filters.batch"),
        ("[alerts]\n[alerts.x]\n[[alerts]]", None),
        ("[names]\nx = 1\n[sync]\nlag_days = -1", "sync.lag_days"),
    ],
)
def test_bad_configs_name_the_key(tmp_path: Path, text: str, key: str | None) -> None:
    """Unknown keys, wrong types and missing keys are ConfigErrors that name the file, then the key: "sync.workers:
    unknown key" alone did not say which config (``--config``, ``$USAGELEDGER_CONFIG``, ``./usageledger.toml``)."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: "), str(info.value)
    assert "\n" not in str(info.value)
    if key is not None:
        assert str(info.value).startswith(f"{path}: {key}:"), str(info.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[store]\n"\\n" = ""', 'store."\\n"'),
        ('"a\\tb" = 1', '"a\\tb"'),
        ('[sync]\n"lag days" = 1', 'sync."lag days"'),
        ('[[orgs]]\nname = "a"\n"x\\u2028y" = 1', 'orgs[0]."x\\u2028y"'),
        ('[alerts]\n"\\r" = 1', 'alerts."\\r"'),
        ('[names]\n"pro\\njects" = {}', 'names."pro\\njects"'),
        ('[names.projects]\n"proj\\n1" = ""', 'names.projects."proj\\n1"'),
        ('[teams]\n"a\\nteam" = "proj_1"', 'teams."a\\nteam"'),
        ('[alerts.projects]\n"proj\\n1" = 5', 'alerts.projects."proj\\n1"'),
        ('[alerts.projects."proj\\n1"]\ndaily_budget = "x"', 'alerts.projects."proj\\n1".daily_budget'),
    ],
)
def test_a_key_with_control_characters_is_named_on_one_line(tmp_path: Path, text: str, key: str) -> None:
    """A quoted key holding a newline, tab or line separator made a refusal span two lines; it is named as TOML
    writes it (quoted, escaped), so the message stays one line and still says which key is at fault."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}:"), message
    assert len(message.splitlines()) == 1, message


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        ("[sync]\nsince = 90", "sync.since", 'since = "90d"'),
        ("[sync]\nsince = '90'", "sync.since", "90d"),
        ("[sync]\nhour_grace = 7200", "sync.hour_grace", 'hour_grace = "7200d"'),
        ("[sync]\nminute_grace = 15.5", "sync.minute_grace", "15.5h"),
        ("[alerts]\nstale_after = 36", "alerts.stale_after", "36h"),
        ("[alerts]\nstale_after = '36'", "alerts.stale_after", "36h"),
    ],
)
def test_a_duration_without_a_unit_is_refused(tmp_path: Path, text: str, key: str, fix: str) -> None:
    """``since = 90`` was read as 90 seconds: a bare number is refused on one line naming the key and the fix."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}:") and "has no unit" in message and fix in message, message
    assert "\n" not in message


@pytest.mark.parametrize(("value", "says"), [('"0s"', "a span of zero"), ('"30m"', "is shorter than 1h")])
def test_a_staleness_limit_under_an_hour_is_refused(tmp_path: Path, value: str, says: str) -> None:
    """`[alerts] stale_after = "0s"` made `check` fire on every run; a limit under an hour is refused naming the key,
    as `check --stale-after 0h` is, with the shortest it takes."""
    path = write(tmp_path, f"[alerts]\nstale_after = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: alerts.stale_after: ") and says in str(info.value)
    assert str(info.value).endswith("write 1h or more")


def test_a_blank_config_variable_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """`USAGELEDGER_CONFIG=' '` said "USAGELEDGER_CONFIG names  , which does not exist"; it is named as blank, as a
    blank USAGELEDGER_STORE is. An empty one is unset, as the CLI reads every empty variable."""
    monkeypatch.setenv("USAGELEDGER_CONFIG", " \t")
    with pytest.raises(ConfigError, match=r"^USAGELEDGER_CONFIG: the environment variable is set but empty; unset it"):
        load_config()


@pytest.mark.parametrize(
    ("given", "target", "says"),
    [
        (
            "--config",
            "nope.toml",
            "--config nope.toml: no such file; write one with `usageledger init --path nope.toml`",
        ),
        ("--config", "sub", "--config sub is a folder; give the config file in it, such as sub/usageledger.toml"),
        ("USAGELEDGER_CONFIG", "nope.toml", "USAGELEDGER_CONFIG nope.toml: no such file; write one with `usageledger"),
        ("USAGELEDGER_CONFIG", "sub", "USAGELEDGER_CONFIG sub is a folder; give the config file in it, such as sub/"),
    ],
)
def test_a_config_that_is_missing_or_a_folder_names_where_it_was_given(
    given: str, target: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`status --config nope.toml` said "config file nope.toml does not exist" and `--config /tmp` "cannot read config
    file /tmp: Is a directory", naming neither the flag nor (for the variable) a fix; now one line names where the
    path was given and what to do. A flag's path is bad input and exits 2, as `--fx missing.csv` does (it exited 1);
    the variable is the set-up's, 1."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    if given == "--config":
        done = CliRunner().invoke(app, ["status", "--config", target])
    else:
        monkeypatch.setenv(given, target)
        done = CliRunner().invoke(app, ["status"])
    assert done.exit_code == (2 if given == "--config" else 1), done.output
    assert done.output.startswith(f"error: {says}") and len(done.output.splitlines()) == 1, done.output


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[sotre]\nurl = "x.duckdb"\n', "sotre: unknown key (did you mean store?); expected one of: store, sync, "),
        ("[sync]\nlag_day = 3\n", "sync.lag_day: unknown key (did you mean lag_days?); expected one of: lag_days, "),
        ('[alerts]\ndaily_budgett = "5"\n', "alerts.daily_budgett: unknown key (did you mean daily_budget?); expected"),
        ("[sync]\ncolour = 1\n", "sync.colour: unknown key; expected one of: lag_days, "),
    ],
)
def test_a_mistyped_key_is_refused_with_the_key_it_likely_meant(text: str, says: str, tmp_path: Path) -> None:
    """A newcomer's typo (`[sotre]`, `lag_day`) got the bare list of keys, and [alerts] said it in other words than
    every other section; one refusal now names the likely key, and says nothing when no key is like it."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {says}"), str(info.value)


def test_a_file_holding_a_key_must_be_private(tmp_path: Path) -> None:
    """A literal key in a group- or world-readable file is refused with the chmod fix; 0600 is accepted."""
    path = write(tmp_path, '[[orgs]]\nname = "a"\napi_key = "sk-admin-abcdefghijkl"\n', mode=0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {path}") as info:
        load_config(path)
    assert "sk-admin-abcdefghijkl" not in str(info.value)
    path.chmod(0o600)
    config = load_config(path)
    assert config.orgs[0].resolve_key({}) == "sk-admin-abcdefghijkl"
    assert "sk-admin" not in repr(config)


@pytest.mark.parametrize(
    "url", ["postgresql://ledger:S3cret@db/ledger", "postgresql://ledger@db/ledger?sslmode=require&password=S3cret"]
)
def test_a_file_holding_a_store_password_must_be_private(tmp_path: Path, url: str) -> None:
    """`init --store postgresql://user:PW@host/db` writes the password into the config (0600), but only a key made
    the file's mode matter: a later `chmod 644` went unnoticed. A password in a URL counts as a key does; the
    refusal never shows it, nor does the loaded config's repr (it did), and a store URL without one is not held to
    it."""
    path = write(tmp_path, f'[store]\nurl = "{url}"\n', mode=0o644)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path} contains a password (in a URL) but every user can read it")
    assert "S3cret" not in str(info.value) and f"chmod 600 {path}" in str(info.value)
    path.chmod(0o600)
    assert load_config(path).store_url == url
    assert "S3cret" not in repr(load_config(path)) and "db/ledger" in repr(load_config(path))
    plain = write(tmp_path, '[store]\nurl = "postgresql://ledger@db/ledger?sslmode=require"\n', mode=0o644)
    assert load_config(plain).store_url.endswith("sslmode=require")


def test_a_key_pasted_anywhere_counts(tmp_path: Path) -> None:
    """A key-looking string in a comment still makes the file subject to the 0600 rule."""
    path = write(tmp_path, "# OPENAI_ADMIN_KEY=sk-admin-abcdefghijklmnop\n", mode=0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_config(path)


def test_missing_key_variable_names_it() -> None:
    """An org whose key variable is unset says which variable to set."""
    config = parse_config({"orgs": [{"name": "acme", "key_env": "ACME_KEY"}]})
    with pytest.raises(ConfigError, match="set ACME_KEY"):
        config.orgs[0].resolve_key({})
    assert config.orgs[0].resolve_key({"ACME_KEY": "sk-admin-z"}) == "sk-admin-z"


def test_missing_explicit_file_and_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config and USAGELEDGER_CONFIG pointing nowhere are errors; bad TOML is an error naming the file."""
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "none.toml")
    monkeypatch.setenv("USAGELEDGER_CONFIG", str(tmp_path / "none.toml"))
    with pytest.raises(ConfigError, match="USAGELEDGER_CONFIG"):
        load_config()
    bad = write(tmp_path, "[sync\n")
    monkeypatch.setenv("USAGELEDGER_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config()


def test_a_key_pasted_into_key_env_is_never_echoed(tmp_path: Path) -> None:
    """key_env holding a key itself is refused without repeating the key."""
    path = write(tmp_path, '[[orgs]]\nname = "a"\nkey_env = "sk-admin-abcdefghijklmnop"\n', mode=0o600)
    with pytest.raises(ConfigError, match="looks like an API key") as info:
        load_config(path)
    assert "abcdefghijklmnop" not in str(info.value)


@pytest.mark.parametrize(
    ("given", "meant"),
    [("$ACME_KEY", "ACME_KEY"), ("${ACME_KEY}", "ACME_KEY"), ("acme-key", "acme_key"), ("$", "ACME_ADMIN_KEY")],
)
def test_a_key_env_that_is_no_variable_name_gives_the_name_meant(tmp_path: Path, given: str, meant: str) -> None:
    """`key_env = "$ACME_KEY"` (the shell's way to read the variable) said only "is not an environment variable
    name", with no fix; the line now gives the name meant, on the command line as from the library."""
    path = write(tmp_path, f'[[orgs]]\nname = "acme"\nkey_env = "{given}"\n')
    told = (
        f"orgs[0].key_env: {given!r} is not an environment variable name; give the variable's name alone (letters,"
        f' digits and _), e.g. key_env = "{meant}"'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).endswith(told), info.value
    done = CliRunner().invoke(app, ["status", "--config", str(path)])
    assert done.exit_code == 1 and done.stderr == f"error: {path}: {told}\n"


def test_a_store_path_starting_with_a_tilde_is_in_the_home_folder(tmp_path: Path, emulator_url: str) -> None:
    """`url = "~/ledger.duckdb"` (no shell expands a config), `USAGELEDGER_STORE=~/…` (a systemd unit) and
    `--store=~/…`: DuckDB opens $HOME/ledger.duckdb, but sync first refused "the folder <cwd>/~ does not exist",
    doctor failed the store, and status said "no store". Every command reads the home folder's file."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (work / "usageledger.toml").write_text('[store]\nurl = "~/ledger.duckdb"\n')

    def run(*args: str, **more: str) -> tuple[int, str, str]:
        proc = subprocess.Popen(
            [*cli(), *args],
            env=env(emulator_url, HOME=str(home), COLUMNS="400", **more),
            cwd=work,
            stdout=PIPE,
            stderr=PIPE,
            text=True,
        )
        return finish(proc, timeout=120)

    code, _, err = run("sync", "--now", str(EMULATOR_NOW), "--since", "2d", "-e", "costs", "--quiet")
    assert code == 0, err
    assert (home / "ledger.duckdb").is_file() and not (work / "~").exists()
    for args, more in (
        (("status",), {}),
        (("status", "--store=~/ledger.duckdb"), {}),
        (("status",), {"USAGELEDGER_STORE": "~/ledger.duckdb"}),
        (("doctor",), {}),
    ):
        code, out, err = run(*args, **more)
        assert "ledger.duckdb" in out and "no store" not in out + err, (args, out, err)
        assert "✗ store" not in out and (code == 0 or args[0] == "doctor"), (args, out, err)
    assert not (work / "~").exists()


def test_two_orgs_of_one_key_are_refused_before_anything_is_synced(tmp_path: Path, emulator_url: str) -> None:
    """Orgs `a` and `c` reading one key at one base URL are one organisation under two names: sync stored its usage
    twice and `report` across orgs counted every dollar twice. The config is refused when they name one variable;
    `sync` refuses two variables holding the same key (naming the variables, never the key), storing nothing; orgs
    of one key at different base URLs stay allowed."""
    config = write(
        tmp_path,
        "".join(f'[[orgs]]\nname = "{o}"\nkey_env = "KEY_{o.upper()}"\nbase_url = "{emulator_url}"\n' for o in "ac"),
    )
    key = env(emulator_url)["OPENAI_ADMIN_KEY"]
    store = tmp_path / "s.duckdb"

    def sync(*args: str, **keys: str) -> tuple[int, str, str]:
        command = [*cli(), "sync", "--config", str(config), "--store", str(store), "--now", str(EMULATOR_NOW)]
        proc = subprocess.Popen(
            [*command, "--since", "2d", "-e", "costs", "--quiet", *args],
            env=env(emulator_url, COLUMNS="400", **keys),
            cwd=tmp_path,
            stdout=PIPE,
            stderr=PIPE,
            text=True,
        )
        return finish(proc, timeout=120)

    code, _, err = sync(KEY_A=key, KEY_C=key)
    assert code == 1 and err.count("\n") == 1 and "KEY_A (org 'a') and KEY_C (org 'c')" in err, err
    assert key not in err and not store.exists()
    code, _, err = sync("--org", "a", KEY_A=key, KEY_C=key)  # one of them alone is one organisation
    assert code == 0, err
    config.write_text(config.read_text().replace("KEY_C", "KEY_A"))
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(config))}: orgs\[1\]\.key_env: org 'c' reads its key from KEY_A"
    ):
        load_config(config)
    elsewhere = config.read_text().replace(emulator_url, "http://127.0.0.1:9/v1", 1)
    assert [o.name for o in parse_config(tomllib.loads(elsewhere)).orgs] == ["a", "c"]
