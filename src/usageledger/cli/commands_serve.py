"""``usageledger serve``: the dashboard and its JSON API over the store, read-only, optionally syncing it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

from usageledger._options import is_loopback
from usageledger._secrets import redact_url_password
from usageledger.cli import _app
from usageledger.cli._app import app, fail, friendly_errors, listen_flags, open_for_reading, resolve_store, say
from usageledger.cli._estimate import ALLOW_FLAG, TOO_MANY_REQUESTS
from usageledger.cli._newstore import NewStore
from usageledger.cli.commands_sync import configured_sync_estimate
from usageledger.config import load_config
from usageledger.errors import ListenError, ParameterError
from usageledger.store import is_postgres_url, open_store
from usageledger.timeutil import now_unix, parse_duration

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from usageledger.config import Config
    from usageledger.serve.runner import PeriodicSync

TOKEN_ENV: Final = "USAGELEDGER_SERVE_TOKEN"
MIN_TOKEN: Final = 16
MIN_SYNC_EVERY: Final = 60.0


def _token(allow_remote: bool) -> str | None:
    """The bearer token from the environment: required with --allow-remote, refused when too short."""
    token = os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token.strip()) < MIN_TOKEN:
        raise fail(f"{TOKEN_ENV} is shorter than {MIN_TOKEN} characters: set a longer random token")
    if allow_remote and token is None:
        raise fail(
            f"--allow-remote needs a bearer token: set {TOKEN_ENV} to a random string of {MIN_TOKEN} or more "
            "characters (clients then send Authorization: Bearer <token>)"
        )
    return None if token is None else token.strip()


@app.command()
@friendly_errors
def serve(
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="DuckDB file or postgresql:// URL (default: the config's [store] url, else usageledger.duckdb).",
            envvar="USAGELEDGER_STORE",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; other than loopback needs --allow-remote.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port).")] = 8080,
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help=f"Listen on a non-loopback address; requires {TOKEN_ENV} (bearer token)."),
    ] = False,
    sync_every: Annotated[
        str | None,
        typer.Option(
            "--sync-every",
            help="Run `usageledger sync --quiet` now and then every this long (1h); the key comes from the "
            "environment or the config, as for sync.",
        ),
    ] = None,
    allow_many_requests: Annotated[
        bool,
        typer.Option(
            ALLOW_FLAG,
            help=f"Let --sync-every's first sync send more than {TOO_MANY_REQUESTS:,} requests (refused at start-up "
            "without it: a [sync] since decades back).",
        ),
    ] = False,
    metrics_labels: Annotated[
        str | None,
        typer.Option(
            "--metrics-labels",
            help="Labels /metrics keeps, comma-separated, of org, project, model, line_item (default: all); the "
            "others are summed away, for fewer series.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="usageledger.toml: [store], [sync] finality, [names] and [teams] (default: $USAGELEDGER_CONFIG, "
            "else ./usageledger.toml).",
        ),
    ] = None,
) -> None:
    """Serve the dashboard, its JSON API (/, /api/report, /api/filters, /api/projects/ID, /healthz) and Prometheus
    metrics (/metrics), read-only."""
    from usageledger.report.metrics import DEFAULT_METRICS_LABELS, parse_metrics_labels
    from usageledger.serve.runner import run

    host, port = listen_flags(host, port)
    if not is_loopback(host) and not allow_remote:
        raise fail(
            f"--host {host} is not a loopback address: the ledger would be readable from the network; pass "
            f"--allow-remote and set {TOKEN_ENV}, or keep the default --host 127.0.0.1"
        )
    token = _token(allow_remote)
    labels = DEFAULT_METRICS_LABELS if metrics_labels is None else parse_metrics_labels(metrics_labels)
    interval = (
        None
        if sync_every is None
        else parse_duration(sync_every, param="--sync-every", units=("m", "h"), minimum=MIN_SYNC_EVERY)
    )
    settings = load_config(config)
    url = resolve_store(store, settings)
    made = NewStore(url)  # the store's files serve makes: a start refused for any reason leaves none of them
    try:
        periodic, served = _start_up(url, settings, config, interval, allow_many_requests, token, labels)
    except BaseException:
        made.remove()
        raise

    def ready(address: str, everywhere: bool) -> None:
        # on every interface the address is the loopback one, to paste (http://0.0.0.0:8080/ opens nowhere)
        _app.announce(
            f"serving {redact_url_password(url)} at {address} ({'listening on every interface; ' if everywhere else ''}"
            f"read-only{'' if token is None else ', bearer token required'}; Ctrl-C to stop)",
            _app.console,
        )

    _app.settle()
    try:
        run(served, host, port, on_ready=ready, periodic=periodic)
    except ListenError:  # refused before it listened (a taken port), so before the periodic sync's first run
        made.remove()
        raise


def _start_up(
    url: str,
    settings: Config,
    config: Path | None,
    interval: float | None,
    allow_many_requests: bool,
    token: str | None,
    labels: frozenset[str],
) -> tuple[PeriodicSync | None, Starlette]:
    """What ``serve`` does before it listens: the store made for ``--sync-every`` (the periodic sync, whose first run
    starts with the server, fills it; until then the dashboard shows an empty ledger rather than refusing to start),
    the first sync's requests counted, the periodic sync and the app built. Whatever refuses the start here, the
    caller removes the store it made (:class:`~usageledger.cli._newstore.NewStore`)."""
    from usageledger.serve import build_app
    from usageledger.serve.runner import PeriodicSync, sync_argv

    if interval is not None and (is_postgres_url(url) or not Path(url).exists()):
        # a new store (or a PostgreSQL database without the tables) is made now, for the periodic sync to fill
        with open_store(url, what="serve", on_wait=say):
            pass
    if allow_many_requests and interval is None:
        raise ParameterError(ALLOW_FLAG, "it is for --sync-every's syncs; give --sync-every too, or leave it out")
    with open_for_reading(url) as db:  # a missing or unmigrated store is said now, not on the first page
        # the first sync's requests, counted before the server starts by the rule `sync` keeps: refused past 1,000
        # without --allow-many-requests, said past 100 (the child runs --quiet and its refusal went to no one)
        note = (
            None
            if interval is None
            else configured_sync_estimate(db, settings, now=now_unix(), allowed=allow_many_requests)
        )
    if note is not None:
        say(note)
    periodic = None
    if interval is not None:
        periodic = PeriodicSync(
            sync_argv(config, allow_many_requests=allow_many_requests),
            interval,
            store_url=url,
            say=say,
        )
    # without a token the ledger is open to whatever reaches the port: a name other than loopback is refused
    served = build_app(url, token=token, config=settings, metrics_labels=labels, loopback_only=token is None, say=say)
    return periodic, served
