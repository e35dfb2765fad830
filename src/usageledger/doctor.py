"""``usageledger doctor``: check the set-up and say, in plain words, what is wrong and how to fix it.

:func:`diagnose` runs every check and returns a :class:`Diagnosis` (a tuple of :class:`Finding`), never printing;
the CLI renders it. The checks, in order:

* **config**: the config file (if any) is valid, and not readable by other users when it holds a key;
* **key** (per org): an admin key is present, in ``OPENAI_ADMIN_KEY`` or the org's ``key_env``, and looks like
  one (``sk-admin-``);
* **base URL** (per org): it is a URL the client will use (plain ``http://`` only to loopback) and it answers;
* **probe** (per org): a one-bucket costs request succeeds, which proves the key is an admin key with
  ``api.usage.read``; a 401 or 403 is explained;
* **store**: the store opens, accepts a write (rolled back), and has no pending migrations.

A check that cannot run because an earlier one failed is reported as skipped, with the reason. The admin key is
never part of a finding: at most its prefix is shown.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import httpx

from usageledger import timeutil
from usageledger._options import corrected_base_url, set_to
from usageledger._secrets import exposure, holds_key, holds_password, mask_keys, redact_url_password
from usageledger._text import counted
from usageledger.catalogue import ADMIN_KEY_PREFIX, DEFAULT_BASE_URL
from usageledger.client import Client
from usageledger.config import CONFIG_ENV, Config, OrgConfig, find_config, load_config
from usageledger.errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BaseURLError,
    CertificateError,
    ConfigError,
    InsecureURLError,
    NotFoundError,
    PermissionDeniedError,
    ResponseDecodeError,
    StoreError,
)
from usageledger.store import check_store_url, is_postgres_url, open_existing_store, open_store
from usageledger.store._base import BaseStore
from usageledger.store._filelock import Writer, writer

__all__ = ["Diagnosis", "Finding", "Status", "diagnose"]

Status = Literal["ok", "warn", "fail", "skip"]

PROBE_TIMEOUT: Final = 15.0
"""The one-bucket costs probe's request timeout, in seconds (its client retries once)."""
_ADMIN_KEYS_PAGE: Final = "https://platform.openai.com/settings/organization/admin-keys"


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's outcome: what was checked, the status, what was found, and how to fix it (when not ok)."""

    check: str
    status: Status
    finding: str
    fix: str | None = None

    @property
    def passed(self) -> bool:
        """Not a failure: ok, a warning, or skipped (a skip always follows a failure, which is counted once)."""
        return self.status != "fail"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Every finding, in the order the checks ran."""

    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return all(f.passed for f in self.findings)

    @property
    def failures(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.passed)

    def by_check(self, check: str) -> Finding:
        """The first finding of ``check`` (a name like ``"probe"`` or ``"probe (acme)"``)."""
        for f in self.findings:
            if f.check == check:
                return f
        raise KeyError(check)


def diagnose(
    *,
    config_path: str | Path | None = None,
    store: str | None = None,
    base_url: str | None = None,
    allow_insecure_http: bool = False,
    store_source: str = "--store",
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Diagnosis:
    """Run every check. ``store`` and ``base_url`` override the config, as the CLI's ``--store``/``--base-url`` do;
    ``store_source`` is where ``store`` was read (``USAGELEDGER_STORE``), which a store's fix names.

    ``environ`` (default ``os.environ``) is where keys are looked up; ``transport`` and ``clock`` are for tests.
    """
    env = os.environ if environ is None else environ
    findings: list[Finding] = []
    config = _check_config(config_path, findings)
    orgs = config.effective_orgs if config is not None else (OrgConfig("default"),)
    for org in orgs:
        label = "" if len(orgs) == 1 and org.name == "default" else f" ({org.name})"
        findings += _check_org(org, label, base_url, allow_insecure_http, env, clock or time.time, transport)
    if config is None and store is None:
        findings.append(Finding("store", "skip", "not checked: the store is named in the config file, which failed"))
    else:
        url, source = (config or Config()).store_source(store, override_source=store_source)
        findings += _check_store(url, source)
    return Diagnosis(tuple(_redacted(f) for f in findings))


def _redacted(finding: Finding) -> Finding:
    """``finding`` with anything key-shaped cut to its prefix: a key typed into the wrong config field (say,
    ``key_env``) comes back inside the config loader's error message, and a finding must not repeat it."""

    cut = mask_keys
    return Finding(
        finding.check, finding.status, cut(finding.finding), None if finding.fix is None else cut(finding.fix)
    )


