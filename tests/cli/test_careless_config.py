"""usageledger.toml as someone in a hurry writes it: the cases that still went wrong, one test each."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger._sections import RESERVED_TEAMS
from usageledger.cli import app
from usageledger.config import parse_config
from usageledger.errors import ConfigError
from usageledger.report.teams import UNASSIGNED

from fixtures.data import FAKE_ADMIN_KEY


def _config(text: str) -> object:
    return parse_config(tomllib.loads(text))


@pytest.mark.parametrize(
    ("team", "shown"),
    [('"Search "', 'teams."Search "'), ('"A\\nB"', 'teams."A\\nB"'), ('"\\tOps"', 'teams."\\tOps"')],
)
def test_a_team_name_that_cannot_be_shown_as_written_is_refused(team: str, shown: str) -> None:
    """A [teams] name is what `report --by team` prints and `--team` takes: "A\\nB" printed its row over two lines,
    "Search " a team that looked like another. Refused, as an org's name is, with the name meant."""
    with pytest.raises(ConfigError) as caught:
        _config(f'[teams]\n{team} = ["proj_a"]\n')
    message = str(caught.value)
    assert message.startswith(f"{shown}: the team name has spaces at either end or a character that does not print")
    assert "\n" not in message and "\t" not in message


def test_two_team_names_alike_but_for_case_or_spacing_are_refused() -> None:
    """`Search` and `search` were two teams `--team` could not tell apart (its match ignores case and spacing): it
    picked neither and said they were teams "in several orgs". Refused, naming both, with the two fixes."""
    with pytest.raises(ConfigError) as caught:
        _config('[teams]\nSearch = ["proj_a"]\nsearch = ["proj_b"]\n')
    assert str(caught.value) == (
        "teams.search: the same name as team 'Search' but for case or spacing, which --team cannot tell apart; list"
        " the projects of both under one name, or give the teams two names"
    )
    with pytest.raises(ConfigError, match=r"^teams\.\"data platform\": the same name as team 'Data  platform'"):
        _config('[teams]\n"Data  platform" = ["proj_a"]\n"data platform" = ["proj_b"]\n')


def test_team_names_that_differ_are_kept_as_written() -> None:
    """Names that print and differ (inner spaces, other letters, non-ASCII) are teams as written."""
    config = parse_config(tomllib.loads('[teams]\n"Data platform" = ["proj_a"]\n"Équipe β" = ["proj_b"]\n'))
    assert dict(config.teams) == {"proj_a": "Data platform", "proj_b": "Équipe β"}


