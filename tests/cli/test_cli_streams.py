"""Standard streams a careless shell hands over: output closed (`>&-`), on a full disk, or not UTF-8."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from usageledger.cli import _ClosedOutput, drop_unusable_sizes
from usageledger.cli._app import _make_console, announce, say

CLI = [sys.executable, "-c", "from usageledger.cli import main; main()"]


def _run(*argv: str, redirect: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``redirect`` applied to its standard output or input, as a shell would (``>&-``,
    ``>/dev/full``, ``<&-``, or ``""``: stdout piped to the test).

    Only closing a stream needs ``sh``: a redirection to a file is the same ``open`` onto descriptor 1 done here, and
    a CLI run started without a shell is forked by the suite's zygote (``fixtures.zygote``) instead of importing the
    package afresh (measured: 1-4 s of CPU less for the module, bench/BENCHMARKS.md)."""
    environ = {**os.environ, "COLUMNS": "80", **(env or {})}
    run = [*CLI, *argv]
    if redirect == ">/dev/full":
        with open("/dev/full", "wb") as full:
            return subprocess.run(run, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, env=environ)
    if not redirect:
        return subprocess.run(run, capture_output=True, text=True, timeout=120, env=environ)
    script = f'"$@" {redirect}'
    return subprocess.run(
        ["sh", "-c", script, "sh", *CLI, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "--since", "2026-10-22", "--until", "2026-11-21"],  # days held: a later one warns, unsynced
        ["status"],
        ["export", "-e", "costs", "-f", "jsonl"],
        ["version"],
        ["--help"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_a_closed_output_is_an_error_not_a_silent_success(argv: list[str], demo_store: Path) -> None:
    """`report >&-` printed nothing and exited 0 (rich drops lines when Python has no stdout); `export >&-` was a
    traceback: each is one error line and exit 1, as `> /dev/full` is."""
    store = [] if argv[0] in ("version", "--help") else ["--store", str(demo_store)]
    done = _run(*argv, *store, redirect=">&-")
    assert done.returncode == 1, done.stderr
    assert done.stderr == "error: standard output is closed; run the command with it open, or redirect it to a file\n"


@pytest.mark.parametrize("argv", [["version"], ["sync", "--help"]], ids=" ".join)
def test_a_full_disk_outside_a_command_is_one_line(argv: list[str]) -> None:
    """`version > /dev/full` (and `--help`) wrote outside the commands' error handling: a traceback, now one line."""
    done = _run(*argv, redirect=">/dev/full")
    assert done.returncode == 1
    assert done.stderr == "error: No space left on device\n"


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_an_output_that_is_not_utf8_gets_ascii_readings_not_a_traceback(encoding: str, demo_store: Path) -> None:
    """`report` draws its trend with block characters and periods with `…`: on an output that cannot encode them it
    was a UnicodeEncodeError traceback, then a `?` for each; now each is what reads as it (`...`, `_.,:-=+#`) and the
    report is whole."""
    done = _run("report", "--store", str(demo_store), redirect="", env={"PYTHONIOENCODING": encoding})
    assert done.returncode == 0, done.stderr
    trend = next(line for line in done.stdout.splitlines() if line.startswith("Daily spend "))
    assert set(trend.split()[2]) <= set("_.,:-=+#*") and " ... " in trend, trend
    assert "Traceback" not in done.stderr


def test_a_server_announces_nothing_when_its_output_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve ... >&-` (a daemon): its ready line cannot be written and the server serves on, where a command that
    cannot print its answer fails."""
    monkeypatch.setattr(sys, "stdout", _ClosedOutput())
    console = _make_console(stderr=False)
    announce("serving at http://127.0.0.1:8080", console)
    with pytest.raises(OSError, match="standard output is closed"):
        say("the answer", console)


def test_a_closed_input_reads_as_an_empty_one(demo_store: Path) -> None:
    """`mcp <&-` was an AttributeError traceback (Python has no sys.stdin then): it ends as `mcp < /dev/null` does."""
    done = _run("mcp", "--store", str(demo_store), redirect="<&-")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_a_width_of_zero_prints_at_80_columns_not_nothing(demo_store: Path) -> None:
    """`COLUMNS=0` (some CI runners export it): rich took it as zero columns and `status`, `report` and even the
    `error:` lines printed nothing; unusable sizes are now forgotten, and the output is whole."""
    done = _run("status", "--store", str(demo_store), redirect="", env={"COLUMNS": "0"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["Streams", "in"]  # the title wraps before a long store path (a temp dir's)
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    failed = _run("report", "--store", str(demo_store) + ".missing", redirect="", env={"COLUMNS": "0"})
    assert failed.returncode == 1 and failed.stderr.startswith("error: no store at "), failed.stderr


def test_only_positive_sizes_are_kept() -> None:
    """`COLUMNS`/`LINES` that are zero, negative or not numbers are dropped; a usable one stays."""
    environ = {"COLUMNS": "0", "LINES": "-3", "TERM": "dumb"}
    drop_unusable_sizes(environ)
    assert environ == {"TERM": "dumb"}
    environ = {"COLUMNS": "60", "LINES": "abc"}
    drop_unusable_sizes(environ)
    assert environ == {"COLUMNS": "60"}


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        (["-e", "costs", "-f", "jsonl"], ">/dev/full"),
        (["-f", "focus"], ">/dev/full"),
        (["-e", "costs", "-o", "/dev/full"], ""),
        (["-f", "focus", "-o", "/dev/full"], ""),
    ],
    ids=["jsonl > /dev/full", "focus > /dev/full", "-o /dev/full", "focus -o /dev/full"],
)
def test_an_export_onto_a_full_disk_names_where_it_was_writing(argv: list[str], where: str, demo_store: Path) -> None:
    """`export > /dev/full` and `export -o /dev/full` (a device: written straight through, not staged) said only
    "No space left on device", naming neither the output nor stdout; a staged file was named already."""
    done = _run("export", "--store", str(demo_store), *argv, redirect=where)
    assert done.returncode == 1, done.stderr
    place = "standard output" if where else "/dev/full"
    assert done.stderr == f"error: No space left on device: {place}\n"


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_json_document_on_an_output_that_is_not_utf8_loses_no_character(
    encoding: str, demo_store: Path, tmp_path: Path
) -> None:
    """`report --format json` on such an output (a legacy console, a cron job's `PYTHONIOENCODING`) wrote `?` for a
    name's `名` and Latin-1 bytes for its `Ü`: a document no JSON reader takes as UTF-8, with the name lost. Every
    character past ASCII is now its JSON escape: ASCII bytes, the same names."""
    doc = json.loads(_run("report", "--store", str(demo_store), "--format", "json", redirect="").stdout)
    project = next(r["project_id"] for r in doc["spend_by_project"] if r["project_id"])
    name = "Ünïcødé 名前 🚀"
    (tmp_path / "names.csv").write_text(f"kind,id,name\nproject,{project},{name}\n", encoding="utf-8")
    done = subprocess.run(
        [*CLI, "report", "--store", str(demo_store), "--format", "json", "--names", str(tmp_path / "names.csv")],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": encoding},
    )
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout.decode("ascii"))  # JSON readers take UTF-8, of which ASCII is a part
    assert {r["project_id"]: r["name"] for r in again["spend_by_project"]}[project] == name
