"""``usageledger doctor``: run the set-up checks of :mod:`usageledger.doctor` and print each finding with its fix."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.markup import escape

from usageledger._text import counted
from usageledger.cli._app import app, console, friendly_errors, given_as, setup_logging
from usageledger.cli._flags import Insecure, StoreOpt, Verbose
from usageledger.doctor import Diagnosis, Finding, diagnose

_MARKS: Final = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[bold red]✗[/]", "skip": "[dim]-[/]"}
_ASCII_MARKS: Final = {"ok": "[green]ok[/]", "warn": "[yellow]![/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]-[/]"}
"""The marks where standard output cannot encode ✓ and ✗ (``PYTHONIOENCODING=latin-1``, a legacy console): both
were printed as ``?``, so a passed check and a failed one read the same."""


def _marks() -> dict[str, str]:
    try:
        "✓✗".encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return _ASCII_MARKS
    return _MARKS


def _render(finding: Finding) -> None:
    console.print(
        f"{_marks()[finding.status]} [bold]{escape(finding.check)}[/]: {escape(finding.finding)}",
        highlight=False,
        soft_wrap=True,
    )
    if finding.fix and finding.status in ("fail", "warn"):
        console.print(f"    [bold]fix:[/] {escape(finding.fix)}", highlight=False, soft_wrap=True)


def render(diagnosis: Diagnosis) -> None:
    """Every finding, one line each (plus its fix), then a one-line verdict."""
    for finding in diagnosis.findings:
        _render(finding)
    failed = len(diagnosis.failures)
    if failed:
        console.print(f"[bold red]{counted(failed, 'problem')} found.[/]", highlight=False)
    else:
        console.print("[green]All checks passed.[/]", highlight=False)


@app.command()
@friendly_errors
def doctor(
    config_path: Annotated[
        Path | None, typer.Option("--config", help="Config file (default: $USAGELEDGER_CONFIG or ./usageledger.toml).")
    ] = None,
    store: StoreOpt = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="API base URL ending in /v1 (default: the config, OPENAI_BASE_URL)."),
    ] = None,
    allow_insecure_http: Insecure = False,
    verbose: Verbose = 0,
) -> None:
    """Check the set-up (config, key, base URL, a probe request, store) and say what is wrong and how to fix it.

    Exits 0 when every check passes, 1 otherwise.
    """
    setup_logging(verbose)
    diagnosis = diagnose(
        config_path=config_path,
        store=store,
        base_url=base_url,
        allow_insecure_http=allow_insecure_http,
        store_source=given_as("store", "--store"),
    )
    render(diagnosis)
    if not diagnosis.ok:
        raise typer.Exit(1)
