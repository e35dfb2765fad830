"""Refreshing the store's directory: read every directory list of an org, then record what changed.

:func:`snapshot` reads the nine lists with a :class:`~usageledger.client.Client` (archived projects and keys of any
owner access included; each project's keys, service accounts, users and groups; each group's users);
:func:`refresh_org` writes it with :func:`usageledger.store.directory.refresh` in one transaction. Nothing is written
until every list has been read, so a failed read leaves the stored directory as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

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


def snapshot(client: Client) -> Snapshot:
    """Every directory list of the client's org, read in full."""
    entries: list[Entry] = []
    complete: set[tuple[str, str]] = set()

    def add(kind: str, scope: str, key: str, items: Iterable[Any]) -> None:
        entries.extend(_entry(kind, scope, key, item) for item in items)
        complete.add((kind, scope))

    projects = client.projects(include_archived=True).items()
    add("project", "", "id", projects)
    add("user", "", "id", client.users())
    add("admin_api_key", "", "id", client.admin_api_keys())
    groups = client.groups().items()
    add("group", "", "id", groups)
    for p in projects:
        add("project_api_key", p.id, "id", client.project_api_keys(p.id, owner_project_access="any"))
        add("project_service_account", p.id, "id", client.project_service_accounts(p.id))
        add("project_user", p.id, "id", client.project_users(p.id))
        add("project_group", p.id, "group_id", client.project_groups(p.id))
    for g in groups:
        add("group_user", g.id, "id", client.group_users(g.id))
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
