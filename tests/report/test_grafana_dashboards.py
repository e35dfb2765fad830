"""The Grafana dashboards under ``contrib/grafana/``: every PostgreSQL panel query runs against a PostgreSQL store
synced from the emulator (after Grafana's macro substitution, documented in ``contrib/grafana/README.md``), and the
Prometheus dashboard asks only for metrics that ``render_metrics`` emits. The same PostgreSQL store also serves the
metrics and the MCP tools, which must run there as on DuckDB."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.config import Config
from usageledger.emulator import Emulator
from usageledger.mcp_tools import LedgerTools
from usageledger.report.metrics import METRIC_NAMES, render_metrics
from usageledger.store import BaseStore, open_existing_store

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.stores import mixed_store

GRAFANA = Path(__file__).resolve().parents[2] / "contrib" / "grafana"
NOW = datetime.fromtimestamp(EMULATOR_NOW, UTC)
FROM = NOW - timedelta(days=30)


def _dashboard(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((GRAFANA / name).read_text(encoding="utf-8"))
    return doc


def _targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for panel in doc["panels"] for t in panel["targets"]]


def substitute(sql: str, *, start: datetime, end: datetime, orgs: list[str]) -> str:
    """Grafana's macros and variables as Grafana's PostgreSQL data source expands them (see the README's table)."""
    frm, to = (f"'{t.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'" for t in (start, end))
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN {frm} AND {to}", sql)
    sql = sql.replace("$__timeFrom()", frm).replace("$__timeTo()", to)
    sql = sql.replace("$org", ", ".join("'" + o.replace("'", "''") + "'" for o in orgs))
    assert "$" not in sql, f"a macro or variable is left unsubstituted: {sql}"
    return sql


@pytest.fixture(scope="module")
def pg_store(emulator_url: str, postgres_url: str) -> Iterator[BaseStore]:
    """A PostgreSQL store after one `usageledger sync` from the emulator: usage, costs and the directory. One sync
    restates nothing, so the revision log holds inserts only and the restatement panel is empty (it must still run)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
        result = CliRunner().invoke(
            app,
            ["sync", "--store", postgres_url, "--now", str(EMULATOR_NOW), "--base-url", emulator_url, "--since", "35d"],
        )
    assert result.exit_code == 0, result.output
    with open_existing_store(postgres_url) as store:
        yield store


@pytest.mark.postgres
def test_every_postgres_panel_query_runs_on_a_synced_store(pg_store: BaseStore) -> None:
    doc = _dashboard("usageledger-postgres.json")
    orgs = [row[0] for row in pg_store.query(doc["templating"]["list"][1]["query"])]
    assert orgs == ["default"]
    targets = _targets(doc)
    assert len(targets) >= 8
    empty = []
    for target in targets:
        assert target["rawQuery"] is True and target["format"] in ("table", "time_series")
        # The runs are recorded on the wall clock, not `--now` (docs/CONTRACTS.md, "Two clocks"): their panel's
        # range is the real last day, as Grafana's is; the data's is the emulator's 30 days.
        runs = "FROM sync_runs" in target["rawSql"]
        start, end = (datetime.now(UTC) - timedelta(days=1), datetime.now(UTC)) if runs else (FROM, NOW)
        rows = pg_store.query(substitute(target["rawSql"], start=start, end=end, orgs=orgs))
        if not rows:
            empty.append(target["rawSql"])
    # Only the restatement panel may be empty: one sync restates nothing.
    assert all("FROM revisions" in sql for sql in empty), empty


@pytest.mark.postgres
def test_spend_panel_equals_a_direct_sum(pg_store: BaseStore) -> None:
    """The total panel and the per-project panel agree with each other and with a sum over the raw table."""
    doc = _dashboard("usageledger-postgres.json")
    by_title = {p["title"]: p["targets"][0]["rawSql"] for p in doc["panels"]}
    [(total,)] = pg_store.query(substitute(by_title["Spend in the range"], start=FROM, end=NOW, orgs=["default"]))
    projects = pg_store.query(substitute(by_title["Spend by project"], start=FROM, end=NOW, orgs=["default"]))
    [(direct,)] = pg_store.query(
        "SELECT SUM(c.amount_value) FROM costs c JOIN streams s ON s.org = c.org AND s.stream = c.stream "
        "WHERE s.is_default AND s.bucket_width = '1d' AND c.bucket_start BETWEEN %s AND %s",
        [FROM, NOW],
    )
    assert total == direct == sum(amount for _, amount in projects)
    assert total > 0
    names = {name for name, _ in projects}
    assert not any(str(n).startswith("proj_") for n in names), names


@pytest.mark.postgres
def test_a_store_mixing_synthetic_and_real_orgs_offers_only_the_real_ones(
    migrated_pg_url: str, emulator: Emulator
) -> None:
    """A PostgreSQL store an older demo left mixed: the `org` variable offered the demo's synthetic org beside the
    real one, and its default, All, added the demo's spend to the real org's in every panel. It now offers the real
    orgs only, as /metrics leaves the synthetic org's figures out; a store of synthetic orgs only still offers them
    (the synced store of the test above offers its emulator org)."""
    doc = _dashboard("usageledger-postgres.json")
    variable = doc["templating"]["list"][1]
    assert variable["name"] == "org" and variable["includeAll"] is True
    url = mixed_store(migrated_pg_url, emulator)
    with open_existing_store(url) as store:
        assert [row[0] for row in store.query(variable["query"])] == ["acme"]
        by_title = {p["title"]: p["targets"][0]["rawSql"] for p in doc["panels"]}
        [(total,)] = store.query(substitute(by_title["Spend in the range"], start=FROM, end=NOW, orgs=["acme"]))
        [(real,)] = store.query(
            "SELECT SUM(amount_value) FROM costs_daily WHERE org = 'acme' AND bucket_start BETWEEN %s AND %s",
            [FROM, NOW],
        )
        assert total == real > 0
        store.delete_org("acme")
        assert [row[0] for row in store.query(variable["query"])] == ["demo"]
        # a real org a failed first run registered holds nothing, and hides nothing
        store.register_org("acme", synthetic=False, source="api", at=EMULATOR_NOW)
        assert store.empty_orgs() == {"acme"}
        assert [row[0] for row in store.query(variable["query"])] == ["demo"]


def test_substitution_leaves_nothing_of_grafana() -> None:
    sql = substitute(
        "SELECT 1 WHERE $__timeFilter(bucket_start) AND $__timeFrom() < $__timeTo() AND org IN ($org)",
        start=FROM,
        end=NOW,
        orgs=["a", "o'b"],
    )
    assert "bucket_start BETWEEN '2026-10-21T12:00:00Z' AND '2026-11-20T12:00:00Z'" in sql
    assert "org IN ('a', 'o''b')" in sql


def test_prometheus_dashboard_uses_only_emitted_metrics() -> None:
    doc = _dashboard("usageledger-prometheus.json")
    exprs = [t["expr"] for t in _targets(doc)]
    exprs += [v["definition"] for v in doc["templating"]["list"] if v["type"] == "query"]
    used = {name for expr in exprs for name in re.findall(r"\busageledger_[a-z_]+", expr)}
    assert used and used <= set(METRIC_NAMES), used - set(METRIC_NAMES)
    # Every spend, token and freshness metric is on the dashboard somewhere.
    assert {"usageledger_month_to_date_cost_usd", "usageledger_data_until_timestamp_seconds"} <= used
    labels = {label for expr in exprs for group in re.findall(r"by \(([^)]*)\)", expr) for label in group.split(", ")}
    assert labels <= {"org", "project_id", "project_name", "model", "line_item", "direction", "stream", "status"}


def test_the_prometheus_org_variable_at_all_matches_series_without_org() -> None:
    """`serve --metrics-labels project,model` leaves `org` out of the spend series; the README says to leave Org at
    All, which must then be `.*` (it matches a missing label), not Grafana's default, the listed orgs' regex, which
    matches none of them."""
    [org] = [v for v in _dashboard("usageledger-prometheus.json")["templating"]["list"] if v["name"] == "org"]
    assert org["includeAll"] is True and org["allValue"] == ".*"
    exprs = [t["expr"] for t in _targets(_dashboard("usageledger-prometheus.json"))]
    assert all('org=~"$org"' in e for e in exprs if "cost_usd" in e or "tokens" in e or "requests" in e)


@pytest.mark.parametrize("name", ["usageledger-prometheus.json", "usageledger-postgres.json"])
def test_the_data_source_is_a_variable_every_query_uses(name: str) -> None:
    """The dashboards declared an import input (`DS_PROMETHEUS`) that nothing referenced: Grafana's import asked
    for a data source and then ignored the answer (the panels follow the `datasource` variable). Every panel and
    variable query now names the variable, and no input is declared that would be asked for in vain."""
    doc = _dashboard(name)
    assert "__inputs" not in doc
    variables = doc["templating"]["list"]
    assert [v["name"] for v in variables if v["type"] == "datasource"] == ["datasource"]
    queried = [*doc["panels"], *_targets(doc), *(v for v in variables if v["type"] == "query")]
    assert all(item["datasource"]["uid"] == "${datasource}" for item in queried)


def test_projects_of_one_name_stay_apart_on_both_dashboards() -> None:
    """Every organisation's first project is called "Default project": grouped by name alone, the panels summed
    the projects of two orgs (or two projects named alike) into one bar. They now group by the project's ID too,
    and show it beside the name."""
    prometheus = [t for t in _targets(_dashboard("usageledger-prometheus.json")) if "project_name" in t["expr"]]
    assert prometheus
    for target in prometheus:
        groups = [set(g.split(", ")) for g in re.findall(r"by \(([^)]*)\)", target["expr"])]
        assert all("project_id" in g for g in groups if "project_name" in g), target["expr"]
        assert "{{project_id}}" in target["legendFormat"], target
    postgres = [t["rawSql"] for t in _targets(_dashboard("usageledger-postgres.json")) if "project_name" in t["rawSql"]]
    assert postgres
    for sql in postgres:
        label = re.search(r"COALESCE\((.*?)\) AS (?:project|metric)", sql)
        assert label is not None and "project_name || ' (' || project_id || ')'" in label.group(1), sql


@pytest.mark.postgres
def test_metrics_and_the_mcp_tools_read_a_postgres_store(pg_store: BaseStore) -> None:
    """The metrics and every MCP tool run on PostgreSQL too (the same SQL as on DuckDB), with the same sums."""
    body, _ = render_metrics(pg_store, now=NOW)
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    got = sum(s.value for s in families["usageledger_month_to_date_cost_usd"].samples)
    [(direct,)] = pg_store.query(
        "SELECT SUM(amount_value) FROM costs_daily WHERE bucket_start >= %s AND bucket_start <= %s",
        [NOW.replace(day=1, hour=0), NOW],
    )
    assert math.isclose(got, float(direct), rel_tol=1e-9) and got > 0

    @contextmanager
    def reading() -> Iterator[BaseStore]:
        yield pg_store

    tools = LedgerTools(reading, Config(), clock=lambda: NOW)
    spend = tools.spend(since="30d")
    assert Decimal(spend["total"]) > 0 and spend["period"]["last_day"] == NOW.date().isoformat()
    assert Decimal(tools.spend(since="30d", model="gpt-4o")["total"]) >= 0
    assert tools.usage(since="30d")["totals"]["tokens"] > 0
    assert tools.top_movers(since="7d", by="model")["previous_period"]["days"] == 7
    # The revision log's times are the sync's own (today's), not the fixed NOW: read it at today's date (a period
    # ends with today at the latest).
    today = LedgerTools(reading, Config(), clock=lambda: datetime.now(UTC))
    assert today.changes(since="2026-01-01", until="2027-01-01", kind="all", limit=3)["changes"]
    assert tools.alerts()["checks"]
    project = spend["rows"][0]
    [match] = [m for m in tools.lookup(project["name"])["matches"] if m["id"] == project["project_id"]]
    assert match["kind"] == "project"
    assert tools.lookup("50%_\\")["matches"] == []


def _promql_uses(expr: str) -> dict[str, set[str]]:
    """Each metric an expression (or a `label_values(metric, label)` variable query) reads -> the labels it asks of
    it: in its `{...}` matchers, and in the `by (...)` and `label_values` around it (those apply to every metric
    the expression reads, which is one metric in each of these dashboards' queries)."""
    around = {label for group in re.findall(r"\bby \(([^)]*)\)", expr) for label in group.split(", ")}
    around |= set(re.findall(r"label_values\(\s*\w+\s*,\s*(\w+)\s*\)", expr))
    uses: dict[str, set[str]] = {}
    for name, matchers in re.findall(r"\b(usageledger_[a-z_]+)(\{[^}]*\})?", expr):
        uses.setdefault(name, set()).update(around, re.findall(r"(\w+)\s*=~?", matchers))
    return uses


def test_every_prometheus_panel_reads_series_a_scrape_of_the_demo_store_has(demo_command_store: Path) -> None:
    """The dashboard's queries checked against what `/metrics` really serves, over the store `usageledger demo`
    makes (scraped through serve's app), not against a list of names: each metric a panel or variable reads has
    series, and each label it filters, groups or labels its legend by is on them; a query that names a label
    the page does not export reads nothing in Grafana, with no error."""
    from starlette.testclient import TestClient

    from usageledger.serve import build_app

    with TestClient(build_app(str(demo_command_store))) as client:
        scrape = client.get("/metrics")
    assert scrape.status_code == 200, scrape.text
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(scrape.text):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    doc = _dashboard("usageledger-prometheus.json")
    queries = [(t["expr"], t.get("legendFormat", "")) for t in _targets(doc)]
    queries += [(v["definition"], "") for v in doc["templating"]["list"] if v["type"] == "query"]
    assert len(queries) >= 12
    for expr, legend in queries:
        uses = _promql_uses(expr)
        assert uses, f"no usageledger metric in {expr!r}"
        for name, labels in uses.items():
            assert name in exported, f"{expr!r} reads {name}, which a scrape of the demo store does not have"
            shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
            missing = (labels | shown) - exported[name]
            assert not missing, f"{expr!r} (legend {legend!r}) asks {name} for {missing}; it has {exported[name]}"
        if re.search(r"\bsum\b", expr):  # a sum keeps only its `by` labels: a legend naming another shows nothing
            kept = {label for group in re.findall(r"\bby \(([^)]*)\)", expr) for label in group.split(", ")}
            assert shown <= kept, f"{expr!r} sums {shown - kept} away, which its legend {legend!r} shows"
