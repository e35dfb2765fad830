"""A big org's `forecast --by project` and `keys`: each lists what the report's long tables list (the 25 biggest
rows, `--limit-rows N` or `0`) and one row for the rest: the forecast's is the rest forecast as one from their summed
daily spend (the method of a row, not a sum of ranges), the keys' counts them with their spend, every flagged key
listed; JSON keeps every row; a small org prints as it always did."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from usageledger import Client
from usageledger.cli import app
from usageledger.emulator import Emulator, EmulatorConfig
from usageledger.report.folding import ROWS_SHOWN, ROWS_SLACK, RowLimit
from usageledger.report.forecast import Forecast, fill_days, forecast_month
from usageledger.report.forecasting import build_forecast, daily_spend, data_as_of
from usageledger.report.formatting import format_count, format_money
from usageledger.report.months import first_cost_day
from usageledger.store import Stream, default_streams, open_store
from usageledger.sync import Org, SyncOptions, sync
from usageledger.sync.directory import refresh_org

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

NOW = datetime.fromtimestamp(EMULATOR_NOW, UTC)
MONTH = NOW.date().replace(day=1)
SYNCED_DAYS = 28
NOW_ARGS = ["--now", str(EMULATOR_NOW)]
WIDE = {"COLUMNS": "400"}
"""Wide enough that no row of these tables wraps: a line of the output is a row of a table."""
ROW = re.compile(r"^│ (?P<label>.+?) +│ +(?P<cells>.*) │$")
KEYED = ("project_id", "api_key_id")


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An org of 60 projects (and their 2 or 3 keys each): its directory, 28 days of every default stream, and of
    costs and completions grouped by project and key."""
    emulator = Emulator(EmulatorConfig(seed=3, days=60, projects=60, users=5, models=6, now=EMULATOR_NOW))
    store = tmp_path_factory.mktemp("big-org") / "ledger.duckdb"
    org = Org("default", FAKE_ADMIN_KEY)
    streams = (*default_streams(), Stream.create("costs", "1d", KEYED), Stream.create("completions", "1d", KEYED))

    def fill() -> None:
        with open_store(store) as db:
            done = sync(
                db,
                [org],
                streams,
                SyncOptions(since=EMULATOR_NOW - SYNCED_DAYS * 86_400),
                transport=emulator.transport(),
                clock=lambda: EMULATOR_NOW,
            )
            assert done.ok, done.errors
            refresh_org(db, org, at=EMULATOR_NOW, client_factory=through)

    def through(o: Org) -> Client:
        return Client(o.api_key, "http://127.0.0.1/v1", transport=emulator.transport())

    with ThreadPoolExecutor(1) as pool:  # the sync runs an event loop of its own
        pool.submit(fill).result()
    return store


def _run(*argv: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, [*argv, *NOW_ARGS], env=env or WIDE)


