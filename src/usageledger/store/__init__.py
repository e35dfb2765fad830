"""The store: one table per endpoint, stream state and runs, in DuckDB (the default) or PostgreSQL.

``open_store(url)`` picks the back end: a ``postgresql://`` (or ``postgres://``) URL means PostgreSQL, anything
else is a DuckDB file path. The store is migrated on open unless ``migrate=False``. ``open_existing_store(url)`` is
how every command that only reads opens it: it never creates, migrates or waits for long.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

from usageledger._paths import expand_home
from usageledger._secrets import key_named, mask_keys, redact_url_password
from usageledger.errors import ParameterError, StoreError
from usageledger.store._base import BaseStore
from usageledger.store._filelock import LOCK_SUFFIX, READERS_SUFFIX
from usageledger.store._types import *  # noqa: F403  (the store's records: their one list is _types.__all__)
from usageledger.store._types import DEMO_ORG
from usageledger.store._types import __all__ as _records
from usageledger.store.schema import TableSpec, daily_view_name, table_for, tables
from usageledger.store.streams import Stream, default_streams, encode_group_key

__all__ = [
    *_records,
    "DEFAULT_STORE",
    "BaseStore",
    "Store",
    "Stream",
    "TableSpec",
    "check_store_url",
    "daily_view_name",
    "default_streams",
    "encode_group_key",
    "is_postgres_url",
    "open_existing_store",
    "store_files",
    "open_store",
    "require_store",
    "table_for",
    "tables",
]

Store = BaseStore
DEFAULT_STORE: Final = "usageledger.duckdb"
"""The default store: a DuckDB file in the working directory."""


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_NEAR_POSTGRES: Final = re.compile(r"postgres(?:ql)?(?::/*|//+)", re.IGNORECASE)
"""The start of a PostgreSQL URL typed carelessly: any case, a slash or the colon missing. A DuckDB path never
starts so (``postgres/ledger.duckdb``, a file in a folder, does not match)."""


_LIBPQ_WORDS: Final = re.compile(
    r"^(?:host|hostaddr|port|dbname|user|password|passfile|service|sslmode|connect_timeout)\s*=", re.IGNORECASE
)
"""The start of libpq's keyword/value connection string, which psycopg takes but a store never is (never shown:
it may hold a password)."""


def store_files(url: str) -> list[tuple[str, str]]:
    """What a DuckDB store at ``url`` is made of, as ``(what, path)``: the file, its WAL and its lock files; none for a
    PostgreSQL URL or an in-memory database."""
    if is_postgres_url(url) or url == ":memory:":
        return []
    url = expand_home(url)
    files = [("the DuckDB store", url), ("the DuckDB store's WAL", f"{url}.wal")]
    return files + [("a lock file of the DuckDB store", url + suffix) for suffix in (LOCK_SUFFIX, READERS_SUFFIX)]


def check_store_url(url: str | Path) -> str:
    """``url`` as text (a DuckDB path's leading ``~`` made the home folder: :func:`~usageledger._paths.expand_home`),
    or :class:`StoreError` for a scheme other than PostgreSQL's, before anything opens it.

    Without this, DuckDB would read ``md:x`` or ``https://host/x`` as a location of its own and try to download an
    extension for it; a one-letter "scheme" is a Windows drive, a path.
    """
    if not isinstance(url, str | Path):  # `open_store(None)` made a store named "None" in the working folder
        raise StoreError(
            f"the store must be a DuckDB file path (str or Path) or a postgresql:// URL, not {type(url).__name__}"
        )
    text = str(url)
    if not text:  # DuckDB reads "" as an in-memory database, which keeps nothing (as `:memory:`)
        raise StoreError("the store is empty: give a DuckDB file path (like usageledger.duckdb) or a postgresql:// URL")
    if "\x00" in text:
        raise StoreError(f"the store {redact_url_password(text)!r} holds a NUL character; no file or URL can")
    if text != text.strip():  # ` postgresql://…` was a DuckDB file in a folder named ` postgresql:`
        raise StoreError(
            f"the store {redact_url_password(text)!r} starts or ends with white space (a paste slip?); remove it"
        )
    misspelled = _NEAR_POSTGRES.match(text)
    if misspelled and not is_postgres_url(text):  # `postgresql:/u:pw@h`, `postgres//h/db`, `POSTGRESQL://h/db`
        raise StoreError(
            f"the store {redact_url_password(text)} looks like a PostgreSQL URL, but it starts with "
            f"{misspelled.group(0)!r}; start it with postgresql:// (lower case, two slashes)"
        )
    if _LIBPQ_WORDS.match(text):  # `host=db dbname=ledger password=…` became a DuckDB file of that name
        raise StoreError(
            "the store looks like a PostgreSQL keyword/value connection string (host=... dbname=...); give it as a "
            "URL: postgresql://USER@HOST:PORT/DBNAME (keep the password in PGPASSFILE or PGPASSWORD)"
        )
    scheme = _SCHEME.match(text)
    if scheme and not is_postgres_url(text):
        raise StoreError(
            f"unsupported store {redact_url_password(text)}: the scheme {scheme.group(1)}: is not one usageledger "
            "stores in; give a DuckDB file path or a postgresql:// URL"
        )
    if text == ":memory:":  # `sync --store :memory:` synced, said it succeeded and kept nothing
        raise StoreError(
            "unsupported store :memory:: an in-memory database keeps nothing once the command ends; give a DuckDB "
            "file path (like usageledger.duckdb) or a postgresql:// URL"
        )
    if not is_postgres_url(text):
        text = expand_home(text)
    if not is_postgres_url(text) and key_named(text) and not Path(text).exists():
        # `--store "$OPENAI_ADMIN_KEY"` (or the key pasted after --store): a DuckDB file named by the key, the key
        # written into the config by `init` and left in every listing of the folder
        raise StoreError(
            f"the store {mask_keys(text)} looks like an API key, not a DuckDB file or a postgresql:// URL; put the key"
            " in OPENAI_ADMIN_KEY, and give the store's path (like usageledger.duckdb)"
        )
    if not is_postgres_url(text) and Path(text).suffix.lower() in _NOT_A_STORE and not Path(text).exists():
        # `sync --store usageledger.toml` made a database where every later command looks for its config
        raise StoreError(
            f"{text} is named like a {_NOT_A_STORE[Path(text).suffix.lower()]}, not a store: give the store a name "
            "of its own, like usageledger.duckdb"
        )
    return text


_NOT_A_STORE: Final = {
    ".toml": "config file",
    ".csv": "CSV export",
    ".jsonl": "JSON Lines export",
    ".json": "JSON file",
    ".parquet": "Parquet export",
    ".html": "web page",
    ".png": "chart",
    # A store beside another's own files: DuckDB takes `x.duckdb.wal` for x.duckdb's log, replays and deletes it
    ".wal": "DuckDB write-ahead log",
    LOCK_SUFFIX: "lock file of a store",
    READERS_SUFFIX: "lock file of a store",
}
"""Endings of the files usageledger reads or writes besides its store: a store by such a name is a slip."""


def require_store(value: object, param: str = "store") -> BaseStore:
    """``value`` if it is an open store, else a ParameterError naming ``param``: a path passed where the library
    takes a store failed deep inside (``'str' object has no attribute 'query'``)."""
    if not isinstance(value, BaseStore):
        raise ParameterError(param, f"expected an open store (open_store(url)), got {type(value).__name__}")
    return value


def open_store(
    url: str | Path = DEFAULT_STORE,
    *,
    migrate: bool = True,
    read_only: bool = False,
    brief: str | None = None,
    what: str = "sync",
    on_wait: Callable[[str], None] | None = None,
) -> BaseStore:
    """Open (and by default migrate) the store at ``url``: a ``postgresql://`` URL or a DuckDB file path.

    ``brief`` names a write of a few rows (``credit add``, ``close``): another writer of a DuckDB file waits for it
    (bounded) rather than being refused, and ``on_wait`` hears once when this one waits for such a write. ``what``
    names a long write (``sync``, ``demo``, ``init``): a process that finds a DuckDB file taken is told what holds
    it."""
    text = check_store_url(url)
    store: BaseStore
    if is_postgres_url(text):
        from usageledger.store.postgres import PostgresStore

        store = PostgresStore(text, writes=not read_only)
    else:
        from usageledger.store.duckdb import DuckDBStore

        store = DuckDBStore(text, read_only=read_only, on_wait=on_wait, brief=brief, what=what)
    if migrate and not read_only:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


def _only_demo(store: BaseStore) -> bool:
    """Whether every org a store holds is the demo's (``usageledger demo``'s own org)."""
    orgs = store.known_orgs() if "orgs" in store._table_columns() else []
    return bool(orgs) and set(orgs) == {DEMO_ORG}


def open_existing_store(
    url: str | Path, *, on_wait: Callable[[str], None] | None = None, elsewhere: str | None = None
) -> BaseStore:
    """Open a store that must already exist, to read it: never creates a file, a table or a folder, never migrates.

    A missing DuckDB file, a PostgreSQL database without usageledger's tables, and a store of an older schema are
    each a :class:`StoreError` of one line that says how to fix it. A DuckDB store that a running sync holds is
    waited for (bounded); ``on_wait`` hears that once (the CLI prints it on stderr). ``elsewhere`` is how the
    missing store's line says to read another (:func:`~usageledger.store.duckdb.no_store_message`).
    """
    text = check_store_url(url)
    store: BaseStore
    if is_postgres_url(text):
        from usageledger.store.postgres import PostgresStore

        store = PostgresStore(text, writes=False)
    else:
        from usageledger.store.duckdb import DuckDBStore, no_store_message

        if not Path(text).exists():  # checked here too, so nothing below ever gets the chance to create it
            raise StoreError(no_store_message(text, elsewhere))
        store = DuckDBStore(text, read_only=True, on_wait=on_wait)
    try:
        applied = store.applied_migrations()
        if not applied and not is_postgres_url(text):
            from usageledger.store.duckdb import foreign_message, foreign_tables

            assert isinstance(store, DuckDBStore)
            foreign = foreign_tables(store.connection)
            if foreign:  # another program's database: `sync` refuses it too, so never advise it
                raise StoreError(foreign_message(text, foreign))
        if not applied:
            raise StoreError(
                f"no usageledger store in {redact_url_password(text)}: it holds none of usageledger's tables; run"
                " `usageledger sync` (or `usageledger init`) to create them, or pass --store to read another"
            )
        if store.pending_migrations():
            shown = redact_url_password(text)
            # The demo's store: `sync` would ask the real API, whose data the store refuses beside the demo's.
            how = "usageledger sync" if not _only_demo(store) else f"usageledger demo --store {shown}"
            raise StoreError(f"the store {shown} has an older schema: run `{how}` once to migrate it")
    except BaseException:
        store.close()
        raise
    return store
