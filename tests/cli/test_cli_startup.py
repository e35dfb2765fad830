"""Start-up stays light: `--help` and `version` import neither pyarrow nor DuckDB nor the reports, nor pydantic (which
typer's coercion of an option not given would pull in) nor rich (which only commands printing rich output need).

Commands are listed from the table in ``cli/_commands.py`` and a command's module is imported only when it runs; the
table must therefore agree with what the modules register (names and the one line `--help` shows).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.core import TyperCommand
from typer.testing import CliRunner

import usageledger
from usageledger import cli
from usageledger.cli import app
from usageledger.cli._commands import COMMANDS, Command
from usageledger.store import open_store

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

HEAVY = (
    "pyarrow",
    "duckdb",
    "numpy",
    "psycopg",
    "usageledger.store",
    "usageledger.report",
    "usageledger.client",
    "pydantic",
    "typer._adapters",
    "rich",
)

# Runs the CLI like the console script, then reports which heavy modules were imported (atexit runs after the
# SystemExit that ends every click command).
_PROBE = (
    "import atexit, json, sys\n"
    f"heavy = {HEAVY!r}\n"
    "atexit.register(lambda: print(json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr))\n"
    "from usageledger.cli import main\n"
    "main()\n"
)


def _run(*argv: str) -> tuple[int, str, list[str]]:
    """Exit code, stdout, and the heavy modules the run imported."""
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=60)
    imported = json.loads(done.stderr.strip().splitlines()[-1])
    return done.returncode, done.stdout, imported


@pytest.mark.parametrize("argv", [["--help"], ["version"], ["--version"], ["version", "--help"]])
def test_light_commands_import_nothing_heavy(argv: list[str]) -> None:
    """`usageledger --help`, `usageledger version` and `usageledger version --help` import no heavy module."""
    code, out, imported = _run(*argv)
    assert code == 0, out
    assert imported == []
    assert out.strip()


def test_version_prints_the_version_alone() -> None:
    """`usageledger version` prints the version and nothing else, as it did through the rich console; so does
    `usageledger --version`, which most tools take and which said "No such option: --version"."""
    for argv in (["version"], ["--version"]):
        code, out, _ = _run(*argv)
        assert code == 0
        assert out == f"{usageledger.__version__}\n"


def test_a_sync_of_costs_and_its_export_never_import_pandas(emulator_url: str, tmp_path: Path) -> None:
    """A costs window was loaded through ``pa.array``, which makes pyarrow import pandas where it is installed (as
    here): ~0.3 s of CPU and 50 MB in every default sync. The columns are now built from buffers."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('pandas' in sys.modules, file=sys.stderr))\n"
        "from usageledger.cli import main\n"
        "main()\n"
    )
    store = str(tmp_path / "s.duckdb")
    sync = [
        "sync",
        "--store",
        store,
        "--base-url",
        emulator_url,
        "--since",
        "10d",
        "--quiet",
        "--now",
        str(EMULATOR_NOW),
    ]
    # An export as CSV or JSON Lines read each UTC time through pandas too (pyarrow's time-zone path).
    exports = [
        ["export", "--store", store, "-e", "costs", "-f", f, "-o", str(tmp_path / f"c.{f}")] for f in ("csv", "jsonl")
    ]
    for argv in (sync, *exports):
        done = _probed(probe, argv)
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip().splitlines()[-1] == "False", (argv[0], done.stderr)
    assert (tmp_path / "c.csv").read_text().splitlines()[1].split(",")[2].endswith("T00:00:00Z")


