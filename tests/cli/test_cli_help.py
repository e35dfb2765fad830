"""Help text prints as written: config sections such as [store] and [alerts] are never swallowed as markup."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from usageledger.cli import app

COMMAND = typer.main.get_command(app)
COMMANDS: dict[str, Any] = COMMAND.commands  # type: ignore[attr-defined]
NAMES = sorted(COMMANDS)
SECTION = re.compile(r"\[([a-z_.]+)\]")


def _written(command: Any) -> set[str]:
    """Every [section] written in a command's docstring or option help."""
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
    return {m for text in texts for m in SECTION.findall(text)}


def test_some_help_names_config_sections() -> None:
    """The check below has something to check: several commands name [store], [alerts] or [names] in their help."""
    assert {"store", "alerts", "names"} <= set().union(*(_written(COMMANDS[n]) for n in NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_help_keeps_every_section_name(name: str) -> None:
    """`usageledger NAME --help` shows every [section] its help text names, brackets included."""
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    missing = [s for s in _written(COMMANDS[name]) if f"[{s}]" not in flat]
    assert missing == [], f"{name} --help lost {missing}"
