"""The dashboard's app over a store synced from the emulator: the API gives the report's document, the filters and
the drill-down add up to SQL sums, a token guards every route but /healthz, the store is never written, and it
answers while a sync writes the store.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import duckdb
import httpx
import psutil
import pytest
from starlette.testclient import TestClient

from usageledger._text import one_line
from usageledger.config import Config
from usageledger.emulator import Emulator
from usageledger.errors import ConfigError, StoreError
from usageledger.report.formatting import format_money
from usageledger.report.names import resolve_names
from usageledger.report.queries import LINE_ITEM_MODEL, Period, build_report
from usageledger.serve import build_app
from usageledger.serve.app import StoreHolder
from usageledger.serve.dashboard import drill_down
from usageledger.store import RunOwner, StreamMark, open_store
from usageledger.store._filelock import writer_pid

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import cli, emulator_process, env, finish, run_cli, sync_args
from fixtures.reports import demo_sync
from fixtures.stores import MIXED_SINCE, mixed_store

CLI = [sys.executable, "-c", "from usageledger.cli import main; main()"]
TOKEN = "t0ken-for-the-serve-tests-0123456789"


@pytest.fixture(scope="module")
def store(demo_command_store: Path) -> str:
    """`usageledger demo`: the emulator synced into a fresh DuckDB store (60 days, every default stream)."""
    return str(demo_command_store)


@pytest.fixture(scope="module")
def period(store: str) -> dict[str, str]:
    """The 30 days that end with the store's last day of costs (the demo syncs up to today)."""
    last = _sql(store, "SELECT max(bucket_start) FROM costs_daily")[0][0].astimezone(UTC).date()
    return {"since": (last - timedelta(days=29)).isoformat(), "until": (last + timedelta(days=1)).isoformat()}


@pytest.fixture(scope="module")
def client(store: str) -> Iterator[TestClient]:
    with TestClient(build_app(store)) as c:
        yield c


