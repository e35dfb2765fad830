"""The data-moving commands (query, sync, export, demo, init, doctor) used in a hurry: the cases that went wrong."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from usageledger import catalogue
from usageledger.cli import app
from usageledger.errors import ParameterError
from usageledger.store import open_store
from usageledger.timeutil import check_range

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.leaks import assert_no_secret, canary_key

ENDPOINTS = len(catalogue.ENDPOINTS)
"""What an export without --endpoint writes: every catalogue endpoint, one file each."""

LAST_WEEK = ("--since", "2026-11-13")
"""The demo store's last week (it ends at EMULATOR_NOW, 2026-11-20): enough rows of every endpoint for the exports
whose files' names or notes, not their size, a test checks."""


@pytest.mark.parametrize(
    ("fmt", "name"), [("csv", "usage.csv"), ("parquet", "usage.parquet"), ("parquet", "u.PARQUET")]
)
def test_an_export_of_every_endpoint_to_a_file_name_is_refused_not_made_a_folder(
    fmt: str, name: str, demo_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`export -o usage.csv` of every endpoint made a folder named usage.csv holding twelve files; a name that says
    one file is refused now, naming --output, the folder to give instead and --endpoint, and nothing is
    made. A name with a trailing slash, or without a file suffix, is still the folder of one file per endpoint."""
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["export", "--store", str(demo_store), "-f", fmt, "-o", name])
    assert done.exit_code == 2, done.output
    stem = name.rpartition(".")[0]
    assert done.stderr == (
        f"error: --output: {name} is named as one file, but {fmt} of {ENDPOINTS} endpoints writes a directory of files;"
        f" pass a directory ({stem}/), or one --endpoint for one file\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    for folder in (f"{name}/", stem):  # the last week: what is made, not how much, is the point
        made = CliRunner().invoke(app, ["export", "--store", str(demo_store), "-f", fmt, "-o", folder, *LAST_WEEK])
        assert made.exit_code == 0, made.output
        assert len(list(Path(folder).iterdir())) == ENDPOINTS


def test_every_endpoint_as_csv_to_stdout_names_the_flag(demo_store: Path) -> None:
    """`export -f csv` of a whole store to stdout said "csv to stdout holds one endpoint", naming no flag, exit 1."""
    done = CliRunner().invoke(app, ["export", "--store", str(demo_store), "-f", "csv"])
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith(
        f"error: --endpoint: csv to stdout holds one endpoint, and {ENDPOINTS} are chosen; "
    ), done.stderr
    assert done.stdout == ""


def test_the_demo_run_again_with_another_seed_names_the_seed_not_an_admin_key(tmp_path: Path) -> None:
    """`demo --seed 1` then `demo` on the same store said "the admin key belongs to another organization ... give
    it demo's own admin key", though the demo takes no key: it names --seed and `demo --remove` now, and writes
    nothing; run again with its own seed, the demo syncs on."""
    store = str(tmp_path / "d.duckdb")
    first = CliRunner().invoke(app, ["demo", "--days", "1", "--seed", "1", "--store", store])
    assert first.exit_code == 0, first.output
    before = _rows(store)
    other = CliRunner().invoke(app, ["demo", "--days", "1", "--store", store])
    assert other.exit_code == 1, other.output
    assert other.stderr.startswith(f"error: org 'demo': {store} holds a demo made with another --seed: "), other.stderr
    assert other.stderr.endswith(
        f"pass the --seed it was made with, remove it first with `usageledger demo --remove --store {store}`, or use"
        " another --store; nothing was synced\n"
    )
    assert "admin key" not in other.stderr
    assert _rows(store) == before
    again = CliRunner().invoke(app, ["demo", "--days", "1", "--seed", "1", "--store", store])
    assert again.exit_code == 0, again.output


def _rows(store: str) -> list[tuple[object, ...]]:
    with open_store(store) as opened:
        return opened.query("SELECT org, COUNT(*), SUM(amount_value) FROM costs GROUP BY org")


@pytest.mark.parametrize("written", ['\\"{key}\\"', "{key} x", "'{key}'\\n"])
def test_doctor_fixes_a_malformed_config_key_in_the_config_not_the_variable(
    written: str, tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config `api_key` pasted with quotes or a stray word failed the key check with the fix "export
    OPENAI_ADMIN_KEY=sk-admin-... again", a variable the key was never read from; the fix names the config's
    api_key now. The key is never shown."""
    monkeypatch.chdir(tmp_path)
    key = canary_key()
    config = tmp_path / "usageledger.toml"
    config.write_text(f'[[orgs]]\nname = "acme"\napi_key = "{written.format(key=key)}"\n')
    config.chmod(0o600)
    done = CliRunner().invoke(app, ["doctor", "--base-url", emulator_url, "--store", str(tmp_path / "s.duckdb")])
    assert done.exit_code == 1, done.output
    lines = done.stdout.splitlines()
    failed = next(i for i, line in enumerate(lines) if line.startswith("✗ key (acme): "))
    assert lines[failed + 1].strip() == (
        "fix: write api_key of org 'acme' in usageledger.toml again, exactly as issued, or remove it and export "
        "OPENAI_ADMIN_KEY=sk-admin-..."
    )
    assert_no_secret({"stdout": done.stdout, "stderr": done.stderr}, key)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["sync", "-q", "-e", "costs,,images"], "--endpoint: 'costs,,images' holds an empty value; "),
        (["sync", "-q", "--org", ","], "--org: ',' holds an empty value; "),
        (["export", "-e", "costs,"], "--endpoint: 'costs,' holds an empty value; "),
        (
            ["export", "-e", "cost"],
            "--endpoint: unknown endpoint 'cost' (did you mean costs?); choose one of: completions, ",
        ),
        (["export", "-f", "csv", "--partition-by", "day", "-o", "x"], "--partition-by: only Parquet exports can be"),
        (["export", "-f", "parquet", "-o", "-", "-e", "costs,images"], "--endpoint: parquet to stdout holds one "),
        (
            ["export", "-f", "delta", "-o", "lake", "-e", "cost"],
            "--endpoint: unknown endpoint 'cost' (did you mean costs?); choose one",
        ),
        (["query", "costs", "--start", "2d", "--group-by", ",line_item"], "--group-by: ',line_item' holds an empty"),
        (["demo", "--days", "0"], "--days: must be at least 1, got 0"),
    ],
)
def test_a_bad_flag_value_of_a_data_command_exits_2_as_every_bad_input(
    argv: list[str], said: str, tmp_path: Path, emulator_url: str
) -> None:
    """`sync -e 'costs,,images'`, `export -e cost`, `export -f csv --partition-by day` and `demo --days 0` exited 1
    (as `--concurrency 0` did), as a failed run does, where `--project-ids ',,'` and every other bad value exit 2:
    one line naming the flag, exit 2, and no store made."""
    store = tmp_path / "s.duckdb"
    env = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": emulator_url}
    done = CliRunner(env=env).invoke(app, [*argv, *([] if argv[0] == "query" else ["--store", str(store)])])
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith(f"error: {said}"), done.stderr
    assert len(done.stderr.splitlines()) == 1 and not store.exists()


