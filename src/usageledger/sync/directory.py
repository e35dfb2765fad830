"""Refreshing the store's directory: read every directory list of an org, then record what changed.

:func:`snapshot` reads the nine lists with a :class:`~usageledger.client.Client` (archived projects and keys of any
owner access included; each project's keys, service accounts, users and groups; each group's users), a few at once;
:func:`refresh_org` writes it with :func:`usageledger.store.directory.refresh` in one transaction. Nothing is written
until every list has been read, so a failed read leaves the stored directory as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, Final

import msgspec

from usageledger.client import Client
from usageledger.store.directory import BaseStore as DirectoryStore
from usageledger.store.directory import DirectoryCounts, Entry, Snapshot, record_json, refresh
from usageledger.sync._model import Org

__all__ = ["refresh_org", "snapshot"]

logger = logging.getLogger("usageledger.sync.directory")


def _entry(kind: str, scope: str, key: str, item: Any) -> Entry:
    owner = getattr(item, "owner", None)
    owner_type = getattr(owner, "type", None)
    owner_id = getattr(owner, "id", None)
    if owner is not None and owner_id is None:  # a project key: the owner is a user or a service account
        who = getattr(owner, "user", None) or getattr(owner, "service_account", None)
        owner_id = getattr(who, "id", None)
    return Entry(
        kind=kind,
        scope=scope,
        id=str(getattr(item, key)),
        name=getattr(item, "name", None) or getattr(item, "group_name", None),
        record=record_json(msgspec.to_builtins(item)),
        email=getattr(item, "email", None),
        status=getattr(item, "status", None) or "active",
        owner_type=owner_type,
        owner_id=owner_id,
    )


READERS: Final = 4
"""Directory lists read at once. They were read one after another, four per project: an org of ten projects waited
for more than 40 round trips after every sync, however little it synced."""


def snapshot(client: Client, *, readers: int = READERS) -> Snapshot:
    """Every directory list of the client's org, read in full, ``readers`` lists at once (a client may be shared
    between threads); the entries come in the same order whatever the order the answers come in."""
    with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="usageledger-directory") as pool:
        try:
            return _read_all(client, pool)
        except BaseException:  # the first failure is the snapshot's: the lists not yet asked for are not read
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _read_all(client: Client, pool: ThreadPoolExecutor) -> Snapshot:
    reads: list[tuple[str, str, Future[list[Entry]]]] = []

    def read(kind: str, scope: str, key: str, items: Callable[[], Iterable[Any]]) -> None:
        reads.append((kind, scope, pool.submit(lambda: [_entry(kind, scope, key, item) for item in items()])))

    projects_read = pool.submit(lambda: client.projects(include_archived=True).items())
    groups_read = pool.submit(lambda: client.groups().items())
    read("user", "", "id", client.users)
    read("admin_api_key", "", "id", client.admin_api_keys)
    projects, groups = projects_read.result(), groups_read.result()
    for p in projects:
        read("project_api_key", p.id, "id", partial(client.project_api_keys, p.id, owner_project_access="any"))
        read("project_service_account", p.id, "id", partial(client.project_service_accounts, p.id))
        read("project_user", p.id, "id", partial(client.project_users, p.id))
        read("project_group", p.id, "group_id", partial(client.project_groups, p.id))
    for g in groups:
        read("group_user", g.id, "id", partial(client.group_users, g.id))
    entries = [_entry("project", "", "id", p) for p in projects]
    complete = {("project", "")}
    for kind, scope, done in reads[:2]:  # users and admin keys, then groups, as they were always listed
        entries += done.result()
        complete.add((kind, scope))
    entries += [_entry("group", "", "id", g) for g in groups]
    complete.add(("group", ""))
    for kind, scope, done in reads[2:]:
        entries += done.result()
        complete.add((kind, scope))
    return Snapshot(entries, frozenset(complete))


def refresh_org(
    store: DirectoryStore,
    org: Org,
    *,
    at: int,
    allow_insecure_http: bool = False,
    max_retries: int | None = None,
    client_factory: Callable[[Org], Client] | None = None,
) -> DirectoryCounts:
    """Read ``org``'s directory and record it in ``store`` at Unix time ``at``."""
    make = client_factory or (
        lambda o: Client(o.api_key, o.base_url, allow_insecure_http=allow_insecure_http, max_retries=max_retries)
    )
    with make(org) as client:
        snap = snapshot(client)
    counts = refresh(store, org.name, snap, at=at)
    logger.info(
        "directory of %s: %d new, %d changed, %d deleted, %d unchanged",
        org.name,
        counts.inserted,
        counts.changed,
        counts.deleted,
        counts.unchanged,
    )
    return counts
