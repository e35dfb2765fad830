"""The directory in the store: every version of every project, user, key, service account, group and membership.

One table, ``directory_versions``, keeps type-2 history per org: a version is valid over ``[valid_from, valid_to)``
(``valid_to`` NULL for the current one). :func:`refresh` compares a fresh :class:`Snapshot` of the admin API's lists
with the current versions, in one transaction:

* an item whose fields changed (a renamed project, an archived one) gets its current version closed and a new one;
* an item that is no longer listed (a deleted key, a removed member) gets its current version closed and a version
  with ``status = 'deleted'`` that keeps its name, so last year's spend still has a name;
* an unchanged item is left alone: refreshing twice with the same lists writes nothing (idempotent), and a crash
  before the commit leaves the previous versions as they were.

``directory_current`` holds the current versions; ``directory_<kind>s`` views (``directory_projects``,
``directory_project_api_keys``, ...) one kind each. Kinds are the catalogue's item names (``project``,
``project_api_key``, ``project_user`` ...); ``scope`` is the project or group a scoped item belongs to ('' if none).

``directory_refreshes`` holds each org's last refresh as a stream's last run is held in ``streams``: when it began,
the sync run it was part of, and how it ended (``running``, ``ok``, ``failed``, ``interrupted``, ``abandoned``),
with the error. An unchanged directory writes no version, so without it a refresh that never finished (Ctrl-C in
its reads, a key the lists refuse) looked like one that found nothing new.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from usageledger import catalogue
from usageledger.store._types import UpsertCounts, to_datetime, to_unix
from usageledger.store.schema import Dialect, TableSpec, q


class BaseStore(Protocol):
    """What this module uses of :class:`usageledger.store._base.BaseStore` (which runs its migration)."""

    def transaction(self) -> AbstractContextManager[None]: ...
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def lock_in_transaction(self, *key: str, shared: bool = False) -> None: ...


__all__ = [
    "KINDS",
    "LISTED_LAST",
    "NAMED_IDS",
    "REFRESH_MIGRATION",
    "DirectoryCounts",
    "DirectoryRefresh",
    "DirectorySummary",
    "Entry",
    "NamedId",
    "Snapshot",
    "current_names",
    "directory_summary",
    "migration_statements",
    "name_joins",
    "named_ids",
    "named_view",
    "named_view_sql",
    "record_refresh",
    "refresh",
    "refresh_migration_statements",
]

KINDS: Final[tuple[str, ...]] = tuple(ep.item for ep in catalogue.DIRECTORY)
"""Every kind of directory item, one per catalogue list."""

LISTED_LAST: Final = "CASE WHEN status = 'deleted' THEN 0 ELSE 1 END"
"""The order, after ``valid_from``, in which a reader of an item's versions takes them (the last one read wins):
an item of a scoped kind that one refresh lists under another scope (a key moved to another project) gets, at the
same ``valid_from``, a deleted version in its old scope and a listed one in its new; the listed one is its state.
Ordered by ``valid_from`` alone, the tie fell as the back end liked: the key read as deleted on DuckDB, and on
PostgreSQL as either."""

_COLUMNS: Final = (
    "org, kind, scope, id, name, email, status, owner_type, owner_id, record, digest, valid_from, valid_to"
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One item as listed now: its kind, scope and ID, the fields reports use, and the whole object as JSON."""

    kind: str
    scope: str
    id: str
    name: str | None
    record: str
    email: str | None = None
    status: str | None = None
    owner_type: str | None = None
    owner_id: str | None = None

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.record.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The lists read now. ``complete`` names the (kind, scope) lists read in full: only those can show a deletion."""

    entries: Sequence[Entry]
    complete: frozenset[tuple[str, str]] = field(default_factory=frozenset)


class DirectoryCounts(UpsertCounts):
    """What a refresh did to an org's directory, counted as a sync write is: items new, changed (``updated``: a new
    version), unchanged, and deleted."""

    __slots__ = ()

    @property
    def changed(self) -> int:
        """The directory's word for ``updated``."""
        return self.updated


