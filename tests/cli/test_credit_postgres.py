"""``usageledger credit`` and the forecast on a PostgreSQL store synced from the emulator over 90 days."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.cli.commands_report import EXIT_FINDINGS
from usageledger.store import open_store

from fixtures.reports import ORG, demo_sync

NOW = "2026-11-20T12:00:00Z"


def _json(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [*args, "--format", "json"], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_credit_and_forecast_on_postgresql(migrated_pg_url: str, emulator_url: str) -> None:
    with open_store(migrated_pg_url) as store:
        demo_sync(store, emulator_url)
        first = datetime(2026, 11, 1, tzinfo=UTC)
        spent = Decimal(
            store.query("SELECT SUM(amount_value) FROM costs_daily WHERE bucket_start >= %s", [first])[0][0]
        )
    added = _json("credit", "add", "2026-11-01", "5000", "--note", "PO 12", "--store", migrated_pg_url)
    assert added["org"] == ORG and Decimal(added["amount"]) == 5000 and added["note"] == "PO 12"
    listed = _json("credit", "list", "--store", migrated_pg_url, "--now", NOW)
    assert [t["id"] for t in listed["topups"]] == [added["id"]]
    balance = listed["balance"]
    assert Decimal(balance["balance"]) == 5000 - spent
    assert date.fromisoformat(balance["runway"]) > date(2026, 11, 19)
    fired = _json(
        "check", "--store", migrated_pg_url, "--now", NOW, "--credit-below", str(5000 - spent + 1), code=EXIT_FINDINGS
    )
    assert [a["kind"] for a in fired["alerts"] if a["kind"] == "credit"] == ["credit"]

    forecast = _json("forecast", "--store", migrated_pg_url, "--now", NOW, "--by", "model")
    assert Decimal(forecast["low"]) <= Decimal(forecast["month_end"]) <= Decimal(forecast["high"])
    assert len(forecast["groups"]) >= 2

    removed = CliRunner().invoke(app, ["credit", "remove", str(added["id"]), "--store", migrated_pg_url])
    assert removed.exit_code == 0, removed.output
    assert _json("credit", "list", "--store", migrated_pg_url)["topups"] == []
    assert _json("credit", "list", "--store", migrated_pg_url)["balance"] is None