def _sql(store: str, sql: str, *params: object) -> Any:
    with duckdb.connect(store, read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def _cli_json(store: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [*CLI, "report", "--store", store, "--format", "json", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def _period_sum(store: str, period: dict[str, str], where: str = "TRUE", *params: object) -> Decimal:
    rows = _sql(
        store,
        "SELECT COALESCE(SUM(amount_value), 0) FROM costs_daily WHERE bucket_start >= ?::TIMESTAMPTZ "
        f"AND bucket_start < ?::TIMESTAMPTZ AND {where}",
        f"{period['since']}T00:00:00Z",
        f"{period['until']}T00:00:00Z",
        *params,
    )
    return Decimal(rows[0][0])


def _a_project(client: TestClient, period: dict[str, str]) -> dict[str, str]:
    projects: list[dict[str, str]] = client.get("/api/filters", params=period).json()["projects"]
    assert len(projects) >= 2, projects
    return projects[1]


def test_api_report_is_the_report_commands_json_document(
    client: TestClient, store: str, period: dict[str, str]
) -> None:
    """/api/report and `report --format json` give the same document, whole, for the same period and filters."""
    project = _a_project(client, period)["id"]
    options = client.get("/api/filters", params=period).json()
    cases: list[dict[str, str]] = [
        period,
        {"since": "14d"},
        {"since": period["since"], "project": project},
        {**period, "team": options["teams"][0], "model": options["models"][1]},
        {**period, "team": "unassigned", "org": "demo"},
    ]
    for params in cases:
        api = client.get("/api/report", params=params)
        assert api.status_code == 200, api.text
        assert api.headers["content-type"].startswith("application/json")
        args = [a for key, value in params.items() for a in (f"--{key}", value)]
        assert api.json() == _cli_json(store, *args), params
    total = Decimal(client.get("/api/report", params=period).json()["totals"]["spend"])
    assert total == _period_sum(store, period) and total > 0


def test_model_team_and_project_filters_are_sql_sums(client: TestClient, store: str, period: dict[str, str]) -> None:
    """Each filter's total is the SQL sum of the rows it names; the projects' spend adds up to the total."""
    base = period
    options = client.get("/api/filters", params=base).json()
    assert options["orgs"] == ["demo"] and options["models"] and "unassigned" in options["teams"]
    assert all(p["name"] for p in options["projects"])
    model = options["models"][0]
    doc = client.get("/api/report", params={**base, "model": model}).json()
    assert doc["scope"]["model"] == model
    assert Decimal(doc["totals"]["spend"]) == _period_sum(
        store, period, f"{LINE_ITEM_MODEL.replace('%s', '?')} = ?", model
    )
    assert {m["model"] for m in doc["spend_by_model"]} == {model}
    whole = client.get("/api/report", params=base).json()
    assert sum(Decimal(p["spend"]) for p in whole["spend_by_project"]) == Decimal(whole["totals"]["spend"])
    by_team: dict[str, Decimal] = {}
    for team in options["teams"]:
        team_doc = client.get("/api/report", params={**base, "team": team})
        assert team_doc.status_code == 200, team_doc.text
        by_team[team] = Decimal(team_doc.json()["totals"]["spend"])
    assert sum(by_team.values()) == Decimal(whole["totals"]["spend"]), by_team
    bad = client.get("/api/report", params={**base, "team": "no such team"})
    assert bad.status_code == 400 and "team" in bad.json()["error"]


def test_the_drill_down_gives_a_projects_models_and_keys(
    client: TestClient, store: str, period: dict[str, str]
) -> None:
    project = _a_project(client, period)
    got = client.get(f"/api/projects/{project['id']}", params=period)
    assert got.status_code == 200, got.text
    doc = got.json()
    assert doc["project"] == {"id": project["id"], "name": project["name"]}
    spend = Decimal(doc["spend"])
    assert spend == _period_sum(store, period, "project_id = ?", project["id"]) and spend > 0
    assert sum(Decimal(m["spend"]) for m in doc["spend_by_model"]) == spend
    assert doc["keys"] and all(k["project"]["id"] == project["id"] for k in doc["keys"])
    page = client.get("/", params={**period, "project": project["id"]})
    assert page.status_code == 200
    assert 'id="drill-models"' in page.text and 'id="drill-keys"' in page.text
    assert doc["keys"][0]["id"] in page.text


def test_the_page_lists_the_projects_once_and_each_links_to_its_drill_down(
    client: TestClient, period: dict[str, str]
) -> None:
    """The page drew "Spend by project" and under it "Drill down: projects", the same rows twice: one table now
    gives each project's spend and share, its name (with its ID when two are alike) a link to its drill-down that keeps
    the page's filters, and the project chosen is linked so too."""
    doc = client.get("/api/report", params=period).json()
    for params in (period, {**period, "project": _a_project(client, period)["id"]}):
        page = client.get("/", params=params).text
        assert 'id="drill-projects"' not in page and page.count("<h2>Spend by project</h2>") == 1
        table = page[page.index('id="spend-by-project"') :]
        body = table[table.index("<tbody>") : table.index("</tbody>")]
        links = re.findall(r'<tr><td><a href="\?([^"]*)">([^<]*)</a></td>', body)
        rows = [p for p in doc["spend_by_project"] if params.get("project") in (None, p["project_id"])]
        wanted = [p for p in rows if p["project_id"] is not None]  # spend of no project has no drill-down
        assert len(links) == len(wanted) and body.count("<tr>") == len(rows) and wanted
        for (query, text), project in zip(links, wanted, strict=True):
            filters = {key: [value] for key, value in period.items()}
            assert parse_qs(html.unescape(query)) == {**filters, "project": [project["project_id"]]}
            assert html.unescape(text) == project["name"]
        followed = client.get("/?" + html.unescape(links[0][0]))
        assert followed.status_code == 200 and 'id="drill-models"' in followed.text


def test_the_drill_downs_keys_are_listed_biggest_first(store: str, period: dict[str, str]) -> None:
    """A project's keys come from `keys`, by status and name; the page shows a long table's first rows only, so
    its key table lists them by spend, then requests, biggest first (a key of unknown spend last, in `keys`' order)."""
    with open_store(store, migrate=False, read_only=True) as db:
        data = build_report(db, Period(date.fromisoformat(period["since"]), date.fromisoformat(period["until"])))

    def key(name: str, spend: str | None, requests: int | None) -> dict[str, Any]:
        return {
            "id": f"key_{name}",
            "name": name,
            "status": "active",
            "spend": spend and Decimal(spend),
            "requests": requests,
        }

    keys = [key("a-ci", "1.50", 10), key("b-prod", "90.25", 4), key("c-old", None, None), key("d-stage", "1.50", 70)]
    project = {"project": {"id": "proj_x", "name": "X"}, "spend_by_model": [], "usage_by_model": [], "keys": keys}
    html_page = drill_down({}, data, project)
    table = html_page[html_page.index('id="drill-keys"') :]
    order = [table.index(f"key_{name}") for name in ("b-prod", "d-stage", "a-ci", "c-old")]
    assert order == sorted(order)


def test_a_project_given_by_its_name_is_read_as_the_command_line_reads_it(
    client: TestClient, store: str, period: dict[str, str], tmp_path: Path
) -> None:
    """`/api/report?project=Search Assistant` (the name the page and /api/filters show) was a 404 "no project" on
    every route: a name is now resolved by the rule of `--project` (case and blanks aside), and a name two projects
    share is a 400 naming both IDs, as `report --project` refuses it; `org` narrows the names it looks in."""
    project = _a_project(client, period)
    loose = f"  {project['name'].upper().replace(' ', '   ')} "
    for route in ("/api/report", "/api/filters"):
        by_name = client.get(route, params={**period, "project": loose})
        assert by_name.status_code == 200, by_name.text
        assert by_name.json() == client.get(route, params={**period, "project": project["id"]}).json(), route
    assert client.get("/api/report", params={"project": loose}).json()["scope"]["project"] == project["id"]
    drill = client.get(f"/api/projects/{loose}", params=period)
    assert drill.status_code == 200, drill.text
    assert drill.json() == client.get(f"/api/projects/{project['id']}", params=period).json()
    page = client.get("/", params={**period, "project": loose})
    assert page.status_code == 200 and 'id="drill-keys"' in page.text
    copied = str(shutil.copy(store, tmp_path / "copy.duckdb"))
    with open_store(copied) as opened:
        (org,) = {o for (o,) in opened.query("SELECT org FROM directory_versions WHERE id = %s", [project["id"]])}
        name = resolve_names(opened, distinct=False).projects[project["id"]]
        opened.execute(
            "INSERT INTO directory_versions SELECT 'org-other', kind, scope, 'proj_elsewhere', name, email, status,"
            " owner_type, owner_id, record, digest, valid_from, valid_to FROM directory_versions WHERE id = %s",
            [project["id"]],
        )
    error = f"project: {name.lower()!r} is the name of 2 projects ({project['id']}, proj_elsewhere); give the ID of one"
    with TestClient(build_app(copied)) as shared:
        for route, params in (
            ("/api/report", {"project": name.lower()}),
            ("/api/filters", {"project": name.lower()}),
            (f"/api/projects/{name.lower()}", {}),
        ):
            got = shared.get(route, params=params)
            assert got.status_code == 400 and got.json() == {"error": error}, (route, got.text)
        page = shared.get("/", params={"project": name.lower()})
        assert page.status_code == 400 and html.escape(error) in page.text
        narrowed = shared.get("/api/report", params={"project": name.lower(), "org": org})
        assert narrowed.status_code == 200 and narrowed.json()["scope"]["project"] == project["id"], narrowed.text


def test_the_dashboard_page_is_self_contained_and_marks_provisional_days(client: TestClient) -> None:
    page = client.get("/", params={"since": "14d"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    # Nothing to fetch: no external src/href/url() (SVG's xmlns names a namespace, it loads nothing).
    assert not re.search(r"""(src|href|action)\s*=\s*["']?(https?:)?//|url\(|<link|@import""", page.text)
    document = client.get("/api/report", params={"since": "14d"}).json()
    assert document["provisional_from"] is not None
    assert f'data-provisional-from="{document["provisional_from"]}"' in page.text
    assert 'class="provisional"' in page.text  # the chart's provisional bars


def test_the_dashboard_shows_this_months_forecast_as_the_report_file_does(client: TestClient) -> None:
    """One card for both (``report.html.outlook``): the page's forecast line holds the API's exact figure."""
    document = client.get("/api/report").json()
    forecast = document["forecast"]
    assert forecast is not None
    page = client.get("/").text
    card = page[page.index('<section class="panel outlook" id="outlook">') :]
    card = card[: card.index("</section>")]
    assert f'data-month-end="{forecast["month_end"]}"' in card
    shown = format_money(Decimal(forecast["month_end"]), document["currency"])
    assert f"Forecast {forecast['month']} {shown} (range " in card
    assert page.count('id="outlook"') == 1 and 'id="outlook-credit"' not in page  # no top-up in this store


def test_healthz_says_the_store_and_the_last_sync(client: TestClient, store: str, period: dict[str, str]) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    body = health.json()
    last = _sql(store, "SELECT max(last_run_at) FROM streams")[0][0]
    assert body["ok"] is True and body["store"] == store and body["streams"] > 0
    assert body["last_sync"] == last.strftime("%Y-%m-%dT%H:%M:%SZ") and body["failing_streams"] == []


def test_healthz_is_not_syncing_for_a_run_whose_process_is_gone(store: str, tmp_path: Path) -> None:
    """A sync killed mid-run (SIGKILL) leaves its run and streams `running`: /healthz said `syncing` until the next
    sync, so the live page said "a sync is running" for as long; it judges the run as `status` does, read-only."""
    killed = tmp_path / "killed.duckdb"
    shutil.copyfile(store, killed)
    child = subprocess.Popen(["true"])
    child.wait()  # a process that is gone: the killed sync
    with open_store(str(killed)) as opened:
        (org, stream) = opened.query("SELECT org, stream FROM streams ORDER BY org, stream LIMIT 1")[0]
        opened.begin_run("killed", at=EMULATOR_NOW, command="sync", owner=RunOwner(child.pid, socket.gethostname()))
        opened.mark_streams([StreamMark(org, stream, "running")], run_id="killed", at=EMULATOR_NOW)
    with TestClient(build_app(str(killed))) as c:
        body = c.get("/healthz").json()
    assert body["syncing"] is False and f"{org}/{stream}" in body["failing_streams"], body
    assert _sql(str(killed), "SELECT status FROM sync_runs WHERE run_id = 'killed'") == [("running",)]  # not written


def test_bad_input_is_one_line_naming_the_parameter(client: TestClient) -> None:
    for params, name in (({"since": "yesterdayish"}, "since"), ({"until": "nope"}, "until")):
        got = client.get("/api/report", params=params)
        assert got.status_code == 400 and got.json()["error"].startswith(f"{name}:"), got.text
    page = client.get("/", params={"since": "2026-11-10", "until": "2026-11-01"})
    assert page.status_code == 400 and "the period is empty" in page.text
    # the web API names its own parameters, not the CLI's flags (it said "--until ... --since")
    empty = client.get("/api/report", params={"since": "2026-11-10", "until": "2026-11-01"})
    assert empty.status_code == 400, empty.text
    assert empty.json()["error"] == (
        "until: the period is empty: 2026-11-01 is not after since 2026-11-10; pass an end after the start"
    )


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("foo=bar", "foo: not a parameter of /api/report; it takes since, until, org, project, team, model"),
        ("as_of=abc", "as_of: not a parameter of /api/report; it takes since, until, org, project, team, model"),
        ("project=a&project=b", "project: given more than once; give it once"),
        ("since=7d&since=14d", "since: given more than once; give it once"),
        ("org=nope", "org: nope holds no data in this store (orgs: demo)"),
    ],
)
def test_an_unknown_repeated_or_unknown_org_parameter_is_refused(client: TestClient, query: str, error: str) -> None:
    """`?foo=bar` and `?as_of=abc` were ignored, `?project=a&project=b` used the last, `?org=nope` answered $0.00:
    each is now a 400 naming the parameter, as the CLI names its flag."""
    got = client.get(f"/api/report?{query}")
    assert got.status_code == 400 and got.json() == {"error": error}, got.text
    page = client.get(f"/?{query}")
    assert page.status_code == 400 and error.split(":", 1)[0] in page.text


def test_filters_and_the_drill_down_refuse_what_the_store_does_not_hold(client: TestClient) -> None:
    """`/api/filters?org=nope` offered the org it was given; `/api/projects/nope` answered 200 with a project named
    nope; the drill-down took filters it never applied (`?model=`)."""
    filters = client.get("/api/filters", params={"org": "nope"})
    assert filters.status_code == 400, filters.text
    assert filters.json() == {"error": "org: nope holds no data in this store (orgs: demo)"}
    assert client.get("/api/filters", params={"org": "demo"}).json()["orgs"] == ["demo"]
    missing = client.get("/api/projects/nope")
    assert missing.status_code == 404, missing.text
    assert missing.json() == {"error": "project: nope is no project in this store; /api/filters lists the projects"}
    assert client.get("/", params={"project": "nope"}).status_code == 404
    project = client.get("/api/filters").json()["projects"][0]["id"]
    assert client.get(f"/api/projects/{project}").status_code == 200
    assert client.get(f"/api/projects/{project}", params={"org": "nope"}).status_code == 400
    ignored = client.get(f"/api/projects/{project}", params={"model": "gpt-4o"})
    assert ignored.status_code == 400 and ignored.json()["error"].startswith("model: not a parameter of /api/projects/")


@pytest.mark.parametrize("route", ["/api/report", "/"])
def test_a_report_of_a_project_the_store_does_not_hold_is_refused(client: TestClient, route: str) -> None:
    """`/api/report?project=nope` answered 200 with $0.00 (a mistyped ID read as a project with no spend) while the
    page and `/api/projects/nope` answered 404: now the API refuses it too, as they do, and a known project passes."""
    for params, where in (({"project": "nope"}, ""), ({"project": "proj_nope", "org": "demo"}, " of org demo")):
        got = client.get(route, params=params)
        assert got.status_code == 404, got.text
        error = f"project: {params['project']} is no project{where} in this store; /api/filters lists the projects"
        assert (got.json() == {"error": error}) if route != "/" else (error in got.text)
    project = client.get("/api/filters").json()["projects"][0]["id"]
    assert client.get(route, params={"project": project}).status_code == 200


@pytest.mark.parametrize("route", ["/api/report", "/"])
def test_a_report_of_a_model_the_store_does_not_hold_is_refused(client: TestClient, route: str) -> None:
    """`/api/report?model=gpt-5` answered 200 with $0.00 (a mistyped model read as one with no spend) where an
    unknown project is a 404: now a model is refused the same way, naming those like it; a base name, which takes
    in its dated snapshots, passes."""
    for model, hint in (("gpt-5", "/api/filters lists the models"), ("GPT-4O", "did you mean gpt-4o-2024-08-06")):
        got = client.get(route, params={"model": model})
        assert got.status_code == 404, got.text
        error = f"model: {model} is no model in this store; {hint}"
        assert got.json()["error"].startswith(error) if route != "/" else (html.escape(error) in got.text)
    assert client.get(route, params={"model": "gpt-4o"}).status_code == 200


@pytest.mark.parametrize("name", ["model", "project", "since"])
def test_a_very_long_value_is_refused_without_echoing_it(client: TestClient, name: str) -> None:
    """A 20,000-character `?model=` came back whole inside the refusal (a 20 KB error line); now it is refused by
    its length, naming the parameter, on the API and the page alike."""
    for route in ("/api/report", "/"):
        got = client.get(route, params={name: "x" * 20_000})
        assert got.status_code == 400, got.text[:200]
        assert len(got.text) < 2_000
        assert f"{name}: 20,000 characters is too long; give at most 256" in got.text


def test_the_filters_refuse_a_project_team_or_model_the_store_does_not_hold(client: TestClient) -> None:
    """`/api/filters?project=nope` (or `team=`, `model=`) answered 200 and offered the typo back among the choices,
    while `/api/report` refused it: now the filters refuse it as the report does, and a known value passes."""
    for params, status, error in (
        ({"project": "nope"}, 404, "project: nope is no project in this store"),
        ({"model": "gpt-5"}, 404, "model: gpt-5 is no model in this store"),
        ({"team": "nope"}, 400, "team: no team is named 'nope'"),
    ):
        got = client.get("/api/filters", params=params)
        assert got.status_code == status, got.text
        assert got.json()["error"].startswith(error), got.text
    options = client.get("/api/filters").json()
    chosen = {"project": options["projects"][0]["id"], "model": options["models"][0], "team": options["teams"][0]}
    assert client.get("/api/filters", params=chosen).status_code == 200


def test_a_store_mixing_synthetic_and_real_orgs_says_so_in_the_api_and_on_the_page(
    tmp_path: Path, emulator: Emulator
) -> None:
    """/api/report and the page added the demo's synthetic org to a real one without a word, where `report` warns on
    stderr: the document carries the same line in `warnings` (it is still `report --format json`'s), and the page
    shows it; read for one org, whose figures are its own, neither does."""
    path = str(mixed_store(tmp_path / "mixed.duckdb", emulator))
    first = datetime.fromtimestamp(MIXED_SINCE, UTC).date()
    period = {"since": first.isoformat(), "until": (first + timedelta(days=6)).isoformat()}
    said = (
        "this store mixes synthetic data (org demo, the demo's org name, from before the registry) with real data, "
        f"and its totals add both; remove the synthetic data with `usageledger demo --remove --store {path}`"
    )
    with TestClient(build_app(path)) as c:
        mixed = c.get("/api/report", params=period)
        one = c.get("/api/report", params={**period, "org": "acme"})
        page = c.get("/", params=period)
        page_one = c.get("/", params={**period, "org": "acme"})
    assert mixed.status_code == 200 and mixed.json()["warnings"] == [said], mixed.text
    assert mixed.json() == _cli_json(path, "--since", period["since"], "--until", period["until"])
    assert one.status_code == 200 and one.json()["warnings"] == []
    assert page.status_code == 200 and page_one.status_code == 200
    shown = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(f"Warning: {said}"))  # the command set as code
    assert "<code>usageledger demo --remove" in shown
    assert '<p class="store-warning" role="alert">' + shown + "</p>" in page.text, page.text[:3000]
    assert 'class="store-warning"' not in page_one.text


def test_the_real_server_refuses_them_over_http(store: str, tmp_path: Path) -> None:
    """The same refusals from `usageledger serve` itself, over a socket (a query string as a browser sends it)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_"))}
    proc, base = _start_serve(["--store", store], clean, tmp_path)
    try:
        answers = {
            path: httpx.get(base + path, timeout=60)
            for path in ("api/report?as_of=abc", "api/report?project=a&project=b", "api/filters?org=nope")
        }
        missing = httpx.get(base + "api/projects/nope", timeout=60)
        # DNS rebinding: a page of evil.example whose name resolves to 127.0.0.1 asks with its own name
        rebound = httpx.get(base + "api/report", headers={"Host": "evil.example:8080"}, timeout=60)
    finally:
        code, _, err = _stop(proc)
    assert code == 0, err
    assert rebound.status_code == 400, rebound.text[:200]
    assert rebound.json()["error"].startswith("host: evil.example:8080 is no loopback name")
    assert {path: (a.status_code, a.json()["error"].split(":", 1)[0]) for path, a in answers.items()} == {
        "api/report?as_of=abc": (400, "as_of"),
        "api/report?project=a&project=b": (400, "project"),
        "api/filters?org=nope": (400, "org"),
    }
    assert missing.status_code == 404 and missing.json()["error"].startswith("project: nope is no project")


def test_on_loopback_without_a_token_a_host_that_is_no_loopback_name_is_refused(store: str) -> None:
    """Served on loopback without a token, the ledger was read by any web page whose name was made to resolve to
    127.0.0.1 (DNS rebinding): the browser sends that name as `Host`, and nothing looked at it. A name that is no
    loopback address is refused on every route, naming it; localhost, 127.0.0.1 and [::1] (with or without a port)
    are served. The name is never resolved (the attacker controls what it resolves to)."""
    with TestClient(build_app(store, loopback_only=True), base_url="http://127.0.0.1:8080") as client:
        for host in ("localhost:8080", "127.0.0.1", "[::1]:8080", "LOCALHOST", "127.0.0.2:9"):
            assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example:8080", "127.0.0.1.nip.io", "localhost.evil.example", "testserver", "[::2]:80"):
            for route in ("/", "/api/report", "/healthz", "/metrics", "/nothing"):
                got = client.get(route, headers={"Host": host})
                assert got.status_code == 400, (host, route, got.text[:200])
                assert got.json()["error"].startswith(f"host: {host} is no loopback name"), got.text
                assert "content-security-policy" in got.headers
    with TestClient(build_app(store)) as open_to_all:  # the library's default: the caller decides
        assert open_to_all.get("/healthz", headers={"Host": "evil.example"}).status_code == 200


def test_a_token_guards_every_route_but_healthz(store: str) -> None:
    with TestClient(build_app(store, token=TOKEN)) as guarded:
        for path in ("/", "/api/report", "/api/filters", "/api/projects/x", "/metrics"):
            assert guarded.get(path).status_code == 401, path
            assert guarded.get(path, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
            assert guarded.get(path, headers={"Authorization": TOKEN}).status_code == 401
        assert guarded.get("/healthz").status_code == 200
        ok = guarded.get("/api/report", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["totals"]["spend"]


def test_serving_never_writes_the_store(store: str) -> None:
    before = hashlib.sha256(Path(store).read_bytes()).hexdigest()
    with TestClient(build_app(store)) as c:
        for path in ("/", "/api/report", "/api/filters", "/healthz"):
            assert c.get(path).status_code == 200
    assert hashlib.sha256(Path(store).read_bytes()).hexdigest() == before
    assert not Path(store + ".wal").exists()


def test_the_command_refuses_a_remote_host_without_the_flag_and_the_token(store: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_"))}
    cases = [
        (["--host", "0.0.0.0"], {}, "--host 0.0.0.0 is not a loopback address"),
        (["--host", "0.0.0.0", "--allow-remote"], {}, "--allow-remote needs a bearer token"),
        (["--host", "0.0.0.0", "--allow-remote"], {"USAGELEDGER_SERVE_TOKEN": "short"}, "shorter than 16"),
        (["--sync-every", "5s"], {}, "--sync-every: '5s' is shorter than 1m; write 1m or more"),
        (["--sync-every", "0m"], {}, "--sync-every: '0m' is a span of zero, which holds nothing; write 1m or more"),
        (["--sync-every", "0"], {}, "--sync-every: 0 has no unit, and a span of zero holds nothing; write 1m or more"),
        (["--sync-every", "soon"], {}, "--sync-every"),
        (["--metrics-labels", "project,colour"], {}, "--metrics-labels: colour is not a label"),
        (["--metrics-labels", ""], {}, "--metrics-labels"),
    ]
    for args, extra, said in cases:
        done = subprocess.run(
            [*CLI, "serve", "--store", store, "--port", "0", *args],
            env={**clean, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )
        remote = args[:2] == ["--host", "0.0.0.0"]  # a refused setting (1), not a refused value (2)
        assert done.returncode == (1 if remote else 2), (args, done.stdout, done.stderr)
        assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("host", "loopback"), [("0.0.0.0", "127.0.0.1"), ("::", "[::1]")])
def test_on_every_interface_it_prints_a_url_to_paste_and_says_where_it_listens(
    store: str, tmp_path: Path, host: str, loopback: str
) -> None:
    """`serve --host 0.0.0.0 --allow-remote` printed "at http://0.0.0.0:8080/" as the address to open, which no
    browser opens. It prints the loopback URL (as `emulator` does), says it listens on every interface and still that
    a bearer token is required; that URL answers."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_"))}
    proc = subprocess.Popen(
        [*CLI, "serve", "--store", store, "--port", "0", "--host", host, "--allow-remote"],
        env={**clean, "USAGELEDGER_SERVE_TOKEN": TOKEN},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f" at http://{loopback}:" in line, (line, proc.poll())
        assert "listening on every interface" in line and "bearer token required" in line, line
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        assert httpx.get(url + "healthz", timeout=30).status_code == 200
        assert httpx.get(url, timeout=30).status_code == 401  # the token still guards the dashboard
        assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).status_code == 200
    finally:
        code, _, err = _stop(proc)
    assert code == 0, err
    assert TOKEN not in line


