"""Every surface that shows spend tells the store's figures, on an organisation named as a big one is.

The org (``names="world"``) has projects named alike but for case or spaces (``Search Assistant``, ``search
assistant``, ``SEARCH ASSISTANT``, ``Search  Assistant``, ``Search Assistant ``), CJK, emoji and right-to-left names,
archived projects that spent in the month, and a project in two groups. For one closed month, the report (JSON and
``--by team``), the statements (JSON and CSV), the FOCUS export, the forecast, the dashboard's ``/api/report``, the
MCP tools and, for the month to date, ``/metrics``: each project's spend, each model's and the total equal what the
store's ``costs_daily`` holds, to the digit where the surface gives exact amounts and to the cent where it rounds, and
no two projects' spend is ever merged by a name they share.

A 300-project org checked the same way, every surface, on DuckDB and PostgreSQL, agreed to the digit (see the
sweep's report); this keeps a smaller one checked, so a change cannot make the surfaces drift apart.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from usageledger._text import name_key
from usageledger.cli import app
from usageledger.config import Config
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.mcp_tools import LedgerTools
from usageledger.serve import build_app
from usageledger.store import BaseStore, open_existing_store

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

WORLD = EmulatorConfig(seed=11, days=60, projects=30, users=5, keys=2, archived=3, names="world", now=EMULATOR_NOW)
"""60 days of history up to 2026-11-20: the three archived projects stop spending a third of the way in, in October."""
MONTH, SINCE, UNTIL = "2026-10", "2026-10-01", "2026-11-01"
MONTH_START = "2026-11-01"
"""The first day of the month ``/metrics`` gives to date at ``EMULATOR_NOW``."""
CENT = Decimal("0.01")

Sums = dict[str | None, Decimal]


@dataclass(frozen=True)
class Ledger:
    """The synced store and what it holds: spend per project and per model in the month, and per project in the
    month to date, summed by SQL over ``costs_daily``; each project's name and status in the directory."""

    url: str
    by_project: Sums
    by_model: Sums
    to_date: Sums
    names: dict[str, str]
    archived: frozenset[str]

    @property
    def total(self) -> Decimal:
        return sum(self.by_project.values(), Decimal(0))

    @property
    def shown(self) -> dict[str, str]:
        """Each project's name as the report and ``/metrics`` give it: the directory's, with its status if archived."""
        return {p: f"{n} (archived)" if p in self.archived else n for p, n in self.names.items()}


def _sums(store: BaseStore, column: str, since: str, until: str) -> Sums:
    sql = (
        f"SELECT {column}, SUM(amount_value) FROM costs_daily WHERE bucket_start >= %s AND bucket_start < %s GROUP BY 1"
    )
    bounds = [datetime.fromisoformat(f"{day}T00:00:00+00:00") for day in (since, until)]
    return {key: Decimal(amount) for key, amount in store.query(sql, bounds)}


def _by_model(by_line_item: Sums) -> Sums:
    """Spend per model, the model being what a line item names before its first ", " (``"gpt-4o, input"``); none
    for a line item without one (``"file search tool calls"``). Worked out here, apart from the package's rule."""
    out: Sums = {}
    for line_item, amount in by_line_item.items():
        model, comma, _ = (line_item or "").partition(", ")
        key = model if comma else None
        out[key] = out.get(key, Decimal(0)) + amount
    return out


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    """The world org's costs and directory synced by `usageledger sync` from the emulator over loopback."""
    url = str(tmp_path_factory.mktemp("world") / "ledger.duckdb")
    with run_server(Emulator(WORLD)) as base_url:
        env = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": base_url}
        done = CliRunner().invoke(
            app, ["sync", "--store", url, "--since", "60d", "-e", "costs", "--now", str(EMULATOR_NOW), "-q"], env=env
        )
        assert done.exit_code == 0, done.output
    with open_existing_store(url) as store:
        directory = store.query("SELECT id, name, status FROM directory_projects")
        return Ledger(
            url=url,
            by_project=_sums(store, "project_id", SINCE, UNTIL),
            by_model=_by_model(_sums(store, "line_item", SINCE, UNTIL)),
            to_date=_sums(store, "project_id", MONTH_START, "2026-12-01"),
            names={pid: name for pid, name, _ in directory},
            archived=frozenset(pid for pid, _, status in directory if status == "archived"),
        )


