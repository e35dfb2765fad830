"""Synthetic and real data never share a store: the `orgs` registry, the demo's own store, and the refusals.

Real data here is a sync through the in-process emulator transport with the default (https) base URL: the store
cannot tell it from the API, which is the point. Synthetic data is the demo's, or a sync from the emulator served
on loopback over plain http.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger import catalogue, timeutil
from usageledger.cli import app
from usageledger.cli.commands_report import EXIT_FINDINGS
from usageledger.emulator import Emulator
from usageledger.errors import SyncError
from usageledger.store import BaseStore, Stream, default_streams, open_store
from usageledger.sync import Org, SyncOptions, sync

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.stores import real_sync

COSTS = Stream.create(catalogue.get("costs"), "1d", ["project_id", "line_item"], {})
SINCE = timeutil.floor(EMULATOR_NOW - 5 * 86400, "1d")


def _real_sync(store: BaseStore, emulator: Emulator, org: str = "acme") -> None:
    """A sync the store must take for real: the default https base URL (served in-process by the emulator)."""
    real_sync(store, emulator, org, since=SINCE)


def _org_rows(store: BaseStore) -> dict[str, int]:
    return dict(store.query("SELECT org, COUNT(*) FROM costs GROUP BY org"))


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def test_the_demo_writes_to_a_store_of_its_own_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`usageledger demo` without --store fills usageledger-demo.duckdb and never creates usageledger.duckdb."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--days", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "usageledger-demo.duckdb").exists()
    assert not (tmp_path / "usageledger.duckdb").exists()
    with open_store(tmp_path / "usageledger-demo.duckdb") as store:
        assert [(r.org, r.synthetic, r.source) for r in store.orgs()] == [("demo", True, "demo")]


def test_the_demo_refuses_a_store_that_holds_a_real_org(tmp_path: Path, emulator: Emulator) -> None:
    """The demo into a real store stops with one line naming a store of its own, and writes nothing."""
    path = tmp_path / "usageledger.duckdb"
    with open_store(path) as store:
        _real_sync(store, emulator)
        before = _org_rows(store)
    result = CliRunner().invoke(app, ["demo", "--days", "2", "--store", str(path)])
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.output)
    assert "refusing to write synthetic data (org demo)" in line and "a store of real data (org acme)" in line
    assert line.endswith("use a store of its own, e.g. --store usageledger-demo.duckdb")
    with open_store(path) as store:
        assert _org_rows(store) == before
        assert [(r.org, r.synthetic) for r in store.orgs()] == [("acme", False)]
        assert store.query("SELECT COUNT(*) FROM streams WHERE org = 'demo'") == [(0,)]


def test_a_real_sync_refuses_a_store_that_holds_the_demo_until_it_is_removed(
    tmp_path: Path, emulator: Emulator
) -> None:
    """`sync` with a real key into the demo's store is refused before any request; `demo --remove` clears the way."""
    path = tmp_path / "mixed.duckdb"
    assert CliRunner().invoke(app, ["demo", "--days", "2", "--store", str(path)]).exit_code == 0
    env = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": "https://api.invalid/v1"}
    result = CliRunner(env=env).invoke(app, ["sync", "--store", str(path), "-e", "costs", "--quiet"])
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.output)
    assert "refusing to write real data" in line and "a store of synthetic data (org demo, written by the demo)" in line
    assert f"usageledger demo --remove --store {path}" in line
    with open_store(path) as store:
        assert set(_org_rows(store)) == {"demo"}
        assert store.query("SELECT COUNT(*) FROM sync_runs WHERE command LIKE 'sync%'") == [(0,)]
        with pytest.raises(SyncError, match="a store of synthetic data"):
            _real_sync(store, emulator)

    removed = CliRunner().invoke(app, ["demo", "--remove", "--store", str(path)])
    assert removed.exit_code == 0, removed.output
    assert "Removed the synthetic org demo" in removed.output
    with open_store(path) as store:
        assert store.orgs() == [] and _org_rows(store) == {}
        _real_sync(store, emulator)
        assert set(_org_rows(store)) == {"acme"}


