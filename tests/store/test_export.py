"""`export`: CSV, JSON Lines and Parquet (plain and Hive-partitioned by day), filtered, with exact decimals."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from usageledger import timeutil
from usageledger.cli import app
from usageledger.errors import ConfigError, ParameterError
from usageledger.export import export, format_decimal
from usageledger.store import BaseStore, Stream, WindowWrite, open_store

from fixtures.stores import count_reads

DAY = 86400
T0 = 1_790_000_000 - 1_790_000_000 % DAY
COSTS = Stream.create("costs", "1d", ("project_id", "line_item"))
EMB = Stream.create("embeddings", "1d", ("project_id", "model"))
AMOUNTS = ["0.000000000000000001", "12345678901234567890.5", "0.1", "7"]


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path, new_store: Callable[[str, Path], str]) -> Iterator[BaseStore]:
    """A store holding 4 days of costs for two orgs and 2 days of embeddings."""
    url = new_store(request.param, tmp_path / "e.duckdb")
    with open_store(url) as opened:
        for org in ("acme", "beta"):
            opened.register_stream(org, COSTS)
            rows = [
                {
                    "bucket_start": T0 + d * DAY,
                    "bucket_end": T0 + (d + 1) * DAY,
                    "project_id": "p1",
                    "line_item": "gpt, input",
                    "amount_value": Decimal(a),
                    "currency": "usd",
                    "quantity": None,
                    "quantity_unit": None,
                }
                for d, a in enumerate(AMOUNTS)
            ]
            opened.commit_window(WindowWrite(org, COSTS, rows, T0, T0 + 4 * DAY, "r", T0))
        opened.register_stream("acme", EMB)
        emb = [
            {
                "bucket_start": T0 + d * DAY,
                "bucket_end": T0 + (d + 1) * DAY,
                "project_id": None,
                "model": "e",
                "input_tokens": 10 * (d + 1),
                "num_model_requests": 1,
            }
            for d in range(2)
        ]
        opened.commit_window(WindowWrite("acme", EMB, emb, T0, T0 + 2 * DAY, "r", T0))
        yield opened


def test_format_decimal_is_exact() -> None:
    """Trailing zeros go, digits never change, integers stay integers."""
    assert format_decimal(Decimal("0.060000000000000000")) == "0.06"
    assert format_decimal(Decimal("100.000000000000000000")) == "100"
    assert format_decimal(Decimal("0E-18")) == "0"
    assert format_decimal(Decimal("-0.5")) == "-0.5"
    assert (
        format_decimal(Decimal("12345678901234567890.000000000000000001")) == "12345678901234567890.000000000000000001"
    )


def test_csv_has_the_columns_and_exact_money(store: BaseStore) -> None:
    """CSV columns: org, stream, bucket start/end, group fields, metrics; decimals as exact text."""
    out = io.BytesIO()
    result = export(store, "csv", out, endpoints=["costs"], orgs=["acme"])
    assert result.rows == {"costs": 4}
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert list(rows[0])[:6] == ["org", "stream", "bucket_start", "bucket_end", "project_id", "line_item"]
    assert "amount_value" in rows[0] and "quantity" in rows[0] and "group_key" not in rows[0]
    assert [r["amount_value"] for r in rows] == AMOUNTS
    assert rows[0]["bucket_start"].endswith("Z") and rows[0]["line_item"] == "gpt, input"
    assert rows[0]["quantity"] == ""


def test_jsonl_numbers_are_exact_and_lines_mix_endpoints(store: BaseStore) -> None:
    """JSON Lines carries the endpoint per line; money is a JSON number with exactly the stored digits."""
    out = io.BytesIO()
    result = export(store, "jsonl", out, orgs=["acme"])
    assert result.rows["costs"] == 4 and result.rows["usage_embeddings"] == 2
    lines = [json.loads(line, parse_float=Decimal) for line in out.getvalue().splitlines()]
    costs = [rec for rec in lines if rec["endpoint"] == "costs"]
    assert [rec["amount_value"] for rec in costs] == [Decimal(a) for a in AMOUNTS]
    assert b'"amount_value":0.000000000000000001' in out.getvalue()
    assert {rec["endpoint"] for rec in lines} == {"costs", "embeddings"}


def test_time_and_org_filters(store: BaseStore) -> None:
    """--since/--until select bucket starts in [since, until); --org selects orgs."""
    out = io.BytesIO()
    result = export(store, "jsonl", out, endpoints=["costs"], since=T0 + DAY, until=T0 + 3 * DAY)
    assert result.rows == {"costs": 4}  # two days, two orgs
    starts = {json.loads(line)["bucket_start"] for line in out.getvalue().splitlines()}
    assert starts == {timeutil.iso(T0 + DAY), timeutil.iso(T0 + 2 * DAY)}


def test_an_export_sorts_one_batch_of_rows_at_a_time(store: BaseStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store sorts at most a batch's rows per read, in slices of whole buckets: one ORDER BY over the table
    held every row in DuckDB's memory until the last was written (a 626,235-row costs table, 220 MB of a 490 MB
    peak). The rows come out in the order of the one read, with the filters kept."""
    whole = io.BytesIO()
    export(store, "csv", whole, endpoints=["costs"])
    reads = count_reads(store, monkeypatch)
    sliced = io.BytesIO()
    result = export(store, "csv", sliced, endpoints=["costs"], batch_rows=3)
    assert result.rows == {"costs": 8} and sliced.getvalue() == whole.getvalue()
    assert reads == [3, 1, 3, 1]  # per org, three buckets and then the fourth
    reads.clear()
    since = io.BytesIO()
    assert export(store, "csv", since, endpoints=["costs"], since=T0 + DAY, orgs=["beta"], batch_rows=2).total == 3
    assert reads == [2, 1]
    assert since.getvalue().splitlines()[1:] == [line for line in whole.getvalue().splitlines() if b"beta" in line][1:]