def test_sync_every_counts_its_first_syncs_requests_at_start_up(tmp_path: Path) -> None:
    """`serve --sync-every` ran its sync child without the request estimate `sync` and `query` apply: a `[sync] since`
    decades back started a child refused every interval (or, allowed, thousands of requests) behind a dashboard
    nobody watches. The first sync is now counted at start-up by the one rule: refused in one line naming
    sync.since and --allow-many-requests, leaving no store behind; --allow-many-requests goes on to the child."""
    from usageledger.serve.runner import sync_argv

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_"))}
    config = tmp_path / "usageledger.toml"
    config.write_text('[sync]\nsince = "9000d"\n', encoding="utf-8")
    store = tmp_path / "fresh.duckdb"
    for extra, said in (
        (["--sync-every", "1h"], "error: sync.since: this sync would take up to "),
        (["--allow-many-requests"], "error: --allow-many-requests: it is for --sync-every's syncs"),
    ):
        done = subprocess.run(
            [*CLI, "serve", "--store", str(store), "--config", str(config), "--port", "0", *extra],
            env=clean,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(said) and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "--sync-every" not in extra or "pass --allow-many-requests to send them" in done.stderr
        assert not list(tmp_path.glob("fresh.duckdb*"))
    assert sync_argv(config, allow_many_requests=True)[-1] == "--allow-many-requests"
    assert "--allow-many-requests" not in sync_argv(config)


@pytest.mark.parametrize("where", ["estimate", "app", "listen"])
def test_any_refusal_at_start_up_leaves_no_store_serve_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """`serve --sync-every` makes a new store for its periodic sync to fill, then counts the first sync's requests,
    builds the app and listens: only the estimate's refusal removed the store, so a config error met there (a
    [[streams]] the sync refuses), after it, or a taken port left an empty DuckDB file (and its lock files) that the
    next command read as a ledger with no data. Every refusal before the server listens now removes what this run
    made; a store already there is kept."""
    from typer.testing import CliRunner

    import usageledger.serve
    from usageledger.cli import app, commands_serve

    def refuse(*_: object, **__: object) -> None:
        raise ConfigError("usageledger.toml: streams[1].group_by: refused by the sync")

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1] if where == "listen" else 0
    said = f"error: cannot listen on 127.0.0.1:{port}: " if where == "listen" else "error: usageledger.toml: streams"
    if where != "listen":  # the estimate as serve imported it; the app builder where serve's start-up imports it
        owner, name = (
            (commands_serve, "configured_sync_estimate") if where == "estimate" else (usageledger.serve, "build_app")
        )
        monkeypatch.setattr(owner, name, refuse)
    store = tmp_path / "fresh.duckdb"
    args = ["serve", "--store", str(store), "--port", str(port), "--sync-every", "1h"]
    with taken:
        result = CliRunner().invoke(app, args, env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY})
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(said) and len(result.stderr.splitlines()) == 1, result.stderr
    assert not list(tmp_path.glob("fresh.duckdb*"))
    if where == "listen":
        return  # the port is free again: a store already there is kept, as checked by the other two
    with open_store(store):  # one there before: refused the same, and kept
        pass
    result = CliRunner().invoke(app, args, env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY})
    assert result.exit_code == 1 and store.exists(), result.output


