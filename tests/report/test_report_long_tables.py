"""A big org's report: each long table lists its biggest rows (the dashboard's 25) and sums the rest in one row, so
the trend and the tables after it stay in sight and every column still adds up; `--limit-rows` lists more or all;
JSON keeps every row; a small org prints as it always did."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser
from rich.console import Console
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.emulator import Emulator, EmulatorConfig
from usageledger.report.folding import ROWS_SHOWN, ROWS_SLACK, RowLimit
from usageledger.report.formatting import format_count, format_money
from usageledger.report.html import render_html
from usageledger.report.names import Names
from usageledger.report.queries import Period, ReportData, Scope, build_report
from usageledger.report.terminal import render_report
from usageledger.store import default_streams, open_store
from usageledger.sync import Org, SyncOptions, sync

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

TODAY = datetime.fromtimestamp(EMULATOR_NOW, UTC).date()
PERIOD = Period(TODAY - timedelta(days=13), TODAY + timedelta(days=1))
SPAN = ["--since", PERIOD.since.isoformat(), "--until", PERIOD.until.isoformat()]
WIDE = {"COLUMNS": "200"}
"""Wide enough that no row of these tables wraps: a line of the output is a row of a table."""
ROW = re.compile(r"^│ (?P<label>.+?) +│ +(?P<cells>.*) │$")


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An org of 60 projects, 14 days of every default stream (costs by project and line item, usage by model)."""
    emulator = Emulator(EmulatorConfig(seed=3, days=30, projects=60, users=5, models=6, now=EMULATOR_NOW))
    store = tmp_path_factory.mktemp("big-org") / "ledger.duckdb"

    def fill() -> None:
        with open_store(store) as db:
            done = sync(
                db,
                [Org("default", FAKE_ADMIN_KEY)],
                default_streams(),
                SyncOptions(since=int(datetime.combine(PERIOD.since, datetime.min.time(), UTC).timestamp())),
                transport=emulator.transport(),
                clock=lambda: EMULATOR_NOW,
            )
        assert done.ok, done.errors

    with ThreadPoolExecutor(1) as pool:  # the sync runs an event loop of its own
        pool.submit(fill).result()
    return store


@pytest.fixture(scope="module")
def big_report(big_store: Path) -> ReportData:
    with open_store(big_store, read_only=True) as db:
        data = build_report(db, PERIOD, Scope())
    assert len(data.spend_by_project) > ROWS_SHOWN + ROWS_SLACK  # a table the cap cuts
    return data