def _json(*argv: str) -> Any:
    result = _run(*argv, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _table(output: str) -> list[tuple[str, list[str]]]:
    """The rows of the one table of ``output``: each row's label and its other cells, as printed."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    rows = []
    for line in lines[start + 3 :]:  # the top border, the header, the header's rule
        if line.startswith("└"):
            break
        found = ROW.match(line)
        assert found is not None, line
        rows.append((found["label"].strip(), [cell.strip() for cell in found["cells"].split("│")]))
    return rows


def _money(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", ""))


def _figures(fc: Forecast) -> list[str]:
    return [format_money(v) for v in (fc.actual_to_date, fc.month_end, fc.low, fc.high)]


def _rest_forecast(store: Path, keys: list[str | None], by: str) -> Forecast:
    """The forecast of ``keys`` (projects or models) as one group, from their daily spend summed here."""
    with open_store(store, read_only=True) as db:
        as_of = data_as_of(db, now=NOW)
        first = first_cost_day(db)
        assert as_of is not None and first is not None
        series = daily_spend(db, first, as_of, by="project" if by == "project" else "model")
    summed: dict[date, Decimal] = {}
    for key in keys:
        for day, amount in series[key]:
            summed[day] = summed.get(day, Decimal(0)) + amount
    return forecast_month(fill_days(sorted(summed.items()), first, as_of), MONTH, as_of=as_of)


# -- forecast -------------------------------------------------------------------------------------------------------


def test_forecast_by_project_lists_the_25_biggest_and_forecasts_the_rest_as_one(big_store: Path) -> None:
    """`forecast --by project` of 60 projects lists the 25 forecast to spend most, in the JSON's order, then one row
    for the rest whose figures are the forecast of their summed daily spend (its to date their exact sum, its range
    that of the sum, not the sum of their ranges), then the total; a note says how to list more."""
    doc = _json("forecast", "--store", str(big_store), "--by", "project")
    groups = doc["groups"]
    assert len(groups) > ROWS_SHOWN + ROWS_SLACK
    result = _run("forecast", "--store", str(big_store), "--by", "project")
    assert result.exit_code == 0, result.output
    rows = _table(result.output)
    assert len(rows) == ROWS_SHOWN + 2
    for (label, cells), g in zip(rows[:ROWS_SHOWN], groups, strict=False):
        assert label == g["name"] or g["project"] in label
        assert cells == [format_money(Decimal(g[f])) for f in ("actual_to_date", "month_end", "low", "high")]
    rest = groups[ROWS_SHOWN:]
    label, cells = rows[ROWS_SHOWN]
    assert label == f"… {len(rest)} more projects"
    together = _rest_forecast(big_store, [g["project"] for g in rest], "project")
    assert cells == _figures(together)
    exact = sum((v.amount for v in together.days if v.actual and v.day >= MONTH), Decimal(0))
    assert cells[0] == format_money(exact)
    summed_highs = sum((Decimal(g["high"]) for g in rest), Decimal(0))
    assert cells[3] != format_money(summed_highs)  # a sum of 80% ranges is not the range of the sum
    assert rows[-1] == (
        "total",
        [format_money(Decimal(doc[f])) for f in ("actual_to_date", "month_end", "low", "high")],
    )
    assert f"(`… {len(rest)} more projects`: from their spend summed)" in result.output
    assert "lists the 25 projects forecast to spend most" in result.output and "--limit-rows 0" in result.output


def test_forecast_limit_rows_n_of_models_and_0_for_every_project(big_store: Path) -> None:
    """`--by model --limit-rows 2` lists the 2 models forecast to spend most and forecasts the others as one;
    `--limit-rows 0` lists every project, with no "more" row and no note."""
    models = _json("forecast", "--store", str(big_store), "--by", "model")["groups"]
    result = _run("forecast", "--store", str(big_store), "--by", "model", "--limit-rows", "2")
    assert result.exit_code == 0, result.output
    rows = _table(result.output)
    assert [label for label, _ in rows[:2]] == [g["model"] for g in models[:2]]
    assert rows[2] == (
        f"… {len(models) - 2} more models",
        _figures(_rest_forecast(big_store, [g["model"] for g in models[2:]], "model")),
    )
    assert len(rows) == 4 and rows[3][0] == "total"
    projects = _json("forecast", "--store", str(big_store), "--by", "project")["groups"]
    every = _run("forecast", "--store", str(big_store), "--by", "project", "--limit-rows", "0")
    assert every.exit_code == 0, every.output
    rows = _table(every.output)
    assert len(rows) == len(projects) + 1 and rows[-1][0] == "total"
    assert " more " not in every.output and "--limit-rows" not in every.output


def test_build_forecast_folds_only_when_asked(big_store: Path) -> None:
    """The library lists every group and forecasts no rest unless given ``rows``; with them, the groups are still
    every one (JSON's), and the rest is the last ones after those listed."""
    with open_store(big_store, read_only=True) as db:
        whole = build_forecast(db, MONTH, now=NOW, by="project")
        folded = build_forecast(db, MONTH, now=NOW, by="project", rows=RowLimit.of(10))
    assert whole.rest is None and whole.listed == whole.groups
    assert folded.groups == whole.groups and folded.listed == whole.groups[:10]
    assert folded.rest is not None and folded.rest.count == len(whole.groups) - 10


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--by", "project", "--limit-rows", "-1"], "--limit-rows: -1 is not in the range x>=0"),
        (["--by", "project", "--limit-rows", "abc"], "--limit-rows: 'abc' is not a whole number"),
        (["--by", "project", "--limit-rows", "5", "--format", "json"], "--limit-rows: the JSON holds every row"),
        (["--limit-rows", "5"], "--limit-rows: without --by the forecast has one row"),
    ],
)
def test_a_bad_forecast_limit_rows_is_one_line_naming_the_option(big_store: Path, args: list[str], said: str) -> None:
    """A negative or non-numeric `--limit-rows`, or one where no table would be cut (a JSON document, a forecast
    of the total alone): one line naming the option, exit 2."""
    result = _run("forecast", "--store", str(big_store), *args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert said in result.output and "Traceback" not in result.output


def test_forecast_json_keeps_every_group_and_no_rest(big_store: Path) -> None:
    """`forecast --by project --format json`: every project with spend, each once, and no group for the rest."""
    doc = _json("forecast", "--store", str(big_store), "--by", "project")
    with open_store(big_store, read_only=True) as db:
        projects = {r[0] for r in db.query("SELECT DISTINCT project_id FROM costs")}
    assert len(doc["groups"]) == len(projects) > ROWS_SHOWN + ROWS_SLACK
    assert {g["project"] for g in doc["groups"]} == projects


# -- keys -----------------------------------------------------------------------------------------------------------


def _rank(key: dict[str, Any]) -> tuple[Decimal, str]:
    """The rule the table's rows are chosen by, written again: most spend, then most recently used."""
    return (Decimal(key["spend"] or 0), key["last_used"] or "")


def _chosen(keys: list[dict[str, Any]], shown: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    others = sorted((k for k in keys if not k["flags"]), key=_rank, reverse=True)
    rest = {k["id"] for k in others[shown:]}
    return [k for k in keys if k["id"] not in rest], [k for k in keys if k["id"] in rest]


def test_keys_lists_every_flagged_key_and_the_25_biggest_others(big_store: Path) -> None:
    """`keys` of a big org lists every flagged key and the 25 other keys that spent most (then most recently used),
    in the JSON's order, and one row counting the rest with their spend and requests: with the spend through no key,
    the rows still add up to the period's costs."""
    args = ("keys", "--store", str(big_store))
    doc = _json(*args)
    keys = doc["keys"]
    listed, rest = _chosen(keys, ROWS_SHOWN)
    flagged = [k for k in keys if k["flags"]]
    assert flagged and len(keys) - len(flagged) > ROWS_SHOWN + ROWS_SLACK
    result = _run(*args)
    assert result.exit_code == 0, result.output
    rows = _table(result.output)
    assert [cells[0] for _, cells in rows[:-1]] == [k["id"] for k in listed]
    assert {k["id"] for k in flagged} <= {cells[0] for _, cells in rows}
    label, cells = rows[-1]
    spend = sum((Decimal(k["spend"]) for k in rest if k["spend"] is not None), Decimal(0))
    requests = sum(k["requests"] for k in rest if k["requests"] is not None)
    assert label == f"… {len(rest)} more keys"
    assert [c for c in cells if c] == [format_money(spend), format_count(requests)]
    printed = sum((_money(cells[7]) for _, cells in rows if cells[7] != "—"), Decimal(0))  # each to the cent
    total = re.search(r"the keys' spend adds up to (\$[\d,.]+)", result.output)
    assert total is not None, result.output
    assert printed + Decimal(doc["no_key_spend"]) == pytest.approx(_money(total[1]), abs=Decimal("0.005") * len(rows))
    assert "every flagged key and the 25 other keys that spent most" in result.output
    # the flagged keys listed are ones the spend alone would leave out (unused: none; an admin key's: unknown)
    biggest = {k["id"] for k in sorted(keys, key=_rank, reverse=True)[:ROWS_SHOWN]}
    assert {k["id"] for k in flagged} - biggest


def test_keys_limit_rows_n_and_0(big_store: Path) -> None:
    """`keys --limit-rows 3` lists the flagged keys and 3 others; `--limit-rows 0` every key, with no "more" row
    and no note."""
    args = ("keys", "--store", str(big_store))
    keys = _json(*args)["keys"]
    listed, rest = _chosen(keys, 3)
    result = _run(*args, "--limit-rows", "3")
    assert result.exit_code == 0, result.output
    rows = _table(result.output)
    assert [cells[0] for _, cells in rows[:-1]] == [k["id"] for k in listed]
    assert len(listed) == 3 + sum(1 for k in keys if k["flags"])
    assert rows[-1][0] == f"… {len(rest)} more keys"
    every = _run(*args, "--limit-rows", "0")
    assert every.exit_code == 0, every.output
    assert [cells[0] for _, cells in _table(every.output)] == [k["id"] for k in keys]
    assert " more keys" not in every.output and "--limit-rows" not in every.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--limit-rows", "-1"], "--limit-rows: -1 is not in the range x>=0"),
        (["--limit-rows", "x"], "--limit-rows: 'x' is not a whole number"),
        (["--limit-rows", "5", "--format", "json"], "--limit-rows: the JSON holds every row"),
    ],
)
def test_a_bad_keys_limit_rows_is_one_line_naming_the_option(big_store: Path, args: list[str], said: str) -> None:
    """A negative or non-numeric `keys --limit-rows`, or one with `--format json`: one line naming it, exit 2."""
    result = _run("keys", "--store", str(big_store), *args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert said in result.output and "Traceback" not in result.output


def test_keys_json_keeps_every_key(big_store: Path) -> None:
    """`keys --format json` has every key of the directory, however many."""
    keys = _json("keys", "--store", str(big_store))["keys"]
    with open_store(big_store, read_only=True) as db:
        listed = db.query("SELECT COUNT(*) FROM directory_current WHERE kind IN ('project_api_key', 'admin_api_key')")
    assert len(keys) >= listed[0][0] > ROWS_SHOWN + ROWS_SLACK


# -- a small org ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["keys"], ["forecast", "--by", "project"], ["forecast", "--by", "model"]])
def test_a_small_org_prints_every_row_as_before(demo_store: Path, argv: list[str]) -> None:
    """The demo's org (5 projects, 6 models, a dozen keys): every row, as `--limit-rows 0` prints them, and no
    note, at 80 columns too."""
    for env in (WIDE, {"COLUMNS": "80"}):
        cut = CliRunner().invoke(app, [*argv, "--store", str(demo_store)], env=env)
        every = CliRunner().invoke(app, [*argv, "--store", str(demo_store), "--limit-rows", "0"], env=env)
        assert cut.exit_code == every.exit_code == 0, cut.output
        assert cut.output == every.output and " more " not in cut.output
