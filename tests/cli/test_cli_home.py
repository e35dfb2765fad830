"""A ``~`` that no shell expanded (``--html=~/r.html``) is the home folder for every file a command writes."""

from __future__ import annotations

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
