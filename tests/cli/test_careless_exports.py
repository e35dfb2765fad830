"""`usageledger export` used in a hurry, beside a Delta lake: a CSV, Parquet or FOCUS export into the lake's tables
is refused before anything is written, and the lake is left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger.cli import app

LAKE = ("-f", "delta", "-e", "completions", "-e", "costs")


@pytest.fixture(scope="module")
def lake(demo_command_store: Path) -> Path:
    """`export --format delta` of the demo's completions and costs: a lake of two tables beside the store (the two the
    tests aim at; all twelve took 7 s to write)."""
    out = demo_command_store.parent / "lake"
    done = CliRunner().invoke(app, ["export", "--store", str(demo_command_store), *LAKE, "-o", str(out)])
    assert done.exit_code == 0, done.output
    return out


def _files(lake: Path) -> list[Path]:
    return sorted(p.relative_to(lake) for p in lake.rglob("*"))


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["-f", "parquet", "--partition-by", "day", "-o", "{lake}"],
            "{lake}/usage_completions is a Delta table",
        ),
        (
            ["-f", "parquet", "--partition-by", "day", "-o", "{lake}/costs"],
            "{lake}/costs is the Delta table {lake}/costs",
        ),
        (
            ["-f", "csv", "-e", "costs", "-o", "{lake}/costs/costs.csv"],
            "{lake}/costs/costs.csv is inside the Delta table",
        ),
        (
            ["-f", "focus", "-o", "{lake}/costs/focus.csv"],
            "{lake}/costs/focus.csv is inside the Delta table {lake}/costs",
        ),
    ],
)
def test_an_export_into_a_delta_table_is_refused_and_the_lake_kept(
    demo_command_store: Path, lake: Path, args: list[str], said: str
) -> None:
    """`export -f parquet --partition-by day -o lake` (the lake's own directory, used again) wrote its `day=` folders
    inside each Delta table, beside its `month=` ones: a reader of the Parquet dataset read every row twice, and the
    table's VACUUM deletes what its log does not list, as it would a CSV or FOCUS file put in a table's folder. Each
    is refused in one line naming the table, before anything is written."""
    argv = ["export", "--store", str(demo_command_store), *(a.format(lake=lake) for a in args)]
    before = _files(lake)
    done = CliRunner().invoke(app, argv)
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith(f"error: --output: {said.format(lake=lake)}"), done.stderr
    assert done.stderr.endswith("export to another directory\n") and len(done.stderr.splitlines()) == 1
    assert _files(lake) == before


def test_a_folder_of_the_lake_that_is_no_table_takes_an_export_and_the_lake_still_merges(
    demo_command_store: Path, lake: Path
) -> None:
    """A folder beside the tables is no table: CSV files go there, and the next Delta export rewrites nothing."""
    out = lake / "csv"
    done = CliRunner().invoke(app, ["export", "--store", str(demo_command_store), "-f", "csv", "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert (out / "costs.csv").is_file()
    again = CliRunner().invoke(app, ["export", "--store", str(demo_command_store), *LAKE, "-o", str(lake)])
    assert again.exit_code == 0 and "(0 of " in again.stderr, again.output


@pytest.mark.parametrize(
    "argv",
    [["-e", "costs"], [], ["--format", "focus"], ["--format", "delta"], ["--format", "parquet", "-e", "costs"]],
    ids=["one-file", "folder", "focus", "delta", "parquet"],
)
def test_an_output_under_a_file_names_output_before_the_store_is_read(
    migrated_pg_url: str, tmp_path: Path, argv: list[str]
) -> None:
    """`export -o notes.txt/x.csv` (a file where a folder is meant) said "File exists: notes.txt; pick a path that
    does not exist yet" (CSV, FOCUS) or "Not a directory: notes.txt/x.csv" (Delta), exit 1, naming no flag, after
    reading the store. Said first now, naming --output, exit 2, as `report --html` and `statement --csv` say it."""
    notes = tmp_path / "notes.txt"
    notes.write_text("keep\n")
    target = notes / ("x.parquet" if "parquet" in argv else "x.csv")
    result = CliRunner().invoke(app, ["export", "--store", migrated_pg_url, *argv, "--output", str(target)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"error: --output: {notes} is a file, not a folder, so {target} cannot be made; give a path in a folder"
    )
    assert notes.read_text() == "keep\n" and sorted(tmp_path.iterdir()) == [notes]


def test_changes_asked_for_after_now_are_refused_not_exported_empty(demo_command_store: Path, tmp_path: Path) -> None:
    """`export --deltas --changed-since` a year mistyped (2027 for 2026, a time after now) wrote "Exported 0 rows"
    and an empty file without a word, as did the library's `deltas` and `changes` ("no changes"): the log holds no
    change seen after now. Each is refused on one line naming the argument; a time before now still exports."""
    from datetime import UTC, datetime, timedelta

    from usageledger.errors import ParameterError
    from usageledger.export import export
    from usageledger.report import changes, deltas
    from usageledger.store import open_existing_store

    later = (datetime.now(UTC) + timedelta(days=400)).date().isoformat()
    out = tmp_path / "deltas.csv"
    argv = ["export", "--store", str(demo_command_store), "-e", "costs", "--deltas", "-o", str(out)]
    refused = CliRunner().invoke(app, [*argv, "--changed-since", later])
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1, refused.output
    assert refused.output.startswith(f"error: --changed-since: '{later}' is {later}T00:00:00Z, after now ("), (
        refused.output
    )
    assert "leave --changed-since out for every change" in refused.output and not out.exists()
    with open_existing_store(str(demo_command_store)) as store:
        with pytest.raises(ParameterError, match=r"^changed_since: .* after now"):
            export(store, "csv", tmp_path / "lib.csv", endpoints=["costs"], deltas=True, changed_since=later)
        for read in (changes, deltas):
            with pytest.raises(ParameterError, match=r"^since: .* after now"):
                read(store, since=later)
    done = CliRunner().invoke(app, [*argv, "--changed-since", "2020-01-01"])
    assert done.exit_code == 0 and out.read_text(encoding="utf-8").count("\n") > 1, done.output