# --- config -----------------------------------------------------------------------------------------------


def _check_config(config_path: str | Path | None, findings: list[Finding]) -> Config | None:
    """Append the config findings; the loaded config, or ``None`` when there is no usable one."""
    try:
        path = find_config(config_path)
    except ConfigError as exc:
        findings.append(
            Finding(
                "config",
                "fail",
                str(exc),
                f"give an existing config file (--config, or {CONFIG_ENV}), or write one with `usageledger init`",
            )
        )
        return None
    if path is None:
        findings.append(
            Finding("config", "ok", "no config file: the defaults apply (OPENAI_ADMIN_KEY, every endpoint daily)")
        )
        return Config()
    permissions = _permissions(path)
    if permissions is not None:
        findings.append(permissions)
        if permissions.status == "fail":
            return None
    try:
        config = load_config(path)
    except ConfigError as exc:
        findings.append(
            Finding("config", "fail", str(exc), f"edit {path}; `usageledger init --path NEW` writes a valid example")
        )
        return None
    orgs = ", ".join(o.name for o in config.effective_orgs)
    findings.append(
        Finding("config", "ok", f"{path} is valid (orgs: {orgs}; {counted(len(config.effective_streams), 'stream')})")
    )
    return config


def _permissions(path: Path) -> Finding | None:
    """The permissions finding for a config file: a key in a file others can read fails; 0600 is ok."""
    try:
        mode, who = exposure(path)
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        return Finding("config permissions", "fail", f"cannot read {path}: {exc.strerror or exc}", f"check {path}")
    secret = "an API key" if holds_key(text) else "a password (in a URL)" if holds_password(text) else None
    if secret is not None and who is not None:
        move = (
            "the key to an environment variable named by key_env" if holds_key(text) else "the password to PGPASSFILE"
        )
        return Finding(
            "config permissions",
            "fail",
            f"{path} holds {secret} and {who} (mode {mode:04o}); usageledger refuses such a file",
            f"run: chmod 600 {path} (or better, move {move})",
        )
    if secret is not None and not holds_key(text):
        # A store URL's password, as `init` wrote it before it kept the password in libpq's password file: private
        # now, but a config gets copied, shared and committed.
        from usageledger.store._pgpass import pgpass_path

        return Finding(
            "config permissions",
            "warn",
            f"{path} holds a password in a URL (a store URL an older `usageledger init` wrote), where it is copied and"
            " shared with the config",
            f"take the password out of [store] url in {path} and add the line host:port:dbname:user:password to"
            f" {pgpass_path()} (chmod 600), where libpq reads it",
        )
    if secret is not None:
        return Finding(
            "config permissions",
            "ok",
            f"{path} holds {secret} and only its owner can read it (mode {mode:04o})",
        )
    if mode & 0o004:
        return Finding(
            "config permissions",
            "warn",
            f"{path} holds no key but every user can read it (mode {mode:04o})",
            f"chmod 600 {path} before you ever put a key in it",
        )
    return None


# --- key, base URL and probe, per org -----------------------------------------------------------------------


