"""``usageledger init``, ``sync``, ``export`` and ``status``: parse, call the library, render."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, cast

import typer

from usageledger import catalogue, rules, timeutil
from usageledger._memory import limit_arenas
from usageledger._options import base_url_from, check_base_url
from usageledger._paths import make_folder, remove_made, same_file
from usageledger._secrets import mask_keys, redact_url_password
from usageledger._text import counted
from usageledger.catalogue import BucketWidth
from usageledger.cli import _app, _filters
from usageledger.cli._app import (
    EXIT_USAGE,
    app,
    comma_list,
    echo_json,
    fail,
    file_in_the_way,
    friendly_errors,
    open_for_reading,
    resolve_store,
    say,
    settle,
    setup_logging,
)
from usageledger.cli._estimate import AllowMany, request_estimate
from usageledger.cli._flags import STORE_HELP, ConfigOpt, FormatOpt, FxOpt, Insecure, StoreOpt, Verbose
from usageledger.cli._newstore import NewStore
from usageledger.config import (
    Config,
    SyncConfig,
    check_distinct_orgs,
    check_sync_int,
    load_config,
    staged_default_config,
)
from usageledger.errors import ConfigError, Knobs, ParameterError, StoreError, UsageLedgerError
from usageledger.store import (
    DEFAULT_STORE,
    BaseStore,
    Stream,
    StreamState,
    check_store_url,
    is_postgres_url,
    open_store,
    store_files,
)
from usageledger.store._pgpass import PasswordPlan, plan_password, save_password
from usageledger.sync_options import SyncOptions

if TYPE_CHECKING:
    from rich.progress import TaskID

    from usageledger.report.tables import DataTable
    from usageledger.store.directory import DirectorySummary
    from usageledger.sync import SyncResult

logger = logging.getLogger("usageledger.cli")

ExportFormat = Literal["csv", "jsonl", "parquet", "focus", "delta"]
_RANGE = "Range"
_STREAMS = "Streams"


def _store_url(store: str | None, config: Config) -> str:
    return resolve_store(store, config)


def _time(value: str | None, param: str, now: int) -> int | None:
    return None if value is None else timeutil.to_unix(value, now=now, param=param)


def _since(value: str | None, now: int) -> int | None:
    """``--since`` by the one period rule: ``30d`` is the 30 whole UTC days ending today (see ``since_unix``)."""
    return None if value is None else timeutil.since_unix(value, now=now, param="--since")


# --- init -----------------------------------------------------------------------------------------------


@app.command()
@friendly_errors
def init(
    path: Annotated[str, typer.Option("--path", help="Where to write the config file.")] = "usageledger.toml",
    # USAGELEDGER_STORE as for every other command: without it, init made usageledger.duckdb and wrote it in the
    # config while every later command used the variable's store, which init had never prepared.
    store: Annotated[str, typer.Option("--store", help=STORE_HELP, envvar="USAGELEDGER_STORE")] = DEFAULT_STORE,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing config file.")] = False,
) -> None:
    """Write a commented usageledger.toml (mode 0600) and create the store with its tables."""
    target = Path(path)
    if path.endswith(("/", os.sep)):  # `--path conf/` wrote a file named conf: Path() drops the slash
        raise fail(
            f"--path {path} names a folder (it ends in /); give the config a file name, such as"
            f" {target / 'usageledger.toml'}",
            EXIT_USAGE,
        )
    for what, kept in store_files(store):
        if same_file(target, kept):
            raise fail(
                f"--path {target} is {what} ({kept}); the config needs a file of its own: pick another --path",
                EXIT_USAGE,
            )
    if (blocked := file_in_the_way(target)) is not None:  # before the store is made
        raise fail(
            f"--path: {blocked} is a file, not a folder, so {target} cannot be made; give a path in a folder",
            EXIT_USAGE,
        )
    # A missing folder is made, as every output's is (`_paths.make_folder`): it was refused, though the hint of a
    # missing --config names `init --path` to write it. The config is written first, under a temporary name, and
    # renamed into place once the store is made; a failed init leaves neither file behind, nor the folders it made.
    # A PostgreSQL URL's password goes where libpq reads it (PGPASSFILE, ~/.pgpass), never into the config, which
    # gets copied, shared and committed: the config keeps the URL without it. Refused (another password saved for
    # that server, database and user; a password file libpq would ignore) before anything is made.
    password = plan_password(check_store_url(store)) if is_postgres_url(store) else None
    made = make_folder(target.parent)
    try:
        with (
            staged_default_config(target, store_url=password.bare_url if password else store, force=force) as written,
            open_store(store, migrate=False, what="init", on_wait=say) as opened,  # with the password: it connects
        ):
            existed = bool(opened.applied_migrations())
            applied = opened.migrate()
            if password is not None:  # in the block: a password that cannot be saved leaves no config
                save_password(password)
    except BaseException:
        remove_made(made)
        raise
    shown = redact_url_password(store)
    # what init did to the store: an existing one (its data kept) was said to have had every migration applied
    done = (
        f"kept the store {shown} and its data"
        + (f" ({counted(len(applied), 'migration')} applied)" if applied else " (its schema is current)")
        if existed
        else f"prepared the store {shown} ({counted(len(applied), 'migration')} applied)"
    )
    say(f"Wrote {written} and {done}.", to=_app.console)
    if password is not None:
        say(_password_went(password, written))
    say("Next: export OPENAI_ADMIN_KEY=sk-admin-... and run `usageledger sync`.", to=_app.console)


def _password_went(plan: PasswordPlan, config: Path) -> str:
    """The one line (on stderr) saying where the store's password went, never the password."""
    if plan.from_environment:
        return f"The store's password is not in {config}: PGPASSWORD gives it here (libpq reads it); nothing was saved."
    if plan.present is not None:
        return f"The store's password is not in {config}: libpq reads it from {plan.path} (line {plan.present})."
    return (
        f"The store's password is not in {config}: it was saved to {plan.path} ({plan.entries}), where libpq reads it."
    )


