"""``usageledger.toml``: the typed configuration, its loader and the commented file ``usageledger init`` writes.

Every key is checked: an unknown key, a wrong type or a missing required key is a :class:`ConfigError` that names
the key (``sync.lag_days``, ``orgs[1].key_env``). ``[alerts]`` and ``[names]`` belong to the report commands,
which validate them; the loader checks them too (so every command refuses a bad section) and keeps them raw.

A config file that holds a key literally (``api_key = "sk-admin-..."``) must be readable by its owner only (0600):
otherwise it is refused, with the ``chmod 600`` fix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from usageledger import catalogue, timeutil
from usageledger._paths import (
    from_file,
    in_file,
    is_duckdb_file,
    naming_full_disk,
    read_user_text,
    real_path,
    temp_beside,
)
from usageledger._secrets import (
    KEY_SHAPED,
    check_private,
    holds_key,
    holds_password,
    key_named,
    mask_keys,
    normalize_key,
    redact_url_password,
    url_without_password,
)
from usageledger._sections import (
    RESERVED_TEAMS,
    check_keys,
    key_path,
    names_from_mapping,
    parse_alert_config,
    parse_teams,
)
from usageledger._text import name_key
from usageledger.catalogue import ADMIN_KEY_ENV, BASE_URL_ENV, BucketWidth
from usageledger.errors import ConfigError, Knobs, ParameterError
from usageledger.store import DEFAULT_STORE
from usageledger.store.streams import Stream, default_streams
from usageledger.sync_options import SyncOptions

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "Config",
    "OrgConfig",
    "SyncConfig",
    "check_config_target",
    "check_distinct_orgs",
    "default_config_text",
    "find_config",
    "load_config",
    "staged_default_config",
    "write_default_config",
]

DEFAULT_CONFIG: Final = "usageledger.toml"
CONFIG_ENV: Final = "USAGELEDGER_CONFIG"
_SECRET: Final = KEY_SHAPED


_ENGINE: Final = SyncOptions()
"""The sync engine's defaults, the one set: ``[sync]`` takes each of its keys' defaults from here."""

CONFIG_KNOBS: Final = Knobs(again="sync", max_retries="sync.max_retries", timeout=None, concurrency="sync.concurrency")
"""How a sync's failures name the settings that would change how it asks, for a run set by ``[sync]``."""


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """``[sync]``: how far runs reach back and how hard they pull. :meth:`to_options` hands it to the engine."""

    lag_days: int = _ENGINE.lag_days
    minute_grace: int = _ENGINE.minute_grace
    hour_grace: int = _ENGINE.hour_grace
    since: int = _ENGINE.first_since
    """How far back (seconds) the first sync of a stream reaches: the engine's ``first_since``."""
    concurrency: int = _ENGINE.concurrency
    max_retries: int = _ENGINE.max_retries
    final_after_days: int | None = _ENGINE.final_after_days
    hour_final_after: int | None = _ENGINE.hour_final_after
    minute_final_after: int | None = _ENGINE.minute_final_after
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)
    """Where each setting not at its default came from, as a refusal names it: ``sync.lag_days in FILE``, or the
    flag that gave it for one run (``--lag-days``, :meth:`with_flag`); a key not in it is the default."""

    def __post_init__(self) -> None:
        """The settings as they stand, flags merged (``dataclasses.replace`` comes through here too): no
        finalization grace shorter than its width's lag window (:func:`_check_final_after`)."""
        _check_final_after(self)

    def with_flag(self, key: str, value: int, flag: str) -> SyncConfig:
        """These settings with ``key`` given by ``flag`` for one run, checked against the rest as the file's are."""
        return replace(self, **{key: value}, sources={**self.sources, key: flag})

    def to_options(
        self,
        *,
        since: int | None = None,
        until: int | None = None,
        allow_insecure_http: bool = False,
        knobs: Knobs = CONFIG_KNOBS,
    ) -> SyncOptions:
        """The engine's options for a run over ``[since, until)`` (``None``: watermarks, now) with these settings;
        a failure's advice names them by ``knobs`` (these keys; the command line passes its flags too).

        Flags that override a key go through ``dataclasses.replace`` on this config first.
        """
        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sources"}  # every key has an
        # engine option
        settings["first_since"] = settings.pop("since")  # the file's `since` is the engine's first_since
        return SyncOptions(since=since, until=until, allow_insecure_http=allow_insecure_http, knobs=knobs, **settings)