def migration_statements(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """Migration 0005: the versions table, its current view and one view per kind."""
    out = [
        """CREATE TABLE IF NOT EXISTS directory_versions (
  org TEXT NOT NULL,
  kind TEXT NOT NULL,
  scope TEXT NOT NULL,
  id TEXT NOT NULL,
  name TEXT,
  email TEXT,
  status TEXT,
  owner_type TEXT,
  owner_id TEXT,
  record TEXT NOT NULL,
  digest TEXT NOT NULL,
  valid_from TIMESTAMPTZ NOT NULL,
  valid_to TIMESTAMPTZ,
  PRIMARY KEY (org, kind, scope, id, valid_from)
)""",
        "DROP VIEW IF EXISTS directory_current",
        "CREATE VIEW directory_current AS SELECT * FROM directory_versions WHERE valid_to IS NULL",
    ]
    for kind in KINDS:
        out.append(f"DROP VIEW IF EXISTS directory_{kind}s")
        out.append(
            f"CREATE VIEW directory_{kind}s AS SELECT org, scope, id, name, email, status, owner_type, owner_id, "
            f"record, valid_from FROM directory_current WHERE kind = '{kind}'"
        )
    return out


REFRESH_MIGRATION: Final = "0015_directory_refreshes"


def refresh_migration_statements(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """Migration 0015: ``directory_refreshes``, each org's last refresh (none recorded for a store made before it)."""
    return [
        """CREATE TABLE IF NOT EXISTS directory_refreshes (
  org TEXT PRIMARY KEY,
  run_id TEXT,
  started_at TIMESTAMPTZ NOT NULL,
  finished_at TIMESTAMPTZ,
  status TEXT NOT NULL,
  error TEXT
)"""
    ]


@dataclass(frozen=True, slots=True)
class DirectoryRefresh:
    """An org's last directory refresh: when it began, the sync run it was part of (``None``: not a sync's), and
    its status (``running``, ``ok``, ``failed``, ``interrupted`` or ``abandoned``) with the error."""

    started_at: int
    run_id: str | None
    status: str
    error: str | None = None


def record_refresh(
    store: BaseStore,
    org: str,
    *,
    run_id: str | None,
    started_at: int,
    status: str,
    error: str | None = None,
    finished_at: int | None = None,
) -> None:
    """Record ``org``'s refresh that began at ``started_at``: ``running`` when it begins, how it ended at
    ``finished_at``. One row an org: the last refresh replaces the one before."""
    with store.transaction():
        store.execute(
            "INSERT INTO directory_refreshes (org, run_id, started_at, finished_at, status, error)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (org) DO UPDATE SET run_id = excluded.run_id,"
            " started_at = excluded.started_at, finished_at = excluded.finished_at, status = excluded.status,"
            " error = excluded.error",
            (
                org,
                run_id,
                to_datetime(started_at),
                None if finished_at is None else to_datetime(finished_at),
                status,
                error,
            ),
        )


def refresh(store: BaseStore, org: str, snapshot: Snapshot, *, at: int) -> DirectoryCounts:
    """Bring ``org``'s versions in line with ``snapshot`` at Unix time ``at``, in one transaction."""
    inserted = changed = deleted = unchanged = 0
    with store.transaction():
        # Two workers of one org refreshing at once both found no current version and both inserted one: every item
        # twice in directory_current (and every row of a named view that joins it). The later one now waits, then
        # compares with what the first committed.
        store.lock_in_transaction("directory", org)
        latest = store.query("SELECT MAX(valid_from) FROM directory_versions WHERE org = %s", [org])[0][0]
        last = to_unix(latest)
        when = to_datetime(at if last is None or at > last else last + 1)  # versions of one item never share a start
        current = {
            (kind, scope, id_): (digest, status, name, email, owner_type, owner_id)
            for kind, scope, id_, digest, status, name, email, owner_type, owner_id in store.query(
                "SELECT kind, scope, id, digest, status, name, email, owner_type, owner_id FROM directory_versions"
                " WHERE org = %s AND valid_to IS NULL",
                [org],
            )
        }
        seen: set[tuple[str, str, str]] = set()
        versions: list[tuple[Entry, str, str | None]] = []  # (item, digest, status) of each new version
        ending: list[tuple[str, str, str]] = []  # the items whose current version ends
        for e in snapshot.entries:
            key = (e.kind, e.scope, e.id)
            if key in seen:
                continue
            seen.add(key)
            old = current.get(key)
            if old is not None and old[0] == e.digest and old[1] != "deleted":
                unchanged += 1
                continue
            if old is not None:
                ending.append(key)
                changed += 1
            else:
                inserted += 1
            versions.append((e, e.digest, e.status))
        for key, (_, status, name, email, owner_type, owner_id) in current.items():
            if key in seen or status == "deleted" or (key[0], key[1]) not in snapshot.complete:
                continue
            ending.append(key)
            gone = Entry(key[0], key[1], key[2], name, "{}", email, "deleted", owner_type, owner_id)
            versions.append((gone, "deleted", "deleted"))
            deleted += 1
        # A statement each, not one a row (a first refresh of 5,000 users took 4 s on DuckDB, 0.08 s now: see
        # bench/BENCHMARKS.md); the closes first, so that they end only the versions before these.
        _close(store, org, ending, when)
        _insert(store, org, versions, when)
    return DirectoryCounts(inserted=inserted, updated=changed, unchanged=unchanged, deleted=deleted)


def _close(store: BaseStore, org: str, keys: Sequence[tuple[str, str, str]], when: object) -> None:
    """End the current version of each item ``(kind, scope, id)`` in ``keys`` at ``when``, in one statement."""
    if not keys:
        return
    kinds, scopes, ids = (list(part) for part in zip(*keys, strict=True))
    store.execute(
        "UPDATE directory_versions SET valid_to = %s WHERE org = %s AND valid_to IS NULL AND (kind, scope, id) IN"
        " (SELECT unnest(CAST(%s AS TEXT[])), unnest(CAST(%s AS TEXT[])), unnest(CAST(%s AS TEXT[])))",
        [when, org, kinds, scopes, ids],
    )


def _insert(store: BaseStore, org: str, versions: Sequence[tuple[Entry, str, str | None]], when: object) -> None:
    """Insert ``versions`` (item, digest, status), all valid from ``when``, in one statement: a column a list."""
    if not versions:
        return
    columns = [
        [e.kind, e.scope, e.id, e.name, e.email, status, e.owner_type, e.owner_id, e.record, digest]
        for e, digest, status in versions
    ]
    lists = ", ".join(["unnest(CAST(%s AS TEXT[]))"] * 10)
    store.execute(
        f"INSERT INTO directory_versions ({_COLUMNS}) SELECT %s, {lists}, %s, NULL",
        [org, *(list(column) for column in zip(*columns, strict=True)), when],
    )


def current_names(store: BaseStore, org: str, kind: str) -> dict[str, tuple[str | None, str | None]]:
    """``{id: (name, status)}`` of the latest version of every ``kind`` item ever seen (deleted ones included)."""
    rows = store.query(
        "SELECT id, name, status FROM directory_versions WHERE org = %s AND kind = %s"
        f" ORDER BY valid_from, {LISTED_LAST}",
        [org, kind],
    )
    return {id_: (name, status) for id_, name, status in rows}


@dataclass(frozen=True, slots=True)
class NamedId:
    """An ID column that the directory names: ``project_id`` is named by ``project`` items, and so on."""

    column: str
    prefix: str
    """``project``: the name columns are ``project_name`` and ``project_status``."""
    kinds: tuple[str, ...]


NAMED_IDS: Final[tuple[NamedId, ...]] = (
    NamedId("project_id", "project", ("project",)),
    NamedId("api_key_id", "api_key", ("project_api_key", "admin_api_key")),
    NamedId("user_id", "user", ("user",)),
)


def named_ids(columns: Sequence[str]) -> tuple[NamedId, ...]:
    """The named ID columns among ``columns``, in :data:`NAMED_IDS` order."""
    return tuple(n for n in NAMED_IDS if n.column in columns)


def name_joins(alias: str, named: Sequence[NamedId]) -> str:
    """``LEFT JOIN``s (same SQL in both dialects) that bring, for each of ``named`` on the relation ``alias``, the
    current version's name (a user's email where it has no name) and status as ``<prefix>_dir.name`` and
    ``<prefix>_dir.status``. A deleted item's current version keeps its name, so old rows keep theirs; one row per
    (org, id), so a join never multiplies rows. An item with a current listed version and a current deleted one (a
    key one refresh lists under another project: see :data:`LISTED_LAST`) takes the listed one's name and status;
    ``MAX(status)`` made every moved key ``deleted`` in the named views."""
    listed = "(status IS NULL OR status <> 'deleted')"
    joins = []
    for n in named:
        kinds = ", ".join(f"'{k}'" for k in n.kinds)
        joins.append(
            f"LEFT JOIN (SELECT org, id,"
            f" COALESCE(MAX(CASE WHEN {listed} THEN COALESCE(name, email) END), MAX(COALESCE(name, email))) AS name,"
            f" CASE WHEN MIN(CASE WHEN {listed} THEN 0 ELSE 1 END) = 0"
            f" THEN MAX(CASE WHEN {listed} THEN status END) ELSE MAX(status) END AS status"
            f" FROM directory_versions WHERE valid_to IS NULL AND kind IN ({kinds}) GROUP BY org, id) AS {n.prefix}_dir"
            f" ON {n.prefix}_dir.org = {alias}.org AND {n.prefix}_dir.id = {alias}.{q(n.column)}"
        )
    return "\n".join(joins)


def named_view(spec: TableSpec) -> str:
    """``costs_daily_named``: the daily view with its IDs' names."""
    return f"{spec.daily_view}_named"


def named_view_sql(spec: TableSpec) -> str | None:
    """The daily view plus ``<x>_name`` and ``<x>_status`` for each of its named IDs; ``None`` if it has none."""
    named = named_ids([c.name for c in spec.data_columns])
    if not named:
        return None
    extra = ", ".join(
        f"{n.prefix}_dir.name AS {n.prefix}_name, {n.prefix}_dir.status AS {n.prefix}_status" for n in named
    )
    return f"CREATE VIEW {named_view(spec)} AS\nSELECT d.*, {extra}\nFROM {spec.daily_view} AS d\n" + name_joins(
        "d", named
    )


SUMMARY_KINDS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("projects", ("project",)),
    ("users", ("user",)),
    ("api_keys", ("project_api_key", "admin_api_key")),
    ("service_accounts", ("project_service_account",)),
    ("groups", ("group",)),
)
"""What ``usageledger status`` counts: a label and the kinds it covers."""


@dataclass(frozen=True, slots=True)
class DirectorySummary:
    """An org's current directory: per :data:`SUMMARY_KINDS` label, items by status; when it last changed; and its
    last refresh (``None``: none recorded)."""

    org: str
    counts: Mapping[str, Mapping[str, int]]
    last_change: int | None
    last_refresh: DirectoryRefresh | None = None

    def describe(self) -> str:
        """``4 projects (1 archived), 8 users, 12 api keys (2 deleted), ...``."""
        parts = []
        for label, by_status in self.counts.items():
            others = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()) if status != "active")
            parts.append(f"{sum(by_status.values())} {label.replace('_', ' ')}" + (f" ({others})" if others else ""))
        return ", ".join(parts)


