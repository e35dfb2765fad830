"""``usageledger version``."""

from __future__ import annotations

import sys

from usageledger import __version__
from usageledger.cli._app import app, reader_gone


@app.command()
def version() -> None:
    """Print the installed usageledger version (also: --version)."""
    # Written plainly, not through the rich console: the lightest command does not import rich (~35 ms).
    try:
        sys.stdout.write(f"{__version__}\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise reader_gone() from None