# --- sync -----------------------------------------------------------------------------------------------


def _parse_filters(values: Sequence[str]) -> dict[str, list[str] | bool]:
    out: dict[str, list[str] | bool] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name or not raw:
            raise ParameterError("--filter", f"expected NAME=VALUE[,VALUE...], got {item!r}")
        if raw.lower() in ("true", "false"):
            out[name] = raw.lower() == "true"
        else:
            existing = out.get(name)
            prior = existing if isinstance(existing, list) else []
            # An empty part (`project_ids=,,`) is refused, never dropped into "no filter".
            parts = rules.filter_value(f"--filter {name}", rules.filter_parts(name, [raw]))
            assert not isinstance(parts, bool)  # a list in, a tuple of strings out
            out[name] = prior + list(parts)
    return out


def _width_refused(width: str, lacking: Sequence[catalogue.Endpoint], others: int) -> ParameterError:
    """``--bucket-width`` refused for the endpoints given with ``-e`` that lack it, each named with the widths it
    has, and the fix: leave them out (the ``others`` take the width), or sync them in a run of their own."""
    has = "; ".join(f"{ep.name} has {'/'.join(ep.bucket_widths)} buckets only" for ep in lacking)
    if not others:
        widths = sorted(set.intersection(*(set(ep.bucket_widths) for ep in lacking)))
        fix = f"use --bucket-width {' or '.join(widths)}" if widths else "sync each in a run of its own width"
        return ParameterError("--bucket-width", f"{has}, not {width}; {fix}")
    names = ",".join(ep.name for ep in lacking)
    own = " or ".join(sorted({w for ep in lacking for w in ep.bucket_widths}))
    return ParameterError(
        "--bucket-width",
        f"{has}, not {width}; leave {names} out of --endpoint, or sync {'it' if len(lacking) == 1 else 'them'}"
        f" separately: -e {names} --bucket-width {own}",
    )


def _streams_from_flags(
    config: Config,
    endpoints: Sequence[str],
    bucket_width: str | None,
    group_by: Sequence[str] | None,
    filters: Sequence[str],
    given: Mapping[str, rules.FilterValue],
) -> tuple[Stream, ...]:
    if not (endpoints or bucket_width or group_by is not None or filters or given):
        return config.effective_streams
    names = list(dict.fromkeys(endpoints)) or list(dict.fromkeys(s.endpoint.name for s in config.effective_streams))
    parsed = _parse_filters(filters)
    # Each filter as the user gave it: `--filter NAME=...` or its own option (--project-ids), for every message.
    flags = {name: f"--filter {name}" for name in parsed}
    for name, value in given.items():  # --project-ids and friends, beside the older --filter NAME=...
        prior = parsed.get(name)
        parsed[name] = value if isinstance(value, bool) else [*(prior if isinstance(prior, list) else []), *value]
        flags[name] = "--" + name.replace("_", "-")
    groups = comma_list("--group-by", group_by)
    chosen = []
    for name in names:
        try:
            chosen.append(catalogue.get(name))
        except KeyError as exc:
            raise ParameterError("--endpoint", exc.args[0]) from None
    width = bucket_width or "1d"
    lacking = [ep for ep in chosen if width not in ep.bucket_widths]
    if lacking and endpoints:  # named with -e: each one must take the width, and the message says which do not
        raise _width_refused(width, lacking, len(chosen) - len(lacking))
    # e.g. costs has no hourly buckets: `--bucket-width 1h` alone means "the endpoints that have them"
    skipped = [f"{ep.name} (it has {'/'.join(ep.bucket_widths)} buckets only)" for ep in lacking]
    chosen = [ep for ep in chosen if ep not in lacking]
    if not chosen:
        widths = sorted({w for name in names for w in catalogue.get(name).bucket_widths})
        raise ParameterError(
            "--bucket-width", f"no endpoint has {bucket_width} buckets; use one of {', '.join(widths)}"
        )
    if not endpoints:  # a filter that no synced endpoint takes would be dropped from every stream: say so instead
        taken = {f for ep in chosen for f in ep.filter_names}
        for name in parsed:
            if name not in taken:
                raise ParameterError(flags[name], f"no endpoint synced takes the filter {name}", allowed=sorted(taken))
    streams = []
    for ep in chosen:
        applicable = {k: v for k, v in parsed.items() if k in ep.filter_names or endpoints}
        try:
            streams.append(Stream.create(ep, width, ep.default_group_by if groups is None else groups, applicable))
        except ConfigError as exc:  # told by the flag: `bucket_width` is --bucket-width, `filters.models` --models
            param, _, message = str(exc).partition(": ")
            name = param.removeprefix("filters.")
            flag = flags.get(name) if param.startswith("filters.") else None
            # Which endpoint refused it, as the README says and --bucket-width does: also when -e named only one
            # (`-e costs --models x` said only "Unrecognized request argument supplied: models").
            which = f"{ep.name}: "
            # a flag's value the stream's rules refuse: bad input (exit 2), as a ParameterError anywhere
            raise ParameterError(flag or "--" + name.replace("_", "-"), f"{which}{message}") from None
    if skipped:
        _app.err_console.print(
            f"note: --bucket-width {bucket_width} skips {', '.join(skipped)}; sync those in a run of their own width",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    return tuple(streams)


class _ProgressView:
    """The rich progress display: one line per stream, and a header with requests and rows.

    A quiet run builds none of it (rich's progress machinery is a tenth of a second of imports) and hears no event.
    """

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet
        self.tasks: dict[tuple[str, str], TaskID] = {}
        self.rows: dict[tuple[str, str], int] = {}
        self.done: dict[tuple[str, str], float] = {}
        """Windows committed per stream, a piece of one as its share."""
        self.total: TaskID | None = None
        self.total_done = 0.0
        self.requests = 0
        self.total_rows = 0
        if quiet:
            self.live: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Column

        # On a narrow terminal the stream label shortens (and the bar narrows); counts and times are never cut.
        self.progress = Progress(
            TextColumn("{task.description}", table_column=Column(ratio=1, overflow="ellipsis", min_width=8)),
            BarColumn(bar_width=None, table_column=Column(ratio=0, min_width=3, max_width=40)),
            MofNCompleteColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[detail]}", table_column=Column(no_wrap=True)),
            TimeElapsedColumn(table_column=Column(no_wrap=True)),
            console=_app.err_console,
            transient=False,
        )
        self.live = self._shown()

    @contextlib.contextmanager
    def _shown(self) -> Iterator[None]:
        """The display, from the run's start (its first event) to the block's end. Started with the block, it wrote
        an empty line to a stderr that is no terminal (a cron job's, a CI log) when it stopped, before a sync refused
        ahead of its run (a role that may only read the store): "\nerror: ...", two lines where one was meant."""
        try:
            yield
        finally:
            if self.progress.live.is_started:
                self.progress.stop()

    def __call__(self, event: Any) -> None:
        from usageledger import sync as engine

        if isinstance(event, engine.RunStarted):
            self.progress.start()
            windows = sum(len(p.windows) for p in event.plans)
            self.total = self.progress.add_task(
                f"[bold]{len(event.plans)} streams", total=windows or 1, detail="", completed=0 if windows else 1
            )
            for p in event.plans:
                key = (p.org, p.stream.id)
                self.rows[key] = 0
                self.done[key] = 0.0
                self.tasks[key] = self.progress.add_task(
                    f"  {p.label}", total=len(p.windows) or 1, completed=0 if p.windows else 1, detail="0 rows"
                )
        elif isinstance(event, engine.RequestSent):
            self.requests = event.requests
            self._header()
        elif isinstance(event, engine.WindowDone):
            key = (event.org, event.stream)
            self.rows[key] += event.counts.rows
            self.total_rows += event.counts.rows
            # A window holding many results commits in pieces, each a share of it; rounded, so that the shares of
            # a window add up to it whole (the M/N column shows whole windows).
            self.done[key] += event.share
            self.total_done += event.share
            detail = counted(self.rows[key], "row")
            self.progress.update(self.tasks[key], completed=round(self.done[key], 6), detail=detail)
            if self.total is not None:
                self.progress.update(self.total, completed=round(self.total_done, 6))
            self._header()
        elif isinstance(event, engine.StreamFinished) and event.result.error:
            key = (event.result.org, event.result.stream)
            self.progress.update(self.tasks[key], detail="[red]failed")

    def _header(self) -> None:
        if self.total is not None:
            self.progress.update(
                self.total, detail=f"{counted(self.requests, 'request')}, {counted(self.total_rows, 'row')}"
            )


