"""Paths across commands: a `~` no shell expanded is the home folder, and no output overwrites an input."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger.cli import app


@pytest.mark.parametrize(
    ("argv", "written"),
    [
        (["report", "--html=~/r.html"], "r.html"),
        (["statement", "2026-11", "--csv=~/s.csv"], "s.csv"),
        (["export", "-e", "costs", "--output=~/e.csv"], "e.csv"),
        (["init", "--path=~/u.toml"], "u.toml"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else v,
)
def test_a_tilde_after_an_equals_sign_is_the_home_folder(
    argv: list[str], written: str, demo_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`report --html=~/r.html` wrote ./~/r.html (a folder named `~` in the working directory, one `rm -rf ~` from
    the home folder), though `--store=~/x` was already the home folder; now every output path is read the same."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    store = [] if argv[0] == "init" else ["--store", str(demo_store)]
    result = CliRunner().invoke(app, [*argv, *store], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert (home / written).is_file()
    assert not (work / "~").exists()


def _rates(path: Path) -> None:
    """A rates file with a rate for every day the demo store can hold."""
    start = date(2026, 1, 1)
    days = (start + timedelta(days=i) for i in range(400))
    path.write_text("date,rate\n" + "".join(f"{d.isoformat()},0.9\n" for d in days))


@pytest.mark.parametrize(
    ("argv", "flag", "given"),
    [
        (["report", "--names", "n.csv", "--html", "./n.csv"], "--html", "--names"),
        (["statement", "2026-11", "--names", "n.csv", "--csv", "n.csv"], "--csv", "--names"),
        (["statement", "2026-11", "--currency", "EUR", "--fx", "fx.csv", "--html", "fx.csv"], "--html", "--fx"),
        (["export", "-f", "focus", "--currency", "EUR", "--fx", "fx.csv", "-o", "fx.csv"], "--output", "--fx"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_an_output_that_is_the_commands_own_input_is_refused(
    argv: list[str], flag: str, given: str, demo_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same path as an input and an output of one command: `report --names n.csv --html n.csv` replaced the
    names file with the page, and `export -f focus --fx r.csv -o r.csv` the rates with the rows. Refused, the input
    untouched."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "n.csv").write_text("kind,id,name\n")
    _rates(tmp_path / "fx.csv")
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")}
    result = CliRunner().invoke(app, [*argv, "--store", str(demo_store)], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert f"error: {flag}: " in result.output and f"is the file of {given}" in result.output, result.output
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")} == before
