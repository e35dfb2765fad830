"""The README stays true: every CLI command is documented, and the two set-up commands exist."""

from __future__ import annotations

import os
import re

import typer.main

from usageledger.cli import app

from conftest import REPO


def _commands() -> set[str]:
    group = typer.main.get_command(app)
    return set(group.commands)  # type: ignore[attr-defined]


def test_every_cli_command_is_documented_in_the_readme() -> None:
    """Each registered command appears in the README as `usageledger <command>`."""
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`usageledger ([a-z-]+)", readme))
    missing = _commands() - documented
    assert not missing, f"commands missing from README.md: {sorted(missing)}"


def test_the_two_setup_commands_exist_and_ci_runs_the_test_one() -> None:
    """scripts/demo and scripts/test are executable, named in the README, and .ci/run calls scripts/test."""
    readme = (REPO / "README.md").read_text()
    for script in ("scripts/demo", "scripts/test"):
        assert script in readme
        assert os.access(REPO / script, os.X_OK)
    assert "scripts/test" in (REPO / ".ci" / "run").read_text()