def _summary(result: Any) -> DataTable:
    """Rows inserted, updated, unchanged and deleted per stream (watermarks are in `usageledger status`)."""
    from rich.text import Text  # rich only where a run prints a table: a quiet sync (cron, serve) never imports it

    from usageledger.report.tables import DataTable, label, number

    several = len({s.org for s in result.streams}) > 1
    table = DataTable(
        f"Synced: {counted(result.requests, 'request')} in {result.elapsed:.1f}s",
        label("stream"),
        *(number(col) for col in ("windows", "inserted", "updated", "unchanged", "deleted")),
        label("status"),
    )
    for s in result.streams:
        c = s.counts
        table.add_row(
            f"{s.org}/{s.stream}" if several else s.stream,
            f"{s.windows_done}/{s.windows}",
            f"{c.inserted:,}",
            f"{c.updated:,}",
            f"{c.unchanged:,}",
            f"{c.deleted:,}",
            Text(s.status, style="" if s.status == "ok" else "red"),
        )
    t = result.counts
    table.add_row(
        Text("total", style="bold"), "", f"{t.inserted:,}", f"{t.updated:,}", f"{t.unchanged:,}", f"{t.deleted:,}", ""
    )
    return table


@app.command("sync")
@friendly_errors
def sync_command(
    ctx: typer.Context,
    store: StoreOpt = None,
    config_path: ConfigOpt = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="API base URL ending in /v1.")] = None,
    allow_insecure_http: Insecure = False,
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            "-e",
            help=f"Endpoints, repeated or comma-separated: {', '.join(catalogue.ENDPOINT_NAMES)}.",
            rich_help_panel=_STREAMS,
        ),
    ] = None,
    bucket_width: Annotated[
        str | None,
        typer.Option(
            "--bucket-width", help=f"Bucket width: {', '.join(catalogue.BUCKET_WIDTHS)}.", rich_help_panel=_STREAMS
        ),
    ] = None,
    group_by: Annotated[
        list[str] | None,
        typer.Option("--group-by", help="Grouping field(s), repeated or comma-separated.", rich_help_panel=_STREAMS),
    ] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter", help="A filter as NAME=V1,V2 (older spelling of the options below).", rich_help_panel=_STREAMS
        ),
    ] = None,
    # --- generated by scripts/generate: filter options ---
    project_ids: _filters.ProjectIds = None,
    user_ids: _filters.UserIds = None,
    api_key_ids: _filters.ApiKeyIds = None,
    models: _filters.Models = None,
    batch: _filters.Batch = None,
    sources: _filters.Sources = None,
    sizes: _filters.Sizes = None,
    vector_store_ids: _filters.VectorStoreIds = None,
    context_levels: _filters.ContextLevels = None,
    line_items: _filters.LineItems = None,
    # --- end of generated filter options ---
    since: Annotated[
        str | None, typer.Option(help="Start: a date, datetime, Unix time or span back (90d).", rich_help_panel=_RANGE)
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="End (exclusive); a bounded backfill never moves watermarks.", rich_help_panel=_RANGE),
    ] = None,
    org: Annotated[
        list[str] | None,
        typer.Option(
            "--org",
            help="Only these orgs (names from the config), repeated or comma-separated: one worker's shard.",
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Parallel requests (default: the config's sync concurrency, 8).")
    ] = None,
    lag_days: Annotated[int | None, typer.Option(help="Trailing days re-read on daily streams.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display and no summary.")] = False,
    allow_many_requests: AllowMany = False,
    verbose: Verbose = 0,
    log_format: Annotated[
        Literal["text", "json"], typer.Option("--log-format", help="Log lines as text or JSON.")
    ] = "text",
    no_directory: Annotated[
        bool, typer.Option("--no-directory", help="Skip refreshing the directory (names of projects, users, keys).")
    ] = False,
    now: Annotated[str | None, typer.Option(hidden=True, help="Pretend it is this time (tests, replays).")] = None,
) -> None:
    """Sync the configured streams (default: every endpoint, daily) into the store, incrementally."""
    from usageledger import sync as engine

    setup_logging(max(verbose, 1) if log_format == "json" else verbose, log_format)
    filter_values = _filters.given(ctx.params)  # by API name, from the generated filter options
    config = load_config(config_path)
    clock_now = timeutil.to_unix(now, param="--now") if now is not None else None
    current = clock_now if clock_now is not None else timeutil.now_unix()
    endpoints = comma_list("--endpoint", endpoint) or []
    streams = _streams_from_flags(config, endpoints, bucket_width, group_by, filters or [], filter_values)
    chosen = config.effective_orgs
    wanted = comma_list("--org", org)
    if wanted:  # a shard: this worker syncs these orgs only (repeated, or a comma list)
        unknown = sorted(set(wanted) - {o.name for o in chosen})
        if unknown:
            raise ParameterError(
                "--org", f"{', '.join(unknown)} not in the config; known: {', '.join(o.name for o in chosen)}"
            )
        chosen = tuple(o for o in chosen if o.name in set(wanted))
    since_at, until_at = _since(since, current), _time(until, "--until", current)
    timeutil.check_range(since_at, until_at, now=current, start_param="--since", end_param="--until")
    settings = config.sync  # the flags' values are checked before the key is looked for: a typo is named first
    if lag_days is not None:  # checked against the config's final_after_days, as the file's lag_days is
        settings = settings.with_flag("lag_days", _flag_int("lag_days", lag_days, "--lag-days"), "--lag-days")
    if concurrency is not None:
        settings = settings.with_flag(
            "concurrency", _flag_int("concurrency", concurrency, "--concurrency"), "--concurrency"
        )
    urls = {o.name: o.base_url_source(base_url) for o in chosen}  # each URL, and where it came from, read once
    resolved = [(o, o.resolve_key(), urls[o.name][0]) for o in chosen]
    check_distinct_orgs(resolved)
    orgs = [
        engine.Org(o.name, key, at, key_source=o.key_source, base_url_source=urls[o.name][1]) for o, key, at in resolved
    ]
    options = settings.to_options(
        since=since_at,
        until=until_at,
        allow_insecure_http=allow_insecure_http,
        knobs=_sync_knobs(settings, config),
    )
    for o in orgs:  # a refused base URL (plain http to a remote host) must not leave a new store behind
        source = o.base_url_source or "base_url="  # names the flag: a flag's value refused exits 2
        check_base_url(base_url_from(o.base_url), allow_insecure_http=allow_insecure_http, source=source)
    view = _ProgressView(quiet or log_format == "json")
    url = _store_url(store, config)
    made = NewStore(url)  # a sync refused before its first request leaves none of the files it made
    limit_arenas(SYNC_ARENAS)
    engine.start_decoder_import()
    refusal: ParameterError | None = None
    with open_store(url, on_wait=say) as opened:  # says so if it waits for a top-up or a close
        try:  # counted before the first request, as `query` counts: a mistyped --since is refused here
            note = _requests_estimate(opened, orgs, streams, options, current, since, allowed=allow_many_requests)
        except ParameterError as exc:
            refusal = exc
        else:
            if note is not None and not quiet:
                say(note)
            with view.live:
                settle()
                result = engine.sync(
                    opened,
                    orgs,
                    streams,
                    options,
                    on_event=view if view.enabled else None,
                    clock=(lambda: float(clock_now)) if clock_now is not None else None,
                    # what was asked, as typed (`sync_runs.command`): "sync --since=None --until=None" said flags
                    # never given
                    command=" ".join(
                        [
                            "sync",
                            *(f"{flag}={value}" for flag, value in (("--since", since), ("--until", until)) if value),
                        ]
                    ),
                    leave_running=not no_directory,  # the directory is refreshed under the run, which it ends
                )
                if not no_directory:  # not for an org that got nowhere (a refused key, a wrong base URL): the
                    # error says it
                    refused = set(result.unreached_orgs)
                    kept = [o for o in orgs if o.name not in refused]
                    # advice the error line will give is not said in a warning before it too
                    said = {s.advice for s in result.streams if s.error is not None and s.advice}
                    _refresh_directory(opened, result, kept, options, current, quiet or log_format == "json", said=said)
    if refusal is not None:
        made.remove()
        raise refusal
    if log_format == "json":
        for s in result.streams:
            logger.info(
                "stream synced",
                extra={
                    "org": s.org,
                    "stream": s.stream,
                    "status": s.status,
                    "windows": s.windows_done,
                    "inserted": s.counts.inserted,
                    "updated": s.counts.updated,
                    "unchanged": s.counts.unchanged,
                    "deleted": s.counts.deleted,
                },
            )
    elif not quiet:
        _app.console.print(_summary(result))
    if not result.ok:
        raise fail("; ".join(result.errors) or "the sync did not finish")


def _requests_estimate(
    opened: BaseStore,
    orgs: Sequence[Any],
    streams: Sequence[Stream],
    options: SyncOptions,
    now: int,
    since: str | None,
    *,
    allowed: bool,
    narrow: str | None = None,
) -> str | None:
    """The requests this run will send at least (one per window of each stream's plan, from its watermark in the
    store), by the rule ``query`` keeps (:func:`usageledger.cli._estimate.request_estimate`): the warning line past
    100, refused past 1,000 without --allow-many-requests. ``sync --since 2000-01-01`` started 25 years of requests.
    ``narrow`` words how to ask for fewer where the default's ``--since`` is no flag of the command (``serve``)."""
    from usageledger.sync import plan_stream

    marks = {(s.org, s.stream): s.watermark for s in opened.stream_states()}
    plans = [plan_stream(o.name, st, marks.get((o.name, st.id)), options, now=now) for o in orgs for st in streams]
    reading = [p for p in plans if p.windows]
    if not reading:
        return None
    first = min(p.start for p in reading)
    detail = f"{counted(len(reading), 'stream')}, from {timeutil.iso(first)[:10]}"
    per_org = Counter[str]()
    for p in reading:
        per_org[p.org] += len(p.windows)
    if len(per_org) > 1:
        detail += f", {counted(len(per_org), 'org')}"
    # a first sync reaching back by the config's [sync] since is told by that key, as a config's value is
    param = "--since" if since is not None else "sync.since"
    if narrow is None:
        narrow = "give a later --since or an --until" if since is not None else "shorten sync.since, or give --since"
    # judged by one org's requests: a first sync of fifty orgs (the workers' set-up) is told its total, not refused
    return request_estimate(
        "sync", sum(per_org.values()), detail, narrow, param=param, allowed=allowed, judged=max(per_org.values())
    )


def configured_sync_estimate(opened: BaseStore, config: Config, *, now: int, allowed: bool) -> str | None:
    """What ``usageledger sync`` without flags (``serve --sync-every``'s child, every org and stream of ``config``)
    is told before its first request by :func:`_requests_estimate`, the one rule: ``None``, the warning line, or
    the refusal naming ``sync.since``. ``serve`` asks at start-up, so a ``[sync] since`` decades back is one error
    line there, not a child refused every interval behind a dashboard nobody watches (or, allowed, its requests
    warned of)."""
    streams = _streams_from_flags(config, [], None, None, [], {})
    options = config.sync.to_options()
    narrow = "shorten the config's [sync] since"
    orgs = config.effective_orgs
    return _requests_estimate(opened, orgs, streams, options, now, None, allowed=allowed, narrow=narrow)


def _sync_knobs(settings: SyncConfig, config: Config) -> Knobs:
    """How a failure of this run names what the user can change: ``--concurrency`` (or ``sync.concurrency``) and
    ``sync.max_retries``, each with the value it has now; ``sync`` has no timeout setting."""
    where = config.path or "the config"
    return Knobs(
        again="sync",
        max_retries=f"sync.max_retries in {where} (now {settings.max_retries})",
        timeout=None,
        concurrency=f"--concurrency or sync.concurrency (now {settings.concurrency})",
    )


def _flag_int(key: str, value: int, flag: str) -> int:
    """A ``[sync]`` setting given as a flag, by the config's rule (:func:`check_sync_int`); out of range it is bad
    input, exit 2, where the same value in the config file is a config error."""
    try:
        return check_sync_int(key, value, name=flag)
    except ConfigError as exc:
        raise ParameterError(flag, str(exc).removeprefix(f"{flag}: ")) from None


def _refresh_directory(
    store: BaseStore,
    result: SyncResult,
    orgs: Sequence[Any],
    options: SyncOptions,
    at: int,
    quiet: bool,
    *,
    said: Collection[str] = (),
) -> None:
    """Refresh each org's directory after its usage, under the sync run ``result`` (left ``running`` for it), then
    end the run. A failure is one warning line and leaves the old directory; the run keeps its streams' status and
    records the failure as its error. Ctrl-C or SIGTERM here makes the run ``interrupted``, as in its streams.
    ``said``: the advice of the run's failed streams, which the error line after says once: a directory that failed
    for the same reason (a 429 on every try) is told "not refreshed either", without it."""
    from usageledger.sync import end_run
    from usageledger.sync._model import INTERRUPTED
    from usageledger.sync.directory import refresh_failure, refresh_org

    failures: list[str] = []
    status: str | None = "interrupted"
    reading = None  # the org whose refresh is under way
    try:
        for org in orgs:
            reading = org
            knobs = replace(options.knobs, base_url=org.base_url_source)
            try:
                counts = refresh_org(
                    store,
                    org,
                    at=at,
                    allow_insecure_http=options.allow_insecure_http,
                    max_retries=options.max_retries,
                    run_id=result.run_id,
                    knobs=knobs,
                )
            except UsageLedgerError as exc:
                reading = None
                why, shared = refresh_failure(exc, knobs, said=said)
                failures.append(f"the directory of {org.name} was not refreshed{' either' if shared else ''}: {why}")
                say(f"warning: {failures[-1]}")
                continue
            reading = None
            if not quiet:
                say(
                    f"directory of {org.name}: {counts.inserted} new, {counts.changed} changed, "
                    f"{counts.deleted} gone, {counts.unchanged} unchanged",
                    to=_app.console,
                )
        status = None  # the streams' own
    except BaseException as exc:
        if isinstance(exc, Exception):
            status = "failed"
        if reading is not None:  # `knobs` are its, from the loop
            why = INTERRUPTED if status == "interrupted" else refresh_failure(exc, knobs)[0]
            failures.append(f"the directory of {reading.name} was not refreshed: {why}")
        raise
    finally:
        try:
            end_run(store, result, status=status, error="; ".join(failures) or None)
        except StoreError as exc:  # the connection is gone: the next sync finds the run abandoned and says so
            logger.info("could not record the end of run %s: %s", result.run_id, exc)


# --- export ---------------------------------------------------------------------------------------------


@app.command("export")
@friendly_errors
def export_command(
    given_format: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="Output format (default: the one --output's suffix names, .csv, .jsonl or .parquet, else csv); "
            "focus: the costs as FOCUS 1.2 rows (see --focus-format, docs/FOCUS.md); "
            "delta: Delta Lake tables, merged on re-runs.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="A file, a directory (one file per endpoint), or - for stdout.")
    ] = "-",
    endpoint: Annotated[
        list[str] | None, typer.Option("--endpoint", "-e", help="Only these endpoints (repeated or comma-separated).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Buckets starting at or after this time.")] = None,
    until: Annotated[str | None, typer.Option(help="Buckets starting before this time.")] = None,
    org: Annotated[
        list[str] | None, typer.Option("--org", help="Only these orgs (repeated or comma-separated).")
    ] = None,
    stream: Annotated[
        list[str] | None,
        typer.Option("--stream", help="Only these stream ids (see `status`), repeated or comma-separated."),
    ] = None,
    partition_by: Annotated[
        Literal["day"] | None, typer.Option("--partition-by", help="Hive-partition a Parquet export by day.")
    ] = None,
    with_names: Annotated[
        bool,
        typer.Option(
            "--with-names",
            help="Add project_name, api_key_name and user_name columns (where the endpoint has those IDs) from the "
            "directory that sync keeps.",
        ),
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="The rows as the store held them at this time (a date, a datetime, Unix seconds, 2d)."
        ),
    ] = None,
    deltas: Annotated[
        bool,
        typer.Option(
            "--deltas",
            help="Per row, each metric's change (negative too) from the revision log, for consumers that add up.",
        ),
    ] = False,
    changed_since: Annotated[
        str | None,
        typer.Option("--changed-since", help="With --deltas: only changes seen after this time (default: all)."),
    ] = None,
    focus_format: Annotated[
        Literal["csv", "parquet"] | None,
        typer.Option("--focus-format", help="With --format focus: CSV (the default) or Parquet."),
    ] = None,
    currency: Annotated[
        str | None,
        typer.Option("--currency", help="With --format focus: add x_ columns converted to this currency (needs --fx)."),
    ] = None,
    fx: FxOpt = None,
    store: StoreOpt = None,
    config_path: ConfigOpt = None,
) -> None:
    """Write the store, or part of it, as CSV, JSON Lines or Parquet (exact decimals in every format), or the costs
    as FOCUS 1.2 rows."""
    from usageledger.export import export, request_problem

    format = cast(ExportFormat, _format_named(output, given_format))
    if format == "focus":
        focus_format = cast(Literal["csv", "parquet"], _format_named(output, focus_format, focus=True))
    endpoint = comma_list("--endpoint", endpoint)
    # a mistyped name is bad input (exit 2) in every format, as for `sync -e` and `query`: the names alone, here
    if (problem := request_problem(format, None, endpoint or (), to_stdout=False)) is not None:
        raise ParameterError(*problem)
    org = comma_list("--org", org)
    stream = comma_list("--stream", stream)
    binary = format == "parquet" or (format == "focus" and focus_format == "parquet")
    if binary and output == "-" and sys.stdout.isatty():  # Parquet bytes would garble, even drive, the terminal
        raise ParameterError("--output", "Parquet is binary and stdout is a terminal; pass --output FILE, or pipe it")
    # `-o notes.txt/x.csv` said "File exists: notes.txt; pick a path that does not exist yet" (CSV, FOCUS) or "Not a
    # directory" (Delta), exit 1, naming no flag, after the store was read: said first now, as `report --html` does.
    if output != "-" and (blocked := file_in_the_way(Path(output).expanduser())) is not None:
        raise ParameterError(
            "--output", f"{blocked} is a file, not a folder, so {output} cannot be made; give a path in a folder"
        )
    config = load_config(config_path)
    now = timeutil.now_unix()
    since_at, until_at = _since(since, now), _time(until, "--until", now)
    timeutil.check_range(since_at, until_at, now=now, start_param="--since", end_param="--until", stored=True)
    if format == "focus":
        # Each refusal says why that flag has no place here (`--with-names` was told "--format focus always writes
        # the costs stream", which is no reason to leave out names).
        why = {
            "--endpoint": "--format focus always writes the costs stream",
            "--stream": "--format focus always writes the costs stream",
            "--partition-by": "--format focus writes one file",
            "--with-names": "--format focus names each project already, in SubAccountName",
            "--as-of": "--format focus writes the costs as the store holds them now",
            "--deltas": "--format focus writes the costs as the store holds them now",
            "--changed-since": "--format focus writes the costs as the store holds them now",
        }
        given = {
            "--endpoint": endpoint,
            "--stream": stream,
            "--partition-by": partition_by,
            "--with-names": with_names,
            "--as-of": as_of,
            "--deltas": deltas,
            "--changed-since": changed_since,
        }
        refused = [flag for flag, value in given.items() if value]
        if refused:
            raise ParameterError(refused[0], f"{why[refused[0]]}; leave {refused[0]} out")
        _export_focus(config, store, output, focus_format or "csv", since_at, until_at, org or (), currency, fx)
        return
    if currency is not None or fx is not None:
        raise ParameterError("--currency/--fx", "only --format focus converts; costs export as stored, in USD")
    if focus_format is not None:  # `-f csv --focus-format parquet` wrote CSV without a word
        raise ParameterError("--focus-format", "only --format focus reads it; for Parquet here pass --format parquet")
    if format == "delta":
        _export_delta(
            config,
            store,
            output,
            endpoint or (),
            since=since,
            until=until,
            org=org,
            stream=stream,
            partition_by=partition_by,
            with_names=with_names,
            as_of=as_of,
            deltas=deltas,
            changed_since=changed_since,
        )
        return
    as_of_at = None if as_of is None else timeutil.past_unix(as_of, now=now, param="--as-of")
    changed_at = None if changed_since is None else timeutil.seen_since_unix(changed_since, now=now)
    if changed_at is not None and not deltas:
        raise ParameterError("--changed-since", "only a --deltas export reads changes; add --deltas")
    if changed_at is not None and as_of_at is not None and changed_at >= as_of_at:
        raise ParameterError("--changed-since", "must be before --as-of")
    # the library's own rule (a ConfigError there), said before the store is opened as the bad input it is (exit 2)
    if (problem := request_problem(format, partition_by, endpoint or (), to_stdout=output == "-")) is not None:
        raise ParameterError(*problem)
    with open_for_reading(_store_url(store, config)) as opened:
        opened.check_orgs(org)
        opened.check_streams(stream)
        target: Any = sys.stdout.buffer if output == "-" else output
        if output == "-" and partition_by is not None:
            raise ParameterError("--partition-by", "needs an --output directory; give one with --output DIR")
        if as_of_at is not None:
            from usageledger.report.history import before_the_log  # the sync itself never reads the log

            if (empty := before_the_log(opened, as_of_at, org=org)) is not None:
                say(f"warning: {empty}")
        result = export(
            opened,
            format,
            target,
            endpoints=endpoint or (),
            since=since_at,
            until=until_at,
            orgs=org or (),
            streams=stream or (),
            partition_by=partition_by,
            protect={} if config.path is None else {"the config file in use": config.path},
            with_names=with_names,
            as_of=as_of_at,
            deltas=deltas,
            changed_since=changed_at,
        )
    if output != "-":
        say(f"Exported {counted(result.total, 'row')} to {output} ({counted(len(result.files), 'file')}).")
    for warning in result.warnings:  # after the count: the line a spreadsheet user must not miss comes last
        say(f"warning: {warning}")


