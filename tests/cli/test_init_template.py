"""The commented examples that `usageledger init` writes are valid once uncommented."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from usageledger.config import default_config_text, load_config
from usageledger.report.alerts import parse_alert_config
from usageledger.report.names import names_from_mapping


def test_uncommented_alerts_and_names_examples_parse(tmp_path: Path) -> None:
    """Uncommenting the [alerts] and [names] examples gives a config the loaders accept."""
    head, tail = default_config_text().split("# [alerts]\n", 1)
    lines = ["[alerts]"] + [
        line[2:] if (line.startswith("# ") and " = " in line) or line.startswith("# [") else line
        for line in tail.splitlines()
    ]
    path = tmp_path / "usageledger.toml"
    path.write_text(head + "\n".join(lines) + "\n")
    config = load_config(path)
    alerts = parse_alert_config(config.alerts)
    assert alerts.budget.daily == Decimal("150.00")
    assert alerts.project_budgets["proj_abc"].daily == Decimal("20")
    assert names_from_mapping(config.names).users["user-123"] == "Ada"
