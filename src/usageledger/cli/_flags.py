"""The options that several commands take, each declared once (flag, help) as an ``Annotated`` alias.

A command takes one as ``store: StoreOpt = None``, so ``--store`` reads and says the same in every command that has
it. The catalogue's filter options of ``query`` and ``sync`` are generated apart, in :mod:`usageledger.cli._filters`.
It imports only Typer, so any command module can take them without importing another command's module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

import typer

__all__ = [
    "CONFIG_HELP",
    "STORE_HELP",
    "ConfigOpt",
    "CurrencyOpt",
    "FormatOpt",
    "FxOpt",
    "Insecure",
    "NamesOpt",
    "NowOpt",
    "OrgOpt",
    "ProjectOpt",
    "SinceOpt",
    "StoreOpt",
    "UntilOpt",
    "Verbose",
]

Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging on stderr.")]
"""``-v``/``-vv``: the count goes to :func:`~usageledger.cli._app.setup_logging`."""
Insecure = Annotated[
    bool, typer.Option("--allow-insecure-http", help="Accept a plain http:// base URL that is not loopback.")
]
"""``--allow-insecure-http``: passed on to the client's ``allow_insecure_http``."""
FormatOpt = Annotated[
    Literal["text", "json"],
    typer.Option(
        "--format", "-f", help="text for people, or json: one JSON document with stable keys (see the README)."
    ),
]
"""``--format``/``-f`` of the commands that print text or one JSON document."""
STORE_HELP: Final = (
    "The store: a DuckDB file path or a postgresql:// URL (default: the config's [store] url, else usageledger.duckdb)."
)
StoreOpt = Annotated[str | None, typer.Option("--store", help=STORE_HELP, envvar="USAGELEDGER_STORE")]
"""The one ``--store`` option of every command that reads or writes a store (see ``resolve_store``)."""
CONFIG_HELP: Final = "Config file (default: $USAGELEDGER_CONFIG, else ./usageledger.toml)."
ConfigOpt = Annotated[Path | None, typer.Option("--config", help=CONFIG_HELP)]
"""The one ``--config`` option."""
FxOpt = Annotated[
    Path | None,
    typer.Option("--fx", help="Per-day rates for --currency: a CSV with a header date,rate; rate = 1 USD in it."),
]
"""``--fx``: the rates file that :func:`usageledger.report.fx.rates_option` reads (``report``, ``statement``,
``export --format focus``)."""
CurrencyOpt = Annotated[
    str | None, typer.Option("--currency", help="Convert to this currency (EUR, GBP, ...) with the --fx rates.")
]
"""``--currency``: the currency :data:`FxOpt`'s rates convert to."""

OrgOpt = Annotated[str | None, typer.Option("--org", help="Only this organisation (the store's org column).")]
"""``--org`` of the commands that read a store: one organisation's rows."""
ProjectOpt = Annotated[str | None, typer.Option("--project", help="Only this project: its ID, or its name.")]
"""``--project`` of the commands that read spend (``check`` says more in its own)."""
NamesOpt = Annotated[
    Path | None, typer.Option("--names", help="Names for IDs: a .toml, .json or .csv file (see the README).")
]
"""``--names``: a names file whose names win over the synced directory's."""
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="First UTC day: a date, a datetime, today, yesterday, or a number of whole days ending today (30d = "
        "today and the 29 days before). Default: 30d.",
    ),
]
"""``--since`` of the reports over a period (:func:`usageledger.report.period.report_period`)."""
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="End of the period, exclusive (a date or datetime). Default: tomorrow.")
]
"""``--until``, the end of :data:`SinceOpt`'s period."""
NowOpt = Annotated[str | None, typer.Option("--now", hidden=True, help="Pretend it is this time (tests).")]
"""A hidden ``--now`` for tests and replays."""
