"""The store: one table per endpoint, stream state and runs, in DuckDB (the default) or PostgreSQL.

``open_store(url)`` picks the back end: a ``postgresql://`` (or ``postgres://``) URL means PostgreSQL, anything
else is a DuckDB file path. The store is migrated on open unless ``migrate=False``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from usageledger._secrets import redact_url_password
from usageledger.errors import StoreError
from usageledger.store._base import BaseStore
from usageledger.store._types import (
    OrgRecord,
    PreparedWindow,
    RunningRun,
    RunOwner,
    RunTotals,
    StreamState,
    UpsertCounts,
    WindowWrite,
)
from usageledger.store.schema import TableSpec, daily_view_name, table_for, tables
from usageledger.store.streams import Stream, default_streams, encode_group_key

__all__ = [
    "DEFAULT_STORE",
    "BaseStore",
    "OrgRecord",
    "PreparedWindow",
    "RunOwner",
    "RunTotals",
    "RunningRun",
    "Store",
    "Stream",
    "StreamState",
    "TableSpec",
    "UpsertCounts",
    "WindowWrite",
    "check_store_url",
    "daily_view_name",
    "default_streams",
    "encode_group_key",
    "is_postgres_url",
    "open_store",
    "table_for",
    "tables",
]

Store = BaseStore
DEFAULT_STORE: Final = "usageledger.duckdb"
"""The default store: a DuckDB file in the working directory."""


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


def check_store_url(url: str | Path) -> str:
    """``url`` as text, or :class:`StoreError` for a scheme other than PostgreSQL's, before anything opens it.

    Without this, DuckDB would read ``md:x`` or ``https://host/x`` as a location of its own and try to download an
    extension for it; a one-letter "scheme" is a Windows drive, a path.
    """
    text = str(url)
    scheme = _SCHEME.match(text)
    if scheme and not is_postgres_url(text):
        raise StoreError(
            f"unsupported store {redact_url_password(text)}: the scheme {scheme.group(1)}: is not one usageledger "
            "stores in; give a DuckDB file path or a postgresql:// URL"
        )
    return text


def open_store(url: str | Path = DEFAULT_STORE, *, migrate: bool = True, read_only: bool = False) -> BaseStore:
    """Open (and by default migrate) the store at ``url``: a ``postgresql://`` URL or a DuckDB file path."""
    text = check_store_url(url)
    store: BaseStore
    if is_postgres_url(text):
        from usageledger.store.postgres import PostgresStore

        store = PostgresStore(text)
    else:
        from usageledger.store.duckdb import DuckDBStore

        store = DuckDBStore(text, read_only=read_only)
    if migrate and not read_only:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
