"""Refreshing the store's directory: read every directory list of an org, then record what changed.

:func:`snapshot` reads the nine lists with a :class:`~usageledger.client.Client` (archived projects and keys of any
owner access included; each project's keys, service accounts, users and groups; each group's users), a few at once;
:func:`refresh_org` writes it with :func:`usageledger.store.directory.refresh` in one transaction. Nothing is written
until every list has been read, so a failed read leaves the stored directory as it was. Each refresh is recorded in
``directory_refreshes`` as it begins and as it ends (``ok``, ``failed`` or ``interrupted``, with the error), so
``usageledger status`` can tell a directory that is current from one whose refresh never finished.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future
from functools import partial
from typing import Any, Final, TypeVar

import msgspec

from usageledger._secrets import mask_keys
from usageledger.client import Client
from usageledger.errors import APIError, APIStatusError, Knobs, StoreError, UsageLedgerError, advice
from usageledger.store.directory import BaseStore as DirectoryStore
from usageledger.store.directory import DirectoryCounts, Entry, Snapshot, record_json, record_refresh, refresh
from usageledger.sync._model import INTERRUPTED, Org

__all__ = ["refresh_failure", "refresh_org", "snapshot"]

logger = logging.getLogger("usageledger.sync.directory")

T = TypeVar("T")


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
    pool = _Readers(readers)
    try:
        snap = _read_all(client, pool)
    except BaseException as exc:  # the first failure is the snapshot's: the lists not yet asked for are not read
        pool.stop(wait=isinstance(exc, Exception))  # Ctrl-C (KeyboardInterrupt) waits for no list in flight
        raise
    pool.stop(wait=True)
    return snap


class _Readers:
    """``readers`` daemon threads that run the lists' reads; ``stop`` cancels what has not started.

    A failed list waits for the lists in flight (they end before the client is closed under them); Ctrl-C does
    not: they are left to end on their own, their answers unused. A ``ThreadPoolExecutor`` waited for them on
    shutdown and again at exit (its threads are joined), so an interrupted sync did not stop until the slowest
    answer, timeouts and retries included, had come, where one list read after another stopped at once."""

    def __init__(self, readers: int) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._futures: list[Future[Any]] = []
        self._threads = [
            threading.Thread(target=self._work, name=f"usageledger-directory-{n}", daemon=True)
            for n in range(max(1, readers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._futures.append(future)
        self._queue.put((future, fn))
        return future

    def stop(self, *, wait: bool) -> None:
        """Cancel what no thread has started and let every thread end once it is idle; with ``wait``, wait for them."""
        for future in self._futures:
            future.cancel()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            future, fn = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 (handed to the waiting thread, which raises it, as a
                # ThreadPoolExecutor's worker does: a future never resolved would leave that thread waiting forever)
                future.set_exception(exc)


def _read_all(client: Client, pool: _Readers) -> Snapshot:
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
    run_id: str | None = None,
    knobs: Knobs | None = None,
) -> DirectoryCounts:
    """Read ``org``'s directory and record it in ``store`` at Unix time ``at``.

    The refresh itself is recorded on the wall clock, as part of the sync run ``run_id`` (``None``: no run's): as
    ``running`` when it begins, and as it ended, ``ok``, ``failed`` (with :func:`refresh_failure`'s message) or
    ``interrupted`` (Ctrl-C, SIGTERM); a refresh whose process dies is marked ``abandoned`` with its run. A failure's
    advice names the settings of ``knobs`` (the run's, as its error line names them: ``status`` says it later;
    ``None``: the library's)."""
    make = client_factory or (
        lambda o: Client(o.api_key, o.base_url, allow_insecure_http=allow_insecure_http, max_retries=max_retries)
    )
    begun = int(time.time())
    try:  # from its first mark on (a Ctrl-C may come as soon as the line that says it begins is out), its end is
        # recorded, whatever ends it
        record_refresh(store, org.name, run_id=run_id, started_at=begun, status="running")
        logger.info("reading the directory of %s", org.name, extra={"org": org.name})
        with make(org) as client:
            snap = snapshot(client)
        counts = refresh(store, org.name, snap, at=at)
        record_refresh(store, org.name, run_id=run_id, started_at=begun, status="ok", finished_at=int(time.time()))
    except BaseException as exc:
        status, error = (
            ("failed", refresh_failure(exc, knobs)[0]) if isinstance(exc, Exception) else ("interrupted", INTERRUPTED)
        )
        try:
            record_refresh(
                store,
                org.name,
                run_id=run_id,
                started_at=begun,
                status=status,
                error=error,
                finished_at=int(time.time()),
            )
        except StoreError as failure:  # the refresh's own error is the one to say; left `running`, the refresh is
            # found abandoned with its run
            logger.info("could not record the end of the directory refresh of %s: %s", org.name, failure)
        raise
    logger.info(
        "directory of %s: %d new, %d changed, %d deleted, %d unchanged",
        org.name,
        counts.inserted,
        counts.changed,
        counts.deleted,
        counts.unchanged,
    )
    return counts


_HINTS: Final = {
    403: "The key read usage but may not list the organization's projects, users and keys: use an admin key that"
    " may, or skip the names with --no-directory",
    404: "The server answered usage but has no directory lists (an emulator replaying usage without"
    " --replay-directory, or a proxy that passes the usage endpoints only): skip the names with --no-directory",
}
"""What a refused directory list means after its org's usage synced through the same key and base URL: the
client's own hints ("needs the api.usage.read scope", "the base URL must end in /v1") blamed what had just worked."""


def refresh_failure(exc: BaseException, knobs: Knobs | None = None, *, said: Collection[str] = ()) -> tuple[str, bool]:
    """Why a refresh failed, in one line: ``exc`` with :data:`_HINTS`' fix in place of the client's hint, or, for a
    failure that retrying, waiting or asking less may cure, :func:`~usageledger.errors.advice` naming ``knobs`` (the
    run's settings, as the sync's own failures name them; ``None``: the library's advice as it is). An error of no
    usageledger type, a bug, is named by its type alone. With the advice left out when it is one of ``said`` (what
    the run's error line, printed next, advises already: a directory failing for its streams' reason); and whether
    it was left out."""
    if not isinstance(exc, UsageLedgerError):
        return type(exc).__name__, False
    if isinstance(exc, APIStatusError) and exc.status_code in _HINTS:
        return mask_keys(exc.advised(_HINTS[exc.status_code])), False
    if isinstance(exc, APIError) and knobs is not None:
        fix = advice(exc, knobs)
        if fix and fix in said:
            return mask_keys(exc.advised(None)), True
        return mask_keys(exc.advised(fix) if fix else str(exc)), False
    return mask_keys(str(exc)), False