def _cli(*args: str) -> str:
    done = CliRunner().invoke(app, list(args))
    assert done.exit_code == 0, done.output
    return done.stdout


def _json(*args: str) -> Any:
    return json.loads(_cli(*args, "--format", "json"))


def _spend(rows: list[dict[str, Any]], key: str, value: str = "spend") -> Sums:
    out: Sums = {}
    for row in rows:
        out[row[key]] = out.get(row[key], Decimal(0)) + Decimal(str(row[value]))
    return out


def _near(got: Sums, want: Sums, within: Decimal) -> bool:
    return got.keys() == want.keys() and all(abs(got[k] - want[k]) <= within for k in want)


def test_the_org_is_one_that_could_merge_or_lose_spend(ledger: Ledger) -> None:
    """What makes the other tests worth their salt: projects alike but for case or spaces, archived ones, each with
    spend of its own in the month (no project of the store is without an ID)."""
    alike = [pid for pid in ledger.by_project if pid and name_key(ledger.names[pid]) == "search assistant"]
    assert len(alike) == 5 and len({ledger.names[pid] for pid in alike}) == 5
    assert all(ledger.by_project[pid] > 0 for pid in alike)
    assert ledger.archived and all(ledger.by_project.get(pid, Decimal(0)) > 0 for pid in ledger.archived)
    assert None not in ledger.by_project and len(ledger.by_project) == WORLD.projects


def test_the_report_and_its_teams_give_the_store_figures(ledger: Ledger) -> None:
    """`report --format json`: the total, each project's and each model's spend exactly; `report --by team`: each
    project in one team, each team the sum of its projects, the teams the total."""
    period = ["--store", ledger.url, "--since", SINCE, "--until", UNTIL]
    report = _json("report", *period)
    assert Decimal(report["totals"]["spend"]) == ledger.total
    assert _spend(report["spend_by_project"], "project_id") == ledger.by_project
    assert _spend(report["spend_by_model"], "model") == ledger.by_model
    shown = {r["project_id"]: r["name"] for r in report["spend_by_project"]}
    assert shown == ledger.shown
    teams = _json("report", *period, "--by", "team")["spend_by_team"]
    members = [p["project_id"] for team in teams for p in team["projects"]]
    assert sorted(members) == sorted(ledger.by_project)  # each once: the project of two groups too
    for team in teams:
        own = sum((ledger.by_project[p["project_id"]] for p in team["projects"]), Decimal(0))
        assert Decimal(team["spend"]) == own, team["team"]
    assert sum((Decimal(team["spend"]) for team in teams), Decimal(0)) == ledger.total


def test_the_statements_and_their_csv_give_the_store_figures(ledger: Ledger, tmp_path: Path) -> None:
    """`statement --by project`: each statement's exact lines are its project's spend, its total that to the cent,
    the statements the month's total to the cent; its lines per model are each model's spend; the CSV's lines add up
    to the same statements."""
    out = tmp_path / "statements.csv"
    document = _json("statement", MONTH, "--store", ledger.url, "--by", "project", "--csv", str(out))
    statements = document["statements"]
    assert Decimal(document["exact_total"]) == ledger.total and document["adds_up"] is True
    exact = {s["owner"]: sum((Decimal(x["exact"]) for x in s["lines"]), Decimal(0)) for s in statements}
    assert exact == ledger.by_project
    assert _near({s["owner"]: Decimal(s["total"]) for s in statements}, ledger.by_project, CENT)
    assert sum((Decimal(s["total"]) for s in statements), Decimal(0)) == ledger.total.quantize(CENT)
    lines = [x for s in statements for x in s["lines"] if not x["shared"]]
    assert _spend(lines, "model", "exact") == ledger.by_model
    with out.open(newline="", encoding="utf-8") as f:
        written = [row for row in csv.DictReader(f) if row["kind"] == "direct"]
    names = {(row["owner"], row["name"]) for row in written}  # a name of its own per project, never shared
    assert len(names) == len({name for _, name in names}) == len(ledger.by_project)
    assert all(name.startswith(ledger.names[str(owner)]) for owner, name in names)
    assert _spend(written, "owner", "amount") == {s["owner"]: Decimal(s["total"]) for s in statements}


