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
        (["init", "--path", "{tmp}/missing/dir/u.toml"], "missing/dir/u.toml"),
        (["init", "--path", "{tmp}"], "{tmp}"),
    ],
    ids=["port-too-high", "port-negative", "replay-missing", "init-missing-folder", "init-onto-folder"],
)
def test_start_up_failures_are_one_line(tmp_path: Path, argv: list[str], names: str) -> None:
    """A bad port, a missing replay file or an init path in a missing folder is one line naming what is wrong; the
    emulator's are bad flag values, exit 2, init's a folder it cannot write in, exit 1."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    result = CliRunner().invoke(app, argv)
    output = result.output.strip()
    assert result.exit_code == (2 if argv[0] == "emulator" else 1), output
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