def _start_serve(args: list[str], environment: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*cli(), "serve", "--port", "0", *args],
        env=environment,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert " at http://127.0.0.1:" in line, (line, proc.poll())
    return proc, line.split(" at ", 1)[1].split(" ", 1)[0]


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=90)
    return proc.returncode, out, err


def test_it_answers_while_a_sync_writes_the_store(tmp_path: Path) -> None:
    """A real server and a real sync on one DuckDB store: pages and the API answer during the sync, which goes on
    and succeeds; SIGTERM stops the server with exit code 0."""
    store = str(tmp_path / "busy.duckdb")
    with emulator_process("--latency", "100ms") as url:
        code, _, err = finish(run_cli([*cli(), *sync_args(store, "--since", "5d")], url, tmp_path))
        assert code == 0, err
        server, base = _start_serve(["--store", store], env(url), tmp_path)
        try:
            sync = run_cli([*cli(), *sync_args(store, "--concurrency", "1")], url, tmp_path)
            try:
                deadline = time.monotonic() + 60
                while writer_pid(store) != sync.pid:
                    assert sync.poll() is None and time.monotonic() < deadline, sync.communicate()
                    time.sleep(0.05)
                for path in ("api/report?since=2026-10-01&until=2026-11-21", "healthz", ""):
                    got = httpx.get(base + path, timeout=60)
                    assert got.status_code == 200, (path, got.text)
                assert sync.poll() is None, "the reads must have run while the sync was still writing"
            finally:
                code, _, err = finish(sync)
            assert code == 0, err
            after = httpx.get(base + "api/report?since=2026-10-01&until=2026-11-21", timeout=60).json()
            assert Decimal(after["totals"]["spend"]) > 0
        finally:
            code, _, err = _stop(server)
        assert code == 0, err


