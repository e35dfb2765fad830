"""The files a command's store would be made of, removed again when the command is refused before it starts."""

from __future__ import annotations

import contextlib
from pathlib import Path

from usageledger.store import store_files

__all__ = ["NewStore"]


class NewStore:
    """The DuckDB files of the store at ``url`` that this run will make: every one of :func:`store_files` when none
    of them exists yet, else none (a store already there is never removed); none for PostgreSQL.

    Looked at before the store is opened. ``sync`` refused by its request estimate, and ``serve`` refused by anything
    at start-up (the estimate, a config error, a flag), call :meth:`remove`, so a refused command leaves no empty store
    behind that the next command would read as a synced ledger with no data."""

    def __init__(self, url: str) -> None:
        files = [Path(f) for _, f in store_files(url)]
        self.files: tuple[Path, ...] = () if any(f.exists() for f in files) else tuple(files)

    def remove(self) -> None:
        """Remove the files this run made (after the store is closed)."""
        for path in self.files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