@pytest.fixture(scope="module")
def names_file(big_report: ReportData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each project named by its rank in the report (``P000`` the biggest), so a table's labels say its order."""
    path = tmp_path_factory.mktemp("names") / "names.csv"
    lines = [f"project,{s.key},{_rank(i)}" for i, s in enumerate(big_report.spend_by_project)]
    path.write_text("kind,id,name\n" + "\n".join(lines) + "\n")
    return path


def _rank(i: int) -> str:
    return f"P{i:03d}"


def _report(store: Path, names: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    argv = ["report", "--store", str(store), *SPAN, "--names", str(names), *args]
    return CliRunner().invoke(app, argv, env=env or WIDE)


def _table(output: str, title: str) -> list[tuple[str, list[str]]]:
    """The rows of the table under ``title``: each row's label and its other cells, as printed."""
    lines = output.splitlines()
    start = lines.index(title)
    rows = []
    for line in lines[start + 4 :]:  # the title, the top border, the header, the header's rule
        if line.startswith("└"):
            break
        found = ROW.match(line)
        assert found is not None, line
        rows.append((found["label"], [cell.strip() for cell in found["cells"].split("│")]))
    return rows


def _money(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", ""))


def test_a_big_orgs_report_lists_the_25_biggest_projects_and_sums_the_rest(
    big_store: Path, big_report: ReportData, names_file: Path
) -> None:
    """The project table lists the 25 biggest projects, biggest first, then one row naming how many more there are
    with their spend and share: the rows add up to the report's total, and a note says how to list them all."""
    result = _report(big_store, names_file)
    assert result.exit_code == 0, result.output
    rows = _table(result.output, "Spend by project")
    spends = big_report.spend_by_project
    assert len(rows) == ROWS_SHOWN + 1
    assert [label for label, _ in rows[:-1]] == [_rank(i) for i in range(ROWS_SHOWN)]
    assert [cells[0] for _, cells in rows[:-1]] == [format_money(s.amount) for s in spends[:ROWS_SHOWN]]
    label, (spend, share) = rows[-1]
    rest = spends[ROWS_SHOWN:]
    others = sum((s.amount for s in rest), Decimal(0))
    assert label == f"… {len(rest)} more projects"
    assert spend == format_money(others)
    assert share == f"{(others * 100 / big_report.total_spend).quantize(Decimal('0.1'))}%"
    assert sum((s.amount for s in spends[:ROWS_SHOWN]), others) == big_report.total_spend
    assert sum(_money(cells[0]) for _, cells in rows) == pytest.approx(big_report.total_spend, abs=Decimal("0.26"))
    assert "Long tables list their 25 biggest rows" in result.output
    assert "--limit-rows 0" in result.output
    # the tables after it are in the report, each of them whole where it is short
    assert len(_table(result.output, "Spend by model")) == len(big_report.spend_by_model) <= ROWS_SHOWN + ROWS_SLACK


def test_the_report_piped_is_short_enough_to_read(big_store: Path, big_report: ReportData) -> None:
    """Run as a user runs it and piped (`report | cat`) at 80 columns, the report is under 150 lines where the
    project table alone took a line or more a project; the tables after it are printed too."""
    command = [sys.executable, "-c", "from usageledger.cli import main; main()", "report", "--store", str(big_store)]
    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run([*command, *SPAN], capture_output=True, text=True, env=env, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) < 150, done.stdout
    assert f"… {len(big_report.spend_by_project) - ROWS_SHOWN} more projects" in done.stdout
    assert "Tokens and requests by model" in done.stdout


def test_limit_rows_lists_n_rows_of_every_table_and_sums_the_rest(
    big_store: Path, big_report: ReportData, names_file: Path
) -> None:
    """`--limit-rows 3`: every table lists exactly its 3 biggest rows (no slack) and one row for the rest: the
    spends and shares of the rest, the models' combined cost per 1M tokens, and their tokens and requests summed."""
    result = _report(big_store, names_file, "--limit-rows", "3")
    assert result.exit_code == 0, result.output
    out = result.output
    for title, what, rows_of in (
        ("Spend by project", "projects", big_report.spend_by_project),
        ("Spend by line item", "line items", big_report.spend_by_line_item),
    ):
        rows = _table(out, title)
        rest = rows_of[3:]
        assert len(rows) == 4 and rows[-1][0] == f"… {len(rest)} more {what}", title
        assert rows[-1][1][0] == format_money(sum((s.amount for s in rest), Decimal(0)))
    models = _table(out, "Spend by model")
    rest_m = big_report.spend_by_model[3:]
    assert len(models) == 4 and models[-1][0] == f"… {len(rest_m)} more models"
    token_spend = sum((m.token_spend for m in rest_m), Decimal(0))
    tokens = sum((m.tokens for m in rest_m), Decimal(0))
    spend, _, rate = models[-1][1]
    assert spend == format_money(sum((m.amount for m in rest_m), Decimal(0)))
    assert rate == format_money((token_spend * 1_000_000 / tokens).quantize(Decimal("0.000001")), places=4)
    usage = _table(out, "Tokens and requests by model")
    rest_u = big_report.usage_by_model[3:]
    assert len(usage) == 4 and usage[-1][0] == f"… {len(rest_u)} more models"
    assert usage[-1][1] == [
        format_count(sum(u.input_tokens for u in rest_u)),
        format_count(sum(u.output_tokens for u in rest_u)),
        format_count(sum(u.tokens for u in rest_u)),
        format_count(sum(u.requests for u in rest_u)),
    ]
    assert sum(u.tokens for u in rest_u) + sum(u.tokens for u in big_report.usage_by_model[:3]) == (
        big_report.total_tokens
    )
    assert "Long tables list their 3 biggest rows" in out


def test_a_more_row_never_stands_for_one_row(big_store: Path, big_report: ReportData, names_file: Path) -> None:
    """`--limit-rows N` of a table of N + 1 rows lists all N + 1: a "… 1 more project" row would take the line the
    project itself fits in, and hide its name. One row more than that is cut as asked."""
    projects = len(big_report.spend_by_project)
    result = _report(big_store, names_file, "--limit-rows", str(projects - 1))
    assert result.exit_code == 0, result.output
    rows = _table(result.output, "Spend by project")
    assert [label for label, _ in rows] == [_rank(i) for i in range(projects)]
    result = _report(big_store, names_file, "--limit-rows", str(projects - 2))
    rows = _table(result.output, "Spend by project")
    assert [label for label, _ in rows][-2:] == [_rank(projects - 3), "… 2 more projects"]
    assert RowLimit.of(2).split([1, 2, 3]) == ([1, 2, 3], ())
    assert RowLimit.of(2).split([1, 2, 3, 4]) == ([1, 2], [3, 4])


def test_limit_rows_0_lists_every_row(big_store: Path, big_report: ReportData, names_file: Path) -> None:
    """`--limit-rows 0` lists every project and line item, with no "more" row and no note."""
    result = _report(big_store, names_file, "--limit-rows", "0")
    assert result.exit_code == 0, result.output
    projects = _table(result.output, "Spend by project")
    assert [label for label, _ in projects] == [_rank(i) for i in range(len(big_report.spend_by_project))]
    assert len(_table(result.output, "Spend by line item")) == len(big_report.spend_by_line_item)
    assert " more " not in result.output and "Long tables" not in result.output


def test_rows_are_cut_only_past_the_slack_and_ties_keep_the_tables_order() -> None:
    """A table of 30 rows is listed whole (a "more" row for 5 would hide next to nothing), one of 31 shows 25; an
    explicit limit has no slack; the rows listed are the first in the table's order, equals included."""
    assert RowLimit().split(list(range(30))) == (list(range(30)), ())
    shown, rest = RowLimit().split(list(range(31)))
    assert (list(shown), list(rest)) == (list(range(25)), list(range(25, 31)))
    assert RowLimit.of(10).split(list(range(12)))[1] == [10, 11]
    assert RowLimit.of(0).split(list(range(500)))[1] == ()
    assert RowLimit.of(None) == RowLimit(ROWS_SHOWN, ROWS_SLACK)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--limit-rows", "-1"], "--limit-rows: -1 is not in the range x>=0"),
        (["--limit-rows", "abc"], "--limit-rows: 'abc' is not a whole number"),
        (["--limit-rows", ""], "--limit-rows: the value is empty"),
        (["--limit-rows", "5", "--format", "json"], "--limit-rows: the JSON holds every row"),
        (["--limit-rows", "5", "--png", "charts"], "--limit-rows: --png draws charts"),
    ],
)
def test_a_bad_limit_rows_is_one_line_naming_the_option(
    big_store: Path, names_file: Path, args: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A negative, non-numeric or empty `--limit-rows`, or one where nothing it cuts is printed (a JSON document, the
    charts alone): one line naming the option, exit 2, nothing written."""
    monkeypatch.chdir(tmp_path)
    result = _report(big_store, names_file, *args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert said in result.output and "Traceback" not in result.output
    assert not Path("charts").exists()


def test_json_keeps_every_row(big_store: Path, big_report: ReportData, names_file: Path) -> None:
    """`--format json` is for programs: every project and line item, however many."""
    result = _report(big_store, names_file, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert len(doc["spend_by_project"]) == len(big_report.spend_by_project) > ROWS_SHOWN + ROWS_SLACK
    assert len(doc["spend_by_line_item"]) == len(big_report.spend_by_line_item)


def test_by_team_lists_a_big_teams_25_biggest_projects(
    big_store: Path, big_report: ReportData, names_file: Path, tmp_path: Path
) -> None:
    """`--by team`: a team of 40 projects lists its 25 biggest by name and counts the rest; its spend is every one's,
    and the teams still add up to the total."""
    team = [s.key for s in big_report.spend_by_project[:40]]
    config = tmp_path / "usageledger.toml"
    config.write_text("[teams]\nSearch = [" + ", ".join(f'"{p}"' for p in team) + "]\n")
    wide = {"COLUMNS": "4000"}
    result = _report(big_store, names_file, "--by", "team", "--config", str(config), env=wide)
    assert result.exit_code == 0, result.output
    search = next(line for line in result.output.splitlines() if line.startswith("│ Search "))
    names = [_rank(i) for i in range(40)]
    assert f"│ {', '.join(names[:ROWS_SHOWN])}, … 15 more projects" in search
    spend = _money(search.split("│")[2].strip())  # the team's cents apportioned so the teams add up to the total
    assert abs(spend - sum((s.amount for s in big_report.spend_by_project[:40]), Decimal(0))) < Decimal("0.01")
    total = next(line for line in result.output.splitlines() if line.startswith("│ total "))
    assert format_money(big_report.total_spend) in total
    every = _report(big_store, names_file, "--by", "team", "--config", str(config), "--limit-rows", "0", env=wide)
    assert f"│ {', '.join(names)} " in every.output and "more projects" not in every.output


def test_as_of_cuts_its_tables_as_the_report_does(big_store: Path, big_report: ReportData, names_file: Path) -> None:
    """`report --as-of`: the figures the ledger held then (now, after the sync: all of them, rebuilt from the
    revision log, whose times are whole seconds), its long tables cut by the same rule."""
    result = _report(big_store, names_file, "--as-of", str(int(time.time())))
    assert result.exit_code == 0, result.output
    rows = _table(result.output, "Spend by project")
    assert len(rows) == ROWS_SHOWN + 1, result.output
    assert rows[-1][0] == f"… {len(big_report.spend_by_project) - ROWS_SHOWN} more projects"
    assert "As of " in result.output


def test_a_small_org_lists_every_project_and_model(demo_store: Path) -> None:
    """The demo's org (5 projects): its project, model and token tables print as they always did, every
    row; only its line items (more than 30) are cut, as they were (at 20 then, at the one rule's 25 now)."""
    with open_store(demo_store, read_only=True) as db:
        data = build_report(db, Period(TODAY - timedelta(days=29), TODAY + timedelta(days=1)), Scope())
    assert len(data.spend_by_project) <= ROWS_SHOWN and len(data.usage_by_model) <= ROWS_SHOWN

    def text(rows: RowLimit) -> str:
        out = StringIO()
        Console(file=out, width=200, color_system=None).print(render_report(data, Names(), rows=rows))
        return out.getvalue()

    cut, every = text(RowLimit()), text(RowLimit.of(0))
    for title in ("Spend by project", "Spend by model", "Tokens and requests by model"):
        assert _table(cut, title) == _table(every, title)
    items = _table(cut, "Spend by line item")
    assert len(items) == ROWS_SHOWN + 1
    assert items[-1][0] == f"… {len(data.spend_by_line_item) - ROWS_SHOWN} more line items"


def test_the_html_report_folds_by_the_same_rule(browser: Browser, big_report: ReportData) -> None:
    """The page holds every row; its script shows the first rows the report's rule says (25 by default, or the
    `--limit-rows` given, none cut for 0) and a button for the rest."""
    count = len(big_report.spend_by_project)
    for rows, shown in ((RowLimit(), ROWS_SHOWN), (RowLimit.of(3), 3), (RowLimit.of(0), count)):
        page_html = render_html(big_report, Names(), rows=rows)
        context = browser.new_context(offline=True)
        try:
            page = context.new_page()
            page.set_content(page_html)
            body = page.locator("#spend-by-project tbody tr")
            assert body.count() == count
            assert page.locator("#spend-by-project tbody tr:visible").count() == shown
            more = page.locator("#spend-by-project-more")
            assert more.count() == (0 if shown == count else 1)
            if shown != count:
                assert more.inner_text() == f"{count - shown} more"
        finally:
            context.close()


@pytest.mark.parametrize("width", [44, 48, 56])
def test_a_narrow_terminal_wraps_a_more_rows_label_and_never_cuts_it(big_report: ReportData, width: int) -> None:
    """In a terminal too narrow for its label, a "more" row wraps onto a second line: cut to its column's width,
    `… 14 more…` had lost what it counts (`models`), which no other row of the table says."""
    out = StringIO()
    Console(file=out, width=width, color_system=None).print(render_report(big_report, Names(), rows=RowLimit.of(2)))
    labels: list[str] = []  # each bordered row's first cell, a wrapped label's lines joined
    for line in out.getvalue().splitlines():
        if not line.startswith("│"):
            continue
        first, *others = (cell.strip() for cell in line.strip("│").split("│"))
        if labels and not any(others):  # a wrapped label's next line: every other cell is empty
            labels[-1] += " " + first
        else:
            labels.append(first)
    more = [label for label in labels if label.startswith("… ")]
    rest = len(big_report.spend_by_model) - 2
    assert f"… {rest} more models" in more, more
    assert all(re.fullmatch(r"… [\d,]+ more [a-z ]+[a-z]", label) for label in more), more


def test_an_ascii_terminal_keeps_every_row_inside_its_table(big_store: Path) -> None:
    """`PYTHONIOENCODING=ascii` at 44 columns: a label cut to its column ended in rich's `…`, written `...`, and its
    row stuck out two cells past the table's edge; labels wrap whole there, so every line of a table is as wide."""
    argv = ["report", "--store", str(big_store), *SPAN, "--limit-rows", "2"]
    command = [sys.executable, "-c", "from usageledger.cli import main; main()", *argv]
    env = {**os.environ, "COLUMNS": "44", "PYTHONIOENCODING": "ascii"}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    tables: list[set[int]] = [set()]  # the widths of each run of a table's lines
    for line in out.splitlines():
        if line.startswith(("|", "+")):
            tables[-1].add(len(line))
        elif tables[-1]:
            tables.append(set())
    tables = [widths for widths in tables if widths]
    assert tables and all(len(widths) == 1 for widths in tables), out
    assert "..." in out