def test_sync_every_keeps_the_ledger_fresh_and_never_shows_the_key(tmp_path: Path) -> None:
    """--sync-every runs a sync at once (then every interval) from the same process; the key is nowhere. A store
    that does not exist yet is made empty for it (it was refused: "run `usageledger sync` to create it", though the
    periodic sync was about to), and the dashboard answers while the first sync runs."""
    store = str(tmp_path / "fresh.duckdb")
    with emulator_process() as url:
        server, base = _start_serve(["--store", store, "--sync-every", "1h"], env(url), tmp_path)
        try:
            deadline = time.monotonic() + 120
            while True:
                health = httpx.get(base + "healthz", timeout=30).json()
                if health["last_sync"] is not None and not health["syncing"]:
                    break
                assert server.poll() is None and time.monotonic() < deadline, "no sync ran"
                time.sleep(0.2)
            pages = [httpx.get(base + path, timeout=60).text for path in ("", "api/report", "healthz")]
            # The sync child has recorded its run; let it exit (it still refreshes the directory, and a writer lets
            # the store go between its calls, so the store's lock is no sign that it is done: its process is).
            while psutil.Process(server.pid).children(recursive=True):
                assert time.monotonic() < deadline, "the sync child never exited"
                time.sleep(0.1)
        finally:
            code, out, err = _stop(server)
        assert code == 0, err
        assert "sync: ok" in err, err
        for text in (out, err, *pages):
            assert FAKE_ADMIN_KEY not in text