def test_an_admin_key_given_as_the_store_is_never_written_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`init --store "$OPENAI_ADMIN_KEY"` (the key pasted after the wrong flag) made a DuckDB file named by the key and
    wrote `url = "sk-admin-..."` into the config; `sync` did the same. Refused before anything is made, the key shown
    by its prefix only."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)  # the real one is set: sync reaches its store
    key = "sk-admin-" + "Zq7" * 12
    for args in (["init", "--store", key], ["sync", "--store", key], ["status", "--store", f"keys/{key}.duckdb"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: the store ") and "looks like an API key" in result.stderr
        assert key not in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_admin_key_given_as_the_config_is_never_a_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--config "$OPENAI_ADMIN_KEY"` said "no such file; write one with `usageledger init --path <the key>`", and
    `init --path <the key>` wrote a config named by the key. Both are refused, naming the flag or the variable, the
    key shown by its prefix only, and nothing is written."""
    monkeypatch.chdir(tmp_path)
    key = "sk-admin-" + "Zq7" * 12
    cases = {
        ("status", "--config", key): "--config",
        ("init", "--path", key): "--path",
        ("init", "--path", f"{key}.toml"): "--path",
    }
    for args, flag in cases.items():
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 2, result.output  # a flag's value refused: bad input
        assert result.stderr.startswith(f"error: {flag} sk-admin-…"), result.stderr
        assert "looks like an API key" in result.stderr and key not in result.output
    monkeypatch.setenv("USAGELEDGER_CONFIG", key)
    result = CliRunner().invoke(app, ["status"])
    assert result.stderr.startswith("error: USAGELEDGER_CONFIG sk-admin-… looks like an API key"), result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_secret_typed_without_its_flag_is_not_quoted_back() -> None:
    """`status postgresql://user:pw@host/db` (the --store forgotten) was refused quoting the URL whole, twice (the
    words left over, and the advice `pass --store ...`); so was a key or a Slack webhook URL. The password, the key
    and the webhook's path are masked, as in every other refusal, and the advice still names the flag."""
    password, key = "Hunter2-not-shown", "sk-admin-" + "Zq7" * 12
    webhook = "https://hooks.slack.com/services/T0AB12/B0CD34/XSECRETX"
    cases = {
        ("status", f"postgresql://ledger:{password}@db.example/ledger"): "pass --store postgresql://ledger:***@",
        ("status", key): "(sk-admin-…)",
        ("check", webhook): "(https://hooks.slack.com/…",
    }
    for args, shown in cases.items():
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: Got unexpected extra argument") and shown in result.stderr
        assert password not in result.stderr and key not in result.stderr and "XSECRETX" not in result.stderr


@pytest.mark.parametrize("since", ["6m", "36m", " 90s ", "500ms"])
def test_a_first_sync_reach_in_minutes_is_refused(since: str) -> None:
    """`[sync] since = "6m"`, meant as six months, is six minutes (m is minutes wherever a span is read): a stream's
    first sync read today's bucket alone and said nothing. Refused, naming the key and a span in days."""
    with pytest.raises(ConfigError) as caught:
        _config(f'[sync]\nsince = "{since}"\n')
    assert str(caught.value) == (
        f"sync.since: {since.strip()!r} is a span of minutes or seconds (m is minutes), so a stream's first sync would"
        ' read today alone; write it in days, such as since = "180d" for about six months'
    )


def test_a_first_sync_reach_in_hours_or_more_is_kept() -> None:
    """Hours, days and weeks (and fractions of them) are read as before."""
    assert parse_config(tomllib.loads('[sync]\nsince = "36h"\n')).sync.since == 36 * 3600
    assert parse_config(tomllib.loads('[sync]\nsince = "1.5d"\n')).sync.since == 36 * 3600
    assert parse_config(tomllib.loads('[sync]\nsince = "26w"\n')).sync.since == 26 * 7 * 86400


@pytest.mark.parametrize("team", ["Unassigned", "unassigned", "Total", "TOTAL"])
def test_a_team_named_as_the_rows_of_no_team_is_refused(team: str) -> None:
    """`[teams] Unassigned = [...]` made a second `unassigned` row beside the spend of no team (`unassigned $307`,
    `Unassigned $159`), and `--team Unassigned` picked the other one; `total` read as the sum row. Refused."""
    with pytest.raises(ConfigError, match=r"is what spend by team calls the spend of no team \(and the sum of all\)"):
        _config(f'[teams]\n"{team}" = ["proj_a"]\n')


def test_the_reserved_team_names_are_the_reports() -> None:
    """The config's reserved names hold the report's own name for spend of no team."""
    assert UNASSIGNED in RESERVED_TEAMS


def test_a_config_the_user_cannot_read_says_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config another user owns (mode 0600) said "cannot read config file X: Permission denied" and no more. The
    fix is said. (Root reads any file, so the refusal of the file system is given here.)"""
    import usageledger.config as config_module

    path = tmp_path / "usageledger.toml"
    path.write_text("[sync]\nlag_days = 2\n")

    def refuse(file: object) -> str:
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(config_module, "read_user_text", refuse)
    result = CliRunner().invoke(app, ["status", "--config", str(path), "--store", str(tmp_path / "s.duckdb")])
    assert result.exit_code == 1
    assert " ".join(result.stderr.split()) == (
        f"error: cannot read config file {path}: Permission denied; let your user read it (chmod u+r {path}, or sudo"
        " chown), or pass another with --config"
    )
