"""``usageledger demo``: the main job, offline, into a store of its own; ``demo --remove`` takes its data out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.markup import escape

from usageledger import timeutil
from usageledger._text import counted
from usageledger.cli._app import app, console, fail, friendly_errors, say
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.errors import ParameterError
from usageledger.report.tables import DataTable, label, number
from usageledger.store import DEMO_ORG, is_postgres_url
from usageledger.sync._safety import DEMO_STORE

if TYPE_CHECKING:
    from usageledger.store import BaseStore
    from usageledger.sync import SyncOptions

MAX_DEMO_DAYS: Final = EmulatorConfig().days // 2
"""The longest --days: twice it (the period and the one before) stays within the synthetic org's history."""


@app.command()
@friendly_errors
def demo(
    days: Annotated[
        int, typer.Option(help="Days to report on, 1 to 200 (twice as many are synced, for the comparison).")
    ] = 30,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic organisation.")] = 0,
    store: Annotated[
        str, typer.Option(help="DuckDB file (or postgresql:// URL) for the demo's synthetic data; never a real store.")
    ] = DEMO_STORE,
    remove: Annotated[
        bool, typer.Option("--remove", help="Delete every synthetic org (the demo's, the emulator's) from --store.")
    ] = False,
) -> None:
    """Start the emulator in-process, sync the last 60 days of every default stream into a DuckDB file of its own
    (usageledger-demo.duckdb), and print the report of the last 30 (against the 30 before). No key, no network;
    run it again and the sync is incremental. The demo refuses a store that holds real data."""
    if remove:
        _remove(store)
        return
    from usageledger.store import default_streams, open_store
    from usageledger.sync import Org, sync
    from usageledger.sync.directory import refresh_org

    logging.getLogger("usageledger").setLevel(logging.WARNING)
    if days < 1:  # bad input, exit 2 (a ParameterError), before the emulator's organisation is built
        raise ParameterError("--days", f"must be at least 1, got {days}")
    if days > MAX_DEMO_DAYS:  # `--days 100000` synced 200,000 days, nearly all of them before its org existed
        raise ParameterError(
            "--days",
            f"at most {MAX_DEMO_DAYS}, got {days:,}: the demo syncs twice --days, and its organisation has "
            f"{EmulatorConfig().days} days of history",
        )
    instance = Emulator(EmulatorConfig(seed=seed))
    now = instance.now()
    # The one period rule (see timeutil.span_start): the last `days` whole UTC days, today included, as `report`.
    start = timeutil.span_start(int(now), days * 86400)
    # The report compares the period with the one before it, so sync that one too.
    sync_start = timeutil.span_start(int(now), 2 * days * 86400)
    with run_server(instance) as url, open_store(store, what="demo", on_wait=say) as ledger:
        org = Org(DEMO_ORG, "sk-admin-demo", url, synthetic=True)
        result = sync(
            ledger,
            [org],
            default_streams(),
            _options(ledger, sync_start, 2 * days * 86400),
            clock=instance.clock,
            command="demo",
        )
        if not result.ok:
            raise fail("; ".join(result.errors))
        refresh_org(ledger, org, at=now)  # the directory, as `usageledger sync` reads it: the report shows names
        from usageledger.cli.commands_report import synced_report

        report = synced_report(ledger, since=start, until=now, org=DEMO_ORG)

    from usageledger._secrets import redact_url_password

    console.print(  # the store's password (a postgresql:// URL's) never shown, as every other command shows it
        f"[bold]usageledger demo[/] — emulator at {url}, last {2 * days} days synced into"
        f" {escape(redact_url_password(store))}"
        f" ({result.requests} requests, {result.elapsed:.1f}s)",
        highlight=False,
    )
    synced = DataTable("Synced", label("stream"), number("inserted"), number("updated"), number("unchanged"))
    for s in result.streams:
        synced.add_row(s.stream, f"{s.counts.inserted:,}", f"{s.counts.updated:,}", f"{s.counts.unchanged:,}")
    console.print(synced)
    console.print(report)


def _options(ledger: BaseStore, sync_start: int, span: int) -> SyncOptions:
    """Incremental once the store holds the two periods: each stream from its watermark back by its lag window, as
    `usageledger sync` reads (a stream new to the store from ``sync_start``, the same day). A `since` read every
    stream whole again on every run, 23 requests for 60 days each time, though the help and README said "run it again
    and the sync is incremental". A store whose costs start after ``sync_start`` (a first run, or a larger --days
    than before) is read from ``sync_start``, a backfill, so the comparison has its days."""
    from usageledger.report.months import first_cost_day
    from usageledger.sync import SyncOptions

    first = first_cost_day(ledger, org=DEMO_ORG)
    if first is not None and first <= datetime.fromtimestamp(sync_start, UTC).date():
        return SyncOptions(first_since=span)
    return SyncOptions(since=sync_start)


def _remove(store: str) -> None:
    """Delete every synthetic org from ``store``: what a store mixed by an older demo needs before a real sync."""
    from usageledger._secrets import redact_url_password
    from usageledger.errors import SyncError
    from usageledger.store import check_store_url, open_store

    url = check_store_url(store)
    if not is_postgres_url(url) and not Path(url).exists():
        raise fail(f"no store at {url}: nothing to remove (pass --store)")
    shown = redact_url_password(url)
    with open_store(url, what="demo --remove", on_wait=say) as opened:
        if not opened.acquire_sync_lock():
            raise SyncError("a usageledger sync is writing to this store; wait for it to finish and run again")
        try:
            removed = [(r.org, opened.delete_org(r.org)) for r in opened.orgs() if r.synthetic]
        finally:
            opened.release_sync_lock()
    if not removed:
        say(f"No synthetic org in {shown}: nothing removed.", to=console)
        return
    what = ", ".join(f"{org} ({counted(rows, 'row')})" for org, rows in removed)
    say(f"Removed the synthetic {'org' if len(removed) == 1 else 'orgs'} {what} from {shown}.", to=console)