@pytest.mark.parametrize("program", ["missing", "mode 0644"])
def test_periodic_sync_whose_child_cannot_start_says_one_line_and_tries_again(
    program: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync child that cannot be launched (its program missing, or a file this user may not execute) killed the
    periodic sync's thread with a traceback, and no later interval synced. Now it is one line on stderr like a failed
    sync's, and the next interval runs: once the program is there and executable, that sync is ok."""
    from usageledger.serve.runner import PeriodicSync

    died: list[BaseException | None] = []
    monkeypatch.setattr("threading.excepthook", lambda args: died.append(args.exc_value))
    sync = tmp_path / "sync"
    if program == "mode 0644":
        sync.write_text("#!/bin/sh\nexit 0\n")
        sync.chmod(0o644)
    reason = {
        "missing": "No such file or directory; check that it exists",
        "mode 0644": "Permission denied; check that this user may execute it",
    }[program]
    said: list[str] = []

    def say(text: str) -> None:
        print(text, file=sys.stderr)
        said.append(text)

    periodic = PeriodicSync([str(sync)], 0.05, store_url=str(tmp_path / "none.duckdb"), say=say)
    periodic.start()
    try:
        deadline = time.monotonic() + 30
        while len(said) < 2:  # the first run and a later interval's
            assert not died and time.monotonic() < deadline, f"no second try: {said} {died}"
            time.sleep(0.02)
        ready = tmp_path / "ready"  # put in place whole: a tick between writing and chmod would fail otherwise
        ready.write_text("#!/bin/sh\nexit 0\n")
        ready.chmod(0o755)
        ready.replace(sync)
        while "sync: ok" not in said:
            assert not died and time.monotonic() < deadline, f"no sync once the program is there: {said} {died}"
            time.sleep(0.02)
    finally:
        periodic.stop()
    failed = said[: said.index("sync: ok")]
    assert len(failed) >= 2 and set(failed) == {f"sync: could not start {sync}: {reason}"}, said
    err = capsys.readouterr().err
    assert not died and "Traceback" not in err, err
    assert err.splitlines() == said


def test_the_api_gives_the_same_figures_on_postgres(demo_store: Path, emulator_url: str, migrated_pg_url: str) -> None:
    """The same sync into DuckDB and PostgreSQL: every API answer, filters included, is equal on both. The DuckDB side
    is this module's copy of the demo store, which is that sync (``fixtures.reports.demo_sync``) made once a run; the
    app never writes it."""
    duck_path = str(demo_store)
    with open_store(migrated_pg_url) as target:
        demo_sync(target, emulator_url)
    day = datetime.fromtimestamp(EMULATOR_NOW, UTC).date()
    period = {"since": (day - timedelta(days=29)).isoformat(), "until": (day + timedelta(days=1)).isoformat()}
    with TestClient(build_app(duck_path)) as duck, TestClient(build_app(migrated_pg_url)) as pg:
        options = duck.get("/api/filters", params=period).json()
        assert pg.get("/api/filters", params=period).json() == options
        project = options["projects"][0]["id"]
        queries = [
            ("/api/report", period),
            ("/api/report", {**period, "model": options["models"][0]}),
            ("/api/report", {**period, "team": options["teams"][0]}),
            ("/api/report", {**period, "project": project, "org": options["orgs"][0]}),
            (f"/api/projects/{project}", period),
        ]
        for path, params in queries:
            on_duck, on_pg = duck.get(path, params=params), pg.get(path, params=params)
            assert on_duck.status_code == on_pg.status_code == 200, (path, params, on_pg.text)
            assert on_pg.json() == on_duck.json(), (path, params)
        assert Decimal(duck.get("/api/report", params=period).json()["totals"]["spend"]) > 0
        assert pg.get("/healthz").json()["ok"] is True


def test_serve_exposes_prometheus_metrics_with_project_names(store: str, tmp_path: Path) -> None:
    """The real command: `/metrics` parses with prometheus_client, its spend is labelled with project IDs and names
    and adds up to the store's month to date, it has a last-sync time per stream, and `--metrics-labels` drops the
    other labels; OpenMetrics when asked for."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
    from prometheus_client.parser import text_string_to_metric_families

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_"))}
    proc, address = _start_serve(["--store", store, "--metrics-labels", "project"], clean, tmp_path)
    try:
        scraped = httpx.get(f"{address}metrics", timeout=60)
        asked = httpx.get(
            f"{address}metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=60
        )
    finally:
        code, _, err = _stop(proc)
    assert code == 0, err
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    cost = families["usageledger_month_to_date_cost_usd"]
    assert cost.type == "gauge" and cost.samples
    assert all(set(s.labels) == {"project_id", "project_name"} for s in cost.samples)
    assert any(s.labels["project_name"] not in ("", s.labels["project_id"]) for s in cost.samples)
    synced = families["usageledger_last_sync_timestamp_seconds"].samples
    assert synced and all(s.value > 1.6e9 for s in synced)
    month_start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    (expected,) = _sql(
        store,
        "SELECT sum(amount_value) FROM costs_daily WHERE bucket_start >= ? AND lower(currency) = 'usd'",
        month_start,
    )[0]
    assert abs(sum(s.value for s in cost.samples) - float(expected or 0)) < 0.01
    assert asked.status_code == 200 and asked.headers["content-type"].startswith("application/openmetrics-text")
    assert "usageledger_month_to_date_cost_usd" in {f.name for f in parse_openmetrics(asked.text)}


def test_metrics_name_projects_as_the_dashboard_does(store: str) -> None:
    """`/metrics` labelled projects with the directory's names only, while the page and the API used the config's
    `[names]` over them: one project, two names. Now they agree, and a name with a quote, a backslash, a newline
    (shown as its escape, as every name is: one line) and non-ASCII comes back whole from both exposition formats."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
    from prometheus_client.parser import text_string_to_metric_families

    with TestClient(build_app(store)) as plain:
        project = plain.get("/api/filters").json()["projects"][0]["id"]
    name = 'Dat"a \\ Pipe\nline <b>é€🚀</b>'
    settings = Config(names={"projects": {project: name}})
    with TestClient(build_app(store, config=settings)) as client:
        listed = {p["id"]: p["name"] for p in client.get("/api/filters").json()["projects"]}
        text = client.get("/metrics").text
        om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}).text
    shown = one_line(name)
    assert listed[project] == shown and "\n" not in shown
    for families in (text_string_to_metric_families(text), parse_openmetrics(om)):
        samples = [s for f in families if f.name == "usageledger_month_to_date_cost_usd" for s in f.samples]
        assert samples
        assert {s.labels["project_name"] for s in samples if s.labels["project_id"] == project} == {shown}