def test_a_base_url_without_v1_over_a_synced_store_is_named_not_blamed_on_the_key(
    tmp_path: Path, emulator_url: str
) -> None:
    """`sync --base-url http://127.0.0.1:PORT` (no /v1) into a store that already holds the org said "the admin key
    belongs to another organization ... set OPENAI_ADMIN_KEY to default's own admin key": the known projects were
    asked for under the wrong path, and 404'd. The run now meets the 404 and names the base URL's fix; the store
    keeps its rows."""
    store = str(tmp_path / "s.duckdb")
    argv = ["sync", "-q", "--store", store, "-e", "costs", "--now", str(EMULATOR_NOW), "--since", "2d"]
    env = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}
    assert CliRunner(env=env).invoke(app, [*argv, "--base-url", emulator_url]).exit_code == 0
    before = _rows(store)
    bare = emulator_url.removesuffix("/v1")
    done = CliRunner(env=env).invoke(app, [*argv, "--base-url", bare])
    assert done.exit_code == 1, done.output
    assert "admin key" not in done.stderr and "another organization" not in done.stderr, done.stderr
    assert done.stderr.rstrip().endswith(f"The base URL (from --base-url) must end in /v1: pass --base-url {bare}/v1")
    assert _rows(store) == before


@pytest.fixture(scope="module")
def _exports(demo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[list[str], str], Path]:
    """The demo store exported with ``argv`` (and ``--until``, or "" for all of it), once a module for each: the
    stop-during-renames tests read the whole export and start from the older one, copied (an export's bytes hold
    no time of writing, so one made earlier is the one a test would make)."""
    made: dict[tuple[str, ...], Path] = {}

    def export(argv: list[str], until: str) -> Path:
        key = (*argv, until)
        if key not in made:
            folder = tmp_path_factory.mktemp("export")
            more = ["--until", until] if until else []
            done = CliRunner().invoke(app, ["export", "--store", str(demo_store), *argv, "-o", f"{folder}/", *more])
            assert done.exit_code == 0, done.output
            made[key] = folder
        return made[key]

    return export


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("argv", [["-f", "csv"], ["-f", "parquet", "--partition-by", "day"]], ids=["files", "days"])
def test_a_stop_during_an_exports_renames_leaves_the_output_whole(
    when: str,
    argv: list[str],
    demo_store: Path,
    _exports: Callable[[list[str], str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C or SIGTERM while an export renamed its files into place left some of them new and the rest old (or
    some days of a dataset), and said "interrupted" as if nothing had changed. Once the renames begin they are
    finished, then the stop is said (exit 130): the output is the new export, whole, with no temporary file left."""
    out, fresh = tmp_path / "out", _exports(argv, "")
    export = ["export", "--store", str(demo_store), *argv]
    shutil.copytree(_exports(argv, "2026-10-01"), out)  # the older export the stopped one replaces
    real_replace, calls = os.replace, []

    def stopped_on_the_third(src: Any, dst: Any) -> None:  # a signal's KeyboardInterrupt, between two bytecodes
        calls.append(dst)
        if len(calls) == 3 and when == "before":
            raise KeyboardInterrupt
        real_replace(src, dst)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", stopped_on_the_third)
    done = CliRunner().invoke(app, [*export, "-o", f"{out}/"])
    monkeypatch.undo()
    assert done.exit_code == 130 and done.stderr == "error: interrupted\n", done.output
    assert _tree(out) == _tree(fresh)
    assert len(calls) > 3


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative path: its bytes (Parquet's hold no time of writing)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_query_from_now_blames_the_start_not_an_end_never_given(emulator_url: str) -> None:
    """`query completions --start now` said "--end: end_time (N) must be greater than start_time (N)": the start, in
    the current second, passed the range check on a fractional now, and the API's rule blamed the default end. It
    is the start that holds nothing, as `sync --since now` and `export --since now` say."""
    env = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": emulator_url}
    done = CliRunner(env=env).invoke(app, ["query", "completions", "--start", "now"])
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith("error: --start: "), done.stderr
    assert done.stderr.rstrip().endswith("so the range holds nothing yet; pick an earlier start"), done.stderr
    with pytest.raises(ParameterError, match=r"^start_time: 1970-01-01T00:01:40Z is not before now"):
        check_range(100, None, now=100.5)
    check_range(100, 200, now=math.inf)  # no bound on the start (the revision log's buckets)


def test_a_query_table_with_no_rows_says_so_in_one_line(emulator_url: str) -> None:
    """`query completions --models nope` printed a table of one `bucket_start` column and no rows, its title wrapped
    over two lines ("completions: 0" / "rows"); it says "completions: 0 rows" now."""
    env = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": emulator_url}
    argv = ["query", "completions", "--start", "2026-11-10", "--end", "2026-11-12", "--models", "nope"]
    done = CliRunner(env=env).invoke(app, argv)
    assert done.exit_code == 0, done.output
    assert done.stdout == "completions: 0 rows\n"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["emulator", "--port", "70000"], "--port 70000 is not a port; pick one from 1 to 65535 (0 = any free)"),
        (["serve", "--port", "-1"], "--port -1 is not a port; pick one from 1 to 65535 (0 = any free)"),
        (["serve", "--host", "127.0.0.1:8080"], "--host 127.0.0.1:8080 is an address with a port; "),
        (["emulator", "--days", "0"], "--days: 0 is too few; give 1 or more"),
        (["emulator", "--keys", "0"], "--keys: 0 is too few; give 1 or more"),
        (["emulator", "--archived", "5"], "--archived: 5 is out of range; give 0 to 4 (one project stays live)"),
        (["emulator", "--names", "fancy"], "--names"),
        (["emulator", "--orgs", "0"], "--orgs 0 is out of range; give a number of organisations from 1 to 1000"),
        (["emulator", "--cache-mb", "-1"], "--cache-mb -1 is out of range; give MiB from 0 (no cache) to "),
        (
            ["emulator", "--retry-after-ms", "-1"],
            "--retry-after-ms: -1 is negative; give whole milliseconds from 0 to 60,000, e.g. 20",
        ),
        (["emulator", "--replay", "missing.jsonl"], "--replay missing.jsonl: no such file; give a JSON Lines or "),
    ],
)
def test_a_bad_flag_value_of_a_server_exits_2_and_a_taken_port_1(
    argv: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`emulator --port 70000`, `--days 0`, `--orgs 0` and `serve --port -1` exited 1, the code of a server that
    could not start, while `emulator --jitter 5x` and `serve --sync-every 5s` exit 2: a bad value is exit 2 for
    every flag of both servers now; a port found taken is still 1 (test_careless)."""
    monkeypatch.chdir(tmp_path)
    open_store("s.duckdb").close()
    done = CliRunner().invoke(app, [*argv, *(["--store", "s.duckdb"] if argv[0] == "serve" else [])])
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith(f"error: {said}"), done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_focus_file_named_as_the_other_format_gets_it_or_is_refused(
    demo_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`export -f focus -o focus.parquet` wrote CSV (the default --focus-format) under a Parquet name without a word:
    the name now chooses Parquet, and a --focus-format the name contradicts is refused, as --format's is."""
    monkeypatch.chdir(tmp_path)
    export = ["export", "--store", str(demo_store), "-f", "focus", *LAST_WEEK]  # the format, not the rows, is the point
    named = CliRunner().invoke(app, [*export, "-o", "focus.parquet"])
    assert named.exit_code == 0 and Path("focus.parquet").read_bytes().startswith(b"PAR1"), named.output
    refused = CliRunner().invoke(app, [*export, "--focus-format", "parquet", "-o", "focus.csv"])
    assert refused.exit_code == 2 and not Path("focus.csv").exists(), refused.output
    assert refused.stderr.startswith("error: --output: focus.csv names a csv file, but --focus-format parquet was")
    plain = CliRunner().invoke(app, [*export, "-o", "plain.csv"])
    assert plain.exit_code == 0 and "note:" not in plain.stderr, plain.stderr