def test_the_focus_export_and_the_forecast_give_the_store_figures(ledger: Ledger, tmp_path: Path) -> None:
    """`export --format focus`: each SubAccountId's BilledCost adds up to its project's spend, named as the
    directory names it; `forecast --by project` of the closed month: each project's spend to date, to the cent."""
    out = tmp_path / "focus.csv"
    _cli("export", "--store", ledger.url, "--format", "focus", "--since", SINCE, "--until", UNTIL, "-o", str(out))
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert _spend(rows, "SubAccountId", "BilledCost") == ledger.by_project
    assert {row["SubAccountId"]: row["SubAccountName"] for row in rows} == ledger.names
    forecast = _json("forecast", "--store", ledger.url, "--month", MONTH, "--by", "project")
    assert Decimal(forecast["actual_to_date"]) == ledger.total.quantize(CENT)
    assert _near(_spend(forecast["groups"], "project", "actual_to_date"), ledger.by_project, CENT / 2)


def test_the_dashboard_metrics_and_mcp_tools_give_the_store_figures(ledger: Ledger) -> None:
    """The dashboard's `/api/report` and the MCP tools' spend by project and by model, exactly; `/metrics`' month
    to date, summed over each project's series (floats, to 1e-9; 0 for a project with none this month), named as the
    directory names each."""
    now = datetime.fromtimestamp(EMULATOR_NOW, UTC)
    with TestClient(build_app(ledger.url, now=lambda: now)) as client:
        answer = client.get("/api/report", params={"since": SINCE, "until": UNTIL})
        page = client.get("/metrics")
    assert answer.status_code == 200 and page.status_code == 200, (answer.text, page.text[:300])
    assert _spend(answer.json()["spend_by_project"], "project_id") == ledger.by_project
    assert _spend(answer.json()["spend_by_model"], "model") == ledger.by_model
    scraped: Sums = {}
    named: dict[str, str] = {}
    for labels, value in _samples(page.text, "usageledger_month_to_date_cost_usd"):
        scraped[labels["project_id"]] = scraped.get(labels["project_id"], Decimal(0)) + value
        named[labels["project_id"]] = labels["project_name"]
    # a project with spend in the store's window but none this month keeps its series, at 0
    assert set(ledger.to_date) <= set(scraped) and any(not v for v in scraped.values())
    assert _near(scraped, {pid: ledger.to_date.get(pid, Decimal(0)) for pid in scraped}, Decimal("1e-9"))
    assert named == {pid: ledger.shown[str(pid)] for pid in scraped}

    def reading() -> Any:
        return open_existing_store(ledger.url)

    tools = LedgerTools(reading, Config(), clock=lambda: now)
    by_project = tools.spend(SINCE, UNTIL, "project")
    assert Decimal(by_project["total"]) == ledger.total
    assert _spend(by_project["rows"], "project_id") == ledger.by_project
    assert _spend(tools.spend(SINCE, UNTIL, "model")["rows"], "model") == ledger.by_model


def _samples(page: str, family: str) -> Iterator[tuple[dict[str, str], Decimal]]:
    """The samples of ``family`` on a Prometheus text page: their labels (unescaped) and values."""
    for line in page.splitlines():
        if not line.startswith(family + "{"):
            continue
        body, value = line[len(family) + 1 :].rsplit("} ", 1)
        labels: dict[str, str] = {}
        while body:
            key, rest = body.split('="', 1)
            chars: list[str] = []
            i = 0
            while rest[i] != '"':
                if rest[i] == "\\":
                    i += 1
                    chars.append({"n": "\n"}.get(rest[i], rest[i]))
                else:
                    chars.append(rest[i])
                i += 1
            labels[key] = "".join(chars)
            body = rest[i + 1 :].removeprefix(",")
        yield labels, Decimal(value)
