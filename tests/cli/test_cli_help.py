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


def _leaves(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's words (``("credit", "add")``), sub-commands included."""
    out: list[tuple[str, ...]] = []
    for name, command in sorted(getattr(group, "commands", {}).items()):
        sub = getattr(command, "commands", None)
        out += _leaves(command, (*path, name)) if sub else [(*path, name)]
    return out


LEAVES = _leaves(COMMAND)


def test_every_command_and_sub_command_is_listed() -> None:
    assert ("query",) in LEAVES and ("credit", "add") in LEAVES


@pytest.mark.parametrize("words", LEAVES, ids=" ".join)
def test_usage_line_fits_80_columns_with_arguments_in_capitals(words: tuple[str, ...]) -> None:
    """At 80 columns the usage line is one line, and each argument is named as its errors name it (`MONTH`, not
    `month`; `ENDPOINT`, not the twelve endpoints spelled out and wrapped mid-word)."""
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    usage, following = result.output.splitlines()[:2]
    assert usage.startswith(f"Usage: usageledger {' '.join(words)} [OPTIONS]")
    assert len(usage) <= 80 and following.strip() == "", usage
    arguments = usage.split("[OPTIONS]", 1)[1].split()
    assert all(a.strip("{}[]").isupper() for a in arguments), usage


def _config_leaves() -> list[tuple[str, ...]]:
    out = []
    for words in LEAVES:
        command: Any = COMMAND
        for word in words:
            command = command.commands[word]
        if any("--config" in getattr(p, "opts", ()) for p in command.params):
            out.append(words)
    return out


@pytest.mark.parametrize("words", _config_leaves(), ids=" ".join)
def test_config_help_names_the_variable_it_falls_back_to(words: tuple[str, ...]) -> None:
    """Every --config says its default as the README's table does: $USAGELEDGER_CONFIG, else ./usageledger.toml
    (`sync --help` said only ./usageledger.toml, though every command reads the variable)."""
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "$USAGELEDGER_CONFIG" in flat and "./usageledger.toml" in flat, flat


def test_emulator_help_gives_each_sizes_range_as_its_refusal_does() -> None:
    """The README's table says `--projects` up to 1,000, `--users` up to 100,000, `--models` up to 10; `emulator
    --help` said only "Number of projects.", so the limit was found by being refused. Each help now gives the range
    the refusal names (`give 1 to 1,000`), from the one table of limits."""
    result = CliRunner().invoke(app, ["emulator", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    for flag, range_ in (("--projects", "1 to 1,000"), ("--users", "1 to 100,000"), ("--models", "1 to 10 ")):
        line = flat.split(f"{flag} <int>", 1)[1].split("[default:", 1)[0]
        assert range_ in line, (flag, line)
