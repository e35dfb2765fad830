"""Named, ordered schema migrations, recorded in ``schema_migrations``; the pending ones are applied together in
one transaction.

The list only ever grows: a released migration is never edited. Endpoint tables and views are derived from the
catalogue, so a catalogue change (a new endpoint or column) is picked up by the ``catalogue`` step, recorded under
a name that carries :data:`CATALOGUE_VERSION` and a digest of the derived schema
(``0002_catalogue_v1_<digest>``): adding an endpoint needs no hand-written migration and no hand edit here. The
version tells an older catalogue from a newer one, which a digest cannot: a store whose catalogue step has a higher
version was made by a newer usageledger and is refused, as a hand-written migration this code does not know is.
Names without a version (``0002_catalogue_<digest>``) were recorded before versions, by an older usageledger.

The versions are data that ``scripts/generate`` writes (``store/_catalogue_versions.py``, :data:`CATALOGUE_VERSIONS`):
every version's digest in order, the newest being this catalogue's. When :func:`catalogue_digest` is not the newest
version's digest, the generator appends the next version with it; it never changes or drops one, as released
versions are recorded in stores. So a catalogue changed and changed back gets a new version with its old digest
(``{1: a, 2: b, 3: a}``; a number is never reused). A catalogue changed without rerunning the generator fails
``tests/test_generate.py`` (the file would change) and ``tests/store/test_store_lifecycle.py`` (the newest digest is
not this catalogue's); a versions file missing or out of order is refused by the generator, and one with a released
version dropped or changed by hand fails the lifecycle test, which pins the released digests.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from usageledger.store import closes, credit, directory, revisions, watermarks
from usageledger.store._catalogue_versions import VERSIONS as CATALOGUE_VERSIONS
from usageledger.store.schema import Dialect, q, tables

__all__ = [
    "CATALOGUE_PREFIX",
    "CATALOGUE_VERSION",
    "CATALOGUE_VERSIONS",
    "MIGRATIONS",
    "Migration",
    "all_names",
    "catalogue_digest",
    "catalogue_migration",
    "catalogue_version",
    "pending",
    "unknown",
]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: a unique name (ordered by its number) and the statements it runs."""

    name: str
    statements: Callable[[Dialect, Mapping[str, Sequence[str]]], list[str]]
    """Given the dialect and the existing tables' columns (``{table: [column, ...]}``), the SQL to run."""


