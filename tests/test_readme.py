"""The README stays true: every CLI command is documented, and the two set-up commands exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

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


# What `pip install usageledger` (and so `scripts/demo`'s .venv) lacks: the extras' packages. The tour runs in a
# process of its own where importing one of them fails, as it does on a core install.
EXTRAS_ONLY = ("pandas", "polars", "matplotlib", "psycopg", "mcp")
CORE_ONLY = f"""
import importlib.abc, sys
class CoreOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {EXTRAS_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (an extra)", name=name)
        return None
sys.meta_path.insert(0, CoreOnly())
"""
TOUR_CHECKS = """
assert page.data and len(table) > 0 and len(one_page.data) == 2 and one.name and teams
print("tour ok")
"""


def test_the_library_tour_runs_against_the_emulator(tmp_path: Path) -> None:
    """The README's Python examples run as written on the core install a newcomer has after `scripts/demo` (no
    extra importable: its `.to_pandas()` was an ImportError there), against an emulator on loopback whose clock is
    the wall clock."""
    blocks = _blocks("python")
    assert len(blocks) == 2
    script = tmp_path / "tour.py"
    script.write_text(CORE_ONLY + "\n".join(blocks) + TOUR_CHECKS)
    with run_server(Emulator(EmulatorConfig(seed=7, days=60))) as url:
        environ = {**os.environ, "OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": url}
        done = subprocess.run(
            [sys.executable, str(script)], env=environ, capture_output=True, text=True, timeout=120, check=False
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.endswith("tour ok\n")


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
