"""The README stays true: every CLI command is documented, every command it shows parses, the two set-up commands
exist, and its Python and config examples run."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.config import load_config
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.report.alerts import parse_alert_config
from usageledger.report.names import names_from_mapping

from fixtures.data import FAKE_ADMIN_KEY, REPO


def _commands() -> set[str]:
    group = typer.main.get_command(app)
    return set(group.commands)  # type: ignore[attr-defined]


def test_every_cli_command_is_documented_in_the_readme() -> None:
    """Each registered command appears in the README as `usageledger <command>`."""
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`usageledger ([a-z-]+)", readme))
    missing = _commands() - documented
    assert not missing, f"commands missing from README.md: {sorted(missing)}"


def test_every_cli_command_has_a_row_in_the_readmes_command_table() -> None:
    """The tour's table (`| Command | What it does |`) has a row per registered command, each once: `usageledger mcp`,
    named in its own section only, had none, so a reader of the table (or of `usageledger --help` beside it) could not
    find it there."""
    readme = (REPO / "README.md").read_text()
    table = readme.split("| Command | What it does |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `usageledger ([a-z-]+)", table, flags=re.MULTILINE)
    assert len(rows) == len(set(rows)), rows
    assert set(rows) == _commands(), (
        f"missing: {sorted(_commands() - set(rows))}, unknown: {sorted(set(rows) - _commands())}"
    )


def test_the_two_setup_commands_exist_and_ci_runs_the_test_one() -> None:
    """scripts/demo and scripts/test are executable, named in the README, and .ci/run calls scripts/test."""
    readme = (REPO / "README.md").read_text()
    for script in ("scripts/demo", "scripts/test"):
        assert script in readme
        assert os.access(REPO / script, os.X_OK)
    assert "scripts/test" in (REPO / ".ci" / "run").read_text()


def _blocks(language: str) -> list[str]:
    readme = (REPO / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", readme, flags=re.DOTALL)


# What `pip install usageledger` (and so `scripts/demo`'s .venv) lacks: the extras' packages. The tour runs in a
# process of its own where importing one of them fails, as it does on a core install.
EXTRAS_ONLY = ("pandas", "polars", "matplotlib", "psycopg", "mcp")
CORE_ONLY = f"""
import importlib.abc, sys
class CoreOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {EXTRAS_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (an extra)", name=name)
        return None
sys.meta_path.insert(0, CoreOnly())
"""
TOUR_CHECKS = (
    'assert page.data and len(table) > 0 and len(one_page.data) == 2\nprint("tour ok")\n',
    'assert one.name and teams\nprint("tour ok")\n',
)
"""What each Python block of the README has made by its end, checked in its own script."""


def test_the_library_tour_runs_against_the_emulator(tmp_path: Path) -> None:
    """The README's Python examples run as written, each block a script of its own as a newcomer pastes it, on the
    core install a newcomer has after `scripts/demo` (no extra importable: its `.to_pandas()` was an ImportError
    there), against an emulator on loopback whose clock is the wall clock. The directory's block, run alone, was a
    NameError: it used `Client`, which only the block before imported."""
    blocks = _blocks("python")
    assert len(blocks) == len(TOUR_CHECKS)
    with run_server(Emulator(EmulatorConfig(seed=7, days=60))) as url:
        environ = {**os.environ, "OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": url}
        for number, (block, checks) in enumerate(zip(blocks, TOUR_CHECKS, strict=True)):
            script = tmp_path / f"tour{number}.py"
            script.write_text(CORE_ONLY + block + checks)
            done = subprocess.run(
                [sys.executable, str(script)], env=environ, capture_output=True, text=True, timeout=120, check=False
            )
            assert done.returncode == 0, (number, done.stderr[-2000:])
            assert done.stdout.endswith("tour ok\n"), number


def test_the_config_example_is_valid(tmp_path: Path) -> None:
    """The README's usageledger.toml parses, and so do its [alerts] and [names] sections."""
    (toml_text,) = _blocks("toml")
    path = tmp_path / "usageledger.toml"
    path.write_text(toml_text)
    config = load_config(path)
    assert [o.name for o in config.orgs] == ["acme"]
    # the [alerts] budgets read costs: without a costs stream, copied as it stands, `check` said "OK: no alerts"
    # against $0.00 of spend never synced
    assert any(stream.endpoint.is_costs for stream in config.streams), config.streams
    alerts = parse_alert_config(config.alerts)
    assert alerts.budget.daily == Decimal("150.00") and alerts.stale_after == timedelta(hours=36)
    assert alerts.project_budgets["proj_abc"].daily == Decimal("20")
    assert names_from_mapping(config.names).projects["proj_abc"] == "Search"
    # each org reads its key from its own key_env, never OPENAI_ADMIN_KEY, which the tour exports: copied and synced,
    # the example said `org 'acme': no admin key: set ACME_ADMIN_KEY`, a step the README never named
    readme = (REPO / "README.md").read_text()
    for org in config.orgs:
        assert f"export {org.key_env}=sk-admin-" in readme, org.key_env


def _shown_commands() -> list[str]:
    """Every `usageledger ...` command line the README shows: each command of its bash and sh blocks (comments
    dropped; a pipeline or `&&` chain split; after any `VAR=value`, not `pip install usageledger`), and each inline
    code span that starts with `usageledger `; and the command of the MCP client configuration."""
    readme = (REPO / "README.md").read_text()
    shown = re.findall(r"`(usageledger [^`]+)`", readme)
    for block in _blocks("bash") + _blocks("sh"):
        for line in block.splitlines():
            line = re.sub(r"(^|\s)#.*", "", line)
            for part in re.split(r"\|\||&&|[|;]", line):
                found = re.match(r"\s*(?:[A-Z_][A-Z0-9_]*=(?:\$\([^)]*\)|\S+)\s+)*(usageledger\s.*)", part)
                if found:
                    shown.append(found.group(1).strip())
    for block in _blocks("json"):  # an MCP client's configuration: the command it starts
        for server in json.loads(block).get("mcpServers", {}).values():
            if server["command"] == "usageledger":
                shown.append(shlex.join(["usageledger", *server["args"]]))
    return shown


@functools.cache
def _root() -> Any:
    """The CLI's click command, built once: typer builds it from every command's signature and type hints, ~80 ms a
    build, and the README shows some eighty command lines."""
    return typer.main.get_command(app)


def _parse_shown(line: str) -> str | None:
    """Why the command line (as `_shown_commands` gives it) would not parse, or None. A command named without its
    arguments (`usageledger close`, in a sentence) is a mention; a positional in capitals (`ENDPOINT`, `FILE`) is a
    placeholder, and `--help` (`usageledger query --help`, which lists the endpoints) asks for no arguments, so only
    that line's options are checked."""
    words = shlex.split(line)[1:]
    command: Any = _root()
    path: list[str] = []
    while hasattr(command, "commands") and words and words[0] in command.commands:
        path.append(words[0])
        command = command.commands[words.pop(0)]
    if hasattr(command, "commands"):  # `usageledger credit`, named in a sentence, is a mention
        return f"{words[0]} is no command{' of ' + path[0] if path else ''}" if words else None
    if "--help" in words or any(re.fullmatch(r"[A-Z][A-Z_]*", word) for word in words):
        takes = {"--help"} | {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        unknown = [w for w in words if w.startswith("-") and w.partition("=")[0] not in takes]
        return f"no such option: {', '.join(unknown)}" if unknown else None
    try:
        command.make_context(" ".join(path), words)
    except Exception as exc:  # typer's click: NoSuchOption, BadParameter, MissingParameter ...
        if not words and type(exc).__name__ == "MissingParameter":
            return None
        return f"{type(exc).__name__}: {exc}"
    return None


def test_every_command_the_readme_shows_parses_as_written() -> None:
    """The README's tour, its other blocks and its inline `usageledger ...` spans name commands that exist, options
    each command takes and values its option types and choices accept: what a user pastes is never refused as
    "No such option" because an option was renamed and the README not (nothing checked the shell blocks before;
    only the Python ones were run)."""
    shown = _shown_commands()
    assert len(shown) > 60 and "usageledger sync --since 90d" in shown  # the blocks and spans were all found
    assert "usageledger mcp --store /path/to/usageledger.duckdb" in shown
    refused = {line: why for line in shown if (why := _parse_shown(line)) is not None}
    assert not refused, refused
    assert _parse_shown("usageledger sync --sinse 90d") == "NoSuchOption: No such option: --sinse"
    assert _parse_shown("usageledger query ENDPOINT --fromat csv") == "no such option: --fromat"
    assert _parse_shown("usageledger query --help") is None
    assert _parse_shown("usageledger query --help --fromat csv") == "no such option: --fromat"
    assert _parse_shown("usageledger credit nothing") == "nothing is no command of credit"


def test_the_demo_after_the_tests_installs_nothing_again(tmp_path: Path) -> None:
    """`scripts/demo` (the core) after `scripts/test` (the `[dev]` set, which holds the core) reinstalled the core,
    asking the package index again, though the README's demo needs no network; the next `scripts/test` reinstalled
    the dev set in turn. The core is taken as installed by any install of the same pyproject.toml; a new
    pyproject.toml, or another set of extras, still installs. `.venv/bin/python` here only logs what it is asked."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "bootstrap", tmp_path / "scripts" / "bootstrap")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    log = tmp_path / "pip.log"
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    python.chmod(0o755)

    def bootstrap(*extras: str) -> list[str]:
        log.write_text("")
        subprocess.run(["bash", str(tmp_path / "scripts" / "bootstrap"), *extras], check=True, timeout=60)
        return [line for line in log.read_text().splitlines() if " -e " in line]

    assert bootstrap("[dev]") == ["-m pip install -q --disable-pip-version-check -e .[dev]"]
    assert bootstrap() == []  # scripts/demo after scripts/test
    assert bootstrap("[dev]") == []  # and scripts/test again
    assert bootstrap("[charts]") == ["-m pip install -q --disable-pip-version-check -e .[charts]"]
    with (tmp_path / "pyproject.toml").open("a") as changed:
        changed.write("\n# changed\n")
    assert bootstrap() == ["-m pip install -q --disable-pip-version-check -e ."]
    assert bootstrap() == []


def test_the_tours_statement_runs_against_a_demo_store(
    demo_command_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tour's `statement` line is run as written, on the store `usageledger demo` makes (60 days up to today):
    it named `2026-10`, which a 90-day store no longer holds from late January 2027; `last` never ages."""
    [line] = [c for c in _shown_commands() if c.startswith("usageledger statement ") and "--csv" in c]
    assert "statement last " in line, line
    monkeypatch.chdir(tmp_path)  # its --csv file is written here
    done = CliRunner().invoke(app, [*shlex.split(line)[1:], "--store", str(demo_command_store)])
    assert done.exit_code == 0, done.output
    last = (datetime.now(UTC).date().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    assert last in done.output and "to the cent" in done.output, done.output
    assert (tmp_path / "statements.csv").read_text().count("\n") > 2