def test_an_empty_store_says_there_is_no_spend_not_that_it_is_new(tmp_path: Path) -> None:
    """A store nothing was synced into yet said "$0.00, new against the previous 30 days" under the Spend card, as if
    spend had appeared: with no spend in either period it says so."""
    url = str(tmp_path / "empty.duckdb")
    open_store(url).close()
    with TestClient(build_app(url)) as client:
        page = client.get("/")
        document = client.get("/api/report").json()
    assert page.status_code == 200, page.text
    assert "no spend in this period or the previous 30 days" in page.text
    assert "new against" not in page.text
    assert document["totals"]["spend"] == "0"


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/api/nothing", 404, "path: /api/nothing is not a route of this server; the routes: /, /api/report"),
        ("GET", "/api/projects/", 404, "project: /api/projects/ names no project ID; use /api/projects/ID"),
        ("POST", "/api/report", 405, "method: POST is not served at /api/report; use GET"),
    ],
)
def test_a_path_or_method_no_route_serves_is_one_json_line(
    client: TestClient, method: str, path: str, status: int, error: str
) -> None:
    """A mistyped route, a project ID left out and a POST got Starlette's plain-text `Not Found` / `Method Not
    Allowed`, unlike every other refusal of the API: now one JSON line naming what is wrong."""
    got = client.request(method, path)
    assert got.status_code == status
    assert got.headers["content-type"] == "application/json"
    assert got.json()["error"].startswith(error), got.text