def test_a_sync_from_the_emulator_on_loopback_is_synthetic(
    tmp_path: Path, emulator: Emulator, emulator_url: str
) -> None:
    """A plain-http loopback base URL (the emulator) records the org as synthetic, and real data is then refused."""
    with open_store(tmp_path / "emu.duckdb") as store:
        result = sync(
            store,
            [Org("default", FAKE_ADMIN_KEY, emulator_url)],
            [COSTS],
            SyncOptions(since=SINCE),
            clock=lambda: EMULATOR_NOW,
        )
        assert result.ok, result.errors
        assert [(r.org, r.synthetic, r.source) for r in store.orgs()] == [("default", True, "emulator")]
        with pytest.raises(SyncError, match="refusing to write real data"):
            _real_sync(store, emulator, org="default")


def test_a_first_run_that_reached_nothing_does_not_decide_the_kind_of_store(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync --base-url https://127.0.0.1:…` (a typo for the emulator's http) failed and registered org `default` as
    real, so every later sync from the emulator was refused: "a store of real data" that held no row. An org that
    holds nothing decides nothing; the next run records it again as what it is."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY})
    # One retry, not the default four: the typo's port is unreachable either way, without seconds of back-off.
    (tmp_path / "one-retry.toml").write_text("[sync]\nmax_retries = 1\n")
    argv = ["sync", "-q", "-e", "costs", "--since", "3d", "--now", str(EMULATOR_NOW), "--no-directory"]
    argv += ["--config", str(tmp_path / "one-retry.toml")]
    typo = runner.invoke(app, [*argv, "--base-url", "https://127.0.0.1:9/v1"])
    assert typo.exit_code == 1 and "could not reach 127.0.0.1" in typo.output, typo.output
    done = runner.invoke(app, [*argv, "--base-url", emulator_url])
    assert done.exit_code == 0, done.output
    with open_store(tmp_path / "usageledger.duckdb") as store:
        assert [(r.org, r.synthetic, r.source) for r in store.orgs()] == [("default", True, "emulator")]
        assert set(_org_rows(store)) == {"default"}
    again = runner.invoke(app, [*argv, "--base-url", "https://127.0.0.1:9/v1"])  # now the store holds its rows
    assert again.exit_code == 1 and "refusing to write real data" in _one_error_line(again.output)


def test_one_run_never_mixes_real_and_synthetic_orgs(tmp_path: Path, emulator_url: str) -> None:
    """A run with an emulator org and a real org is refused before it records anything."""
    with open_store(tmp_path / "two.duckdb") as store:
        orgs = [Org("emu", FAKE_ADMIN_KEY, emulator_url), Org("acme", FAKE_ADMIN_KEY)]
        with pytest.raises(SyncError, match=r"real orgs \(acme\) and synthetic ones \(emu"):
            sync(store, orgs, [COSTS], SyncOptions(since=SINCE), clock=lambda: EMULATOR_NOW)
        assert store.orgs() == [] and store.query("SELECT COUNT(*) FROM sync_runs") == [(0,)]


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_a_store_from_before_the_registry_is_migrated_by_org_name(
    backend: str, tmp_path: Path, emulator: Emulator, request: pytest.FixtureRequest
) -> None:
    """Migrating an older store records the demo's org `demo` as synthetic and every other org as real."""
    url = str(tmp_path / "old.duckdb") if backend == "duckdb" else request.getfixturevalue("pg_url")
    with open_store(url) as store:
        for org in ("acme", "demo"):
            store.register_stream(org, default_streams()[0])
            store.set_watermark(
                org, default_streams()[0].id, SINCE
            )  # each org has synced: an empty one decides nothing
        # What a store written before the registry looks like: no orgs table, the migration not recorded.
        store.execute("DROP TABLE orgs")
        store.execute("DELETE FROM schema_migrations WHERE name = '0003_org_registry'")
    with open_store(url) as store:
        assert store.pending_migrations() == []
        assert [(r.org, r.synthetic, r.source) for r in store.orgs()] == [
            ("acme", False, "migrated"),
            ("demo", True, "migrated"),
        ]
        with pytest.raises(
            SyncError, match=r"synthetic data \(org demo, the demo's org name, from before the registry\)"
        ):
            _real_sync(store, emulator)


def test_report_and_check_warn_about_a_store_the_old_demo_mixed(tmp_path: Path, emulator: Emulator) -> None:
    """A store mixed before the registry says so on stderr in `report`, `check` and `changes` (whose "spend restated
    by" added both without a word) and `export --format focus` (whose BilledCost a FinOps tool adds up), naming the
    fix; with `--org`, whose figures are that org's alone, they do not (they said "its totals add both" there too)."""
    path = tmp_path / "mixed.duckdb"
    with open_store(path) as store:
        _real_sync(store, emulator, org="acme")
        _real_sync(store, emulator, org="demo")  # as the old demo left it: an org `demo` beside a real one
        store.execute("DROP TABLE orgs")
        store.execute("DELETE FROM schema_migrations WHERE name = '0003_org_registry'")
    with open_store(path):
        pass  # migrated as `sync` would: `demo` synthetic, `acme` real
    focus = ["export", "--format", "focus", "-o", str(tmp_path / "focus.csv")]
    for command in (
        ["report"],
        ["check", "--daily-budget", "1000000"],
        ["changes"],
        focus,
        [*focus, "--org", "acme,demo"],
    ):
        result = CliRunner().invoke(app, [*command, "--store", str(path)], terminal_width=400)
        assert result.exit_code in (0, EXIT_FINDINGS), result.output  # `check` finds the store stale (real clock)
        assert (
            "warning: this store mixes synthetic data (org demo, the demo's org name, from before the registry) "
            "with real data, and its totals "
            f"add both; remove the synthetic data with `usageledger demo --remove --store {path}`"
        ) in result.output
    for command in (["report"], ["check", "--daily-budget", "1000000"], ["changes"], focus):  # one org's are its own
        result = CliRunner().invoke(app, [*command, "--store", str(path), "--org", "acme"], terminal_width=400)
        assert result.exit_code in (0, EXIT_FINDINGS), result.output
        assert "mixes synthetic data" not in result.output, result.output


def test_an_org_that_holds_nothing_mixes_nothing(tmp_path: Path, emulator: Emulator) -> None:
    """A real org a failed first run registered (it reached nothing) beside the demo's data: the sync took the demo,
    as that org holds nothing, but `report` then warned that the store mixes synthetic with real data, and /metrics
    left the demo's figures out as if a real org's were beside them. An org that holds nothing counts for neither."""
    from datetime import UTC, datetime

    from prometheus_client.parser import text_string_to_metric_families

    from usageledger.report.metrics import render_metrics

    path = tmp_path / "s.duckdb"
    with open_store(path) as store:
        failed = sync(
            store,
            [Org("acme", FAKE_ADMIN_KEY, "https://127.0.0.1:9/v1")],
            [COSTS],
            SyncOptions(since=SINCE, max_retries=0),
            clock=lambda: EMULATOR_NOW,
        )
        assert not failed.ok and store.empty_orgs() == {"acme"}
        done = sync(
            store,
            [Org("demo", "sk-admin-demo", synthetic=True)],
            [COSTS],
            SyncOptions(since=SINCE),
            transport=emulator.transport(),
            clock=lambda: EMULATOR_NOW,
        )
        assert done.ok, done.errors
        assert [(r.org, r.synthetic) for r in store.orgs()] == [("acme", False), ("demo", True)]
        body, _ = render_metrics(store, now=datetime.fromtimestamp(EMULATOR_NOW, UTC))
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert {s.labels["org"] for s in families["usageledger_month_to_date_cost_usd"].samples} == {"demo"}
    result = CliRunner().invoke(app, ["report", "--store", str(path)], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "mixes synthetic data" not in result.output, result.output


def test_the_emulator_named_by_openai_base_url_is_synthetic_too(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An org without a base URL reads OPENAI_BASE_URL, as the client does: the emulator there is synthetic."""
    monkeypatch.setenv("OPENAI_BASE_URL", emulator_url)
    with open_store(tmp_path / "env.duckdb") as store:
        result = sync(
            store, [Org("default", FAKE_ADMIN_KEY)], [COSTS], SyncOptions(since=SINCE), clock=lambda: EMULATOR_NOW
        )
        assert result.ok, result.errors
        assert [(r.org, r.synthetic, r.source) for r in store.orgs()] == [("default", True, "emulator")]
