"""A careless user's values: an empty or blank flag (``-o ''``, ``--org ''``, ``--since ' '``) and a bare short number
where a time belongs (``--since 90``) are refused in one line naming the flag, before anything is read or written.

``export -o ''`` wrote twelve files into the working directory, ``--org ''`` exported a bare header, ``--date ''``,
``--until ''`` and ``--base-url ''`` fell back to their defaults in silence, and ``report --since 90`` reported from
1970 (``sync --since 90`` started reading 56 years of buckets).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger import timeutil
from usageledger.cli import app
from usageledger.errors import ParameterError

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

NOW = timeutil.iso(EMULATOR_NOW)


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory, emulator_url: str) -> Path:
    """A store with two days of costs synced from the emulator."""
    store = tmp_path_factory.mktemp("empty") / "u.duckdb"
    argv = ["sync", "--store", str(store), "--base-url", emulator_url, "--now", NOW, "--since", "2d", "-e", "costs"]
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, [*argv, "--quiet"])
    assert done.exit_code == 0, done.output
    return store


BLANK = [
    ("export", "-o", "", "--output", True),
    ("export", "--org", "", "--org", True),
    ("export", "--since", " ", "--since", True),
    ("report", "--until", "", "--until", True),
    ("check", "--date", "", "--date", True),
    ("check", "--project", " ", "--project", True),
    ("status", "--store", "", "--store", True),
    ("sync", "--group-by", "", "--group-by", True),
    ("sync", "--filter", "", "--filter", True),
    ("init", "--store", "", "--store", True),
    ("doctor", "--base-url", "", "--base-url", True),
    ("query", "--base-url", "", "--base-url", True),
    ("query", "--start", "", "--start", False),
]


@pytest.mark.parametrize(("command", "flag", "value", "named", "optional"), BLANK)
def test_an_empty_value_is_refused_naming_the_flag(
    tmp_path: Path,
    synced: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    flag: str,
    value: str,
    named: str,
    optional: bool,
) -> None:
    """Exit 2 (bad input) with one line `error: FLAG: the value is empty`, nothing written to the working directory."""
    monkeypatch.chdir(tmp_path)
    argv = {
        "export": ["export", "--store", str(synced), "-e", "costs"],
        "report": ["report", "--store", str(synced)],
        "check": ["check", "--store", str(synced)],
        "status": ["status"],
        "sync": ["sync", "--store", str(tmp_path / "new.duckdb"), "-e", "costs"],
        "init": ["init", "--path", str(tmp_path / "u.toml")],
        "doctor": ["doctor", "--store", str(synced)],
        "query": ["query", "costs"] + ([] if flag == "--start" else ["--start", "2d"]),
    }[command]
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, [*argv, flag, value])
    lines = done.stderr.strip().splitlines()
    assert done.exit_code == 2 and len(lines) == 1, done.output
    assert lines[0].startswith(f"error: {named}: the value is empty; give a value"), lines[0]
    assert (f"leave {named} out" in lines[0]) == optional, lines[0]
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["report", "--since", "90"], "--since"),
        (["export", "-e", "costs", "--since", "5"], "--since"),
        (["export", "-e", "costs", "--until", "30"], "--until"),
        (["check", "--date", "7"], "--date"),
    ],
)
def test_a_short_bare_number_for_a_time_is_a_missing_unit(synced: Path, argv: list[str], flag: str) -> None:
    """`--since 90` is not 1970-01-01T00:01:30Z: one line with the ISO reading and the fix (90d), exit 2."""
    done = CliRunner().invoke(app, [*argv, "--store", str(synced)])
    lines = done.stderr.strip().splitlines()
    assert done.exit_code == 2 and len(lines) == 1, done.output
    number = argv[-1]
    assert lines[0].startswith(f"error: {flag}: {number} read as Unix seconds is 1970-01-01T00:"), lines[0]
    assert f"write {number}d" in lines[0] and done.stdout == ""


def test_the_library_reads_ten_digit_unix_seconds_and_refuses_shorter_strings() -> None:
    """A digit string of ten digits or more is Unix seconds; shorter names the parameter; ints are untouched."""
    assert timeutil.to_unix(str(EMULATOR_NOW)) == EMULATOR_NOW and timeutil.to_unix(90) == 90
    with pytest.raises(ParameterError, match=r"^start_time: 90 read as Unix seconds is 1970-01-01T00:01:30Z"):
        timeutil.to_unix("90")


PATH_OPTIONS = [
    (["report", "--html", ""], "--html"),
    (["report", "--png="], "--png"),
    (["statement", "2026-11", "--csv", " "], "--csv"),
    (["statement", "2026-11", "--html", ""], "--html"),
    (["export", "--format", "focus", "--fx", "", "--currency", "EUR"], "--fx"),
]


@pytest.mark.parametrize(("argv", "flag"), PATH_OPTIONS, ids=[" ".join(a) for a, _ in PATH_OPTIONS])
def test_an_empty_path_is_refused_before_it_reads_as_the_working_directory(
    tmp_path: Path, synced: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], flag: str
) -> None:
    """A path option's type turns `''` into `.`: it is refused from the raw arguments, naming the flag."""
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, [*argv, "--store", str(synced)])
    lines = done.stderr.strip().splitlines()
    assert done.exit_code == 2 and len(lines) == 1, done.output
    assert lines[0] == f"error: {flag}: the value is empty; give a value, or leave {flag} out for its default"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("argv", "named"), [(["credit", "remove", " "], "ID"), (["statement", ""], "MONTH")])