def _core(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS streams (
  org TEXT NOT NULL,
  stream TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  bucket_width TEXT NOT NULL,
  group_by TEXT NOT NULL,
  filters TEXT NOT NULL,
  is_default BOOLEAN NOT NULL,
  watermark TIMESTAMPTZ,
  last_run_id TEXT,
  last_run_at TIMESTAMPTZ,
  last_status TEXT,
  last_error TEXT,
  row_count BIGINT NOT NULL DEFAULT 0,
  last_inserted BIGINT NOT NULL DEFAULT 0,
  last_updated BIGINT NOT NULL DEFAULT 0,
  last_unchanged BIGINT NOT NULL DEFAULT 0,
  last_deleted BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (org, stream)
)""",
        """CREATE TABLE IF NOT EXISTS sync_runs (
  run_id TEXT PRIMARY KEY,
  started_at TIMESTAMPTZ NOT NULL,
  finished_at TIMESTAMPTZ,
  status TEXT NOT NULL,
  command TEXT NOT NULL,
  streams BIGINT NOT NULL DEFAULT 0,
  windows BIGINT NOT NULL DEFAULT 0,
  requests BIGINT NOT NULL DEFAULT 0,
  inserted BIGINT NOT NULL DEFAULT 0,
  updated BIGINT NOT NULL DEFAULT 0,
  unchanged BIGINT NOT NULL DEFAULT 0,
  deleted BIGINT NOT NULL DEFAULT 0,
  error TEXT
)""",
    ]


def _views(dialect: Dialect) -> list[str]:
    """The daily views, and the named views over them (``costs_daily_named``: dropped first, as PostgreSQL refuses to
    drop a view another one uses). They join ``directory_versions``, which migration 0005 has made by then."""
    out: list[str] = []
    for spec in tables():
        named = directory.named_view_sql(spec)
        out.append(f"DROP VIEW IF EXISTS {directory.named_view(spec)}")
        out.append(f"DROP VIEW IF EXISTS {spec.daily_view}")
        out.append(spec.daily_view_sql())
        if named is not None:
            out.append(named)
    return out


def _endpoint_tables(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """Create missing endpoint tables, add missing columns, and (re)create the daily views."""
    out: list[str] = []
    for spec in tables():
        have = existing.get(spec.name)
        if have is None:
            out.append(spec.create_sql(dialect))
            continue
        for col in spec.column_names:
            if col not in have:
                out.append(f"ALTER TABLE {spec.name} ADD COLUMN {q(col)} {spec.sql_type(dialect, col)}")
    if revisions.ENTRIES in existing:  # the log's insert tables follow the catalogue's metrics (migration 0009)
        out += revisions.log_tables_statements(dialect, existing)
    return out + _views(dialect)


def _org_registry(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """The ``orgs`` registry: which orgs hold synthetic data. A store written before it knows only the org names,
    so the demo's org ``demo`` is recorded as synthetic and every other org as real (source ``migrated``)."""
    return [
        """CREATE TABLE IF NOT EXISTS orgs (
  org TEXT PRIMARY KEY,
  synthetic BOOLEAN NOT NULL,
  source TEXT NOT NULL,
  registered_at TIMESTAMPTZ
)""",
        "INSERT INTO orgs (org, synthetic, source, registered_at)"
        " SELECT DISTINCT org, org = 'demo', 'migrated', CAST(NULL AS TIMESTAMPTZ) FROM streams"
        " ON CONFLICT (org) DO NOTHING",
    ]


def _run_owner(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """The process of each run (pid, host, process start time), so a run whose process died is found out."""
    have = existing.get("sync_runs", ())
    columns = {"pid": "BIGINT", "host": "TEXT", "pid_started": "BIGINT"}
    return [f"ALTER TABLE sync_runs ADD COLUMN {n} {t}" for n, t in columns.items() if n not in have]


def _store_identity(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """The store's identity: a random UUID made once, when the store is created or first migrated, and never
    changed. What a store writes outside itself (a Delta export) carries it, so that another store's export is never
    merged over it (``export_delta``)."""
    return [
        "CREATE TABLE IF NOT EXISTS store_identity (id TEXT NOT NULL)",
        f"INSERT INTO store_identity (id) SELECT '{uuid.uuid4()}' WHERE NOT EXISTS (SELECT 1 FROM store_identity)",
    ]


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration("0001_streams_and_sync_runs", _core),
    Migration("0003_org_registry", _org_registry),
    Migration("0004_sync_run_owner", _run_owner),
    Migration("0005_directory", directory.migration_statements),  # the directory's versions (store/directory.py)
    Migration(revisions.MIGRATION_NAME, revisions.migration_statements),  # the revision log (store/revisions.py)
    Migration(credit.MIGRATION_NAME, credit.migration_statements),  # prepaid credit top-ups (store/credit.py)
    Migration(closes.MIGRATION_NAME, closes.migration_statements),  # closed months' figures (store/closes.py)
    Migration(revisions.INSERTS_MIGRATION, revisions.inserts_migration_statements),  # fresh inserts logged wide
    Migration("0010_store_identity", _store_identity),
    Migration(closes.SEQ_MIGRATION, closes.seq_migration_statements),  # the log's high-water mark at each close
    Migration(watermarks.MIGRATION_NAME, watermarks.migration_statements),  # each stream's watermark moves
    Migration(watermarks.REGISTRATION_MIGRATION, watermarks.registration_statements),  # when each stream began
    Migration(directory.REFRESH_MIGRATION, directory.refresh_migration_statements),  # each org's last refresh
)
"""The hand-written migrations, in order. The catalogue step runs after them."""


@functools.cache
def catalogue_digest() -> str:
    """A digest of the schema the catalogue derives (endpoint tables, daily and named views, the log's tables).

    Worked out once a process: the catalogue is fixed data, and every open of a store asks for it (three times), at
    ~6 ms a time."""
    parts: list[str] = []
    for spec in tables():
        parts.append(spec.name + ":" + ",".join(f"{n}={t}" for n, t in spec.incoming_columns))
        parts.append(spec.daily_view_sql())
        parts.append(directory.named_view_sql(spec) or "")
    parts += revisions.log_tables_statements("duckdb", {})
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


CATALOGUE_PREFIX: Final = "0002_catalogue_"
"""How the catalogue step's name starts; the version and the digest follow."""

CATALOGUE_VERSION: Final = max(CATALOGUE_VERSIONS)
"""The newest catalogue version, whose digest is :func:`catalogue_digest` (``scripts/generate`` appends a version
with every change of it, in ``store/_catalogue_versions.py``)."""

_VERSIONED: Final = re.compile(r"v([0-9]+)_[0-9a-f]+")


def catalogue_version(name: str) -> int | None:
    """The catalogue version a migration name records: ``None`` for a hand-written migration, 0 for a catalogue step
    recorded before versions (``0002_catalogue_<digest>``, always older than this code's)."""
    if not name.startswith(CATALOGUE_PREFIX):
        return None
    versioned = _VERSIONED.fullmatch(name.removeprefix(CATALOGUE_PREFIX))
    return int(versioned.group(1)) if versioned else 0


def catalogue_migration() -> Migration:
    """The step that brings endpoint tables and views in line with the catalogue, named by its version and digest."""
    return Migration(f"{CATALOGUE_PREFIX}v{CATALOGUE_VERSION}_{catalogue_digest()}", _endpoint_tables)


def pending(applied: Sequence[str]) -> list[Migration]:
    """The migrations not yet recorded, in order. The catalogue step recorded under its name from before versions
    (the same digest, so the same schema) counts as done: a store already in line is not migrated again."""
    done = set(applied)
    if f"{CATALOGUE_PREFIX}{catalogue_digest()}" in done:
        done.add(catalogue_migration().name)
    return [m for m in (*MIGRATIONS, catalogue_migration()) if m.name not in done]


def unknown(applied: Sequence[str]) -> list[str]:
    """The applied migrations this code does not know: a newer usageledger made them, and this one must neither read
    nor write the store (it would misread a changed table, or migrate over a newer schema). A catalogue step of a
    higher version is among them (a newer catalogue's views would be replaced by this one's); one of a lower or the
    same version is not: this code's own catalogue step only adds what an older one lacks."""
    known = set(all_names())
    return [name for name in applied if name not in known and _newer(catalogue_version(name))]


def _newer(version: int | None) -> bool:
    """Whether an unknown migration of this catalogue ``version`` (``None``: hand-written) is a newer code's."""
    return version is None or version > CATALOGUE_VERSION


def all_names() -> list[str]:
    return [m.name for m in (*MIGRATIONS, catalogue_migration())]