def _key_shape(key: str) -> tuple[Status, str, str | None]:
    if key.startswith(ADMIN_KEY_PREFIX):
        return "ok", f"an admin key is set ({ADMIN_KEY_PREFIX}…)", None
    fix = f"create an organization admin key ({ADMIN_KEY_PREFIX}…) at {_ADMIN_KEYS_PAGE} and use that"
    if key.startswith("sk-proj-"):
        return "fail", "the key is a project key (sk-proj-…); the usage and costs endpoints need an admin key", fix
    if key.startswith("sk-svcacct-"):
        return "fail", "the key is a service-account key (sk-svcacct-…), not an organization admin key", fix
    if key.startswith("sk-"):
        return "fail", "the key is a user or legacy key (sk-…), not an organization admin key (sk-admin-…)", fix
    return "fail", f"the value does not look like an OpenAI key (admin keys start with {ADMIN_KEY_PREFIX})", fix


def _check_org(
    org: OrgConfig,
    label: str,
    base_url: str | None,
    allow_insecure_http: bool,
    env: Mapping[str, str],
    clock: Callable[[], float],
    transport: httpx.BaseTransport | None,
) -> list[Finding]:
    out: list[Finding] = []
    key = org.api_key or env.get(org.key_env) or None
    if key is None:
        out.append(
            Finding(
                f"key{label}",
                "fail",
                f"no admin key: {org.key_env} is {'set but empty' if org.key_env in env else 'not set'}",
                f"export {org.key_env}=sk-admin-... (an organization admin key from {_ADMIN_KEYS_PAGE})",
            )
        )
    else:
        try:
            key = org.resolve_key(env)
        except ConfigError as exc:  # inner whitespace, a control or non-ASCII character: one finding, prefix only
            # The fix is made where the key was read: a config's api_key was told to export the variable again
            again = (
                f"write api_key of org {org.name!r} in {org.file or 'the config'} again, exactly as issued, or"
                f" remove it and export {org.key_env}=sk-admin-..."
                if org.api_key
                else f"export {org.key_env}=sk-admin-... again"
            )
            out.append(Finding(f"key{label}", "fail", str(exc), again))
            key = None
        else:
            status, finding, fix = _key_shape(key)
            source = "the config file" if org.api_key else org.key_env
            out.append(Finding(f"key{label}", status, f"{finding}, from {source}", fix))
    try:
        resolved, where_url = org.base_url_source(base_url, env)
    except BaseURLError as exc:  # a query, a key, a password, another scheme: the refusal's own fix, set where
        fix = set_to(exc.source, "--base-url", exc.meant) if exc.meant else f"{exc.source}: {exc.fix}"
        return out + _unreachable(label, str(exc), fix, "not sent: the base URL is refused")
    url = resolved or DEFAULT_BASE_URL
    try:
        client = Client(
            key or "missing",
            url,
            allow_insecure_http=allow_insecure_http,
            max_retries=1,
            timeout=PROBE_TIMEOUT,
            transport=transport,
            clock=clock,
        )
    except InsecureURLError as exc:
        return out + _unreachable(
            label,
            f"{url} (from {where_url}): {exc}",
            "use https://, or a loopback address for the emulator; allow plain http only if you must",
            "not sent: the base URL is refused",
        )
    except CertificateError as exc:
        message, _, fix = str(exc).rpartition("; ")  # the fix is the last part of the message
        return out + _unreachable(label, f"{url} (from {where_url}): {message}", fix, "not sent: no TLS certificates")
    except ConfigError as exc:
        return out + _unreachable(
            label,
            f"{url} (from {where_url}): {exc}",
            f"use e.g. {DEFAULT_BASE_URL}",
            "not sent: the base URL is not usable",
        )
    with client:
        out += _probe(client, url, where_url, label, key is not None, clock)
    return out


def _unreachable(label: str, finding: str, fix: str, skipped: str) -> list[Finding]:
    """The base URL fails, so the probe is skipped: one of the two ways a probe goes wrong."""
    return [Finding(f"base URL{label}", "fail", finding, fix), Finding(f"probe{label}", "skip", skipped)]


def _answers(label: str, url: str, where_url: str) -> Finding:
    """The base URL answered, said with where it came from, whatever the probe then found."""
    return Finding(f"base URL{label}", "ok", f"{url} answers (from {where_url})")