def test_a_very_long_project_id_or_path_is_refused_without_echoing_it(client: TestClient) -> None:
    """`/api/projects/<60,000 characters>` was looked up and echoed whole in its 404, as was a path no route serves
    (masking it for secrets then held the event loop for minutes): the ID is refused by its length, as `?project=`
    is, and a path is named by its first 200 characters."""
    got = client.get("/api/projects/" + "p" * 20_000)
    assert got.status_code == 400 and len(got.text) < 400, got.text[:200]
    assert got.json()["error"] == "project: 20,000 characters is too long; give at most 256"
    for method, status in (("GET", 404), ("POST", 404), ("DELETE", 404)):
        got = client.request(method, "/nothing/" + "p" * 20_000)
        assert got.status_code == status and len(got.text) < 600, got.text[:200]
        assert got.json()["error"].startswith("path: /nothing/" + "p" * 190), got.text[:300]


def test_healthz_refuses_a_parameter_as_every_route_does(client: TestClient) -> None:
    """`/healthz?verbose=1` (or `?org=acme`) was answered as if it meant something, the one route that let a parameter
    pass; it is refused naming it, in JSON with `ok: false`."""
    for query in ("verbose=1", "org=acme", "=x"):
        got = client.get(f"/healthz?{query}")
        assert got.status_code == 400 and got.json()["ok"] is False, got.text
        assert "not a parameter of /healthz; it takes no parameters" in got.json()["error"]
    assert client.get("/healthz").json()["ok"] is True


def test_a_store_replaced_or_deleted_while_served_is_read_as_it_is_now(store: str, tmp_path: Path) -> None:
    """The held DuckDB file was kept while requests came less than a second apart, so a store restored from a backup
    or deleted was never seen: `/healthz` said `ok` with the old streams after the file was gone. Each request now
    reads the file the path names (the hold here is an hour: only the path can make it let go)."""
    served = tmp_path / "served.duckdb"
    shutil.copyfile(store, served)
    empty = tmp_path / "empty.duckdb"
    open_store(str(empty)).close()
    holder = StoreHolder(str(served), idle=3600)
    try:
        with holder.reading() as db:
            assert len(db.stream_states()) > 0
        os.replace(empty, served)  # `mv empty.duckdb served.duckdb`: a restore, or a store set up afresh
        with holder.reading() as db:
            assert db.stream_states() == []
        served.unlink()
        with pytest.raises(StoreError, match="no store at"), holder.reading():
            pass
        shutil.copyfile(store, served)
        with holder.reading() as db:
            assert len(db.stream_states()) > 0
    finally:
        holder.close()


def test_metrics_refuse_a_parameter_and_a_long_or_missing_name_is_shown_short(client: TestClient) -> None:
    """`/metrics?org=acme` answered every org's series, as if filtered; a parameter of 20,000 characters with no
    value (a value pasted without `name=`) came back whole in the refusal; `?=x` was refused as ": not a
    parameter". The first is a 400 naming the parameter, the others name it short."""
    got = client.get("/metrics?org=acme")
    assert got.status_code == 400 and got.headers["content-type"].startswith("text/plain")
    assert got.text == (
        "error: org: /metrics takes no parameters; it gives every org, project, model and line item, each as a "
        "label: filter by label in the query that reads it\n"
    )
    assert client.get("/metrics").status_code == 200
    for route in ("/api/report", "/metrics"):
        long = client.get(f"{route}?{'x' * 20_000}")
        assert long.status_code == 400 and len(long.text) < 400 and "x" * 39 + "…:" in long.text, long.text[:200]
        nameless = client.get(f"{route}?=x")
        assert nameless.status_code == 400 and "(a parameter with no name):" in nameless.text, nameless.text