def _format_named(output: str, given: str | None, *, focus: bool = False) -> str:
    """The format of ``export``: ``given`` (``--format``, or with ``focus`` ``--focus-format``), else the one the
    suffix of ``--output`` names (:data:`_SUFFIX_FORMATS`), else CSV, today's default (stdout, a folder, another
    suffix). A suffix naming another format than ``given`` is refused, as is ``.html``, a page export never writes:
    ``-o report.html`` and ``-o data.parquet`` were written CSV under a name that said otherwise, and ``-f parquet
    -o x.csv`` Parquet, with a note on stderr at most."""
    if given in ("focus", "delta"):  # FOCUS's own format is --focus-format's (the second call); Delta's a folder
        return given
    flag = "--focus-format" if focus else "--format"
    writes = ("csv", "parquet") if focus else ("csv", "jsonl", "parquet")
    suffix = Path(output).suffix.lower() if output != "-" else ""
    named = _SUFFIX_FORMATS.get(suffix)
    if suffix in (".html", ".htm"):
        raise ParameterError(
            "--output",
            f"{output} names an HTML page, which export does not write (`usageledger report --html {output}` does);"
            f" name it {'.csv or .parquet' if focus else '.csv, .jsonl or .parquet'}",
        )
    if named is None:
        return given or "csv"
    if named not in writes:  # `-f focus -o focus.jsonl`
        raise ParameterError(
            "--output",
            f"{output} names {named}, and FOCUS rows are written as CSV or Parquet; name it .csv or .parquet",
        )
    if given is not None and given != named:
        raise ParameterError(
            "--output",
            f"{output} names a {named} file, but {flag} {given} was given; name it .{given}, or pass {flag} {named}",
        )
    return named


