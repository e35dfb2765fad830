"""The report's SQL is portable: the same sync into PostgreSQL and DuckDB gives the same report, reconciliation
and alerts, to the last decimal."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.report.alerts import AlertConfig, Budget, run_checks
from usageledger.report.queries import Period, Scope, build_report, known_models
from usageledger.report.reconciliation import reconcile
from usageledger.store import BaseStore, Stream, open_store
from usageledger.sync import Org, SyncOptions, sync

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.reports import demo_sync

pytestmark = pytest.mark.postgres

NOW = datetime.fromtimestamp(EMULATOR_NOW, UTC)
PERIOD = Period(NOW.date() - timedelta(days=30), NOW.date())


@pytest.fixture(scope="module")
def both(
    tmp_path_factory: pytest.TempPathFactory, emulator_url: str, postgres_url: str
) -> Iterator[tuple[BaseStore, BaseStore]]:
    """A DuckDB store and a PostgreSQL store after the same demo sync from the emulator."""
    duck = open_store(tmp_path_factory.mktemp("pg-parity") / "usageledger.duckdb")
    pg = open_store(postgres_url)
    try:
        for store in (duck, pg):
            demo_sync(store, emulator_url)
        yield duck, pg
    finally:
        duck.close()
        pg.close()


def test_report_is_identical_on_postgres(both: tuple[BaseStore, BaseStore]) -> None:
    """Every figure of the report is equal on DuckDB and PostgreSQL, whole and for one project."""
    duck, pg = both
    whole = build_report(duck, PERIOD)
    assert whole.total_spend > 0 and whole.total_tokens > 0
    assert build_report(pg, PERIOD) == whole
    project = whole.spend_by_project[-1].key
    assert build_report(pg, PERIOD, Scope(project=project)) == build_report(duck, PERIOD, Scope(project=project))
    models = known_models(duck)  # what `report --model` checks a name against
    assert "gpt-4o-2024-08-06" in models and known_models(pg) == models


def test_a_model_base_name_reads_its_snapshots_on_postgres_too(both: tuple[BaseStore, BaseStore]) -> None:
    """`Scope(model="gpt-4o")` keeps gpt-4o's dated snapshots (`model_sql`'s regexp_replace) on both back ends."""
    duck, pg = both
    base = build_report(duck, PERIOD, Scope(model="gpt-4o"))
    assert base.total_spend > 0 and [m.model for m in base.spend_by_model] == ["gpt-4o-2024-08-06"]
    assert build_report(pg, PERIOD, Scope(model="gpt-4o")) == base


def test_reconcile_and_checks_are_identical_on_postgres(both: tuple[BaseStore, BaseStore]) -> None:
    """Reconciliation and every check give the same result on both back ends."""
    duck, pg = both
    assert reconcile(pg, PERIOD) == reconcile(duck, PERIOD)
    assert reconcile(pg, PERIOD).differences == ()
    cfg = AlertConfig(budget=Budget(daily=Decimal(50), monthly=Decimal(1000)))
    on_duck = run_checks(duck, cfg, now=NOW, budget_day=NOW.date() - timedelta(days=1))
    assert run_checks(pg, cfg, now=NOW, budget_day=NOW.date() - timedelta(days=1)) == on_duck
    assert [a.kind for a in on_duck.alerts].count("budget") >= 1


def test_cli_report_on_postgres_url(both: tuple[BaseStore, BaseStore], postgres_url: str, tmp_path: Path) -> None:
    """`report --store postgresql://...` works end to end, HTML included."""
    html = tmp_path / "r.html"
    span = ["--since", PERIOD.since.isoformat(), "--until", PERIOD.until.isoformat()]
    result = CliRunner().invoke(app, ["report", "--store", postgres_url, *span, "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert "chart-daily-spend-by-project" in html.read_text()


def test_currency_statements_and_focus_are_identical_on_postgres(both: tuple[BaseStore, BaseStore]) -> None:
    """The per-day conversion's SQL, the statements and the FOCUS rows give the same figures on both back ends."""
    from usageledger.report.focus import focus_rows
    from usageledger.report.fx import ConvertedCosts, FxRates
    from usageledger.report.statement import build_statements
    from usageledger.report.teams import project_teams

    duck, pg = both
    first = date(2026, 8, 1)
    rates = FxRates("EUR", {first + timedelta(days=i): Decimal("0.9") + Decimal(i) / 1000 for i in range(122)}, "r")

    def converted(db: BaseStore) -> object:
        return build_report(ConvertedCosts(db, rates, start=PERIOD.previous().start, end=PERIOD.end, org=None), PERIOD)

    whole = build_report(duck, PERIOD)
    eur = converted(duck)
    assert eur == converted(pg)
    assert eur.currency == "EUR" and eur.total_spend != whole.total_spend  # type: ignore[attr-defined]
    month = date(2026, 10, 1)
    for by in ("team", "project"):
        on_duck = build_statements(duck, month, by=by, teams=project_teams(duck), fx=rates, today=NOW.date())
        assert on_duck.adds_up and on_duck.total > 0
        assert build_statements(pg, month, by=by, teams=project_teams(pg), fx=rates, today=NOW.date()) == on_duck
    rows_duck = [r for t in focus_rows(duck, teams={}) for r in t.to_pylist()]
    assert rows_duck and [r for t in focus_rows(pg, teams={}) for r in t.to_pylist()] == rows_duck


def test_tokens_synced_only_hourly_read_the_same_on_postgres(tmp_path: Path, emulator_url: str, pg_url: str) -> None:
    """Tokens of an org that syncs completions only hourly are summed to UTC days alike on both back ends (the
    day's start is cut in UTC whatever the session's zone), and are not 0; its models are known to `--model`."""
    hourly = Stream.create("completions", "1h", ("project_id", "model"))
    since = EMULATOR_NOW - EMULATOR_NOW % 86400 - 10 * 86400
    reports = []
    for url in (str(tmp_path / "hourly.duckdb"), pg_url):
        with open_store(url) as store:
            if store.dialect == "postgres":
                store.execute("SET TIME ZONE 'America/Los_Angeles'")  # a day cut in the session's zone would differ
            done = sync(
                store,
                [Org("hourly", FAKE_ADMIN_KEY, emulator_url)],
                (hourly,),
                SyncOptions(since=since),
                clock=lambda: EMULATOR_NOW,
            )
            assert done.ok, done.errors
            reports.append(build_report(store, PERIOD))
            # what `report --model` checks a name against: the hourly stream's models (there are no costs)
            named = {m for (m,) in store.query("SELECT DISTINCT model FROM usage_completions")}
            assert named and known_models(store) == named == known_models(store, "hourly")
    duck, pg = reports
    assert duck.total_tokens > 0 and duck.daily_tokens_by_model and pg == duck
    assert all(v.day >= datetime.fromtimestamp(since, UTC).date() for v in duck.daily_tokens_by_model)
