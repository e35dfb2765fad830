"""The command line: parse, call the library, format. Each command group lives in its own module."""

from __future__ import annotations

from usageledger.cli._app import app

# Importing a command module registers its commands on `app`.
from usageledger.cli import commands_version  # noqa: F401  isort: skip
from usageledger.cli import commands_query  # noqa: F401  isort: skip
from usageledger.cli import commands_emulator  # noqa: F401  isort: skip
from usageledger.cli import commands_demo  # noqa: F401  isort: skip
from usageledger.cli import commands_report  # noqa: F401  isort: skip
from usageledger.cli import commands_sync  # noqa: F401  isort: skip
from usageledger.cli import commands_doctor  # noqa: F401  isort: skip
from usageledger.cli import commands_keys  # noqa: F401  isort: skip
from usageledger.cli import commands_mcp  # noqa: F401  isort: skip
from usageledger.cli import commands_forecast  # noqa: F401  isort: skip
from usageledger.cli import commands_serve  # noqa: F401  isort: skip
from usageledger.cli import commands_statement  # noqa: F401  isort: skip
from usageledger.cli import commands_history  # noqa: F401  isort: skip

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