def test_parquet_keeps_decimal128(store: BaseStore, tmp_path: Path) -> None:
    """A Parquet file keeps decimal128(38,18) and UTC timestamps."""
    path = tmp_path / "costs.parquet"
    export(store, "parquet", path, endpoints=["costs"])
    table = pq.read_table(path)
    assert table.schema.field("amount_value").type == pa.decimal128(38, 18)
    ts = table.schema.field("bucket_start").type
    assert pa.types.is_timestamp(ts) and ts.tz == "UTC"  # Parquet has no second unit: it stores milliseconds
    assert table.num_rows == 8
    assert sum(table.column("amount_value").to_pylist()) == 2 * sum(Decimal(a) for a in AMOUNTS)


def test_parquet_partitioned_by_day_reads_back_as_one_table(store: BaseStore, tmp_path: Path) -> None:
    """--partition-by day writes <table>/day=YYYY-MM-DD/ directories that a Hive-aware reader joins up."""
    root = tmp_path / "lake"
    result = export(store, "parquet", root, partition_by="day")
    days = sorted(p.name for p in (root / "costs").iterdir())
    assert len(days) == 4 and all(d.startswith("day=") for d in days)
    assert result.rows["costs"] == 8 and result.rows["usage_embeddings"] == 2
    import pyarrow.dataset as ds  # imported here: it loads pandas, ~0.3 s of CPU for every xdist worker collecting

    dataset = ds.dataset(root / "costs", format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 8
    assert sum(table.column("amount_value").to_pylist()) == 2 * sum(Decimal(a) for a in AMOUNTS)


def test_directory_output_writes_one_file_per_endpoint(store: BaseStore, tmp_path: Path) -> None:
    """Several endpoints into a directory: one CSV per table, empty tables included with a header."""
    result = export(store, "csv", tmp_path / "out", endpoints=["costs", "embeddings", "images"])
    assert sorted(p.name for p in result.files) == ["costs.csv", "usage_embeddings.csv", "usage_images.csv"]
    assert (tmp_path / "out" / "usage_images.csv").read_text().startswith("org,stream,bucket_start")


def test_bad_export_requests_are_refused(store: BaseStore, tmp_path: Path) -> None:
    """CSV of several endpoints to stdout, partitioned CSV, and unknown endpoints are ConfigErrors."""
    with pytest.raises(ConfigError, match="one endpoint"):
        export(store, "csv", io.BytesIO())
    with pytest.raises(ConfigError, match="Parquet"):
        export(store, "csv", tmp_path / "x", partition_by="day")
    with pytest.raises(ConfigError, match="unknown endpoint"):
        export(store, "csv", io.BytesIO(), endpoints=["nope"])


@pytest.mark.parametrize("store", ["duckdb"], indirect=True)
@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"fmt": "xlsx"}, "fmt"),
        ({"fmt": "CSV"}, "fmt"),
        ({"partition_by": "month", "fmt": "parquet"}, "partition_by"),
        ({"batch_rows": 0}, "batch_rows"),
        ({"batch_rows": -1}, "batch_rows"),
        ({"output": ""}, "output"),
        ({"output": None}, "output"),
        ({"output": 3}, "output"),
        ({"output": io.StringIO()}, "output"),
        ({"output": io.BytesIO(), "fmt": "parquet", "partition_by": "day"}, "partition_by"),
        ({"endpoints": [""]}, "endpoints"),
        ({"orgs": 5}, "orgs"),
        ({"since": object()}, "since"),
        ({"as_of": -5}, "as_of"),
        ({"as_of": "2099-01-01"}, "as_of"),  # after now: the ledger holds no future (the CLI's --as-of rule)
        ({"protect": "usageledger.toml"}, "protect"),
        ({"orgs": ["nope"]}, "orgs"),
        ({"streams": ["nope"]}, "streams"),
    ],
)
def test_wrong_export_arguments_are_refused_naming_the_parameter(
    store: BaseStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: dict[str, object], param: str
) -> None:
    """`fmt="xlsx"` wrote CSV under any name, `partition_by="month"` wrote no partitions, `batch_rows=0` and a None,
    int or text-stream output leaked DuckDB's or Python's own errors from deep inside, `output=""` wrote into the
    working folder, an unknown org or stream exported headers only: each is now one ParameterError naming the
    parameter, and nothing is written."""
    monkeypatch.chdir(tmp_path)
    call: dict[str, Any] = {"fmt": "csv", "output": tmp_path / "out.csv", "endpoints": ["costs"], **arguments}
    with pytest.raises(ParameterError) as caught:
        export(store, call.pop("fmt"), call.pop("output"), **call)
    assert caught.value.param == param and "\n" not in str(caught.value)
    assert not list(tmp_path.glob("*.csv")) and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("store", ["duckdb"], indirect=True)
