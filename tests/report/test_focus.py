"""`export --format focus`: FOCUS 1.2 rows of the costs stream, checked against the store and the FinOps Foundation's
own validator (installed into .venv-focus by scripts/focus-validator-env, which scripts/test runs first)."""

from __future__ import annotations

import csv
import functools
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal, localcontext
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from usageledger.errors import ParameterError
from usageledger.report.focus import FOCUS_COLUMNS, FX_COLUMNS, MANDATORY_COLUMNS, SERVICE_CATEGORY, focus_rows
from usageledger.report.fx import FxRates
from usageledger.report.queries import COSTS_VIEW, utc_day
from usageledger.store import open_store

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.stores import copy_duckdb, count_reads

ROOT = Path(__file__).resolve().parents[2]
FOCUS_VENV = ROOT / ".venv-focus"
CENT = Decimal("0.01")
CRITERIA = ("SUB_ACCOUNT_SUPPORTED", "TAGGING_SUPPORTED", "ACCOUNT_NAMING_SUPPORTED")
"""What the export claims of OpenAI, so the validator checks SubAccountId/Name, Tags and BillingAccountName too
(USAGE_MEASUREMENT_SUPPORTED is left out: see docs/FOCUS.md, "Validation")."""
ISO_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from usageledger.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )


@pytest.fixture(scope="module")
def store(emulator_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store synced from the emulator over 90 days: the costs stream and the directory (projects, groups)."""
    path = str(tmp_path_factory.mktemp("focus") / "s.duckdb")
    env = {**os.environ, "OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}
    sync = ["sync", "--store", path, "--now", str(EMULATOR_NOW), "--base-url", emulator_url, "-e", "costs"]
    result = _cli(*sync, "--since", "90d", env=env)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def focus_csv(store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("focus-out") / "focus.csv"
    result = _cli("export", "--format", "focus", "--store", store, "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "FOCUS 1.2 rows" in result.stderr
    return out


@pytest.fixture(scope="module")
def focus_parquet(store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("focus-out") / "focus.parquet"
    result = _cli("export", "--format", "focus", "--focus-format", "parquet", "--store", store, "--output", str(out))
    assert result.returncode == 0, result.stderr
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _store_days(store: str) -> dict[date, Decimal]:
    with open_store(store, read_only=True) as db:
        rows = db.query(f"SELECT bucket_start, SUM(amount_value) FROM {COSTS_VIEW} GROUP BY bucket_start")
    return {utc_day(d): Decimal(a) for d, a in rows}


def test_csv_has_the_mandatory_columns_with_their_types(focus_csv: Path) -> None:
    rows = _rows(focus_csv)
    assert len(rows) > 1000
    assert set(MANDATORY_COLUMNS) <= set(rows[0]), set(MANDATORY_COLUMNS) - set(rows[0])
    assert {"SubAccountId", "SubAccountName", "Tags"} <= set(rows[0])
    for row in rows:
        for money in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
            assert Decimal(row[money]).is_finite()
        assert row["BilledCost"] == row["EffectiveCost"] == row["ListCost"] == row["ContractedCost"]
        for moment in ("ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart", "BillingPeriodEnd"):
            assert ISO_Z.fullmatch(row[moment]), (moment, row[moment])
        assert row["BillingPeriodStart"] <= row["ChargePeriodStart"] < row["ChargePeriodEnd"] <= row["BillingPeriodEnd"]
        assert row["BillingPeriodStart"][8:] == "01T00:00:00Z"
        assert row["BillingCurrency"] == "USD"
        assert row["ChargeCategory"] in {"Usage", "Credit"}
        assert row["ChargeClass"] == ""
        assert row["ServiceCategory"] == SERVICE_CATEGORY
        assert row["ProviderName"] == row["PublisherName"] == row["InvoiceIssuerName"] == "OpenAI"
        assert row["BillingAccountId"] and row["ServiceName"] and row["ChargeDescription"]
        if row["PricingUnit"]:
            Decimal(row["PricingQuantity"])
        tags = json.loads(row["Tags"])
        assert isinstance(tags, dict) and "team" in tags and "line_item" in tags
    named = [r for r in rows if r["SubAccountId"]]
    assert named and all(r["SubAccountName"] for r in named)
    assert any(r["SubAccountName"] != r["SubAccountId"] for r in named), "project names come from the directory"
    assert any("model" in json.loads(r["Tags"]) for r in rows)
    assert {r["PricingUnit"] for r in rows} >= {"Tokens"}


def test_billed_cost_per_day_equals_the_costs_stream(focus_csv: Path, store: str) -> None:
    billed: dict[date, Decimal] = defaultdict(Decimal)
    for row in _rows(focus_csv):
        billed[datetime.fromisoformat(row["ChargePeriodStart"]).date()] += Decimal(row["BilledCost"])
    expected = _store_days(store)
    assert len(expected) >= 89
    assert billed.keys() == expected.keys()
    for day, amount in expected.items():
        assert billed[day].quantize(CENT) == amount.quantize(CENT), day
        assert billed[day] == amount, day  # exact, in fact: no float on the way


def test_parquet_types_and_totals(focus_parquet: Path, store: str) -> None:
    table = pq.read_table(focus_parquet)
    types = dict(FOCUS_COLUMNS)
    assert set(MANDATORY_COLUMNS) <= set(table.schema.names)
    for name in table.schema.names:
        written = table.schema.field(name).type
        if pa.types.is_timestamp(types[name]):  # Parquet keeps no seconds unit: it stores milliseconds
            assert pa.types.is_timestamp(written) and written.tz == "UTC", name
        else:
            assert written == types[name], name
    assert pa.types.is_decimal(table.schema.field("BilledCost").type)
    assert pa.types.is_timestamp(table.schema.field("ChargePeriodStart").type)
    billed: dict[date, Decimal] = defaultdict(Decimal)
    for start, cost in zip(
        table.column("ChargePeriodStart").to_pylist(), table.column("BilledCost").to_pylist(), strict=True
    ):
        billed[utc_day(start)] += cost
    assert dict(billed) == _store_days(store)


@functools.cache
def _validator_site() -> Path:
    python = FOCUS_VENV / "bin" / "python"
    assert python.exists(), "run scripts/focus-validator-env first (scripts/test does)"
    found = subprocess.run(
        [str(python), "-c", "import focus_validator, pathlib; print(pathlib.Path(focus_validator.__file__).parent)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip())


_VALIDATOR_ARGS = (
    "--validate-version",
    "1.2.0.1",
    "--block-download",
    "--output-type",
    "console",
    "--applicability-criteria",
    ",".join(CRITERIA),
)
_RUN_ENDS = "\n=== the test's focus-validator run of {} exited {} ===\n"
_DRIVER = """
import sys, traceback
from focus_validator.main import main
ends, given = sys.argv[1], sys.argv[2:]
files, common = given[: given.index("--")], given[given.index("--") + 1 :]
for path, fmt in zip(files[::2], files[1::2]):
    sys.argv = ["focus-validator", "--data-file", path, "--data-format", fmt, *common]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc(file=sys.stdout)
        code = 1
    print(ends.format(fmt, code), flush=True)
"""
"""Runs focus-validator's own command line (``focus_validator.main.main``) once per file in one interpreter: the
validator's imports (pandas, polars, duckdb, pydantic, sqlglot: ~1.4 s of CPU) are paid once for both files, not
once a file. Each run parses its own arguments, makes its own Validator, loads its file and prints its own results;
an exception in one run is printed and that run exits 1, and the next file is still validated."""


@pytest.fixture(scope="module")
def validated(focus_csv: Path, focus_parquet: Path) -> dict[str, tuple[int, str, str]]:
    """Each FOCUS file (CSV and Parquet) run through focus-validator, by format: its exit code, its output and the
    process's stderr."""
    package = _validator_site()
    files = {"csv": focus_csv, "parquet": focus_parquet}
    # The validator reads its ISO currency list from the relative path focus_validator/rules/currency_codes.csv,
    # so it runs from the directory that holds its package; --block-download keeps it to its bundled 1.2 model.
    result = subprocess.run(
        [
            str(FOCUS_VENV / "bin" / "python"),
            "-c",
            _DRIVER,
            _RUN_ENDS,
            *(item for fmt, path in files.items() for item in (str(path), fmt)),
            "--",
            *_VALIDATOR_ARGS,
        ],
        cwd=package.parent,
        # One polars thread: the suite runs four workers on two cores, where polars' pool of a thread a core only
        # adds CPU (~0.9 s of ~11 s for the two files, measured); what is read and checked is the same.
        env={**os.environ, "POLARS_MAX_THREADS": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    before, between, after = map(re.escape, _RUN_ENDS.split("{}"))
    parts = re.split(rf"{before}(\w+){between}(-?\d+){after}", result.stdout)
    runs = {fmt: (int(code), output) for output, fmt, code in zip(parts[0::3], parts[1::3], parts[2::3], strict=False)}
    assert runs.keys() == files.keys(), result.stdout[-3000:] + result.stderr[-3000:]
    return {fmt: (code, output, result.stderr) for fmt, (code, output) in runs.items()}


def _validate(run: tuple[int, str, str]) -> tuple[dict[str, str], dict[str, object]]:
    """One file's run of focus-validator: each rule's status, and the FOCUS 1.2 model's rules it checked."""
    code, output, stderr = run
    assert code == 0, output[-3000:] + stderr[-3000:]
    statuses = dict(re.findall(r"^\S+\s+([A-Za-z]+-[A-Z]-\d{3}-[A-Z]): (PASS|FAIL|SKIPPED)", output, re.M))
    assert len(statuses) > 500, output[-2000:]
    model = json.loads((_validator_site() / "rules" / "model-1.2.0.1.json").read_text(encoding="utf-8"))
    rules: dict[str, object] = model["ModelRules"]
    return statuses, rules


def _or_alternatives(rules: dict[str, object], statuses: dict[str, str]) -> set[str]:
    """The rules that are one alternative of an OR composite that passed (the others may fail by design: InvoiceId
    MUST be null without an invoice, or MUST NOT be null with one; the export has none, so the second fails)."""
    out: set[str] = set()
    for rule_id, rule in rules.items():
        requirement = rule["ValidationCriteria"]["Requirement"]  # type: ignore[index]
        if requirement.get("CheckFunction") == "OR" and statuses.get(rule_id) == "PASS":
            out |= {item["ModelRuleId"] for item in requirement.get("Items", []) if "ModelRuleId" in item}
    return out


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_finops_foundation_validator_passes(fmt: str, validated: dict[str, tuple[int, str, str]]) -> None:
    statuses, rules = _validate(validated[fmt])
    failed = {r for r, s in statuses.items() if s == "FAIL"}
    assert failed <= _or_alternatives(rules, statuses), failed
    presence = {
        rule["Reference"]: rule_id  # type: ignore[index]
        for rule_id, rule in rules.items()
        if rule["Function"] == "Presence" and rule["EntityType"] == "Dataset"  # type: ignore[index]
    }
    for column in MANDATORY_COLUMNS:
        assert statuses[presence[column]] == "PASS", column
    for column in ("SubAccountId", "SubAccountName", "Tags"):
        assert statuses[presence[column]] == "PASS", column
    passed = {r for r, s in statuses.items() if s == "PASS"}
    for rule in ("BilledCost-C-000-M", "BillingCurrency-C-000-M", "ChargePeriodStart-C-000-M", "PricingUnit-C-000-M"):
        assert rule in passed, rule
    for rule in ("ServiceCategory-C-000-M", "SubAccountId-C-000-C", "SubAccountName-C-000-C", "Tags-C-000-C"):
        assert rule in passed, rule
    assert len(passed) > 140


def test_currency_adds_x_columns_and_keeps_the_billed_usd(store: str, tmp_path: Path) -> None:
    days = sorted(_store_days(store))
    rates = tmp_path / "rates.csv"
    rates.write_text("date,rate\n" + "".join(f"{d},0.9{i % 10}\n" for i, d in enumerate(days)), encoding="utf-8")
    out = tmp_path / "eur.csv"
    result = _cli(
        "export", "--format", "focus", "--store", store, "--output", str(out), "--currency", "EUR", "--fx", str(rates)
    )
    assert result.returncode == 0, result.stderr
    assert "EUR" in result.stderr and "0.90" in result.stderr
    rows = _rows(out)
    assert [n for n, _ in FX_COLUMNS] == list(rows[0])[-len(FX_COLUMNS) :]
    rate_of = {d: Decimal(f"0.9{i % 10}") for i, d in enumerate(days)}
    for row in rows[:500]:
        day = datetime.fromisoformat(row["ChargePeriodStart"]).date()
        assert row["BillingCurrency"] == "USD" and row["x_DisplayCurrency"] == "EUR"
        assert Decimal(row["x_FxRate"]) == rate_of[day]
        assert Decimal(row["x_BilledCostInDisplayCurrency"]) == Decimal(row["BilledCost"]) * rate_of[day]
    missing = days[10]
    rates.write_text("date,rate\n" + "".join(f"{d},0.9\n" for d in days if d != missing), encoding="utf-8")
    before = out.read_bytes()
    result = _cli(
        "export", "--format", "focus", "--store", store, "--output", str(out), "--currency", "EUR", "--fx", str(rates)
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and missing.isoformat() in lines[0] and "--fx" in lines[0], result.stderr
    assert out.read_bytes() == before, "a failed export leaves the old file as it was"


def test_a_rate_of_many_decimals_is_rounded_to_the_columns_places(store: str, tmp_path: Path) -> None:
    """A rate of ten significant digits times an amount of 7 places has 20: the 18-place column was an Arrow
    "Rescaling Decimal value would cause data loss" traceback; the converted cost is rounded to 18 places."""
    days = sorted(_store_days(store))
    rate = Decimal("0.0000123456789")
    rates = tmp_path / "rates.csv"
    rates.write_text("date,rate\n" + "".join(f"{d},{rate}\n" for d in days), encoding="utf-8")
    out = tmp_path / "tiny.csv"
    result = _cli(
        "export", "--format", "focus", "--store", store, "--output", str(out), "--currency", "EUR", "--fx", str(rates)
    )
    assert result.returncode == 0, result.stderr
    rows = _rows(out)
    rounded = 0
    for row in rows:
        exact = Decimal(row["BilledCost"]) * rate
        assert Decimal(row["x_BilledCostInDisplayCurrency"]) == exact.quantize(Decimal("1e-18"))
        rounded += exact != exact.quantize(Decimal("1e-18"))
    assert rounded > 100, "many products had more than 18 places"


def test_focus_refuses_the_store_and_other_endpoints(store: str) -> None:
    result = _cli("export", "--format", "focus", "--store", store, "--output", store)
    assert result.returncode == 2 and "would be overwritten" in result.stderr
    result = _cli("export", "--format", "focus", "--store", store, "--endpoint", "usage_completions")
    assert result.returncode == 2 and "--endpoint" in result.stderr and "Traceback" not in result.stderr
    # each refused flag is told why it has no place in a FOCUS file (--with-names was told "always writes the
    # costs stream")
    for flags, said in (
        (["--with-names"], "--with-names: --format focus names each project already, in SubAccountName"),
        (["--partition-by", "day"], "--partition-by: --format focus writes one file"),
        (["--deltas"], "--deltas: --format focus writes the costs as the store holds them now"),
    ):
        result = _cli("export", "--format", "focus", "--store", store, "-o", "-", *flags)
        assert result.returncode == 2 and result.stderr.startswith(f"error: {said}; leave {flags[0]} out"), result
    # `-f csv --focus-format parquet` wrote plain CSV without a word
    result = _cli("export", "--format", "csv", "--store", store, "--focus-format", "parquet", "-o", "-")
    assert result.returncode == 2 and result.stdout == ""
    assert (
        result.stderr.strip()
        == "error: --focus-format: only --format focus reads it; for Parquet here pass --format parquet"
    )
    with open_store(store, read_only=True) as db:
        assert db.query(f"SELECT COUNT(*) FROM {COSTS_VIEW}")[0][0] > 1000


def test_an_export_of_no_costs_is_refused_not_written_as_a_file_the_validator_fails(store: str, tmp_path: Path) -> None:
    """A FOCUS file of no rows (headers only, CSV or Parquet) fails the FinOps Foundation validator's own checks
    (ChargeCategory, ServiceCategory... "MUST be one of the allowed values" on an empty column). An export whose
    period holds no costs wrote one and said "Exported 0 FOCUS 1.2 rows"; it is now a one-line error naming the
    period and the days the store holds, and nothing is written (a file already there is left as it was)."""
    days = sorted(_store_days(store))
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"none.{fmt}"  # named as its format: a name saying another is refused first
        out.write_text("kept\n", encoding="utf-8")
        result = _cli(
            "export", "--format", "focus", "--focus-format", fmt, "--store", store, "--output", str(out),
            "--since", "2020-01-01", "--until", "2020-02-01",
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: --since/--until: no costs from 2020-01-01T00:00:00Z to 2020-02-01T00:00:00Z")
        assert f"the store's costs run from {days[0]} to {days[-1]}" in line and "Traceback" not in result.stderr
        assert out.read_text(encoding="utf-8") == "kept\n"
    empty = tmp_path / "usage-only.duckdb"
    with open_store(str(empty)):
        pass
    result = _cli("export", "--format", "focus", "--store", str(empty), "--output", str(tmp_path / "new" / "e.csv"))
    assert result.returncode == 1 and not (tmp_path / "new").exists()  # nor the folder it would have made
    [line] = result.stderr.strip().splitlines()
    assert "the store holds no costs" in line and "usageledger sync" in line, line


def test_the_store_sorts_one_batch_of_costs_at_a_time(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read of the costs holds about a batch's rows (slices of whole days, so one day more at most): one
    ORDER BY over the view held every row in DuckDB's memory until the last FOCUS row was written (626,235 rows:
    586 MB peak for Parquet, 432 MB in slices). The rows are those of one read, in its order."""
    with open_store(store) as opened:
        whole = pa.concat_tables(focus_rows(opened, teams={}))
        reads = count_reads(opened, monkeypatch)
        sliced = pa.concat_tables(focus_rows(opened, teams={}, batch_rows=1000))
    assert sliced.equals(whole) and whole.num_rows > 10_000
    day = max(pc.value_counts(whole.column("ChargePeriodStart")).field("counts").to_pylist())
    assert len(reads) > 10 and max(reads) < 1000 + day and sum(reads) == whole.num_rows  # a slice: whole days


def _awkward_copy(store: str, tmp_path: Path, days_kept: int) -> tuple[str, list[date]]:
    """A copy of the first ``days_kept`` days of ``store``, whose first days hold what the FOCUS columns treat apart
    (a day a kind), and its days: day 0 no project at all, day 1 NULL amounts, currencies and units, day 2 negative
    amounts, a currency in capitals and an empty unit, day 3 no line item and NULL quantities, day 4 line items naming
    no model."""
    copy = str(tmp_path / "awkward.duckdb")
    copy_duckdb(store, copy)
    days = sorted(_store_days(store))[:days_kept]
    with open_store(copy) as db:
        db.execute("DELETE FROM costs WHERE bucket_start > %s", [datetime.fromisoformat(f"{days[-1]}T00:00:00+00:00")])
        for day, change in enumerate(
            (
                "project_id = NULL",
                "amount_value = NULL, currency = NULL, quantity_unit = NULL",
                "amount_value = -amount_value - 0.000000000000000001, currency = 'Usd', quantity_unit = ''",
                "line_item = NULL, quantity = NULL, quantity_unit = 'tokens'",
                "line_item = 'no model here'",
            )
        ):
            db.execute(
                f"UPDATE costs SET {change} WHERE bucket_start = %s",
                [datetime.fromisoformat(f"{days[day]}T00:00:00+00:00")],
            )
    return copy, days


def test_rows_are_the_same_in_batches_of_any_size_and_follow_each_rule(store: str, tmp_path: Path) -> None:
    """The FOCUS columns are made a batch at a time from what a batch holds (its distinct days, projects, line
    items, units): a batch of one row, or one whose every project is NULL, gives the rows a whole read gives, and
    each awkward value maps as docs/FOCUS.md says."""
    copy, days = _awkward_copy(store, tmp_path, days_kept=12)  # a batch of one row a read: a few hundred reads
    with open_store(copy, read_only=True) as db:
        project = db.query(f"SELECT MIN(project_id) FROM {COSTS_VIEW} WHERE project_id IS NOT NULL")[0][0]
        teams = {project: 'Research, "R&D" 研究'}
        whole = pa.concat_tables(focus_rows(db, teams=teams))
        first = next(focus_rows(db, teams=teams, batch_rows=20))  # day 0's first 20 rows: no project in the batch
        assert first.num_rows == 20 and first.column("SubAccountId").null_count == 20
        for size in (1, 20, 997):
            assert pa.concat_tables(focus_rows(db, teams=teams, batch_rows=size)).equals(whole), size
    rows = whole.to_pylist()
    by_day: dict[date, list[dict[str, object]]] = defaultdict(list)
    for row in rows:
        by_day[utc_day(row["ChargePeriodStart"])].append(row)
    assert sorted(by_day) == days and len(rows) > 200
    for row in by_day[days[0]]:
        assert row["SubAccountId"] is None and row["SubAccountName"] is None
        assert json.loads(str(row["Tags"]))["team"] == "unassigned"
    for row in by_day[days[1]]:
        assert row["BilledCost"] == row["ListCost"] == Decimal(0) and row["ChargeCategory"] == "Usage"
        assert row["BillingCurrency"] == "USD" and row["PricingUnit"] is row["PricingQuantity"] is None
        assert row["ConsumedUnit"] is row["ConsumedQuantity"] is None
    for row in by_day[days[2]]:
        assert row["ChargeCategory"] == "Credit" and row["BillingCurrency"] == "USD"
        assert row["PricingUnit"] is row["PricingQuantity"] is None
    for row in by_day[days[3]]:
        assert row["ChargeDescription"] == "OpenAI API usage" and row["PricingQuantity"] is None
        assert row["PricingUnit"] == row["ConsumedUnit"] == "Tokens"
        assert set(json.loads(str(row["Tags"]))) == {"team"}
    for row in by_day[days[4]]:
        assert json.loads(str(row["Tags"]))["line_item"] == "no model here"
        assert "model" not in json.loads(str(row["Tags"]))
    later = [r for d in days[5:] for r in by_day[d]]
    ours = [r for r in later if r["SubAccountId"] == project]
    assert ours and all(json.loads(str(r["Tags"]))["team"] == teams[project] for r in ours)
    assert any(
        r["SubAccountId"] not in (None, project) and json.loads(str(r["Tags"]))["team"] == "unassigned" for r in later
    )
    assert all(r["ChargeCategory"] == "Usage" and r["BillingCurrency"] == "USD" for r in later)
    assert all(r["PricingUnit"] for r in later)
    models = {json.loads(str(r["Tags"])).get("model") for r in later if ", " not in str(r["ChargeDescription"])}
    assert models == {None}, "a line item naming no model has no model tag"
    for row in later:
        tags = json.loads(str(row["Tags"]))
        assert tags["line_item"] == row["ChargeDescription"]
        assert tags.get("model", tags["line_item"]) == tags["line_item"].split(", ")[0]
    assert any("model" in json.loads(str(r["Tags"])) for r in later)


def test_a_day_without_a_rate_in_a_later_batch_stops_the_rows(store: str) -> None:
    """Each batch asks the rate file for its own days: the last day missing is found in the last batch."""
    days = sorted(_store_days(store))
    fx = FxRates("EUR", {d: Decimal("0.9") for d in days[:-1]}, "rates.csv")
    with open_store(store, read_only=True) as db:
        batches = focus_rows(db, teams={}, fx=fx, batch_rows=500)
        assert next(batches).column("x_FxRate").to_pylist()[0] == Decimal("0.9")
        with pytest.raises(ParameterError, match=f"--fx: rates.csv has no EUR rate for {days[-1]}"):
            list(batches)


def test_a_converted_cost_is_rounded_once_from_the_exact_product(store: str, tmp_path: Path) -> None:
    """``BilledCost × x_FxRate`` rounded half-even to 18 places, from the exact product: Python's Decimal rounded
    it to 28 digits first, so $1,234,567.123456789012345678 at 158.1234575 yen was ...108790 (exact:
    ...1087905416850, so ...108791), and a product past 10**10 yen stopped the export with an InvalidOperation
    traceback. A product past the columns' 20 digits is a one-line error, and no file is written."""
    copy = str(tmp_path / "big-amounts.duckdb")
    copy_duckdb(store, copy)
    days = sorted(_store_days(store))
    amounts = (Decimal("1234567.123456789012345678"), Decimal("100000000.5"), Decimal("-98765.432109876543210987"))
    with open_store(copy) as db:
        for day, amount in zip(days, amounts, strict=False):
            at = datetime.fromisoformat(f"{day}T00:00:00+00:00")
            db.execute("UPDATE costs SET amount_value = %s WHERE bucket_start = %s", [amount, at])
    rates = tmp_path / "rates.csv"
    rates.write_text("date,rate\n" + "".join(f"{d},158.1234575\n" for d in days), encoding="utf-8")
    out = tmp_path / "yen.parquet"
    args = ["export", "--format", "focus", "--focus-format", "parquet", "--store", copy, "--output", str(out)]
    result = _cli(*args, "--currency", "JPY", "--fx", str(rates))
    assert result.returncode == 0, result.stderr
    table = pq.read_table(out, columns=["BilledCost", "x_BilledCostInDisplayCurrency"])
    converted = dict(zip(table.column("BilledCost").to_pylist(), table.column(1).to_pylist(), strict=False))
    with localcontext() as exact:
        exact.prec = 100
        for amount in amounts:
            assert converted[amount] == (amount * Decimal("158.1234575")).quantize(Decimal("1e-18")), amount
    assert converted[amounts[0]] == Decimal("195214022.076816830480108791")
    assert converted[amounts[1]] == Decimal("15812345829.06172875")  # past 10**10
    with open_store(copy) as db:
        db.execute(
            "UPDATE costs SET amount_value = %s WHERE bucket_start = %s",
            [Decimal("9" * 18), datetime.fromisoformat(f"{days[5]}T00:00:00+00:00")],
        )
    out.unlink()
    result = _cli(*args, "--currency", "JPY", "--fx", str(rates))
    assert result.returncode == 1 and not out.exists()
    [line] = result.stderr.strip().splitlines()
    assert (
        line.startswith("error: a cost converted with --fx comes to 158,123,457,499,999,999,841.88")
        and "Traceback" not in result.stderr
    )
