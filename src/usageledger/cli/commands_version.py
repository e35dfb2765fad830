"""``usageledger version``."""

from __future__ import annotations

from usageledger import __version__
from usageledger.cli._app import app, console


@app.command()
def version() -> None:
    """Print the installed usageledger version."""
    console.print(__version__, highlight=False)