def test_export_takes_one_name_and_friendly_times(store: BaseStore, tmp_path: Path) -> None:
    """`orgs="acme"` was read as the orgs a, c, m, e and exported nothing; `since` as a datetime was a TypeError
    from deep inside. One string is one name, and the times take what the client takes."""
    out = io.BytesIO()
    since = datetime.fromtimestamp(T0 + DAY, UTC)
    result = export(store, "jsonl", out, endpoints="costs", orgs="acme", since=since, until=str(T0 + 3 * DAY))
    assert result.rows == {"costs": 2}
    assert export(store, "jsonl", io.BytesIO(), streams=COSTS.id).rows["costs"] == 8
    store.check_streams(COSTS.id)  # one ID, as check_orgs takes one org (it read the characters as IDs)


def test_cli_export_to_stdout_and_file(store: BaseStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`usageledger export` writes to stdout with -o - and reports the file it wrote otherwise."""
    store.close()  # DuckDB lets one process write a file at a time: let the CLI have it
    runner = CliRunner()
    url = store.url
    out = runner.invoke(app, ["export", "--store", url, "-e", "costs", "-f", "csv", "--org", "beta"])
    assert out.exit_code == 0, out.output
    assert out.stdout.count("\n") == 5 and "beta" in out.stdout
    target = tmp_path / "c.jsonl"
    done = runner.invoke(app, ["export", "--store", url, "-f", "jsonl", "-o", str(target)])
    assert done.exit_code == 0, done.output
    assert len(target.read_text().splitlines()) == 10
    bad = runner.invoke(app, ["export", "--store", url, "-f", "csv", "--partition-by", "day"])
    assert bad.exit_code == 2 and "--partition-by" in bad.stderr


HOSTILE = [
    "=cmd|' /C calc'!A0",
    "+SUM(1,2)",
    "-2+3",
    "@evil",
    "\tTab first",
    "\rCR then =1+1",
    "mid\rdle",
    "line\u2028separator\x85next",
    'two\nlines, "quoted"',
]
"""Text a spreadsheet runs as a formula (OWASP's starts), or that could split a CSV record (a bare carriage return)."""


def test_csv_text_cannot_run_as_a_formula_and_each_row_is_one_record(
    tmp_path: Path, new_store: Callable[[str, Path], str]
) -> None:
    """Names and line items come from the API: a line item of `=cmd|' /C calc'!A0` went into the CSV as a formula a
    spreadsheet runs, and one holding a bare `\\r` (which Python's csv quotes only when it is in the line terminator)
    was written unquoted and read back as two records. Text that starts as a formula now starts with an apostrophe,
    every row is one record, negative amounts stay numbers, a boolean is `true`/`false` as `query` writes it, and
    JSON Lines keep the text as it is, each record one line for `str.splitlines()` too (a raw U+2028 split it)."""
    url = new_store("duckdb", tmp_path / "h.duckdb")
    completions = Stream.create("completions", "1d", ("project_id", "batch"))
    with open_store(url) as db:
        db.register_stream("acme", COSTS)
        rows = [
            {"bucket_start": T0, "bucket_end": T0 + DAY, "project_id": "p1", "line_item": text,
             "amount_value": Decimal("-0.08") if i % 2 else Decimal("1.5"), "currency": "usd", "quantity": None,
             "quantity_unit": None}
            for i, text in enumerate(HOSTILE)
        ]  # fmt: skip
        db.commit_window(WindowWrite("acme", COSTS, rows, T0, T0 + DAY, "r", T0))
        db.register_stream("acme", completions)
        usage = [
            {"bucket_start": T0, "bucket_end": T0 + DAY, "project_id": "p1", "batch": batch, "num_model_requests": 1}
            for batch in (True, False)
        ]
        db.commit_window(WindowWrite("acme", completions, usage, T0, T0 + DAY, "r", T0))
        out = io.BytesIO()
        export(db, "csv", out, endpoints=["costs"])
        records = list(csv.reader(io.StringIO(out.getvalue().decode(), newline="")))
        header, body = records[0], records[1:]
        assert len(body) == len(HOSTILE) and all(len(r) == len(header) for r in body)
        cells = [dict(zip(header, r, strict=True)) for r in body]
        formula = ("=", "+", "-", "@", "\t", "\r")
        assert sorted(c["line_item"] for c in cells) == sorted("'" + t if t.startswith(formula) else t for t in HOSTILE)
        assert sorted(c["amount_value"] for c in cells) == sorted(
            "-0.08" if i % 2 else "1.5" for i in range(len(HOSTILE))
        )
        out = io.BytesIO()
        export(db, "csv", out, endpoints=["completions"])
        assert sorted(r["batch"] for r in csv.DictReader(io.StringIO(out.getvalue().decode()))) == ["false", "true"]
        out = io.BytesIO()
        export(db, "jsonl", out, endpoints=["costs"])
        lines = out.getvalue().decode().splitlines()  # str.splitlines() breaks at U+2028 and NEL too
        assert sorted(json.loads(line)["line_item"] for line in lines) == sorted(HOSTILE)
