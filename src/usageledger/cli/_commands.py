"""The table of CLI commands: name, the module that registers it, and the one line ``--help`` lists.

``usageledger --help`` is printed from this table, and a command's module is imported only when that command runs,
so a light command (``version``, ``--help``) never pays for pyarrow, DuckDB or the report modules. Adding a command:
write ``cli/commands_<x>.py`` registering on ``app`` as before, then add one ``Command`` line below (in the order
``--help`` lists them). ``tests/cli/test_cli_startup.py`` checks that the table and the registered commands agree.
"""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = ["COMMANDS", "Command"]


class Command(NamedTuple):
    name: str
    """What the user types: ``usageledger <name>``."""
    module: str
    """The module under ``usageledger.cli`` whose import registers the command on ``app``."""
    summary: str
    """The command's docstring's first sentence, as ``usageledger --help`` lists it."""


COMMANDS: Final[tuple[Command, ...]] = (
    Command("version", "commands_version", "Print the installed usageledger version (also: --version)."),
    Command(
        "query",
        "commands_query",
        "Fetch a range from one endpoint (every page, every window) and print a table, CSV or JSON lines.",
    ),
    Command(
        "emulator",
        "commands_emulator",
        "Serve the offline Usage & Costs API double under /v1 until Ctrl-C (SIGINT) or SIGTERM.",
    ),
    Command(
        "demo",
        "commands_demo",
        "Start the emulator in-process, sync the last 60 days of every default stream into a DuckDB file of its own"
        " (usageledger-demo.duckdb), and print the report of the last 30 (against the 30 before).",
    ),
    Command(
        "report",
        "commands_report",
        "Spend by project, line item and model; tokens; daily trend; top movers; cost per 1M tokens.",
    ),
    Command(
        "reconcile",
        "commands_report",
        "Compare usage tokens with billed token quantities per day and model, and say why they can differ.",
    ),
    Command(
        "check",
        "commands_report",
        "Budget, forecast, credit, anomaly, staleness and stale key alerts for cron and CI: one line per alert, exit 3"
        " when any fired.",
    ),
    Command(
        "init", "commands_sync", "Write a commented usageledger.toml (mode 0600) and create the store with its tables."
    ),
    Command(
        "sync",
        "commands_sync",
        "Sync the configured streams (default: every endpoint, daily) into the store, incrementally.",
    ),
    Command(
        "export",
        "commands_sync",
        "Write the store, or part of it, as CSV, JSON Lines or Parquet (exact decimals in every format), or the costs"
        " as FOCUS 1.2 rows.",
    ),
    Command(
        "status",
        "commands_sync",
        "Show each stream's watermark, last run and row counts, and each org's directory (projects, keys, ...).",
    ),
    Command(
        "changes",
        "commands_history",
        "Restatements from the revision log: bucket, stream, group, old and new values and the delta, grouped by"
        " stream; spend restated after its month was closed stands out, with the closed months' adjustments.",
    ),
    Command(
        "close",
        "commands_history",
        "Close a month: record its spend per org and project as the ledger holds it; later restatements of it are"
        " reported as adjustments (changes, report, check --restated-over).",
    ),
    Command(
        "forecast",
        "commands_forecast",
        "Where this month's spend ends, with a range, and the day a monthly budget is crossed (the runway).",
    ),
    Command(
        "credit",
        "commands_forecast",
        "Prepaid credit: record top-ups; the balance (top-ups minus costs since the first) shows in status, report"
        " and check --credit-below.",
    ),
    Command(
        "statement",
        "commands_report",
        "Showback: one statement per team or project for a month, lines by model and line item, shared spend"
        " allocated by a stated rule; the statements add up to the month's costs to the cent, and say so.",
    ),
    Command(
        "serve",
        "commands_serve",
        "Serve the dashboard, its JSON API (/, /api/report, /api/filters, /api/projects/ID, /healthz) and Prometheus"
        " metrics (/metrics), read-only.",
    ),
    Command(
        "mcp",
        "commands_mcp",
        "Serve the store to an assistant over MCP (stdio): spend, usage, movers, changes, alerts, lookup; read-only.",
    ),
    Command(
        "doctor",
        "commands_doctor",
        "Check the set-up (config, key, base URL, a probe request, store) and say what is wrong and how to fix it.",
    ),
    Command(
        "keys",
        "commands_keys",
        "Every API key (project and admin, deleted ones marked): owner, project, created, last used, spend, requests,"
        " and flags: unused, owner removed, admin key too old.",
    ),
)
