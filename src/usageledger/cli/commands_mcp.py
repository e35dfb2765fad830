"""``usageledger mcp``: the ledger as a Model Context Protocol server over stdio (the ``mcp`` extra)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from usageledger.cli._app import app, fail, friendly_errors, open_for_reading, resolve_store, say
from usageledger.cli._flags import ConfigOpt, StoreOpt
from usageledger.config import load_config
from usageledger.store import BaseStore


@app.command()
@friendly_errors
def mcp(store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Serve the store to an assistant over MCP (stdio): spend, usage, movers, changes, alerts, lookup; read-only.

    Never calls the API: every answer comes from the store. Needs the extra: pip install 'usageledger[mcp]'.
    """
    try:
        from usageledger.mcp_server import build_server
    except ImportError:
        raise fail("usageledger mcp needs the mcp extra: pip install 'usageledger[mcp]'") from None
    from usageledger.mcp_tools import LedgerTools

    settings = load_config(config)
    url = resolve_store(store, settings)
    with open_for_reading(url):  # a missing or foreign store is one line now, not an error on every call
        pass

    @contextmanager
    def reading() -> Iterator[BaseStore]:
        with open_for_reading(url) as db:
            yield db

    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _stop_now)
    if sys.stdin.isatty():  # started by hand: it waits for an assistant's JSON-RPC and would say nothing at all
        say(
            "usageledger mcp: serving the store over MCP on stdin/stdout, for an assistant to start (its config: see "
            "the README's MCP section); typing here does nothing useful. Ctrl-C stops it."
        )
    build_server(LedgerTools(reading, settings)).run("stdio")


def _stop_now(signum: int, frame: object) -> None:
    """Ctrl-C or SIGTERM (an assistant stopping it) ends the server at once, with the shell's code for the signal.
    The stdio transport reads stdin in a worker thread that no cancellation reaches, so the event loop's own
    handling waited for the next line on stdin, for ever on a terminal; the server keeps no state and writes nothing
    but its answers, so there is nothing to finish."""
    os._exit(128 + signum)
