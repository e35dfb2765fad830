"""``usageledger emulator`` (serve the offline API double) and ``usageledger demo`` (the main job, offline)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from usageledger import timeutil
from usageledger._amounts import parse_amount
from usageledger._secrets import normalize_key
from usageledger.cli._app import (
    EXIT_USAGE,
    announce,
    app,
    console,
    fail,
    friendly_errors,
    listen_flags,
    settle,
    setup_logging,
)
from usageledger.cli._flags import Verbose
from usageledger.emulator import Emulator, EmulatorConfig, FaultConfig
from usageledger.emulator.config import MAX_RETRY_AFTER_MS, MAX_SIZE, MIN_REVISION_WINDOW, NameStyle
from usageledger.emulator.orgs import MAX_ORGS, Organisations, org_key
from usageledger.emulator.server import serve
from usageledger.errors import EmulatorConfigError, ParameterError

_SIZE = "Organisation"
_ADMIN_KEY_SOURCE = "--admin-key (or USAGELEDGER_EMULATOR_ADMIN_KEY)"
_FAULTS = "Faults"
_DEFAULT_CACHE_MB = EmulatorConfig().cache_bytes // 2**20
_MAX_CACHE_MB = 1 << 20


def _rate(param: typer.CallbackParam, value: float) -> float:
    """A share of answers, from 0 to 1, read by the one reader of typed numbers (``parse_amount``): ``nan``, ``inf``
    and ``-1`` are refused in one line naming the flag and ending in an example."""
    flag = param.opts[0] if param.opts else str(param.name)
    try:
        parse_amount(value, param=flag, noun="a rate", example="0.05", at_most=Decimal(1), money=False)
    except ParameterError as exc:
        raise typer.BadParameter(str(exc).removeprefix(f"{flag}: ")) from None
    return value


@app.command()
@friendly_errors
def emulator(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8787,
    seed: Annotated[
        int, typer.Option(help="Seed of the synthetic organisation and of the faults.", rich_help_panel=_SIZE)
    ] = 0,
    days: Annotated[int, typer.Option(help="Days of history.", rich_help_panel=_SIZE)] = 400,
    projects: Annotated[
        int, typer.Option(help=f"Number of projects, 1 to {MAX_SIZE['projects']:,}.", rich_help_panel=_SIZE)
    ] = 5,
    users: Annotated[
        int, typer.Option(help=f"Number of users, 1 to {MAX_SIZE['users']:,}.", rich_help_panel=_SIZE)
    ] = 12,
    models: Annotated[
        int,
        typer.Option(
            help=f"Number of chat models in use, 1 to {MAX_SIZE['models']} (the ones it knows).", rich_help_panel=_SIZE
        ),
    ] = 6,
    keys: Annotated[
        int | None,
        typer.Option(
            help=f"API keys per project, 1 to {MAX_SIZE['keys']} (default: 2 or 3 each).", rich_help_panel=_SIZE
        ),
    ] = None,
    archived: Annotated[
        int | None,
        typer.Option(
            help="Projects archived (the last ones), 0 to one fewer than --projects (default: 1 of 3 or more).",
            rich_help_panel=_SIZE,
        ),
    ] = None,
    names: Annotated[
        NameStyle,
        typer.Option(
            help="Names of projects, users and keys: plain (short English) or world (long, CJK, emoji, Arabic and "
            "Hebrew, alike but for case or spaces).",
            rich_help_panel=_SIZE,
        ),
    ] = "plain",
    replay: Annotated[
        Path | None,
        typer.Option(help="Serve usage records from this JSON Lines or CSV file instead.", rich_help_panel=_SIZE),
    ] = None,
    replay_directory: Annotated[
        Path | None,
        typer.Option(
            help="Serve the admin directory (projects, users, keys, groups) from this JSON file.",
            rich_help_panel=_SIZE,
        ),
    ] = None,
    latency: Annotated[
        str,
        typer.Option(
            help="Latency per response, counted from the request's arrival (page computation included), e.g. 100ms.",
            rich_help_panel=_FAULTS,
        ),
    ] = "0ms",
    jitter: Annotated[
        str, typer.Option(help="Extra random latency, up to this, e.g. 50ms.", rich_help_panel=_FAULTS)
    ] = "0ms",
    rate_429: Annotated[
        float,
        typer.Option(
            "--rate-429", help="Share of 429 answers (with Retry-After).", callback=_rate, rich_help_panel=_FAULTS
        ),
    ] = 0.0,
    retry_after_ms: Annotated[
        int | None,
        typer.Option(
            "--retry-after-ms",
            help="Also send retry-after-ms: N with each 429 (as some live 429s do; clients wait N ms, not the "
            f"Retry-After: 1 s), 0 to {MAX_RETRY_AFTER_MS:,}: fast fault tests.",
            rich_help_panel=_FAULTS,
        ),
    ] = None,
    rate_5xx: Annotated[
        float, typer.Option("--rate-5xx", help="Share of 500/503 answers.", callback=_rate, rich_help_panel=_FAULTS)
    ] = 0.0,
    rate_drop: Annotated[
        float,
        typer.Option("--rate-drop", help="Share of dropped connections.", callback=_rate, rich_help_panel=_FAULTS),
    ] = 0.0,
    rate_truncate: Annotated[
        float,
        typer.Option(
            "--rate-truncate",
            help="Share of truncated or slow bodies and gateway 502 HTML pages.",
            callback=_rate,
            rich_help_panel=_FAULTS,
        ),
    ] = 0.0,
    now: Annotated[str | None, typer.Option(help="Fix the clock: Unix seconds or ISO 8601.")] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(
            envvar="USAGELEDGER_EMULATOR_ADMIN_KEY",
            show_envvar=True,
            help="Accept only this key (default: any sk-admin- key). Prefer the variable: an argument shows in ps.",
        ),
    ] = None,
    revisions: Annotated[bool, typer.Option(help="Recent buckets keep growing after they close.")] = False,
    refuse_costs_user_by_project: Annotated[
        bool,
        typer.Option(
            help="Answer 400 to costs grouped by user_id with project_id grouping or the project_ids filter.",
            rich_help_panel=_SIZE,
        ),
    ] = False,
    revision_window: Annotated[str, typer.Option(help="How long buckets keep changing, e.g. 3d.")] = "3d",
    cache_mb: Annotated[
        int,
        typer.Option(help="Memory for answers kept for reuse, in MiB (0 keeps none; least recently used go first)."),
    ] = _DEFAULT_CACHE_MB,
    orgs: Annotated[
        int | None,
        typer.Option(
            help=f"Serve N synthetic organisations, organisation n (seed SEED+n) under the key {org_key(1)[:-2]}NN "
            f"({org_key(1)}, {org_key(2)}, ...); any other key is refused.",
            rich_help_panel=_SIZE,
        ),
    ] = None,
    verbose: Verbose = 0,
) -> None:
    """Serve the offline Usage & Costs API double under /v1 until Ctrl-C (SIGINT) or SIGTERM."""
    setup_logging(verbose)
    host, port = listen_flags(host, port)  # bad flag values below exit 2; a failure to serve, 1
    if not 0 <= cache_mb <= _MAX_CACHE_MB:
        raise fail(
            f"--cache-mb {cache_mb} is out of range; give MiB from 0 (no cache) to {_MAX_CACHE_MB}, e.g. 512",
            EXIT_USAGE,
        )
    if orgs is not None:
        if not 1 <= orgs <= MAX_ORGS:
            raise fail(
                f"--orgs {orgs} is out of range; give a number of organisations from 1 to {MAX_ORGS}", EXIT_USAGE
            )
        if replay is not None or admin_key is not None:
            given = "--replay" if replay is not None else _ADMIN_KEY_SOURCE
            raise fail(
                f"--orgs cannot be combined with {given}: each organisation has its own key, {org_key(1)}, ...",
                EXIT_USAGE,
            )
    if replay is not None and not replay.is_file():
        raise fail(
            f"--replay {replay}: {_not_a_file(replay)}; give a JSON Lines or CSV file of usage records", EXIT_USAGE
        )
    if replay_directory is not None and not replay_directory.is_file():
        raise fail(
            f"--replay-directory {replay_directory}: {_not_a_file(replay_directory)}; give a JSON file of "
            "directory lists",
            EXIT_USAGE,
        )
    try:
        faults = FaultConfig(
            latency=timeutil.parse_duration(latency, param="--latency", units=("ms", "s")),
            jitter=timeutil.parse_duration(jitter, param="--jitter", units=("ms", "s")),
            rate_429=rate_429,
            retry_after_ms=retry_after_ms,
            rate_5xx=rate_5xx,
            rate_drop=rate_drop,
            rate_truncate=rate_truncate,
            seed=seed,
        )
        config = _config(
            seed, days, projects, users, models, now, admin_key, revisions, revision_window, faults, replay
        )
        if replay_directory is not None:
            config = dataclasses.replace(config, replay_directory=replay_directory)
        config = dataclasses.replace(config, keys=keys, archived=archived, names=names)
        if refuse_costs_user_by_project:
            config = dataclasses.replace(config, refuse_costs_user_by_project=True)
        config = dataclasses.replace(config, cache_bytes=cache_mb * 2**20)
        instance: Emulator | Organisations = Emulator(config) if orgs is None else Organisations(config, orgs)
    except EmulatorConfigError as exc:
        # a setting the config refuses is named by its flag (`--days: 0 is too few`), not by its field
        if exc.setting is None:
            raise fail(str(exc)) from None
        raise fail(f"--{exc.setting.replace('_', '-')}: {exc.reason}", EXIT_USAGE) from None
    except ParameterError:  # a ValueError too: bad input, said (exit 2) as by every command
        raise
    except ValueError as exc:
        raise fail(str(exc)) from None

    def ready(url: str) -> None:
        announce(f"Emulator ready at {url}", console)

    settle()
    serve(instance, host, port, ready)  # a host or port it cannot listen on is a ListenError: one line, exit 1
    announce("Emulator stopped", console)


def _not_a_file(path: Path) -> str:
    if path.is_dir():
        return "a directory, not a file"
    return "not a regular file (a device or a pipe)" if path.exists() else "no such file"


def _config(
    seed: int,
    days: int,
    projects: int,
    users: int,
    models: int,
    now: str | None,
    admin_key: str | None,
    revisions: bool,
    revision_window: str,
    faults: FaultConfig,
    replay: Path | None,
) -> EmulatorConfig:
    return EmulatorConfig(
        seed=seed,
        days=days,
        projects=projects,
        users=users,
        models=models,
        now=None if now is None else timeutil.to_unix(now, param="--now"),
        # the one reading of a key: a padded one was pinned as typed, while every client strips the key it sends
        admin_key=None if admin_key is None else normalize_key(admin_key, _ADMIN_KEY_SOURCE),
        revisions=revisions,
        revision_window=int(
            timeutil.parse_duration(revision_window, param="--revision-window", minimum=MIN_REVISION_WINDOW)
        ),
        faults=faults,
        replay=replay,
    )