def _refused(label: str, url: str, where_url: str, finding: str, fix: str) -> list[Finding]:
    """The base URL answers but the probe fails: the other way."""
    return [_answers(label, url, where_url), Finding(f"probe{label}", "fail", finding, fix)]


def _probe(
    client: Client, url: str, where_url: str, label: str, have_key: bool, clock: Callable[[], float]
) -> list[Finding]:
    """One costs request for one daily bucket: proves the URL answers and the key reads usage."""
    start = timeutil.floor(int(clock()), "1d") - 86400
    try:
        client.page("costs", start_time=start, limit=1)
    except APIConnectionError as exc:
        return _unreachable(
            label,
            f"{url} (from {where_url}) does not answer: {exc.advised(None)}",  # its fix is the line below
            "check the URL, your network and proxy; for the emulator, start `usageledger emulator` first",
            "not sent: the base URL does not answer",
        )
    except AuthenticationError as exc:
        if not have_key:
            return [
                _answers(label, url, where_url),
                Finding(f"probe{label}", "skip", "not authenticated: there is no key to send"),
            ]
        return _refused(
            label,
            url,
            where_url,
            f"the API refused the key (401 {exc.code or 'unauthorized'}): "
            "it is wrong, revoked, or for another organization",
            f"create a new admin key at {_ADMIN_KEYS_PAGE} and set it",
        )
    except PermissionDeniedError as exc:
        return _refused(
            label,
            url,
            where_url,
            f"the key is valid but may not read usage (403 {exc.code or 'forbidden'}): it lacks the api.usage.read "
            "scope, so it is not an organization admin key",
            f"use an organization admin key ({ADMIN_KEY_PREFIX}…) from {_ADMIN_KEYS_PAGE}; an org owner creates it",
        )
    except NotFoundError:
        corrected = corrected_base_url(url)
        return _unreachable(
            label,
            f"{url} (from {where_url}) answers, but has no usage API there (404)",
            f"{url} ends in /v1 but serves no usage API: check its host and path, e.g. {DEFAULT_BASE_URL}"
            if corrected is None
            else f"the base URL must end in /v1: {set_to(where_url, '--base-url', corrected)}",
            "not possible: wrong base URL",
        )
    except ResponseDecodeError:
        return _unreachable(
            label,
            f"{url} answers, but not with the usage API's JSON",
            f"point the base URL at the API (e.g. {DEFAULT_BASE_URL}) or the emulator, "
            "not a web page or a proxy's login",
            "not possible: the answer was not a usage page",
        )
    except APIStatusError as exc:
        return _refused(
            label,
            url,
            where_url,
            f"the probe request failed: {exc.advised(None)}",  # the client's max_retries= is no setting of doctor's
            "try again in a minute; if it persists, check https://status.openai.com",
        )
    return [
        _answers(label, url, where_url),
        Finding(f"probe{label}", "ok", "a one-bucket costs request succeeded: the key reads usage and costs"),
    ]


# --- store ------------------------------------------------------------------------------------------------


def _missing_rights(store: BaseStore, shown: str) -> list[Finding] | None:
    """The store finding of a made PostgreSQL store, from the rights its role holds on its tables, or None for the
    probe that creates a table to decide: a role that may write each table of a made store, but create none in its
    schema, syncs it well, and was told it "opens but refuses writes"."""
    from usageledger.store.postgres import PostgresStore

    if not isinstance(store, PostgresStore):
        return None
    try:
        missing = store.missing_rights()
    except StoreError as exc:
        return [Finding("store", "fail", f"cannot read the rights on {shown}: {exc}", "see the store's error")]
    if missing is None:
        return None
    if missing:
        said = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        return [
            Finding(
                "store",
                "fail",
                f"{shown} opens but its role may not sync it: it lacks {said}",
                f"use the role that made the store, or have it run {store.grants()}",
            )
        ]
    return [Finding("store", "ok", f"{shown} opens and its role may write every table of it")]


class _Rollback(Exception):
    """Raised inside the write probe's transaction so nothing it wrote stays."""


