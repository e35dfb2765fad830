"""``usageledger query``: end to end against the emulator over loopback, in every output format."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from usageledger import Client, catalogue, rows
from usageledger.cli import app
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.timeutil import iso

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

START = "2026-11-01"
END = "2026-11-04"


@pytest.fixture
def run(emulator_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Invoke the CLI with the emulator's base URL and a fake admin key."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def invoke(*args: str, base_url: bool = True):  # type: ignore[no-untyped-def]
        extra = ["--base-url", emulator_url] if base_url else []
        return runner.invoke(app, ["query", *args, *extra])

    return invoke


def library_rows(emulator_url: str, endpoint: str, **kw: object) -> list[rows.Row]:
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
        return list(client.query(endpoint, start_time=START, end_time=END, **kw).rows())  # type: ignore[arg-type]


def test_table_is_the_default(run) -> None:  # type: ignore[no-untyped-def]
    """Without --format the rows are a rich table with the grouped columns."""
    result = run("completions", "--start", START, "--end", END, "--group-by", "model")
    assert result.exit_code == 0, result.output
    assert "completions:" in result.stdout and "model" in result.stdout and "input_tokens" in result.stdout
    assert "2026-11-01T00:00:00Z" in result.stdout


def test_since_and_until_spell_the_range_as_the_other_commands_do(run) -> None:  # type: ignore[no-untyped-def]
    """``sync``, ``report``, ``changes`` and ``keys`` take --since/--until; ``query`` takes them too (beside the
    API's --start/--end), with the same rows, instead of "No such option: --since (Possible options: --sizes)"."""
    spelled = run("costs", "--since", START, "--until", END, "--format", "csv")
    assert spelled.exit_code == 0, spelled.output
    assert spelled.stdout == run("costs", "--start", START, "--end", END, "--format", "csv").stdout
    assert spelled.stdout.count("\n") > 1


def test_csv_matches_the_library(run, emulator_url: str) -> None:  # type: ignore[no-untyped-def]
    """CSV has the catalogue's columns and the same rows as Client.query(...).rows()."""
    result = run("costs", "--start", START, "--end", END, "--group-by", "project_id,line_item", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    table = list(csv.reader(io.StringIO(result.stdout)))
    endpoint = catalogue.get("costs")
    assert tuple(table[0]) == rows.row_keys(endpoint)
    expected = library_rows(emulator_url, "costs", group_by=["project_id", "line_item"])
    assert len(table) - 1 == len(expected) > 0
    for line, row in zip(table[1:], expected, strict=True):
        got = dict(zip(table[0], line, strict=True))
        assert got["bucket_start"] == iso(row["bucket_start"])
        assert (got["project_id"], got["line_item"]) == (row["project_id"], row["line_item"])
        assert Decimal(got["amount_value"]) == row["amount_value"]


def test_jsonl_keeps_money_exact(run, emulator_url: str) -> None:  # type: ignore[no-untyped-def]
    """JSON lines carry the library's rows, money as exact JSON numbers."""
    result = run("costs", "--start", START, "--end", END, "-f", "jsonl")
    assert result.exit_code == 0, result.stderr
    got = [json.loads(line, parse_float=Decimal) for line in result.stdout.splitlines()]
    times = ("bucket_start", "bucket_end")
    want = [{k: iso(v) if k in times else v for k, v in row.items()} for row in library_rows(emulator_url, "costs")]
    assert got == want


def test_limit_rows_and_repeatable_group_by(run) -> None:  # type: ignore[no-untyped-def]
    """--limit-rows caps the output; repeated --group-by equals a comma list."""
    a = run(
        "embeddings", "--start", START, "--end", END, "--group-by", "project_id", "--group-by", "model", "-f", "csv"
    )
    b = run("embeddings", "--start", START, "--end", END, "--group-by", "project_id,model", "-f", "csv")
    assert a.exit_code == b.exit_code == 0
    assert a.stdout == b.stdout
    c = run(
        "embeddings", "--start", START, "--end", END, "--group-by", "project_id,model", "-f", "csv", "--limit-rows", "3"
    )
    assert c.stdout.splitlines() == a.stdout.splitlines()[:4]


@pytest.mark.parametrize("array_format", ["repeat", "comma"])
def test_every_array_format_gives_the_same_rows(run, array_format: str) -> None:  # type: ignore[no-untyped-def]
    """The emulator accepts all three spellings, so the output does not depend on --array-format."""
    args = ("completions", "--start", START, "--end", END, "--group-by", "project_id,model", "-f", "jsonl")
    default = run(*args)
    other = run(*args, "--array-format", array_format)
    assert other.exit_code == 0 and other.stdout == default.stdout and default.stdout


def test_filters_are_sent(run) -> None:  # type: ignore[no-untyped-def]
    """A filter option narrows the rows to the given values."""
    everything = run("completions", "--start", START, "--end", END, "--group-by", "model", "-f", "jsonl")
    models = sorted({json.loads(line)["model"] for line in everything.stdout.splitlines()})
    narrowed = run(
        "completions", "--start", START, "--end", END, "--group-by", "model", "--models", models[0], "-f", "jsonl"
    )
    assert narrowed.exit_code == 0
    assert {json.loads(line)["model"] for line in narrowed.stdout.splitlines()} == {models[0]}


def test_a_line_item_is_one_value_though_it_holds_a_comma(run) -> None:  # type: ignore[no-untyped-def]
    """A line item is `gpt-4o, input` (model, then what was billed): `--line-items 'gpt-4o, input'` was split as a
    comma list into `gpt-4o` and `input`, two line items that do not exist, and answered no rows without a word.
    It takes one value per option; `--models a,b` still splits."""
    args = ("costs", "--start", START, "--end", END, "--group-by", "line_item", "-f", "jsonl")
    items = sorted({json.loads(line)["line_item"] for line in run(*args).stdout.splitlines()} - {None})
    wanted = [item for item in items if ", " in item][:2]
    assert len(wanted) == 2, items
    narrowed = run(*args, "--line-items", wanted[0], "--line-items", wanted[1])
    assert narrowed.exit_code == 0, narrowed.output
    assert {json.loads(line)["line_item"] for line in narrowed.stdout.splitlines()} == set(wanted)
    assert "repeat it for each (a value holds a comma)" in " ".join(run("costs", "--help").stdout.split())


def test_rule_breaks_are_one_line_and_non_zero(run) -> None:  # type: ignore[no-untyped-def]
    """A library error is one line on stderr naming the parameter, exit code 2 (bad input), no traceback."""
    result = run("costs", "--start", START, "--bucket-width", "1h")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--bucket-width" in lines[0] and "1d" in lines[0]
    assert "Traceback" not in result.output


def test_a_future_start_blames_start_with_dates(run) -> None:  # type: ignore[no-untyped-def]
    """A --start after now names --start and shows both times as dates, never as epoch seconds."""
    result = run("completions", "--start", "2099-01-01")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --start:"), lines
    assert "2099-01-01T00:00:00Z" in lines[0] and "4070908800" not in lines[0]
    assert re.search(r"\b\d{10}\b", lines[0]) is None, lines[0]


def test_filter_of_another_endpoint_is_refused(run) -> None:  # type: ignore[no-untyped-def]
    """--models on vector_stores names the filters vector_stores accepts."""
    result = run("vector_stores", "--start", START, "--models", "gpt-4o")
    assert result.exit_code == 2 and "models" in result.stderr and "project_ids" in result.stderr


def test_missing_key_is_a_clear_error(run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Without OPENAI_ADMIN_KEY the command says how to set it."""
    monkeypatch.delenv("OPENAI_ADMIN_KEY")
    result = run("completions", "--start", START)
    assert result.exit_code == 1 and "OPENAI_ADMIN_KEY" in result.stderr


def test_unknown_endpoint_is_a_usage_error(run) -> None:  # type: ignore[no-untyped-def]
    """An endpoint outside the catalogue is refused by the parser, listing the choices."""
    result = run("teleportation", "--start", START)
    assert result.exit_code == 2 and "completions" in result.output


def test_options_come_from_the_catalogue() -> None:
    """The endpoint choices and one option per catalogue filter are all on the command."""
    command = typer.main.get_command(app).commands["query"]  # type: ignore[attr-defined]
    opts = {o for p in command.params for o in p.opts}
    for endpoint in catalogue.ENDPOINTS:
        for f in endpoint.filters:
            assert "--" + f.name.replace("_", "-") in opts


@pytest.mark.parametrize("endpoint", catalogue.ENDPOINT_NAMES)
def test_every_catalogue_endpoint_is_a_choice(run, endpoint: str) -> None:  # type: ignore[no-untyped-def]
    """Each catalogue endpoint is accepted and fetched; widths outside the catalogue are refused by the parser."""
    result = run(endpoint, "--start", START, "--end", END, "-f", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split(",") == list(rows.row_keys(catalogue.get(endpoint)))
    assert run(endpoint, "--start", START, "--bucket-width", "1w").exit_code == 2


def test_rows_printed_as_blocks_keep_every_column(  # type: ignore[no-untyped-def]
    run, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 60 columns no table of completions fits, even with columns hidden, so each row is a block of
    `column: value` lines, which any width holds. It still hid 13 columns and said "13 more columns hidden to fit
    the terminal"; a block now shows them all."""
    from usageledger.cli import _app

    monkeypatch.setattr(_app.console, "_width", 60)
    result = run("completions", "--start", START, "--end", END)
    assert result.exit_code == 0, result.output
    assert "hidden" not in result.output, result.output
    found = library_rows(emulator_url, "completions")
    shown = [c.name for c in catalogue.get("completions").columns if any(r.get(c.name) is not None for r in found)]
    assert len(shown) > 10
    assert all(f"  {name}: " in result.stdout for name in shown), result.stdout


@pytest.mark.parametrize(
    ("key", "told"),
    [
        (
            "not-an-admin-key-at-all",
            "the API refused the admin key from OPENAI_ADMIN_KEY (HTTP 401 invalid_api_key): it is wrong, revoked or"
            " for another organization; set OPENAI_ADMIN_KEY to a valid organization admin key (sk-admin-...) and"
            " query again",
        ),
        (
            "sk-proj-" + "a" * 24,
            "the admin key from OPENAI_ADMIN_KEY may not read usage (HTTP 403 missing_scope; it lacks"
            " api.usage.read): it is not an organization admin key with the api.usage.read scope; set"
            " OPENAI_ADMIN_KEY to a valid organization admin key (sk-admin-...) and query again",
        ),
    ],
    ids=["401", "403"],
)
@pytest.mark.parametrize("output", ["csv", "jsonl", "table"])
def test_a_key_the_api_refuses_names_the_variable_and_writes_nothing(
    emulator_url: str, key: str, told: str, output: str
) -> None:
    """`OPENAI_ADMIN_KEY=sk-proj-... usageledger query costs -f csv > costs.csv` wrote the CSV header, then said "These
    endpoints need an organization admin key" without the variable to set (and a wrong key's 401, "or pass
    api_key=", a keyword of the library): the file read as a valid CSV of no rows. Nothing is written to stdout
    before the first page, and the one line names OPENAI_ADMIN_KEY and the fix, as `sync` does."""
    done = CliRunner(env={"OPENAI_ADMIN_KEY": key}).invoke(
        app, ["query", "costs", "--start", "2d", "-f", output, "--base-url", emulator_url]
    )
    assert done.exit_code == 1
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    # the words of `sync`'s refusal (one function, `_options.key_refusal`), without the org sync names first
    assert line == f"error: {told}"
    assert "api_key=" not in line and key not in line


def test_csv_of_a_range_with_no_rows_is_the_header_alone(run) -> None:  # type: ignore[no-untyped-def]
    """The header waits for the first page, and a page of no buckets (a filter nothing matches) still gets it."""
    done = run("costs", "--start", START, "--end", END, "--project-ids", "proj_none", "-f", "csv")
    assert done.exit_code == 0, done.output
    assert done.stdout == ",".join(rows.row_keys(catalogue.get("costs"))) + "\n"


def test_csv_text_from_the_api_cannot_run_as_a_formula(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IDs and models come from the API: one of `=cmd|' /C calc'!A0` went into `query --format csv` as a formula a
    spreadsheet runs, and one holding a bare carriage return split its row in two. Through the one CSV writer
    `export` uses, such text starts with an apostrophe, each row is one record and the amounts stay numbers; JSON
    lines write U+2028 escaped."""
    hostile = ["=cmd|' /C calc'!A0", "-2+3", "@evil", "mid\rdle", "two\nlines", "line\u2028separator"]
    day = EMULATOR_NOW - EMULATOR_NOW % 86_400 - 86_400
    records = [
        {"endpoint": "completions", "time": day + 60 * i, "project_id": text, "model": "gpt-4o-2024-08-06",
         "num_model_requests": 1, "input_tokens": 1000 + i, "output_tokens": 10}
        for i, text in enumerate(hostile)
    ]  # fmt: skip
    replay = tmp_path / "usage.jsonl"
    replay.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    with run_server(Emulator(EmulatorConfig(replay=replay, now=EMULATOR_NOW))) as url:
        args = ["--start", iso(day), "--end", iso(day + 86_400), "--base-url", url, "-f", "csv"]
        usage = CliRunner().invoke(app, ["query", "completions", "--group-by", "project_id", *args])
        costs = CliRunner().invoke(app, ["query", "costs", "--group-by", "project_id", *args])
        jsonl = CliRunner().invoke(app, ["query", "completions", "--group-by", "project_id", *args[:-1], "jsonl"])
    assert usage.exit_code == 0 and costs.exit_code == 0, usage.output + costs.output
    formula = ("=", "+", "-", "@", "\t", "\r")
    expected = sorted("'" + t if t.startswith(formula) else t for t in hostile)
    for done in (usage, costs):
        table = list(csv.DictReader(io.StringIO(done.stdout, newline="")))
        assert sorted(r["project_id"] for r in table) == expected
        assert None not in table[0] and all(None not in r.values() for r in table)  # no row split or run over
    assert all(Decimal(r["amount_value"]) > 0 for r in csv.DictReader(io.StringIO(costs.stdout, newline="")))
    # JSON lines keep the text as it is, each record one line for str.splitlines() too (a raw U+2028 split it)
    assert sorted(json.loads(line)["project_id"] for line in jsonl.stdout.splitlines()) == sorted(hostile)