def directory_summary(store: BaseStore) -> list[DirectorySummary]:
    """Each org's current directory, counted by kind and status (deleted items are counted as deleted)."""
    label_of = {kind: label for label, kinds in SUMMARY_KINDS for kind in kinds}
    # One count an item: a key one refresh lists under another project has a current deleted version in its old
    # scope beside its listed one (see LISTED_LAST), and was counted twice, once as deleted.
    rows = store.query(
        "SELECT org, kind, status, COUNT(*), MAX(last) FROM (SELECT org, kind, id, MAX(valid_from) AS last,"
        " COALESCE(MAX(CASE WHEN status <> 'deleted' THEN COALESCE(status, 'active') END),"
        " MAX(COALESCE(status, 'active'))) AS status FROM directory_versions WHERE valid_to IS NULL"
        " GROUP BY org, kind, id) AS items GROUP BY org, kind, status ORDER BY org"
    )
    counts: dict[str, dict[str, dict[str, int]]] = {}
    latest: dict[str, int] = {}
    refreshes = {
        org: DirectoryRefresh(to_unix(started) or 0, run_id, status, error)
        for org, run_id, started, status, error in store.query(
            "SELECT org, run_id, started_at, status, error FROM directory_refreshes"
        )
    }
    for org in sorted(refreshes):  # an org whose first refresh never finished has no item, but has a refresh
        counts[org] = {label: {} for label, _ in SUMMARY_KINDS}
    for org, kind, status, n, last in rows:
        by_label = counts.setdefault(org, {label: {} for label, _ in SUMMARY_KINDS})
        stamp = to_unix(last)
        if stamp is not None:
            latest[org] = max(latest.get(org, stamp), stamp)
        label = label_of.get(kind)
        if label is not None:
            by_label[label][status] = by_label[label].get(status, 0) + int(n)
    return [DirectorySummary(org, c, latest.get(org), refreshes.get(org)) for org, c in sorted(counts.items())]


def record_json(value: object) -> str:
    """The canonical JSON of an object (sorted keys), so an unchanged object has an unchanged digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
