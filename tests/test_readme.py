"""The README stays true: every CLI command is documented, and the two set-up commands exist."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import typer.main

from usageledger.cli import app
from usageledger.config import load_config
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.report.alerts import parse_alert_config
from usageledger.report.names import names_from_mapping

from fixtures.data import FAKE_ADMIN_KEY, REPO


def _commands() -> set[str]:
    group = typer.main.get_command(app)
    return set(group.commands)  # type: ignore[attr-defined]


def test_every_cli_command_is_documented_in_the_readme() -> None:
    """Each registered command appears in the README as `usageledger <command>`."""
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`usageledger ([a-z-]+)", readme))
    missing = _commands() - documented
    assert not missing, f"commands missing from README.md: {sorted(missing)}"


def test_the_two_setup_commands_exist_and_ci_runs_the_test_one() -> None:
    """scripts/demo and scripts/test are executable, named in the README, and .ci/run calls scripts/test."""
    readme = (REPO / "README.md").read_text()
    for script in ("scripts/demo", "scripts/test"):
        assert script in readme
        assert os.access(REPO / script, os.X_OK)
    assert "scripts/test" in (REPO / ".ci" / "run").read_text()


def _blocks(language: str) -> list[str]:
    readme = (REPO / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", readme, flags=re.DOTALL)


def test_the_library_tour_runs_against_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python example runs as written, against an emulator on loopback whose clock is the wall clock."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    blocks = _blocks("python")
    namespace: dict[str, object] = {}
    with run_server(Emulator(EmulatorConfig(seed=7, days=60))) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        for code in blocks:
            exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["page"].data  # type: ignore[attr-defined]
    assert len(namespace["frame"]) > 0  # type: ignore[arg-type]
    assert len(namespace["one_page"].data) == 2  # type: ignore[attr-defined]
    assert len(blocks) == 2 and namespace["one"].name and namespace["teams"]  # type: ignore[attr-defined]


def test_the_config_example_is_valid(tmp_path: Path) -> None:
    """The README's usageledger.toml parses, and so do its [alerts] and [names] sections."""
    (toml_text,) = _blocks("toml")
    path = tmp_path / "usageledger.toml"
    path.write_text(toml_text)
    config = load_config(path)
    assert [o.name for o in config.orgs] == ["acme"]
    alerts = parse_alert_config(config.alerts)
    assert alerts.budget.daily == Decimal("150.00") and alerts.stale_after == timedelta(hours=36)
    assert alerts.project_budgets["proj_abc"].daily == Decimal("20")
    assert names_from_mapping(config.names).projects["proj_abc"] == "Search"