def _check_store_in_use(url: str, shown: str, held: Writer) -> list[Finding]:
    """A DuckDB store a running sync (or a brief write, a top-up) writes: opened to read (waiting briefly, as readers
    do); writes not probed."""
    what = held.what
    who = f"a running {what} (PID {held.pid})" if held.pid else f"a running {what}"
    try:
        with open_existing_store(url) as opened:
            pending = opened.pending_migrations()
    except StoreError as exc:
        return [Finding("store", "fail", f"cannot open {shown} while {who} writes it: {exc}", "see the message")]
    out = [
        Finding(
            "store",
            "warn",
            f"{shown} is being written by {who}: it opens for reading; the write check was skipped",
            f"run `usageledger doctor` again once the {what} has finished to check writes",
        )
    ]
    if pending:
        return [
            *out,
            Finding("migrations", "ok", f"{counted(len(pending), 'migration')} to apply; the running {what} does that"),
        ]
    return [*out, Finding("migrations", "ok", "the schema is current")]


def _check_store(url: str, source: str) -> list[Finding]:
    """The store at ``url``, read from ``source`` (``--store``, ``[store] url in FILE``, ...), which a fix names."""
    shown = redact_url_password(url)
    try:
        url = check_store_url(url)  # `:memory:`, `usageledger.toml`, `sqlite:///x`: refused before the folder is seen
    except StoreError as exc:
        fix = set_to(source, "--store", "a DuckDB file path or a postgresql:// URL", literal=False)
        return [Finding("store", "fail", f"{exc} (from {source})", fix)]
    if not is_postgres_url(url):
        path = Path(url)
        if not path.exists():
            folder = path.parent if str(path.parent) else Path(".")
            if folder.is_dir() and os.access(folder, os.W_OK):
                return [
                    Finding(
                        "store",
                        "ok",
                        f"no store yet at {shown}; the first `usageledger sync` creates it in a writable folder",
                    )
                ]
            return [
                Finding(
                    "store",
                    "fail",
                    f"no store at {shown} (from {source}), and its folder {folder} is missing or not writable",
                    f"create {folder} (or {set_to(source, '--store', 'a path in a writable folder', literal=False)})",
                )
            ]
        held = writer(url)
        if held is not None:  # a running sync holds the writer's lock: read, as every reading command does
            return _check_store_in_use(url, shown, held)
    try:
        opened = open_store(url, migrate=False, what="doctor")
    except StoreError as exc:
        fix = (
            "check the URL, that the server runs, and the credentials"
            if is_postgres_url(url)
            else "fix what the message names (a running sync, another program holding the file, a directory, a file"
            " that is not DuckDB, permissions)"
        )
        return [Finding("store", "fail", f"cannot open {shown}: {exc}", fix)]
    with opened:
        out = _missing_rights(opened, shown)
        if out is None:
            try:
                with opened.transaction():
                    opened.execute("CREATE TABLE usageledger_doctor_probe (x INTEGER)")
                    opened.execute("INSERT INTO usageledger_doctor_probe VALUES (1)")
                    raise _Rollback
            except _Rollback:
                pass
            except StoreError as exc:
                return [
                    Finding(
                        "store",
                        "fail",
                        f"{shown} opens but refuses writes: {exc}",
                        "grant the role what the message names, or use the database's owner"
                        if is_postgres_url(url)
                        else "give this user write access to the file",
                    )
                ]
            out = [Finding("store", "ok", f"{shown} opens and accepts writes")]
        elif out[0].status == "fail":
            return out
        try:
            pending = opened.pending_migrations()
        except StoreError as exc:
            return [
                *out,
                Finding("migrations", "fail", f"cannot read the applied migrations: {exc}", "see the store's error"),
            ]
    if pending:
        return [
            *out,
            Finding(
                "migrations",
                "fail",
                f"{counted(len(pending), 'migration')} not applied yet: {', '.join(pending)}",
                "run `usageledger sync` (it applies them before syncing)",
            ),
        ]
    return [*out, Finding("migrations", "ok", "the schema is current")]