SYNC_ARENAS: Final = 2
"""glibc malloc arenas a sync process keeps (:func:`usageledger._memory.limit_arenas`): its threads share them."""

_SUFFIX_FORMATS: Final = MappingProxyType({".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"})
"""What a file's name says it holds: the format of an export given no --format, refused against another one."""


def _export_focus(
    config: Config,
    store: str | None,
    output: str,
    fmt: Literal["csv", "parquet"],
    since: int | None,
    until: int | None,
    orgs: Sequence[str],
    currency: str | None,
    fx: Path | None,
) -> None:
    """``export --format focus``: see :mod:`usageledger.report.focus` (staged and guarded as ``export`` is)."""
    from usageledger.report.focus import write_focus
    from usageledger.report.fx import fx_note, rates_option
    from usageledger.report.teams import project_teams
    from usageledger.sync._safety import data_warnings

    rates = rates_option(currency, fx)
    with open_for_reading(_store_url(store, config)) as opened:
        opened.check_orgs(orgs)
        for warning in data_warnings(opened, orgs):  # FinOps tools add BilledCost up: the demo's would count
            say(f"warning: {warning}")
        teams = project_teams(opened, config=config.teams)
        result = write_focus(
            opened,
            fmt,
            sys.stdout.buffer if output == "-" else output,
            teams=teams,
            since=since,
            until=until,
            orgs=orgs,
            fx=rates,
            protect={
                what: path
                for what, path in (("the config file in use", config.path), ("the file of --fx", fx))
                if path is not None
            },
        )
    if rates is not None:
        _app.err_console.print(
            f"{fx_note(rates, list(result.rates))} The x_ columns hold {rates.currency}; "
            "each row's rate is in x_FxRate.",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if output != "-":
        say(f"Exported {counted(result.rows, 'FOCUS 1.2 row')} to {output}.")


_DELTA_INSTEAD: Final = {
    "since": "filter when you read it",
    "until": "filter when you read it",
    "org": "filter when you read it",
    "stream": "filter when you read it",
    "as_of": "export --as-of to CSV or Parquet, or read an earlier version of the Delta tables",
    "partition_by": "its tables are partitioned by month",
    "with_names": "join the names when you read it (export --with-names to CSV or Parquet has them)",
    "deltas": "export --deltas to CSV or Parquet, or compare two versions of the Delta tables",
    "changed_since": "export --deltas --changed-since to CSV or Parquet",
}
"""What to do instead of each option a Delta export refuses, said after why it refuses them all."""


def _export_delta(
    config: Config,
    store: str | None,
    output: str,
    endpoints: Sequence[str],
    **refused: Any,
) -> None:
    """``export --format delta``: the whole ledger, merged into Delta tables (filters belong to the reader)."""
    from usageledger.export_delta import export_delta

    for name, value in refused.items():
        if value:  # a Delta export mirrors the ledger: a filtered rewrite would delete what the filter left out
            flag = "--" + name.replace("_", "-")
            raise ParameterError(
                flag, f"not with --format delta, which mirrors the whole ledger; {_DELTA_INSTEAD[name]}"
            )
    if output == "-":
        raise ParameterError("--output", "--format delta writes a directory of tables; give one with --output DIR")
    with open_for_reading(_store_url(store, config)) as opened:
        result = export_delta(
            opened,
            output,
            endpoints=endpoints,
            protect={} if config.path is None else {"the config file in use": config.path},
        )
    _app.err_console.print(
        f"Exported {counted(result.total, 'row')} to {output} as {counted(len(result.tables), 'Delta table')} "
        f"({result.rewritten:,} of {counted(result.months, 'month partition')} written).",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    for warning in result.warnings:
        say(f"warning: {warning}")


# --- status ---------------------------------------------------------------------------------------------


@app.command()
@friendly_errors
def status(
    store: StoreOpt = None,
    config_path: ConfigOpt = None,
    output_format: FormatOpt = "text",
) -> None:
    """Show each stream's watermark, last run and row counts, and each org's directory (projects, keys, ...)."""
    config = load_config(config_path)
    url = _store_url(store, config)
    # Imported here, not for every command of this module (a sync starts sooner), and before the store is opened: a
    # running sync waits for this reader to let the file go.
    from usageledger.report.credit import credit_balance
    from usageledger.report.forecast_out import credit_document, credit_line
    from usageledger.report.jsonout import status_document
    from usageledger.sync._safety import abandoned_runs, directory_now, stream_states_now

    with open_for_reading(url) as opened:
        # A run whose process is gone (SIGKILL, power loss) shows as abandoned, never as running: its streams and
        # its directory refreshes alike.
        dead = abandoned_runs(opened)
        states = stream_states_now(opened, at=timeutil.now_unix(), dead=dead)
        directory = directory_now(opened, dead)
        options = config.sync.to_options()
        credit = credit_balance(opened, now=datetime.fromtimestamp(timeutil.now_unix(), UTC))
        if output_format == "json":
            document = status_document(url, states, options, directory)
            document["credit"] = credit_document(credit)
            echo_json(document)
        else:
            _print_status(states, url, options)
            _print_failures(states)
            for d in directory:
                _app.console.print(_directory_line(d), highlight=False, markup=False)
            if credit is not None:
                _app.console.print(credit_line(credit, None))


def _directory_line(d: DirectorySummary) -> str:
    """``Directory of ORG: 4 projects, ...; last change T``, and what its last refresh left undone: one that did not
    finish (Ctrl-C, SIGTERM, its process gone) or failed kept the directory as it was before it (or none)."""
    last = d.last_refresh
    read = d.last_change is not None or any(d.counts.values()) or (last is not None and last.status == "ok")
    parts = [d.describe() if read else "not read yet"]
    if d.last_change is not None:
        parts.append(f"last change {timeutil.iso(d.last_change)}")
    if last is not None and last.status != "ok":
        began = timeutil.iso(last.started_at)
        if last.status == "running":
            parts.append(f"a refresh is running since {began}")
        elif last.status == "interrupted":
            parts.append(
                f"its refresh of {began} was interrupted (Ctrl-C or SIGTERM) before it finished:"
                " the next `usageledger sync` completes it"
            )
        elif last.status == "failed":
            parts.append(
                f"its refresh of {began} failed: {mask_keys(last.error or 'no reason recorded')}; the next"
                " `usageledger sync` tries it again"
            )
        else:  # abandoned: its process is gone
            parts.append(
                f"its refresh of {began} did not finish ({mask_keys(last.error or 'its process is gone')}):"
                " the next `usageledger sync` completes it"
            )
    return f"Directory of {d.org}: " + "; ".join(parts)


def _print_failures(states: list[StreamState]) -> None:
    """Why the streams whose last run failed failed, under the streams, said as that run's error line said it: the
    streams of an org that failed for one reason once, with one request id, and shared advice once
    (:func:`~usageledger.sync._model.said_once`, over each stream's stored error read back); then, when a stream's
    own failure is not said whole, where it is (its window and request id). Wrapped at words, so a request id or a
    number is never cut."""
    from rich.table import Table
    from rich.text import Text

    from usageledger.sync._model import StreamResult, said_once, stored_failure

    failed = [s for s in states if s.last_status == "failed"]
    if not failed:
        return
    said = said_once(
        [
            StreamResult(s.org, s.stream)
            if s.last_status != "failed"
            else stored_failure(s.org, s.stream, s.last_error or f"stream {s.org}/{s.stream}: no reason recorded")
            for s in states
        ]
    )
    listed = Table.grid(padding=(0, 1, 0, 0))
    listed.add_column(no_wrap=True)
    listed.add_column(overflow="fold")  # a word wider than the console (a long URL) folds, never ends in "…"
    for text in said:  # each failure a "- " item whose wrapped lines hang under its first
        listed.add_row("  -", Text(mask_keys(text)))
    _app.console.print(f"Why {counted(len(failed), 'stream')} failed:", highlight=False, markup=False)
    _app.console.print(listed)
    if len(said) < len(failed):  # a stream's own window and request id left out of a shared failure
        _app.console.print(
            "Each failed stream's window and request id: `usageledger status --format json`.",
            highlight=False,
            markup=False,
        )


def _print_status(states: list[StreamState], url: str, options: SyncOptions) -> None:
    from usageledger.report.tables import DataTable, label, number

    table = DataTable(
        f"Streams in {redact_url_password(url)}",
        label("org"),
        label("stream"),
        number("watermark"),
        number("final until"),
        number("last run"),
        label("status"),
        number("rows"),
        number("last run +ins ~upd =same -del"),
    )
    for s in states:
        c = s.last_counts
        final = options.final_until(cast(BucketWidth, s.bucket_width), s.watermark)
        table.add_row(
            s.org,
            s.stream,
            "-" if s.watermark is None else timeutil.iso(s.watermark),
            "-" if final is None else timeutil.iso(final),
            "-" if s.last_run_at is None else timeutil.iso(s.last_run_at),
            s.last_status or "-",
            f"{s.row_count:,}",
            f"+{c.inserted:,} ~{c.updated:,} ={c.unchanged:,} -{c.deleted:,}",
        )
    if not states:
        _app.console.print("No streams yet: run `usageledger sync`.")
        return
    _app.console.print(table)
