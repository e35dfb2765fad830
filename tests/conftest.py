"""Shared test set-up: a clean environment for every test, and the fixture plugins."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# No example may fail for taking long: hypothesis's default 200 ms deadline is a timed assertion, and on a busy
# two-core machine running four workers a plain decode took 293 ms once and failed the suite. What the tests check is
# behaviour; speed is measured in bench/.
settings.register_profile("usageledger", deadline=None)
settings.load_profile("usageledger")

# pytest-xdist's workers export COLUMNS=80 and LINES=24, and rich fixes a console's size for good when it is created
# with both set, which would pin the CLI's consoles (made at import) to 80 columns whatever a test asks for. The
# tests set their own widths, so a worker starts without them, like a plain pytest run.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

pytest_plugins: list[str] = [
    "fixtures.emulator",
    "fixtures.browser",
    "fixtures.postgres",
    "fixtures.stores",
    "fixtures.scheduling",
    "fixtures.zygote",
    "fixtures.cli_runner",
    "pytester",  # tests/test_fixture_stores.py runs a module of its own against the fixtures
]

# Modules whose tests start processes (CLI runs, emulator servers, kills), a browser or PostgreSQL, or fuzz at length:
# each takes seconds. They carry the ``slow`` marker, so ``scripts/test-fast`` (``-m "not slow"``) leaves them out.
# Measured with ``--durations=0``; a module that grows past a few seconds joins the list.
SLOW_MODULES: frozenset[str] = frozenset(
    {
        "test_alerts_store.py",
        "test_statement_closed.py",
        "test_careless.py",
        "test_careless_exports.py",
        "test_careless_readers.py",
        "test_cli_careless_data.py",
        "test_cli_empty_values.py",
        "test_cli_filters.py",
        "test_cli_forked.py",
        "test_cli_output.py",
        "test_cli_pipes.py",
        "test_cli_query.py",
        "test_cli_query_scale.py",
        "test_cli_startup.py",
        "test_cli_streams.py",
        "test_cli_settle.py",
        "test_cli_sync_flags.py",
        "test_client_e2e.py",
        "test_config_fuzz.py",
        "test_credit_postgres.py",
        "test_decode_fuzz.py",
        "test_directory_client.py",
        "test_directory_emulator.py",
        "test_directory_store.py",
        "test_doctor.py",
        "test_emulator_orgs.py",
        "test_emulator_server.py",
        "test_export.py",
        "test_export_delta.py",
        "test_export_safety.py",
        "test_finality.py",
        "test_focus.py",
        "test_forecast_cli.py",
        "test_history.py",
        "test_report_html_outlook.py",
        "test_ledger_history.py",
        "test_fuzz_params.py",
        "test_grafana_dashboards.py",
        "test_keys.py",
        "test_load.py",
        "test_mcp_server.py",
        "test_metrics.py",
        "test_named_views.py",
        "test_names_directory.py",
        "test_report_demo.py",
        "test_report_html_layout.py",
        "test_report_png.py",
        "test_report_postgres.py",
        "test_retry_budget.py",
        "test_revision_log.py",
        "test_secrets.py",
        "test_secrets_e2e.py",
        "test_secrets_keys.py",
        "test_serve_app.py",
        "test_serve_browser.py",
        "test_standalone.py",
        "test_statement.py",
        "test_store.py",
        "test_store_open.py",
        "test_store_password.py",
        "test_sync.py",
        "test_sync_concurrent.py",
        "test_sync_faults.py",
        "test_sync_kill.py",
        "test_sync_signals.py",
        "test_sync_writer.py",
        "test_sync_workers.py",
        "test_synthetic_orgs.py",
        "test_watermark_log.py",
        "test_teams.py",
        "test_security.py",
        "test_generate.py",
        "test_two_streams.py",
        "test_cli_advice.py",
        "test_cli_lag_final.py",
        "test_status_failures.py",
        "test_stored_failure.py",
        "test_sync_failure_lines.py",
        "test_report_png_world.py",
    }
)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run's temp directory, which ``scripts/test`` made (in ``/dev/shm``, up to ~5 GB of memory), removed by
    the controlling process when the run ends, Ctrl-C too; last, after every fixture has stopped its servers."""
    run_tmp = os.environ.get("USAGELEDGER_TEST_RUN_TMP")
    if run_tmp and not hasattr(config, "workerinput"):
        shutil.rmtree(run_tmp, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of a slow module ``slow`` (see ``SLOW_MODULES``)."""
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def _pgpass_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pgpass")


_pgpass_files = itertools.count(1)


@pytest.fixture(autouse=True)
def _clean_openai_env(monkeypatch: pytest.MonkeyPatch, _pgpass_folder: Path) -> Iterator[None]:
    """No test sees the developer's OPENAI_* or USAGELEDGER_* variables, nor their PostgreSQL password (PGPASSWORD,
    ~/.pgpass): PGPASSFILE names a file of the test's own, not made yet, where `init --store postgresql://u:pw@...`
    keeps the password (it went into the developer's ~/.pgpass)."""
    import os

    for name in list(os.environ):
        if name.startswith(("OPENAI_", "USAGELEDGER_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(_pgpass_folder / f"pgpass-{next(_pgpass_files)}"))
    yield