@dataclass(frozen=True, slots=True)
class OrgConfig:
    """``[[orgs]]``: one organisation. The key comes from ``api_key`` (discouraged) or the ``key_env`` variable."""

    name: str
    key_env: str = ADMIN_KEY_ENV
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    file: Path | None = field(default=None, repr=False, compare=False)
    """The config file the org was read from: where a fix to its ``base_url`` is made."""

    @property
    def key_source(self) -> str:
        """Where :meth:`resolve_key` reads the key, as a message tells the user to fix it."""
        return f"api_key of org {self.name!r} in the config" if self.api_key else self.key_env

    def resolve_key(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        if self.api_key:
            return normalize_key(self.api_key, f"org {self.name!r} api_key")
        value = env.get(self.key_env)
        if not value or not value.strip():
            if self.file is None:  # the org of no [[orgs]]: no config names the variable, the fix is the export
                raise ConfigError(
                    f"org {self.name!r}: no admin key: set {self.key_env} to an organization admin key: export"
                    f" {self.key_env}=sk-admin-..."
                )
            raise ConfigError(f"org {self.name!r}: no admin key: set {self.key_env} (orgs.key_env names the variable)")
        return normalize_key(value, self.key_env)

    def base_url_source(
        self, override: str | None = None, environ: Mapping[str, str] | None = None
    ) -> tuple[str | None, str]:
        """The base URL this org uses and where it comes from: ``override`` (the CLI's ``--base-url``), else the
        org's ``base_url``, else ``OPENAI_BASE_URL``; ``(None, "the default")`` for the public API. Normalised by
        :func:`~usageledger._options.normalize_base_url`, so a refusal names the source to fix."""
        from usageledger._options import normalize_base_url  # httpx: only where a base URL is read

        env = os.environ if environ is None else environ
        for value, source in (
            (override, "--base-url"),
            (self.base_url, f"base_url of org {self.name!r} in {self.file or 'the config'}"),
            (env.get(BASE_URL_ENV), BASE_URL_ENV),
        ):
            if value:
                return normalize_base_url(value, source), source
        return None, "the default"

    def resolve_base_url(self, override: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
        """The base URL of :meth:`base_url_source` (``None``: the public API)."""
        return self.base_url_source(override, environ)[0]


@dataclass(frozen=True, slots=True)
class Config:
    """The whole file. ``path`` is where it was read from (``None``: defaults, no file)."""

    path: Path | None = None
    store_url: str = DEFAULT_STORE
    sync: SyncConfig = field(default_factory=SyncConfig)
    orgs: tuple[OrgConfig, ...] = ()
    streams: tuple[Stream, ...] = ()
    alerts: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    names: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    teams: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """``{project_id: team}`` from ``[teams]`` (team = [project IDs]); ``report --by team`` uses it."""
    statement_allocate: str = "proportional"
    """``[statement] allocate``: how ``usageledger statement`` allocates shared spend (proportional, even, none)."""
    store_in_file: bool = False
    """Whether ``store_url`` was written in the file (``[store] url``), not the default."""

    def store_source(self, override: str | None = None, *, override_source: str = "--store") -> tuple[str, str]:
        """The store this config uses and where it comes from, as :meth:`OrgConfig.base_url_source` tells a base
        URL's: ``override`` (``--store``, or the variable it was read from), else ``[store] url in <file>``, else
        ``(DEFAULT_STORE, "the default")``; a fix then names the place to change."""
        if override:
            return override, override_source
        if self.store_in_file:
            return self.store_url, f"[store] url in {self.path or 'the config'}"
        return self.store_url or DEFAULT_STORE, "the default"

    def __repr__(self) -> str:
        """The dataclass's repr with the store URL's password (``postgresql://u:pw@h``, ``?password=``) masked: a
        config printed in a notebook or a log must not show it."""
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return mask_keys(f"{type(self).__name__}({shown})")

    @property
    def effective_orgs(self) -> tuple[OrgConfig, ...]:
        """The listed orgs, or one org ``default`` keyed by ``OPENAI_ADMIN_KEY``."""
        return self.orgs or (OrgConfig("default"),)

    @property
    def effective_streams(self) -> tuple[Stream, ...]:
        """The listed streams, or the default streams."""
        return self.streams or default_streams()


# --- loading --------------------------------------------------------------------------------------------


def find_config(explicit: str | Path | None = None) -> Path | None:
    """The config file to read: ``explicit``, else ``$USAGELEDGER_CONFIG``, else ``./usageledger.toml`` if present."""
    if explicit is not None:
        return _config_file(Path(explicit), "--config")
    env = os.environ.get(CONFIG_ENV)
    if env and not env.strip():  # `USAGELEDGER_CONFIG=' '` said "names  , which does not exist"
        raise ConfigError(f"{CONFIG_ENV}: the environment variable is set but empty; unset it, or give it a path")
    if env:
        return _config_file(Path(env), CONFIG_ENV)
    default = Path(DEFAULT_CONFIG)
    return _config_file(default, "the config") if default.exists() else None


def _config_file(path: Path, given: str) -> Path:
    """``path`` as a config file to read, or one line naming where it was ``given`` (``--config``, the variable) and
    the fix: a file that does not exist, or a folder (which said only "cannot read config file /tmp: Is a
    directory")."""
    source = given if given != "the config" else ""  # the default file is nobody's input
    if key_named(path) and not path.exists():  # never advised as `init --path <the key>`
        raise ConfigError(
            f"{given} {mask_keys(str(path))} looks like an API key, not a config file; {_KEY_FIX}", source=source
        )
    if path.is_dir():
        raise ConfigError(
            f"{given} {path} is a folder; give the config file in it, such as {path / DEFAULT_CONFIG}", source=source
        )
    if not path.exists():
        raise ConfigError(
            f"{given} {path}: no such file; write one with `usageledger init --path {path}`, or give an existing"
            " config",
            source=source,
        )
    return path


_KEY_FIX: Final = "put the key in OPENAI_ADMIN_KEY, and give the config file's path (like usageledger.toml)"


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a config file (``None``: find one; no file at all gives the defaults)."""
    found = find_config(path)
    if found is None:
        return Config()
    if is_duckdb_file(found):  # `--config usageledger.duckdb`: the store given where the config goes
        raise ConfigError(f"{found} is a DuckDB store, not a config file: pass usageledger.toml with --config")
    try:
        text = read_user_text(found)
    except OSError as exc:
        fix = ""
        if exc.errno in (errno.EACCES, errno.EPERM):  # said "Permission denied" and no more
            fix = f"; let your user read it (chmod u+r {found}, or sudo chown), or pass another with --config"
        raise ConfigError(f"cannot read config file {found}: {exc.strerror or exc}{fix}") from None
    # A file holding a key is refused for its mode before anything else is said about it: whatever else is wrong,
    # the first fix is `chmod 600`.
    if holds_key(text):
        check_private(found)
    elif holds_password(text):  # a store URL with its password: as private as a key
        check_private(found, "a password (in a URL)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{found}: not valid TOML: {exc}") from None
    config = parse_config(data, path=found)
    if any(o.api_key for o in config.orgs):
        check_private(found)
    return config


_TOP: Final = ("store", "sync", "orgs", "streams", "alerts", "names", "teams", "statement")
STATEMENT_ALLOCATIONS: Final = ("proportional", "even", "none")
"""The ``[statement] allocate`` rules (``usageledger.report.statement.ALLOCATIONS``; a test keeps them equal)."""


def parse_config(data: Mapping[str, Any], *, path: Path | None = None) -> Config:
    """Validate parsed TOML into a :class:`Config`; a :class:`ConfigError` names the key, and ``path`` (the file the
    data was read from) first: `status` run from a cron job said "sync.workers: unknown key" without saying which of
    the config files (``--config``, ``$USAGELEDGER_CONFIG``, ``./usageledger.toml``) held it."""
    try:
        return _parse_config(data, path)
    except ConfigError as exc:
        if path is not None and exc.args and isinstance(exc.args[0], str):
            exc.args = (f"{path}: {exc.args[0]}", *exc.args[1:])  # the same error, its type and attributes kept
        raise


def _parse_config(data: Mapping[str, Any], path: Path | None) -> Config:
    _no_unknown(data, _TOP, "")
    store_url, store_in_file = DEFAULT_STORE, False
    if "store" in data:
        store = _table(data["store"], "store")
        _no_unknown(store, ("url",), "store")
        if "url" in store:
            store_url, store_in_file = from_file(_str(store["url"], "store.url"), path), True
    sync = _sync(_table(data["sync"], "sync"), path) if "sync" in data else SyncConfig()
    tables = _array_of_tables(data.get("orgs", []), "orgs")
    orgs = tuple(replace(_org(t, f"orgs[{i}]"), file=path) for i, t in enumerate(tables))
    names = [o.name for o in orgs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"orgs.name: {', '.join(dupes)} listed more than once")
    _one_organisation_per_key(orgs)
    streams = tuple(
        _stream(t, f"streams[{i}]") for i, t in enumerate(_array_of_tables(data.get("streams", []), "streams"))
    )
    alerts = MappingProxyType(dict(_table(data["alerts"], "alerts"))) if "alerts" in data else MappingProxyType({})
    names_map = MappingProxyType(dict(_table(data["names"], "names"))) if "names" in data else MappingProxyType({})
    # The report commands act on these sections, but a mistake in them is refused by every command, as any other key.
    parse_alert_config(alerts)
    names_from_mapping(names_map)
    teams = _teams(_table(data["teams"], "teams")) if "teams" in data else MappingProxyType({})
    allocate = _statement(_table(data["statement"], "statement")) if "statement" in data else "proportional"
    return Config(
        path,
        store_url,
        sync,
        orgs,
        tuple(dict.fromkeys(streams)),
        alerts,
        names_map,
        teams,
        allocate,
        store_in_file=store_in_file,
    )


def _teams(table: Mapping[str, Any]) -> Mapping[str, str]:
    """``[teams]`` as :func:`parse_teams` reads it, with each team named as it can be shown and typed: a name is what
    ``report --by team`` prints and ``--team`` takes, so one with a newline printed a row over two lines, one with a
    space at either end a team that looked like another, and two names that differ in case or spacing alone
    (``Search``, ``search``) two teams ``--team`` cannot tell apart."""
    teams = parse_teams(table)
    seen: dict[str, str] = {}
    for team in table:
        if team != team.strip() or not team.isprintable():
            raise ConfigError(
                f"{key_path('teams', team)}: the team name has spaces at either end or a character that does not"
                f" print; write it as it should be shown, e.g. {json.dumps(_shown_name(team))} = [...]"
            )
        if name_key(team) in RESERVED_TEAMS:
            raise ConfigError(
                f"{key_path('teams', team)}: {team!r} is what spend by team calls the spend of no team (and the sum"
                " of all); a team of that name would read as it in every table and in --team; name the team otherwise"
            )
        first = seen.setdefault(name_key(team), team)
        if first != team:
            raise ConfigError(
                f"{key_path('teams', team)}: the same name as team {first!r} but for case or spacing, which --team"
                " cannot tell apart; list the projects of both under one name, or give the teams two names"
            )
    return teams


def _statement(table: Mapping[str, Any]) -> str:
    _no_unknown(table, ("allocate",), "statement")
    allocate = _str(table.get("allocate", "proportional"), "statement.allocate")
    if allocate not in STATEMENT_ALLOCATIONS:
        raise ConfigError(
            f"statement.allocate: {allocate!r} is not a rule; choose one of: {', '.join(STATEMENT_ALLOCATIONS)}"
        )
    return allocate


def _sync(table: Mapping[str, Any], path: Path | None) -> SyncConfig:
    keys = ("lag_days", "minute_grace", "hour_grace", "since", "concurrency", "max_retries")
    _no_unknown(table, (*keys, *(k for k, _, _ in _FINAL_KEYS)), "sync")
    d = SyncConfig()
    finals = _final_after(table)
    return SyncConfig(  # checked whole when made (`SyncConfig.__post_init__`), as a flag merged later is
        sources=MappingProxyType({key: f"sync.{key} in {path or 'the config'}" for key in table}),
        lag_days=check_sync_int("lag_days", table.get("lag_days", d.lag_days)),
        minute_grace=_duration(table, "minute_grace", d.minute_grace, "sync"),
        hour_grace=_duration(table, "hour_grace", d.hour_grace, "sync"),
        # The first sync of a stream reads from `since` back to now: a zero span is an empty range.
        since=_first_since(table, d.since),
        concurrency=check_sync_int("concurrency", table.get("concurrency", d.concurrency)),
        max_retries=check_sync_int("max_retries", table.get("max_retries", d.max_retries)),
        final_after_days=finals.get("final_after_days"),
        hour_final_after=finals.get("hour_final_after"),
        minute_final_after=finals.get("minute_final_after"),
    )


_FINAL_KEYS: Final[tuple[tuple[str, BucketWidth, str], ...]] = (
    ("final_after_days", "1d", "lag_days"),
    ("hour_final_after", "1h", "hour_grace"),
    ("minute_final_after", "1m", "minute_grace"),
)
"""The ``[sync]`` finalization graces: key, bucket width, and the lag window it may not undercut."""


def _final_after(table: Mapping[str, Any]) -> dict[str, int]:
    """The finalization graces given (absent: the lag window of their width); :func:`_check_final_after` holds each
    to at least that lag window."""
    out: dict[str, int] = {}
    for key, _, _ in _FINAL_KEYS:
        if key in table:
            days = key == "final_after_days"
            out[key] = _int(table[key], f"sync.{key}", minimum=0) if days else _duration(table, key, 0, "sync")
    return out


def _check_final_after(settings: SyncConfig) -> None:
    """The one rule between a finalization grace and its width's lag window, for the settings as they stand (the
    file's, with a flag such as ``--lag-days`` merged): the grace may not be shorter, or a bucket the next sync
    re-reads would count as final (``status`` says so, ``check --final-only`` trusts it). A flag at fault is named
    first, as bad input (exit 2), with the key it conflicts with and where that was set; else the key is."""
    for key, width, lag_key in _FINAL_KEYS:
        grace: int | None = getattr(settings, key)
        if grace is None:
            continue
        lag: int = getattr(settings, lag_key)
        days = width == "1d"
        if (grace * 86400 if days else grace) >= (lag * 86400 if days else lag):
            continue
        shown_lag, shown_grace = (
            (str(lag), str(grace)) if days else (timeutil.span_text(lag), timeutil.span_text(grace))
        )
        flag = settings.sources.get(lag_key, "")
        if flag.startswith("--"):
            where = settings.sources.get(key, f"{key}=")
            raise ConfigError(
                f"{flag}: {shown_lag} is longer than {where} ({shown_grace}), so this sync would re-read buckets"
                f" that status already calls final; give {flag} {shown_grace} or less, or set sync.{key} to"
                f" {shown_lag} or more",
                source=flag,
            )
        given = "" if lag_key in settings.sources else ", the default"
        raise ConfigError(
            f"sync.{key}: {shown_grace} is shorter than the lag window (sync.{lag_key} = {shown_lag}{given}), so a"
            f" bucket the next sync re-reads would count as final; use at least {shown_lag}, or leave {key} out"
        )


# The range of each integer [sync] setting. The lag window is re-read on every run, so more than a year of it is a
# typo (100000 days would re-read the API's whole history each time); more than 64 requests in flight or 20 retries
# only earns 429s.
_SYNC_RANGE: Final = {"lag_days": (0, 366), "concurrency": (1, 64), "max_retries": (0, 20)}


def _first_since(table: Mapping[str, Any], default: int) -> int:
    """``[sync] since``: how far back a stream's first sync reaches, in hours or more. ``since = "6m"``, meant as six
    months, is six minutes (``m`` is minutes wherever a span is read): the first sync read today's bucket alone, and
    said nothing of the history it left out. Refused as ``report --since 1m`` is, with the days it meant."""
    value = table.get("since")
    if isinstance(value, str) and timeutil.span_unit(value) in ("m", "s", "ms"):
        raise ConfigError(
            f"sync.since: {value.strip()!r} is a span of minutes or seconds (m is minutes), so a stream's first sync"
            ' would read today alone; write it in days, such as since = "180d" for about six months'
        )
    return _duration(table, "since", default, "sync", minimum=1)


def check_sync_int(key: str, value: Any, *, name: str | None = None) -> int:
    """One rule for an integer ``[sync]`` setting, whether it comes from the config file or a flag (``name``)."""
    low, high = _SYNC_RANGE[key]
    return _int(value, name or f"sync.{key}", minimum=low, maximum=high)


def _shown_name(name: str) -> str:
    """``name`` as it was probably meant: unprintable characters as spaces, spaces trimmed and collapsed."""
    return " ".join("".join(c if c.isprintable() else " " for c in name).split()) or "acme"


def _org(table: Mapping[str, Any], where: str) -> OrgConfig:
    _no_unknown(table, ("name", "key_env", "base_url", "api_key"), where)
    if "name" not in table:
        raise ConfigError(f"{where}.name: missing (every [[orgs]] entry needs a name)")
    name = _str(table["name"], f"{where}.name")
    if name != name.strip() or not name.isprintable():
        # The name is how reports, `--org` and the store's org column say the organisation: a stray space or
        # newline would make a second org that no one can type.
        raise ConfigError(
            f"{where}.name: {name!r} has spaces at either end or a character that does not print; write the name"
            f" as it should be shown, e.g. name = {json.dumps(_shown_name(name))}"
        )
    if "," in name:
        # `--org` takes a comma list (`sync --org a,b`, `export --org a,b`): "Acme, Inc" is read as the orgs "Acme"
        # and "Inc", so no command could name this org alone.
        meant = _shown_name(name.replace(",", " "))
        raise ConfigError(
            f"{where}.name: {name!r} has a comma, which --org reads as a list separator (--org a,b), so no command"
            f" could name this org; write the name without it, e.g. name = {json.dumps(meant)}"
        )
    key_env = _str(table.get("key_env", ADMIN_KEY_ENV), f"{where}.key_env")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env):
        if _SECRET.search(key_env) or key_env.startswith("sk-"):
            # Never echo a key back (it would land in terminals and logs): show its prefix only.
            shown = ("sk-admin-" if key_env.startswith("sk-admin-") else "sk-") + "…"
            raise ConfigError(
                f"{where}.key_env: {shown!r} is not an environment variable name; it looks like an API key:"
                " put the key in an environment variable and give that variable's name here"
            )
        # `$ACME_KEY`, `${ACME_KEY}` (a shell's reference to it), `acme key`, `acme-key`: the name meant, as the fix
        meant = re.sub(r"[^A-Za-z0-9_]+", "_", re.sub(r"^\$\{?|\}$", "", key_env.strip())).strip("_")
        meant = f"_{meant}" if meant[:1].isdigit() else meant
        example = meant or f"ACME_{ADMIN_KEY_ENV.removeprefix('OPENAI_')}"
        raise ConfigError(
            f"{where}.key_env: {key_env!r} is not an environment variable name; give the variable's name alone"
            f" (letters, digits and _), e.g. key_env = {json.dumps(example)}"
        )
    base_url = None
    if "base_url" in table:  # trimmed, and refused with credentials in it, as every base URL is
        from usageledger._options import normalize_base_url  # httpx: only for a config that names a base URL

        base_url = normalize_base_url(_str(table["base_url"], f"{where}.base_url"), f"{where}.base_url")
    api_key = _str(table["api_key"], f"{where}.api_key") if "api_key" in table else None
    return OrgConfig(name, key_env, base_url, api_key)


def _one_organisation_per_key(orgs: Sequence[OrgConfig]) -> None:
    """Two orgs that read one key at one base URL are one organisation under two names: every sync would store its
    usage twice and every report across orgs would count it twice. Refused, naming the second org's key setting."""
    seen: dict[tuple[str, str, str | None], OrgConfig] = {}
    for i, org in enumerate(orgs):
        source = ("api_key", org.api_key) if org.api_key else ("key_env", org.key_env)
        first = seen.setdefault((*source, org.base_url), org)
        if first is not org:
            shown = f"reads its key from {org.key_env}" if source[0] == "key_env" else "has the same api_key"
            raise ConfigError(
                f"orgs[{i}].{source[0]}: org {org.name!r} {shown} at the same base URL as org {first.name!r}: one"
                " organisation under two names, synced and counted twice; give each org the variable of its own"
                " admin key, or list the organisation once"
            )


def check_distinct_orgs(orgs: Sequence[tuple[OrgConfig, str, str | None]]) -> None:
    """``(org, key, base_url)`` as a run resolved them: two orgs whose variables hold one key for one base URL are
    one organisation synced twice (the config check cannot see the keys). A :class:`ConfigError` naming both
    variables, never the key."""
    seen: dict[tuple[str, str | None], OrgConfig] = {}
    for org, key, base_url in orgs:
        first = seen.setdefault((key, base_url), org)
        if first is not org:
            raise ConfigError(
                f"orgs: {first.key_source} (org {first.name!r}) and {org.key_source} (org {org.name!r}) hold the same"
                " admin key for the same base URL: one organisation under two names, synced and counted twice; set"
                " each variable to its own organisation's key, or list the organisation once"
            )


def _stream(table: Mapping[str, Any], where: str) -> Stream:
    _no_unknown(table, ("endpoint", "bucket_width", "group_by", "filters"), where)
    if "endpoint" not in table:
        raise ConfigError(f"{where}.endpoint: missing; choose one of: {', '.join(catalogue.ENDPOINT_NAMES)}")
    endpoint = _str(table["endpoint"], f"{where}.endpoint")
    width = _str(table.get("bucket_width", "1d"), f"{where}.bucket_width")
    group_by = table.get("group_by")
    if group_by is None:
        groups: tuple[str, ...] | None = None
    elif isinstance(group_by, list) and all(isinstance(g, str) for g in group_by):
        groups = tuple(group_by)
    else:
        raise ConfigError(f'{where}.group_by: must be a list of strings, e.g. ["project_id", "model"]')
    filters = _table(table.get("filters", {}), f"{where}.filters")
    try:
        ep = catalogue.get(endpoint)
        return Stream.create(ep, width, ep.default_group_by if groups is None else groups, dict(filters))
    except KeyError as exc:
        raise ConfigError(f"{where}.endpoint: {exc.args[0]}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None


def _no_unknown(table: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    check_keys(where, table, known)


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a table, got {type(value).__name__}")
    return value


def _array_of_tables(value: Any, key: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{key}: must be an array of tables ([[{key}]])")
    return value


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a non-empty string, got {_describe(value)}")
    return value


def _int(value: Any, key: str, *, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: must be an integer, got {_describe(value)}")
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key}: must be at most {maximum}, got {value}")
    return value


def _duration(table: Mapping[str, Any], name: str, default: int, where: str, *, minimum: float = 0) -> int:
    """Whole seconds of ``table[name]`` (a string such as ``"15m"``), at least ``minimum``, or ``default`` when the
    key is absent."""
    if name not in table:
        return default
    value = table[name]
    try:
        return int(timeutil.parse_duration(value, param=f"{where}.{name}", minimum=minimum))
    except ParameterError as exc:
        fits = timeutil.unit_suggestions(str(value), ("d", "h"), minimum) if isinstance(value, int) else []
        if fits and not isinstance(value, bool):
            # A bare number: the unit it was meant in (seconds? days?) is unknowable. TOML needs the quotes; only a
            # span the key takes is suggested (`since = 0` suggested "0d", itself refused).
            quoted = " or ".join(f'"{f}"' for f in fits)
            raise ConfigError(
                f"{where}.{name}: {value} has no unit; write {name} = {quoted} (units: ms, s, m (minutes), h, d, w)"
            ) from None
        raise ConfigError(str(exc)) from None


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, dict | list) else type(value).__name__


# --- writing --------------------------------------------------------------------------------------------


def default_config_text(store_url: str = DEFAULT_STORE) -> str:
    """The commented config ``usageledger init`` writes (it holds no key)."""
    defaults = "\n".join(
        f"#   {s.endpoint.name:<26} {s.bucket_width}  group_by = {list(s.group_by)}" for s in default_streams()
    )
    widths = ", ".join(catalogue.BUCKET_WIDTHS)
    return f'''# usageledger configuration. Every key is optional; unknown keys are refused.

[store]
# A DuckDB file path (relative to this file's folder), or a PostgreSQL URL (postgresql://user@host/db).
# --store overrides it.
url = "{store_url}"

[sync]
# Trailing days re-read on every run of a daily stream: the API restates recent days.
lag_days = {_ENGINE.lag_days}
# The same for minute and hour streams (minute and hour buckets keep changing after they close).
minute_grace = "{_span(_ENGINE.minute_grace)}"
hour_grace = "{_span(_ENGINE.hour_grace)}"
# How far back the first sync of a stream reaches.
since = "{_span(_ENGINE.first_since)}"
# A bucket is provisional until it is this much older than its stream's watermark, then final: no later sync
# re-reads it. Never less than the lag window; left out, the lag window. `usageledger status` shows where each
# stream is final, `check --final-only` reads final buckets only.
# final_after_days = {_ENGINE.lag_days}
# hour_final_after = "{_span(_ENGINE.hour_grace)}"
# minute_final_after = "{_span(_ENGINE.minute_grace)}"
# Parallel requests, and retries per request (429s, 5xx, lost or damaged answers) before a window fails.
concurrency = {_ENGINE.concurrency}
max_retries = {_ENGINE.max_retries}

# Organisations. Without any [[orgs]], one org named "default" uses $OPENAI_ADMIN_KEY.
# Keep keys in the environment: a file that holds a key must be chmod 600.
# [[orgs]]
# name = "acme"
# key_env = "ACME_ADMIN_KEY"
# base_url = "https://api.openai.com/v1"

# Streams: an endpoint, a bucket width ({widths}), a group_by list and filters.
# Without any [[streams]], these defaults are synced:
{defaults}
# [[streams]]
# endpoint = "completions"
# bucket_width = "1h"
# group_by = ["project_id", "model"]
# filters = {{ project_ids = ["proj_abc"] }}

# Alerts for `usageledger check` (flags override them). Budgets fire when spend is above them; money as strings.
# [alerts]
# daily_budget = "150.00"
# monthly_budget = "3000"
# stale_after = "36h"
# anomaly_threshold = 3.5          # robust z-score against the trailing 28 days
# forecast_over = "3000"          # this month's forecast month-end spend above it (see usageledger forecast)
# credit_below = "100"             # the prepaid credit balance below it (see usageledger credit)
# [alerts.projects.proj_abc]       # a project's ID, or its name: [alerts.projects."Search Assistant"]
# daily_budget = "20"

# Names for IDs, shown by `usageledger report` wherever results carry only IDs.
# [names]
# projects = {{ proj_abc = "Search" }}
# users = {{ user-123 = "Ada" }}
# api_keys = {{ key_456 = "batch jobs" }}

# Teams for `usageledger report --by team`; they win over the directory's groups (see the README).
# [teams]
# Search = ["proj_abc", "proj_def"]

# How `usageledger statement` allocates shared spend: proportional (to direct spend), even, or none.
# [statement]
# allocate = "proportional"
'''


def _span(seconds: int) -> str:
    """Seconds in the largest unit that divides them exactly, as the config spells a duration ("90d", "15m")."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def check_config_target(path: str | Path, *, force: bool = False) -> Path:
    """Where a new config may go: not over an existing file unless ``force``, never over a DuckDB store."""
    target = Path(path)
    if key_named(target) and not target.exists():  # a config named by the key, in every listing of its folder
        raise ConfigError(
            f"--path {mask_keys(str(target))} looks like an API key, not a file name; {_KEY_FIX}", source="--path"
        )
    if target.is_dir():  # said first: --force cannot help, and `init` must refuse before it makes the store
        raise ConfigError(
            f"--path {target} is a folder; give the config a file name, such as {target / DEFAULT_CONFIG}",
            source="--path",
        )
    if target.exists() and not force:
        # not bad input but the folder's state (a second `init`, no flag given): exit 1
        raise ConfigError(f"--path {target} already exists; pass --force to overwrite it, or pick another --path")
    if is_duckdb_file(target):  # --force overwrites a config, never a store
        raise ConfigError(
            f"{target} is a DuckDB store, not a config file; write the config to another --path", source="--path"
        )
    return target


@contextlib.contextmanager
def staged_default_config(
    path: str | Path = DEFAULT_CONFIG, *, store_url: str = DEFAULT_STORE, force: bool = False
) -> Iterator[Path]:
    """The commented default config (mode 0600), written beside ``path`` under a temporary name on entry and renamed
    into place when the block ends without an error (removed when it fails). ``init`` makes its store inside the
    block, so a folder the config cannot be written to is said, naming ``--path``, before the store is made, and a
    store that cannot be made leaves no config. A store URL with a password is refused: the config gets copied,
    shared and committed, so the password belongs in libpq's password file (``init`` puts it there)."""
    if url_without_password(store_url) != store_url:
        raise ConfigError(
            "store_url: a config never keeps the store's password; give the URL without it"
            f" ({redact_url_password(store_url)} as {url_without_password(store_url)}) and keep the password in"
            " PGPASSFILE or ~/.pgpass, where libpq reads it (`usageledger init --store URL` puts it there)"
        )
    target = check_config_target(path, force=force)
    text = default_config_text(in_file(store_url, target))  # read back relative to the config's folder
    final = real_path(target) if target.is_symlink() else target
    temp = temp_beside(final)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"--path {target}: cannot write a file in the folder {final.parent or '.'} ({exc.strerror}); run init in"
            " a folder you can write, or pick another --path"
        ) from exc
    try:
        with naming_full_disk(target), os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(temp, 0o600)
        yield target
        os.replace(temp, final)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)


def write_default_config(
    path: str | Path = DEFAULT_CONFIG, *, store_url: str = DEFAULT_STORE, force: bool = False
) -> Path:
    """Write the commented default config (mode 0600) whole; refuse to overwrite unless ``force``."""
    with staged_default_config(path, store_url=store_url, force=force) as target:
        return target
