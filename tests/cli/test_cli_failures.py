"""Failures of the commands that start things (init, emulator) are one line on stderr, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger.cli import app


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["emulator", "--port", "70000"], "--port"),
        (["emulator", "--port", "-1"], "--port"),
        (["emulator", "--replay", "/nonexistent/usage.jsonl"], "--replay"),
        (["init", "--path", "{tmp}"], "{tmp}"),
    ],
    ids=["port-too-high", "port-negative", "replay-missing", "init-onto-folder"],
)
def test_start_up_failures_are_one_line(tmp_path: Path, argv: list[str], names: str) -> None:
    """A bad port, a missing replay file or an init path that is a folder is one line naming what is wrong; the
    emulator's and init's are bad flag values, exit 2. (A missing folder of an init path
    is made: `test_init_makes_a_missing_folder_and_takes_it_away_when_it_fails`.)"""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    result = CliRunner().invoke(app, argv)
    output = result.output.strip()
    assert result.exit_code == 2, output
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert names.replace("{tmp}", str(tmp_path)) in output, output
    assert list(tmp_path.iterdir()) == [], "a failed start-up leaves nothing behind"


def test_init_where_the_config_cannot_be_written_is_refused_before_the_store_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`init` in a read-only folder (here /proc, where no one, root included, can make a file) made the store, then
    failed on the config with "error: Read-only file system: usageledger.toml", naming no flag, and left the store.
    Now the config is written first: one line naming --path and the folder, and no store is made."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["init", "--path", "/proc/usageledger.toml", "--store", "made.duckdb"])
    output = result.output.strip()
    assert result.exit_code == 1, output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("error: --path /proc/usageledger.toml: cannot write a file in the folder /proc ("), output
    assert output.endswith("run init in a folder you can write, or pick another --path"), output
    assert list(tmp_path.iterdir()) == [], "no store is made for a config that cannot be written"


def test_init_makes_a_missing_folder_and_takes_it_away_when_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`init --path new/usageledger.toml` was refused ("the folder new does not exist; create it"), though every other
    output makes its missing folders and a missing --config's hint says to run `init --path` there. The folders are
    made; an init that then fails (a store it cannot make) takes them away again, and a file where a folder must be
    is bad input, exit 2."""
    monkeypatch.chdir(tmp_path)
    made = CliRunner().invoke(app, ["init", "--path", "team/ledger/usageledger.toml", "--store", "team/s.duckdb"])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "team" / "ledger" / "usageledger.toml").is_file() and (tmp_path / "team" / "s.duckdb").is_file()
    failed = CliRunner().invoke(app, ["init", "--path", "other/deep/usageledger.toml", "--store", "/proc/s.duckdb"])
    assert failed.exit_code == 1, failed.output
    assert not (tmp_path / "other").exists(), "a failed init leaves no folder it made"
    (tmp_path / "notes.txt").write_text("mine\n")
    blocked = CliRunner().invoke(app, ["init", "--path", "notes.txt/usageledger.toml", "--store", "b.duckdb"])
    assert blocked.exit_code == 2, blocked.output
    assert blocked.output.strip() == (
        "error: --path: notes.txt is a file, not a folder, so notes.txt/usageledger.toml cannot be made; give a path"
        " in a folder"
    )
    assert not (tmp_path / "b.duckdb").exists()


def test_init_given_a_folder_by_its_trailing_slash_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`init --path conf/` wrote the config as a file named `conf` (the slash is lost once the value is a Path), as
    `export -o out/` once did; an existing folder was refused already. Refused alike, exit 2, nothing made; a `~`
    still stands for the home folder."""
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["init", "--path", "conf/", "--store", "s.duckdb"])
    assert done.exit_code == 2, done.output
    assert done.output.strip() == (
        "error: --path conf/ names a folder (it ends in /); give the config a file name, such as conf/usageledger.toml"
    )
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = CliRunner().invoke(app, ["init", "--path", "~/cfg/usageledger.toml", "--store", "s.duckdb"])
    assert home.exit_code == 0, home.output
    assert (tmp_path / "home" / "cfg" / "usageledger.toml").is_file() and not (tmp_path / "~").exists()


def test_init_twice_names_path_and_both_fixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second `init` said "usageledger.toml already exists; pass --force", naming no flag for the file; now it names
    --path and both fixes, and the first config is kept as it was."""
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(app, ["init"])
    assert first.exit_code == 0, first.output
    written = (tmp_path / "usageledger.toml").read_bytes()
    again = CliRunner().invoke(app, ["init"])
    assert again.exit_code == 1, again.output
    assert again.output.strip() == (
        "error: --path usageledger.toml already exists; pass --force to overwrite it, or pick another --path"
    )
    assert (tmp_path / "usageledger.toml").read_bytes() == written


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["report", "--since", "2999-01-01"], "error: --since: the period is empty"),
        (["check", "--anomaly-threshold", "nan"], "error: --anomaly-threshold: 'nan' is not a finite number"),
        (["check", "--stale-keys", "90"], "error: --stale-keys: 90 has no unit"),
        (["report", "--since", "7d", "--since", "30d"], "error: --since: given 2 times"),
        (["report", "--org", ""], "error: --org: the value is empty"),
        (["report", "--no-such-flag"], "No such option"),
    ],
    ids=["period", "number", "span", "twice", "empty", "typer-unknown-option"],
)
def test_bad_input_exits_2_from_any_command_as_typers_own_usage_errors(
    tmp_path: Path, argv: list[str], says: str
) -> None:
    """A value a command refuses once it reads it (a ParameterError, raised in the command's body or the library
    under it) exited 1, as a failure does, while a value Typer refuses exited 2: a script could not tell bad input
    from a failed run. Bad input now exits 2, whichever command and wherever it is found."""
    done = CliRunner().invoke(app, [*argv, "--store", str(tmp_path / "none.duckdb")])
    assert done.exit_code == 2, done.output
    assert says in done.output and "Traceback" not in done.output
    failed = CliRunner().invoke(app, ["report", "--store", str(tmp_path / "none.duckdb")])
    assert failed.exit_code == 1 and "no store at" in failed.stderr, failed.output  # a failure is still 1
