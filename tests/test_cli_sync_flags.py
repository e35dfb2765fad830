"""`usageledger sync` says what its flags leave out: a bucket width some endpoints lack names the skipped streams."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger.cli import app

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW


def test_hourly_sync_without_endpoints_names_what_it_skips(
    tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync --bucket-width 1h` with no -e syncs the hourly endpoints and notes on stderr that costs is skipped."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    store = tmp_path / "u.duckdb"
    argv = ["sync", "--store", str(store), "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "--quiet"]
    result = CliRunner().invoke(app, [*argv, "--bucket-width", "1h", "--since", "6h"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "--bucket-width 1h skips costs" in notes[0] and "1d" in notes[0], result.stderr
    daily = CliRunner().invoke(app, [*argv, "--bucket-width", "1d", "--since", "2d"])
    assert daily.exit_code == 0 and "skips" not in daily.stderr, daily.stderr
