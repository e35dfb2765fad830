"""What keeps a store truthful from run to run: synthetic and real data never share a store, and a run whose
process died without a word is found out and marked ``abandoned``.

**Synthetic data.** An org's data is synthetic when the demo wrote it (``Org(synthetic=True)``) or when its base
URL (else ``OPENAI_BASE_URL``) is a plain ``http://`` URL to a loopback host, which is where the emulator serves
(the real API is only reached over https). Every org is recorded in the store's ``orgs`` registry the first time
a run is for it, before it fetches. A run refuses to write synthetic orgs into a store that holds a real one and
real orgs into a store that holds a synthetic one, so ``report`` and ``check`` never sum the two. An org registered
by a run that wrote nothing for it (no watermark, no row, no directory: a wrong base URL, a refused key) holds
nothing, so it decides nothing, and the next run records it again as what it is then.

**Abandoned runs.** Each run records its process (pid, host name and, on Linux, the process start time, which
tells a live process from a later one given the same pid). A run still marked ``running`` whose process is known
to be gone (same host, pid not alive or alive with another start time) is marked ``abandoned``, with every stream
it left ``running``. A run of another host is judged by the store: on PostgreSQL a run holds an advisory lock on its
id while its connection lives, so a run whose lock is free is dead, on any host (several workers on several machines
share one database); a DuckDB file has one writer, so a sync that holds it knows every other ``running`` run is dead,
unless its process is alive on this host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import httpx

from usageledger._options import base_url_from, is_loopback
from usageledger._secrets import redact_url_password
from usageledger._text import one_line
from usageledger.client import AsyncClient
from usageledger.errors import NotFoundError, StoreError, SyncError, UsageLedgerError
from usageledger.store import BaseStore, OrgRecord, RunningRun, RunOwner, StreamState
from usageledger.store._types import DEMO_STORE
from usageledger.store.directory import DirectorySummary, directory_summary
from usageledger.sync._model import Org

if TYPE_CHECKING:
    from usageledger.report.queries import Period

__all__ = [
    "DEMO_STORE",
    "abandoned_runs",
    "check_org_keys",
    "check_orgs",
    "data_source",
    "data_warnings",
    "directory_now",
    "is_alive",
    "mixed_data",
    "reap_abandoned",
    "stream_states_now",
    "synthetic_beside_real",
    "this_process",
]

logger = logging.getLogger("usageledger.sync")

# --- one org's key, one org's ledger --------------------------------------------------------------------

_KNOWN_PROJECTS: Final = 3
"""How many of an org's known projects a run asks for by ID before it trusts the org's key (one, mostly)."""


async def check_org_keys(store: BaseStore, orgs: Sequence[Org], client_for: Callable[[Org], AsyncClient]) -> None:
    """Refuse, before anything is written, an org whose key belongs to another organisation.

    A key swapped between two variables (``KEY_ALPHA`` holding gamma's key) synced gamma's usage under ``alpha``: the
    lag window's rows were replaced by another organisation's, alpha's whole directory marked deleted, and nothing
    said so. An organisation never deletes a project (archived ones are still retrieved by ID), so an org whose
    stored directory holds projects is asked for its oldest few by ID: when none is found, the key is another
    organisation's. Any other answer (a refused key, no connection) is left to the run, which reports it. The orgs
    are asked at once: a run of fifty orgs waits one round trip, not fifty.
    """
    refused = await asyncio.gather(*(_foreign_key(store, org, client_for) for org in orgs))
    for message in refused:
        if message is not None:
            raise SyncError(message)


async def _foreign_key(store: BaseStore, org: Org, client_for: Callable[[Org], AsyncClient]) -> str | None:
    """Why ``org``'s key is another organisation's (:func:`check_org_keys`), or ``None``."""
    known = store.query(
        "SELECT id, name FROM directory_versions WHERE org = %s AND kind = 'project' AND valid_to IS NULL"
        " AND status <> 'deleted' ORDER BY valid_from, id LIMIT %s",
        (org.name, _KNOWN_PROJECTS),
    )
    if not known:
        return None
    async with client_for(org) as client:
        for project_id, _ in known:
            try:
                await client.project(project_id)
            except NotFoundError:
                continue
            except UsageLedgerError:  # refused, unreachable: the run meets it and says so
                return None
            return None
        # None is found: another organisation's key, if the directory answers here at all. Under a base URL without
        # /v1 every path is a 404, and "the key belongs to another organization" sent the user to change a key that
        # was right; the run meets that 404 and names the base URL's fix.
        try:
            async for _ in client.projects(limit=1).pages():
                break
        except UsageLedgerError:
            return None
    project_id, name = known[0]
    source = f" from {org.key_source}" if org.key_source else ""
    fix = f"set {org.key_source} to" if org.key_source else "give it"
    shown = project_id if not name else f"{one_line(name)} ({project_id})"
    if org.synthetic:  # the demo's own key and org: another --seed made another organisation, no key would help
        where = redact_url_password(store.url)
        return (
            f"org {org.name!r}: {where} holds a demo made with another --seed: none of its projects is found"
            f" ({shown}, ...); pass the --seed it was made with, remove it first with"
            f" `usageledger demo --remove --store {where}`, or use another --store; nothing was synced"
        )
    return (
        f"org {org.name!r}: the admin key{source} belongs to another organization: none of the projects"
        f" the store holds for {org.name!r} is found with it ({shown}, ...); {fix} {org.name}'s own"
        " admin key; nothing was synced"
    )


# --- synthetic or real ----------------------------------------------------------------------------------


def data_source(org: Org) -> str:
    """Where an org's data comes from: ``demo``, ``emulator`` (plain http to loopback) or ``api``."""
    if org.synthetic:
        return "demo"
    # The base URL the client will use (the org's, else OPENAI_BASE_URL, else the public API), read by the one
    # rule the client reads it by: a refused one (credentials, white space inside) stops the run before it starts.
    try:
        url = httpx.URL(base_url_from(org.base_url))
    except httpx.InvalidURL:
        return "api"
    if url.scheme == "http" and is_loopback(url.host):
        return "emulator"
    return "api"


_HOW: Final = {
    "demo": "written by the demo",
    "emulator": "synced from the emulator",
    "migrated": "the demo's org name, from before the registry",
}


def _names(records: Sequence[OrgRecord]) -> str:
    """``org demo, written by the demo; org acme``: each org, and for a synthetic one how it came to be."""
    return "; ".join(f"org {r.org}, {_HOW.get(r.source, r.source)}" if r.synthetic else f"org {r.org}" for r in records)


def check_orgs(store: BaseStore, orgs: Sequence[Org], *, at: int) -> None:
    """Refuse a run that would put synthetic and real data in one store; record the run's orgs in the registry."""
    sources = {org.name: data_source(org) for org in orgs}
    synthetic = {name for name, source in sources.items() if source != "api"}
    where = redact_url_password(store.url)
    if synthetic and len(synthetic) < len(orgs):
        real = sorted(set(sources) - synthetic)
        raise SyncError(
            f"refusing to sync real orgs ({', '.join(real)}) and synthetic ones ({', '.join(sorted(synthetic))}, "
            "from the emulator) in one run: they would share the store; sync each kind into a store of its own (--org)"
        )
    # An org a failed first run registered but never wrote to (an https typo, a refused key) holds nothing: it
    # decides nothing, and this run records it again as what it is now.
    empty = store.empty_orgs()
    registered = {r.org: r for r in store.orgs()}
    held = [r for r in registered.values() if r.org not in empty]
    if synthetic:
        real_held = [r for r in held if not r.synthetic]
        if real_held:
            raise SyncError(
                f"refusing to write synthetic data (org {', '.join(sorted(synthetic))}) into {where}: it is a store "
                f"of real data ({_names(real_held)}); use a store of its own, e.g. --store {DEMO_STORE}"
            )
    else:
        fake_held = [r for r in held if r.synthetic]
        if fake_held:
            raise SyncError(
                f"refusing to write real data into {where}: it is a store of synthetic data ({_names(fake_held)}); "
                "sync into another store (--store FILE), or first remove the synthetic data with "
                f"`usageledger demo --remove --store {where}`"
            )
    for name, source in sources.items():
        record = registered.get(name)
        if record is None or (name in empty and record.source != source):
            store.register_org(name, synthetic=source != "api", source=source, at=at, replace=record is not None)


# --- abandoned runs -------------------------------------------------------------------------------------


def _start_time(pid: int) -> tuple[int, str] | None:
    """A process's start time (clock ticks since boot) and state letter, from ``/proc`` (Linux); ``None`` elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    try:
        return int(fields[19]), fields[0]
    except (IndexError, ValueError):
        return None


def this_process() -> RunOwner:
    """The running process, as a run records it."""
    pid = os.getpid()
    started = _start_time(pid)
    return RunOwner(pid, socket.gethostname(), None if started is None else started[0])


def is_alive(owner: RunOwner | None) -> bool | None:
    """Whether a run's process still runs: ``None`` when this host cannot tell (another host, or not recorded)."""
    if owner is None or owner.host != socket.gethostname():
        return None
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    now = _start_time(owner.pid)
    if now is not None:
        started, state = now
        if state in ("Z", "X"):  # killed, not yet reaped by its parent
            return False
        if owner.started is not None and started != owner.started:
            return False  # the pid was given to a later process
    return True


def _why(run: RunningRun, *, lost: bool = False) -> str:
    if lost and run.owner is not None:
        return f"the run's connection to the store was lost (pid {run.owner.pid} on {run.owner.host} lives on)"
    if run.owner is None:
        return "the run ended without recording it (its process is gone)"
    return f"the run's process (pid {run.owner.pid} on {run.owner.host}) ended without finishing it"


def abandoned_runs(store: BaseStore, *, holding_sync_lock: bool = False) -> dict[str, str]:
    """The runs marked ``running`` whose process is gone, each with the reason (reads only).

    A run this host cannot judge by its pid (another host, or none recorded) is judged by the store when it can
    (PostgreSQL: the run's advisory lock). Otherwise, with ``holding_sync_lock`` (a sync holding a DuckDB file's
    single-writer lock) no other sync can be running, so such a run is dead.
    """
    dead: dict[str, str] = {}
    for run in store.running_runs():
        process = is_alive(run.owner)
        # PostgreSQL knows, on any host: the run's advisory lock lives exactly as long as its connection. A living
        # process can still have lost its run (a server restarted under it, so the run's end could not be recorded),
        # and in a long-lived process (`serve --sync-every`) the pid alone kept such a run `running` for ever.
        held = None if process is False else store.run_is_live(run.run_id)
        alive = process if held is None else held
        if alive is False or (alive is None and holding_sync_lock):
            dead[run.run_id] = _why(run, lost=process is True)
    return dead


def reap_abandoned(store: BaseStore, *, at: int, holding_sync_lock: bool) -> list[str]:
    """Mark the runs whose process is gone ``abandoned`` (with their ``running`` streams); their ids."""
    dead = abandoned_runs(store, holding_sync_lock=holding_sync_lock)
    for run_id, why in dead.items():
        store.abandon_runs([run_id], at=at, error=why)
        logger.warning("run %s was abandoned: %s", run_id, why)
    return list(dead)


def stream_states_now(
    store: BaseStore, *, at: int, record: bool = True, dead: dict[str, str] | None = None
) -> list[StreamState]:
    """Every stream's state as ``status`` shows it: never ``running`` for a run whose process is gone.

    The abandoned runs are recorded when the store is writable and ``record`` is true; a store opened read-only (a
    DuckDB file a reader opens), or a reader that never writes (``serve``), leaves it as it is, and the states are
    corrected in what this returns. ``dead``: :func:`abandoned_runs` when the caller has just asked it.
    """
    dead = abandoned_runs(store) if dead is None else dead
    if dead and record:
        try:
            for run_id, why in dead.items():
                store.abandon_runs([run_id], at=at, error=why)
        except StoreError as exc:
            logger.info("could not record the abandoned runs (the store is read-only here): %s", exc)
    return [
        dataclasses.replace(s, last_status="abandoned", last_error=dead[s.last_run_id])
        if s.last_status == "running" and s.last_run_id in dead
        else s
        for s in store.stream_states()
    ]


def directory_now(store: BaseStore, dead: dict[str, str]) -> list[DirectorySummary]:
    """Each org's directory as ``status`` shows it: its last refresh never ``running`` for a run whose process is
    gone (``dead``: :func:`abandoned_runs`), recorded or not, as :func:`stream_states_now` shows the streams; nor
    for a run that has ended (a second Ctrl-C stopped the refresh from recording its own end)."""
    summaries = directory_summary(store)
    if not any(d.last_refresh is not None and d.last_refresh.status == "running" for d in summaries):
        return summaries
    live = {r.run_id for r in store.running_runs()}
    out = []
    for d in summaries:
        last = d.last_refresh
        if last is not None and last.status == "running" and last.run_id is not None:
            if last.run_id in dead:
                last = dataclasses.replace(last, status="abandoned", error=dead[last.run_id])
            elif last.run_id not in live:
                last = dataclasses.replace(last, status="abandoned", error="its run ended without recording its end")
        out.append(dataclasses.replace(d, last_refresh=last))
    return out


def synthetic_beside_real(store: BaseStore, org: Sequence[str] = ()) -> tuple[OrgRecord, ...]:
    """The synthetic orgs of a store (of ``org``, else every org) that also holds a real one, whose figures a
    reading would add to real spend; none when every org held is synthetic (the demo's store) or none is. An org a
    failed first run registered but never wrote to holds nothing (as ``check_orgs`` reads it) and counts for
    neither: a demo written beside one was said to mix synthetic with real data."""
    empty = store.empty_orgs()
    held = [r for r in store.orgs() if (not org or r.org in org) and r.org not in empty]
    fake = tuple(r for r in held if r.synthetic)
    return fake if len(fake) < len(held) else ()


def mixed_data(store: BaseStore, org: str | Sequence[str] | None = None) -> str | None:
    """A one-line warning when a store holds synthetic and real orgs together (written before the registry) and a
    reading adds them up: none when it reads one ``org`` (whose figures are that org's alone); ``org`` may be the
    several orgs a reading is limited to (``export --org a,b``), an empty one meaning every org."""
    if isinstance(org, str):
        return None
    fake = synthetic_beside_real(store, org or ())
    if not fake:
        return None
    return (
        f"this store mixes synthetic data ({_names(fake)}) with real data, and its totals add both; "
        f"remove the synthetic data with `usageledger demo --remove --store {redact_url_password(store.url)}`"
    )


def data_warnings(
    store: BaseStore, org: str | Sequence[str] | None = None, *, period: Period | None = None
) -> tuple[str, ...]:
    """What a reading of the store (of ``org``, else every org) must be told about its figures: the command line
    prints each on stderr (``warning: ...``), the JSON documents of the dashboard and the MCP tools list them in
    ``warnings``, the HTML report and the dashboard's page show them above the figures. With ``period`` (a reading
    of spend over it), also what the store's costs leave out of it (``report.queries.costs_not_synced``: never
    synced, or synced short of its end), so $0.00 is never read as nothing spent."""
    mixed = mixed_data(store, org)
    said = () if mixed is None else (mixed,)
    if period is None:
        return said
    from usageledger.report.queries import costs_not_synced  # the reports' queries: never a sync's to import

    return (*said, *costs_not_synced(store, org, period))