def _probed(probe: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``probe`` (Python that runs the CLI's ``main()`` and reports on stderr at exit) with the CLI's ``argv``."""
    return subprocess.run(
        [sys.executable, "-c", probe, *argv],
        env={**os.environ, "OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_quiet_sync_imports_neither_httpxs_command_line_nor_rich_nor_the_reports(
    emulator_url: str, tmp_path: Path
) -> None:
    """`import httpx` imported httpx's command line (click, pygments, rich's progress and syntax) in every sync, ~25-40
    ms of CPU a run; main() keeps it out, and the sync still talks to the API. A quiet sync (cron, `serve
    --sync-every`) prints nothing, so it imports no rich either (its consoles and tables, ~40 ms), nor the reports'
    queries (the engine's safety checks imported them for a warning only readers give). An httpx imported before
    main() (embedding, the test process) is left as it is."""
    probe = (
        "import atexit, json, sys\n"
        "mods = ('httpx._main', 'click', 'pygments', 'rich', 'usageledger.report')\n"
        "atexit.register(lambda: print(json.dumps([m for m in mods if sys.modules.get(m)]), file=sys.stderr))\n"
        "from usageledger.cli import main\n"
        "main()\n"
    )
    argv = ["sync", "--store", str(tmp_path / "s.duckdb"), "--base-url", emulator_url, "-e", "costs"]
    argv += ["--since", "2d", "--no-directory", "--quiet", "--now", str(EMULATOR_NOW)]
    done = _probed(probe, argv)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []
    with open_store(str(tmp_path / "s.duckdb")) as store:
        assert store.query("SELECT COUNT(*) FROM costs")[0][0] > 0
    before = sys.modules.get("httpx._main")
    cli.skip_httpx_command_line()  # httpx is imported here: nothing changes
    assert sys.modules.get("httpx._main") is before


def test_a_sync_runs_without_numpy_and_other_commands_keep_it(emulator_url: str, tmp_path: Path) -> None:
    """pyarrow imports numpy whenever it is installed, and no step of a sync uses it: main() keeps it out of a
    `sync` (~0.1 s of CPU and ~12 MB of the peak), which still reads every default stream (usage through Arrow,
    costs, the directory) and prints its table. Other commands may import it as before, and a numpy imported
    before main() (embedding, the test process) is left as it is."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('numpy' not in sys.modules, file=sys.stderr))\n"
        "from usageledger.cli import main\n"
        "main()\n"
    )
    store = str(tmp_path / "s.duckdb")
    done = _probed(
        probe, ["sync", "--store", store, "--base-url", emulator_url, "--since", "3d", "--now", str(EMULATOR_NOW)]
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "True", done.stderr
    assert "total" in done.stdout
    with open_store(store) as opened:
        assert opened.query("SELECT COUNT(*) FROM costs")[0][0] > 0
        assert opened.query("SELECT COUNT(*) FROM usage_completions")[0][0] > 0
        assert opened.query("SELECT COUNT(*) FROM directory_versions")[0][0] > 0
    exported = _probed(probe, ["export", "--store", store, "-e", "costs", "-f", "csv", "-o", str(tmp_path / "c.csv")])
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr.strip().splitlines()[-1] == "False"
    import numpy

    cli.skip_numpy()  # numpy is imported here: nothing changes
    assert sys.modules["numpy"] is numpy


def test_a_sync_into_postgresql_writes_while_numpy_is_kept_out(emulator_url: str, migrated_pg_url: str) -> None:
    """The README's `usageledger sync --store postgresql://...` ended at its first commit with an AttributeError
    traceback: psycopg's int dumper takes numpy's `integer` type whenever `numpy` is in sys.modules, and the `None`
    that keeps numpy out of a sync was there. A fresh process (the test process has numpy) now syncs into
    PostgreSQL, still without importing numpy."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(sys.modules.get('numpy', 0) is not None and 'numpy' in sys.modules, "
        "file=sys.stderr))\n"
        "from usageledger.cli import main\n"
        "main()\n"
    )
    argv = ["sync", "--store", migrated_pg_url, "--base-url", emulator_url, "-e", "costs,completions"]
    done = _probed(probe, [*argv, "--since", "2d", "--no-directory", "--quiet", "--now", str(EMULATOR_NOW)])
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr  # numpy was never imported
    with open_store(migrated_pg_url, migrate=False, read_only=True) as store:
        assert store.query("SELECT COUNT(*) FROM costs")[0][0] > 0
        assert store.query("SELECT COUNT(*) FROM usage_completions")[0][0] > 0


def test_a_group_s_sub_command_help_needs_no_pydantic() -> None:
    """`credit add --help` passes through the root and the `credit` group without their help options' coercion
    importing pydantic (the command's own module is imported, and prints the help)."""
    code, out, imported = _run("credit", "add", "--help")
    assert code == 0 and "--note" in out
    assert "pydantic" not in imported


def test_commands_with_options_never_import_pydantic(tmp_path: Path) -> None:
    """typer 0.29 coerced every option through pydantic (~0.1-0.15 s of every command's start-up, and pydantic in
    the core install); the core pins typer below it. `status` on a store, with options given, imports none of it."""
    store = tmp_path / "u.duckdb"
    open_store(str(store)).close()
    code, out, imported = _run("status", "--store", str(store), "--format", "json")
    assert code == 0, out
    assert "pydantic" not in imported and "typer._adapters" not in imported


def test_a_command_with_options_still_coerces_them() -> None:
    """Options are still coerced by typer (click's types, no pydantic): a bad integer is refused, naming the option
    and the value."""
    done = subprocess.run(
        [sys.executable, "-c", "from usageledger.cli import main; main()", "query", "costs", "--limit-rows", "many"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    # One line naming the flag first, as every other refusal (click's own was four lines: usage, hint, blank, error)
    assert done.stderr.startswith("error: --limit-rows: 'many' is not a whole number")  # not click's "valid int range"
    assert "see `usageledger query --help`" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["changes", "-f", "csv"], "error: --format: 'csv' is not one of 'text', 'json' (see `usageledger changes"),
        (["sync", "--concurrency", "abc"], "error: --concurrency: 'abc' is not a whole number (see `usageledger sync"),
        (["sync", "--concurrency", "2.5"], "error: --concurrency: '2.5' is not a whole number (see `usageledger sync"),
        (["changes", "--limit-rows", "2x"], "error: --limit-rows: '2x' is not a whole number (see `usageledger"),
        (["credit", "list", "--zzz"], "error: No such option: --zzz (see `usageledger credit list --help`)"),
        (["export", "--nte", "x"], "error: No such option: --nte"),
        # the hidden test clock was offered: "(Possible options: --now, --store)"
        (["credit", "list", "--nte"], "error: No such option: --nte (Possible options: --store) (see `usageledger"),
        (["--bogus"], "error: No such option: --bogus (see `usageledger --help`)"),
        # a command's option given before it, to its group: "No such option: --store", though every command takes it
        (
            ["credit", "--store", "s.duckdb", "list"],
            "error: --store is an option of add, list, remove, not of `usageledger credit`; give it after the command,"
            " as in `usageledger credit add --store …` (see `usageledger credit --help`)",
        ),
        (["--store", "s.duckdb", "report"], "error: --store is an option of demo, report, reconcile and "),
        # forecast takes --month; statement and close take the month as an argument
        (
            ["statement", "--month", "2026-11"],
            "error: --month: MONTH is an argument of this command, not an option; give the value alone, without "
            "--month (see `usageledger statement --help`)",
        ),
        (["close", "--month", "2026-11"], "error: --month: MONTH is an argument of this command, not an option"),
        # the issue's own spelling, `export --format delta PATH`: the path is --output's
        (
            ["export", "--format", "delta", "lake"],
            "error: Got unexpected extra argument(s) (lake); to write to lake, pass --output lake (see `usageledger",
        ),
        (["export", "-o", "x.csv", "lake"], "error: Got unexpected extra argument(s) (lake) (see `usageledger export"),
        (
            ["credit", "add", "--day", "2026-11-01", "5"],
            # refused before the words left over are (see test_careless_readers.py), as without the `5`
            "error: --day: DAY is an argument of this command, not an option; give the value alone, without --day\n",
        ),
        # `credit add 500` said only "Missing argument 'AMOUNT'", though 500 was the amount meant: it was read as DAY
        (
            ["credit", "add", "500"],
            "error: Missing argument 'AMOUNT'; `credit add` takes DAY AMOUNT, and read 500 as DAY (see `usageledger"
            " credit add --help`)\n",
        ),
        (["credit", "add"], "error: Missing argument 'DAY' (see `usageledger credit add --help`)\n"),
    ],
)
def test_usage_errors_are_one_line_naming_the_flag(argv: list[str], said: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from usageledger.cli import main; main()", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(said) and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (["query", "completion", "--start", "2d"], "completions"),
        (["query", "Costs", "--start", "2d"], "costs"),
        (["query", "web_search", "--start", "2d"], "web_search_calls"),
        (["query", "transcriptions", "--start", "2d"], "audio_transcriptions"),
        (["query", "costs", "--start", "2d", "-f", "tabel"], "table"),
        (["report", "--format", "jsn"], "json"),
        (["statement", "2026-10", "--by", "teams"], "team"),
        (["export", "-f", "parket"], "parquet"),
        (["query", "usage", "--start", "2d"], None),
    ],
)
def test_a_value_near_one_of_the_choices_names_the_one_meant(argv: list[str], meant: str | None) -> None:
    """`query completion` listed the twelve endpoints and left the one meant to be found (a config's unknown key
    says "did you mean ..."); a value close to a choice now names it, after the choices, in the one line."""
    done = CliRunner().invoke(app, argv)
    assert done.exit_code == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "is not one of" in line and ".;" not in line, line
    if meant is None:
        assert "did you mean" not in line, line
    else:
        assert f"; did you mean {meant}? (see `usageledger {argv[0]} --help`)" in line, line


def test_help_lists_every_command_in_table_order() -> None:
    """The command list of `--help` (printed without importing the commands) names every command, in order."""
    code, out, _ = _run("--help")
    listed = [line.split()[0] for line in out.split("Commands:", 1)[1].splitlines() if line.startswith("  ")]
    assert code == 0
    assert listed == [c.name for c in COMMANDS]


def test_a_command_imports_what_it_needs() -> None:
    """The mechanism loads for real: `status --help` imports the store modules (and still prints its help)."""
    code, out, imported = _run("status", "--help")
    assert code == 0 and "--store" in out
    assert "usageledger.store" in imported


def test_a_mistyped_command_is_suggested_without_importing_it() -> None:
    """`usageledger reprot` suggests `report` (a command not imported yet)."""
    done = subprocess.run(
        [sys.executable, "-c", "from usageledger.cli import main; main()", "reprot"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "No such command 'reprot'. Did you mean 'report'" in done.stderr


def test_the_table_names_exactly_the_registered_commands() -> None:
    """Every registered command has a table entry pointing at its module, and every entry a command."""
    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    assert sorted(c.name for c in COMMANDS) == sorted(commands)
    for entry in COMMANDS:
        command = commands[entry.name]
        # A group (`credit add|list|remove`) has no callback of its own: its sub-commands name the module.
        callbacks = [c.callback for c in command.commands.values()] if command.callback is None else [command.callback]
        assert callbacks and {c.__module__ for c in callbacks} == {f"usageledger.cli.{entry.module}"}, entry


@functools.cache
def _root() -> Any:
    """The CLI's click command, built once for the module's cases (typer builds every command from its type hints
    on each call, ~50 ms)."""
    return typer.main.get_command(app)


@pytest.mark.parametrize("entry", COMMANDS, ids=[c.name for c in COMMANDS])
def test_the_table_summary_is_the_commands_own(entry: Command) -> None:
    """`--help` shows the same line whether a command is imported or not: the summary matches its docstring."""
    name, _, summary = entry
    command = _root().commands[name]
    for width in (40, 80, 400):
        assert TyperCommand(name, help=summary).get_short_help_str(width) == command.get_short_help_str(width)


def test_reading_a_duckdb_store_needs_no_arrow(tmp_path: Path) -> None:
    """`status` and `report` on a DuckDB store read it through DuckDB alone: pyarrow (and numpy, which pyarrow
    imports) are imported only where Arrow tables are made (a sync's pages, an export), not by opening a store."""
    store = tmp_path / "usage.duckdb"
    with open_store(str(store)) as opened:
        opened.migrate()
    for argv in (["status", "--store", str(store)], ["report", "--store", str(store), "--since", "2026-11-01"]):
        code, out, imported = _run(*argv)
        assert code == 0, out
        assert "usageledger.store" in imported and "duckdb" in imported
        assert "pyarrow" not in imported and "numpy" not in imported, argv


# Runs main() with the command replaced by one that imports numpy, then prints the settings main() made and how many
# threads the process has: OpenBLAS starts its threads when numpy is imported.
_THREADS = (
    "import os, sys\n"
    "from usageledger import cli\n"
    "from usageledger.cli import _app\n"
    "def command():\n"
    "    import numpy\n"
    "    blas, pool = os.environ.get('OPENBLAS_NUM_THREADS', '-'), os.environ['ARROW_DEFAULT_MEMORY_POOL']\n"
    "    print(blas, pool, len(os.listdir('/proc/self/task')))\n"
    "_app.app = command\n"
    "cli.main()\n"
)


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("2", "2")])
def test_a_command_starts_no_blas_threads_unless_the_user_asks(given: str | None, expected: str) -> None:
    """No command does linear algebra: numpy's OpenBLAS gets one thread (the process none more), not one per core; a
    user's own OPENBLAS_NUM_THREADS is kept."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    done = subprocess.run([sys.executable, "-c", _THREADS], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    blas, pool, threads = done.stdout.split()
    assert (blas, pool) == (expected, "system")
    if given is None:
        assert threads == "1", "numpy's import started threads"


def test_python_dash_m_runs_the_command_line() -> None:
    """`python -m usageledger version` said "No module named usageledger.__main__": the package could not be run
    with the interpreter at hand. It now runs the same command line as the console script, start-up light."""
    done = subprocess.run([sys.executable, "-m", "usageledger", "version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == usageledger.__version__
    refused = subprocess.run(
        [sys.executable, "-m", "usageledger", "status", "--format", "yaml"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and refused.stderr.startswith("error: --format:"), refused.stderr
    assert "usageledger status --help" in refused.stderr
    bad = subprocess.run([sys.executable, "-m", "usageledger", "nosuch"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr


def _every_command() -> list[list[str]]:
    """Every command as typed, sub-commands (`credit add`) included, found from the CLI itself."""
    group = typer.main.get_command(app)
    out: list[list[str]] = []
    for entry in COMMANDS:
        command = group.commands[entry.name]  # type: ignore[attr-defined]
        subs = getattr(command, "commands", None)
        out += [[entry.name, sub] for sub in subs] if subs else [[entry.name]]
    return out


@pytest.mark.parametrize("argv", _every_command(), ids=" ".join)
def test_every_commands_usage_error_exits_2_in_one_line(argv: list[str]) -> None:
    """A usage error (an option the command does not take, a value its type refuses) exits 2 in one line naming the
    command's --help, for every command alike: one mechanism (`LazyGroup`) handles them all, `serve` and `close`
    too, so a script can tell "called wrongly" (2) from "failed" (1) whatever the command."""
    done = CliRunner().invoke(app, [*argv, "--no-such-flag"])
    assert done.exit_code == 2, (argv, done.output)
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    # `credit add` reads an unknown option as a value (`-5`), so it is missing its AMOUNT there instead
    assert done.stderr.startswith(("error: No such option: --no-such-flag", "error: Missing argument")), done.stderr
    assert done.stderr.rstrip().endswith(f"(see `usageledger {' '.join(argv)} --help`)"), done.stderr