def test_an_empty_argument_is_named_as_the_help_shows_it(synced: Path, argv: list[str], named: str) -> None:
    """`credit remove ''` said `TOPUP_ID:` (the Python parameter) where the help and every other error say `ID`."""
    done = CliRunner().invoke(app, [*argv, "--store", str(synced)])
    assert done.exit_code == 2 and done.stderr.strip() == f"error: {named}: the value is empty; give a value"


def test_a_blank_environment_variable_is_named_not_the_flag(synced: Path) -> None:
    """`USAGELEDGER_STORE='  ' usageledger status` said `--store: the value is empty` though no --store was given."""
    done = CliRunner(env={"USAGELEDGER_STORE": "  "}).invoke(app, ["status"])
    assert done.exit_code == 1
    assert done.stderr.strip() == (
        "error: USAGELEDGER_STORE: the environment variable is set but empty; unset it, or give it a value (--store)"
    )
    flag_wins = CliRunner(env={"USAGELEDGER_STORE": "  "}).invoke(app, ["status", "--store", str(synced)])
    assert flag_wins.exit_code == 0, flag_wins.output


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["report", "--since", "30d", "--since", "7d"], "--since: given 2 times ('30d', '7d'); give it once"),
        (["status", "--store", "a.duckdb"], "--store: given 2 times ('a.duckdb', '{store}'); give it once"),
        (["export", "-o", "x.csv", "--output=y.csv", "-e", "costs"], "--output: given 2 times ('x.csv', 'y.csv')"),
    ],
)
def test_an_option_given_twice_with_two_values_is_refused(
    synced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], said: str
) -> None:
    """`--since 30d ... --since 7d` or two --store paths: click kept the last without a word. An option of one value
    given twice with different values is refused in one line listing both; nothing is read or written."""
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, [*argv, "--store", str(synced)])
    (line,) = done.stderr.strip().splitlines()
    assert done.exit_code == 2 and line.startswith(f"error: {said.format(store=synced)}"), line
    assert list(tmp_path.iterdir()) == []
    same = CliRunner().invoke(app, ["report", "--store", str(synced), "--since", "7d", "--since", "7d"])
    assert same.exit_code == 0, same.output  # the same value twice is the same request
    lists = CliRunner().invoke(app, ["export", "--store", str(synced), "-e", "costs", "-e", "costs", "-o", "-"])
    assert lists.exit_code == 0 and lists.stdout.startswith("org,"), lists.output  # a list option takes each
