"""`query` and `sync` spell the filters alike: one generated option per catalogue filter on both commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from usageledger import catalogue
from usageledger.cli import app
from usageledger.store import open_store

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW


def _options(command: str) -> set[str]:
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return {o for p in params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}


def test_query_and_sync_have_the_same_filter_options() -> None:
    """Every catalogue filter is the same option (--project-ids, --batch ...) on query and on sync."""
    flags = {"--" + f.name.replace("_", "-") for e in catalogue.ENDPOINTS for f in e.filters}
    assert flags <= _options("query") and flags <= _options("sync")
    assert "--no-batch" in _options("query") and "--no-batch" in _options("sync")


def _stream_ids(store: Path) -> list[str]:
    with open_store(str(store)) as opened:
        return [s.stream for s in opened.stream_states()]


def test_sync_filter_options_make_the_same_stream_as_filter(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync --project-ids P` syncs the same filtered stream as the older `--filter project_ids=P`."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    base = ["sync", "-e", "costs", "--since", "2d", "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "-q"]
    runner = CliRunner()
    new = runner.invoke(app, [*base, "--store", str(tmp_path / "a.duckdb"), "--project-ids", "proj_x"])
    old = runner.invoke(app, [*base, "--store", str(tmp_path / "b.duckdb"), "--filter", "project_ids=proj_x"])
    assert new.exit_code == 0 and old.exit_code == 0, (new.output, old.output)
    ids = _stream_ids(tmp_path / "a.duckdb")
    assert ids == _stream_ids(tmp_path / "b.duckdb") and len(ids) == 1 and ids[0].startswith("costs.")
    assert ids[0] != "costs.1d.project_id+line_item", "the filter is part of the stream"


def test_sync_refuses_an_empty_filter_option(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync --project-ids ',,'` is refused in one line naming the option, and creates no store."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    store = tmp_path / "u.duckdb"
    result = CliRunner().invoke(
        app, ["sync", "-e", "costs", "--project-ids", ",,", "--store", str(store), "--base-url", emulator_url]
    )
    assert result.exit_code == 2 and result.stderr.startswith("error: --project-ids:"), result.output
    assert not store.exists()
