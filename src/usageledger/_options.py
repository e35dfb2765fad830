"""The client's settings as one value: :class:`ClientOptions`, and the :class:`RetryPolicy` inside it.

Both clients (and so ``UsageApi``) resolve their arguments into one frozen ``ClientOptions``: argument, else
environment, else the default or a clear error (:func:`key_from`, :func:`base_url_from`, :func:`retry_from`).
Every check lives in ``__post_init__``, so a changed copy (``dataclasses.replace``, as ``with_options`` makes) is
checked exactly as a new one is. The admin key is a field left out of the repr, and the object refuses pickling.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import numbers
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias, get_args
from urllib.parse import urlsplit, urlunsplit

import httpx

from usageledger._secrets import KEY_SHAPED, hidden, mask_keys, normalize_key, redact, url_userinfo
from usageledger._text import one_line
from usageledger.catalogue import ADMIN_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL
from usageledger.errors import APIStatusError, BaseURLError, ConfigError, InsecureURLError
from usageledger.timeutil import MAX_UNIX, integer

__all__ = [
    "ARRAY_FORMATS",
    "DEFAULT_TIMEOUT",
    "LIBRARY_KEY_HINT",
    "ArrayFormat",
    "ClientOptions",
    "RetryPolicy",
    "TimeoutTypes",
    "as_timeout",
    "base_url_from",
    "base_url_origin",
    "check_headers",
    "check_timeout",
    "corrected_base_url",
    "key_from",
    "key_refusal",
    "merged_headers",
    "normalize_base_url",
    "read_clock",
    "retry_from",
    "set_to",
    "v1_fix",
    "with_v1_fix",
]

ArrayFormat = Literal["brackets", "repeat", "comma"]
ARRAY_FORMATS: Final[tuple[ArrayFormat, ...]] = get_args(ArrayFormat)
TimeoutTypes: TypeAlias = float | httpx.Timeout | None

DEFAULT_TIMEOUT: Final = httpx.Timeout(60.0, connect=5.0)
"""Connect within 5 s; 60 s for each read, write and pool wait."""


async def _asyncio_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed requests are retried, and the clocks and sleeps used to wait (injectable for tests).

    Backoff is exponential with full jitter: attempt ``n`` waits a random time in
    ``[0, min(max_delay, initial_delay * 2**n))``. A server's ``retry-after-ms`` / ``Retry-After`` is honoured
    instead, up to ``max_retry_after`` seconds.
    """

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    random: Callable[[], float] = field(default=random.random, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    async_sleep: Callable[[float], Awaitable[None]] = field(default=_asyncio_sleep, repr=False)
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False)
    wall_clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        retries = integer(self.max_retries)  # numpy's int64 too, kept as an int
        if retries is None or retries < 0:
            raise ConfigError(f"max_retries must be a whole number, 0 or more, got {self.max_retries!r}")
        object.__setattr__(self, "max_retries", retries)
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) < float("inf"):
                raise ConfigError(f"{name} must be 0 or more seconds, got {value!r}")
            object.__setattr__(self, name, float(value))
        # Used only at a retry, far from here: `sleep=None` was a TypeError from deep inside at the first one.
        for name in ("random", "sleep", "async_sleep", "monotonic", "wall_clock"):
            if not callable(getattr(self, name)):
                raise ConfigError(f"{name} must be a function, got {getattr(self, name)!r}")
        if inspect.iscoroutinefunction(self.sleep):  # never awaited: the blocking client retried without waiting
            raise ConfigError(
                "sleep is the blocking client's wait (time.sleep); an async one goes in async_sleep= (asyncio.sleep)"
            )
        if self.async_sleep is time.sleep:  # type: ignore[comparison-overlap]  # what careless code passes
            raise ConfigError(
                "async_sleep is awaited by the async client (asyncio.sleep); a blocking one goes in sleep= (time.sleep)"
            )


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_base_url(raw: str, source: str) -> str:
    """The base URL given by ``source`` (``--base-url``, ``OPENAI_BASE_URL``, a config key, ``base_url=``), trimmed of
    the white space a paste brings; a one-line :class:`ConfigError` naming ``source`` otherwise.

    Refused here, once, wherever the URL comes from: nothing left after trimming; white space or a control character
    inside (the request line would carry it: ``GET /v1 /organization/costs``); and a user name or password before
    the host, which httpx would send as Basic auth in place of the admin key, so the API would refuse a good key;
    and a query (``?key=…``) or fragment, which no request would carry. The refusal shows the URL with those parts
    cut (``http://…@host/v1``, ``http://host/v1?…``), never the password or the query.
    """
    if not isinstance(raw, str):  # a number or bytes from careless code: name the source
        raise _refusal(source, f"the base URL must be a string, got {type(raw).__name__}", f"e.g. {DEFAULT_BASE_URL}")
    text = raw.strip()
    if not text:
        raise _refusal(source, "the base URL is blank", f"give one ending in /v1, e.g. {DEFAULT_BASE_URL}")
    if text[:1] in ("'", '"') or text[-1:] in ("'", '"'):
        # an env file (docker --env-file, systemd) keeps quotes, as for the key: "must start with https://" was
        # said of `"http://127.0.0.1:8787/v1"`, which starts with a quote, not with the wrong scheme
        meant = _suggest(text.strip("'\""))
        raise _refusal(
            source,
            "the base URL has quotes around it",
            f"set it without them: {meant}" if meant else f"set it without them, e.g. {DEFAULT_BASE_URL}",
            meant,
        )
    has_credentials, shown = url_userinfo(text)
    if has_credentials:
        parts = urlsplit(text)
        meant = _suggest(urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", "")))
        raise _refusal(
            source,
            f"the base URL {one_line(shown)} holds a user name or password before its host; the API takes"
            " the admin key alone (they would be sent in its place)",
            "remove the part before '@'" + (f": {meant}" if meant else ""),
            meant,
        )
    key = KEY_SHAPED.search(text)
    if key:  # pasted into the wrong place: it would go out in every request line, and in reprs
        meant = _suggest(_cut(text, key.start()).rstrip("/"))
        raise _refusal(
            source,
            f"the base URL {one_line(mask_keys(text))} holds an API key; the key goes in {ADMIN_KEY_ENV}"
            " (or api_key=), never in the URL",
            f"give the URL alone: {meant}" if meant else f"give the URL alone, e.g. {DEFAULT_BASE_URL}",
            meant,
        )
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise _refusal(
            source,
            f"the base URL {one_line(text)} has white space or a control character inside it",
            f"give the URL alone, e.g. {DEFAULT_BASE_URL}",
        )
    cut = _cut(text, len(text))
    if len(cut) < len(text):
        # each request appends its own path and query: `/v1?token=…` + `/organization/costs?…` reaches no route
        mark = text[len(cut)]
        meant = _suggest(cut)
        raise _refusal(
            source,
            f"the base URL {cut}{mark}… has a {'query' if mark == '?' else 'fragment'}, which no request can carry",
            f"give the URL alone, ending in /v1: {meant}" if meant else f"give the URL alone, e.g. {DEFAULT_BASE_URL}",
            meant,
        )
    # the shape, here too, so that every refusal names where the URL came from (`--base-url 127.0.0.1:8787/v1`)
    shown = f"the base URL {one_line(text)}"
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise _refusal(
            source, f"{shown} is not a URL ({exc})", f"give one ending in /v1, e.g. {DEFAULT_BASE_URL}"
        ) from None
    if url.scheme not in ("http", "https") or not url.host:
        if "://" in text:  # `ftp://host/v1`: another scheme; the same host over https is the likely meaning
            rest = text.partition("://")[2]
            host = urlsplit(f"//{rest}").hostname
        else:  # `127.0.0.1:8787/v1`: the scheme left out, the rest a URL; http:// only where the client allows it
            rest, host = text, urlsplit(f"//{text}").hostname
        meant = _suggest(f"{'http' if is_loopback(host) else 'https'}://{rest}") if host else None
        raise _refusal(
            source,
            f"{shown} must start with https:// (or http:// to loopback) and name a host",
            meant or f"e.g. {DEFAULT_BASE_URL}",
            meant,
            joint=", e.g. " if meant else ", ",
        )
    if url.port is not None and not 0 < url.port <= 65535:  # httpx takes :99999, then "Connection refused"
        raise _refusal(
            source,
            f"{shown} has port {url.port}, which no server listens on",
            "give a port from 1 to 65535 (the emulator's: usageledger emulator prints its URL)",
        )
    return text


def corrected_base_url(url: str) -> str | None:
    """The base URL that ``url`` (one the API answered 404 under) most likely meant, ending in ``/v1``: cut after its
    ``v1`` segment (``…/v1/organization/costs``), or before ``organization``, else the host's ``/v1``, the API's
    own path (``http://127.0.0.1:8080/``, ``…/v1x``). ``None`` when ``url`` ends in ``/v1`` already: then the path
    is not the slip."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if segments[-1:] == ["v1"]:
        return None
    if "v1" in segments:
        segments = segments[: segments.index("v1") + 1]
    elif "organization" in segments:
        segments = [*segments[: segments.index("organization")], "v1"]
    else:
        segments = ["v1"]
    return urlunsplit((parts.scheme, parts.netloc, "/" + "/".join(segments), "", ""))


def set_to(source: str, flag: str, value: str, *, literal: bool = True) -> str:
    """How to change a setting read from ``source`` to ``value`` (a value, or with ``literal=False`` a description of
    one): pass ``flag`` when it came from that flag or is the default, else set the variable or the config key it
    came from (``[store] url in ./usageledger.toml``), so the fix names the place the user must edit."""
    if source.startswith("-") or source == "the default":
        return f"pass {flag} {value}" if literal else f"pass {flag} with {value}"
    if source.isupper():  # an environment variable
        return f"set {source}={value}" if literal else f"set {source} to {value}"
    return f"set {source} to {value}"


def v1_fix(url: str, source: str | None) -> str | None:
    """What to do about a 404 under the base URL ``url`` read from ``source`` (``--base-url``, ``OPENAI_BASE_URL``, a
    config key): when it lacks ``/v1``, set it where it came from to the URL meant, as ``doctor`` says it; ``None``
    when its path is not the slip or its source is not known (the transport's hint then stands)."""
    corrected = corrected_base_url(url)
    if corrected is None or source is None:
        return None
    return f"The base URL (from {source}) must end in /v1: {set_to(source, '--base-url', corrected)}"


def with_v1_fix(exc: APIStatusError, url: str, source: str | None) -> str:
    """The text of ``exc`` (a 404 under ``url``), its generic hint replaced by :func:`v1_fix` when there is one."""
    fix = v1_fix(url, source)
    return str(exc) if fix is None else exc.advised(fix)


_MISSING_SCOPES: Final = re.compile(r"Missing scopes?:\s*((?:[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+[,\s]*)+)", re.I)
"""The scopes a 403 names (``Missing scopes: api.usage.read.``): scope-shaped words only, the one part of the
API's text a refusal repeats, since the rest of it may echo the key."""
_SCOPE: Final = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+", re.I)


def key_refusal(exc: APIStatusError, source: str | None, again: str) -> str:
    """The one message for a key the API refused (401) or let read no usage (403, a project key), for every command
    that sends one (``query``, ``sync``): where the key came from (``source``: the variable, such as
    ``OPENAI_ADMIN_KEY``; ``None`` when the org was given its key directly), the status, what is wrong and the fix,
    then ``again`` (``sync``: "... and sync again"). The API's own text is left out: it may echo the key."""
    status = f"HTTP {exc.status_code}" + (f" {exc.code}" if exc.code else "")
    where = f" from {source}" if source else ""
    if exc.status_code == 401:
        problem = f"the API refused the admin key{where} ({status}): it is wrong, revoked or for another organization"
    else:
        scopes = _MISSING_SCOPES.search(exc.message or "")
        lacks = f"; it lacks {', '.join(_SCOPE.findall(scopes[1]))}" if scopes else ""
        problem = (
            f"the admin key{where} may not read usage ({status}{lacks}): it is not an organization admin key with"
            " the api.usage.read scope"
        )
    fix = f"set {source} to" if source else "give the org"
    return f"{problem}; {fix} a valid organization admin key (sk-admin-...) and {again} again"


def _meant(url: str) -> str:
    """``url`` made to end in ``/v1`` (:func:`corrected_base_url`), for a refusal's example."""
    return corrected_base_url(url) or url


def _cut(text: str, end: int) -> str:
    """``text`` up to ``end``, and before any query or fragment there."""
    marks = [at for at in (text.find("?", 0, end), text.find("#", 0, end)) if at >= 0]
    return text[: min(marks, default=end)]


def _suggest(candidate: str) -> str | None:
    """``candidate`` (a refused URL with its slip taken out) ending in ``/v1``, if that is a base URL accepted as
    written; else ``None`` and the refusal gives an example instead."""
    if not candidate:
        return None
    try:
        return _meant(normalize_base_url(candidate, ""))
    except ConfigError:
        return None


def _refusal(source: str, problem: str, fix: str, meant: str | None = None, *, joint: str = "; ") -> BaseURLError:
    """The one shape of a base URL's refusal: ``<source>: <problem>; <fix>``, the fix and the URL meant kept apart
    (:class:`~usageledger.errors.BaseURLError`) for ``doctor``'s fix line."""
    return BaseURLError(f"{source}: {problem}{joint}{fix}", source=source, fix=fix, meant=meant)


def check_base_url(base_url: str, *, allow_insecure_http: bool, source: str = "base_url=") -> str:
    """The base URL normalised and checked (:func:`normalize_base_url`, naming ``source``: an http(s) URL with a
    host), plain http only to loopback (or with ``allow_insecure_http``); without a trailing slash."""
    base_url = normalize_base_url(base_url, source)
    url = httpx.URL(base_url)  # read by normalize_base_url already
    if url.scheme == "http" and not allow_insecure_http and not is_loopback(url.host):
        raise InsecureURLError(
            f"refusing plain http:// to {url.host}: the admin key would travel unencrypted. Use https://, "
            "a loopback host, or accept the risk with --allow-insecure-http (allow_insecure_http=True in the library)",
            source=source,
        )
    return base_url.rstrip("/")


def as_timeout(value: TimeoutTypes) -> httpx.Timeout:
    """An ``httpx.Timeout`` from seconds (connect capped at 5 s), a ready one, or ``None`` for the default."""
    if isinstance(value, httpx.Timeout):
        return value
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < float("inf"):  # numpy's too
        raise ConfigError(f"timeout must be a positive number of seconds or an httpx.Timeout, got {value!r}")
    return httpx.Timeout(float(value), connect=min(float(value), DEFAULT_TIMEOUT.connect or 5.0))


_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP header name (RFC 9110's token)."""

_OWN_HEADERS: Final = {"authorization": "the admin key goes as api_key= (or OPENAI_ADMIN_KEY), never as a header"}
"""Headers the client sets itself and that ``headers=`` may not add a second of (the server would read either)."""


def check_headers(headers: object) -> dict[str, str]:
    """``headers=`` as the extra headers every request sends, checked here, once, not at the first request (where a
    bad one was a ``TypeError``, a ``UnicodeEncodeError``, or a connection error quoting the value): a mapping of
    header names to text, values trimmed of the white space a paste brings. A :class:`ConfigError` names the header,
    never its value (it may be a token): a name that is not an HTTP token, a value that is not a string or holds a
    control or non-ASCII character, two spellings of one name, or ``Authorization`` (the key's header)."""
    if not isinstance(headers, Mapping):
        raise ConfigError(f"headers must be a mapping of header names to values, got {type(headers).__name__}")
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ConfigError(f"headers: {one_line(repr(name))} is not a header name (letters, digits and -)")
        if name.lower() in _OWN_HEADERS:
            raise ConfigError(f"headers: {name} is set by the client; {_OWN_HEADERS[name.lower()]}")
        if name.lower() in seen:
            raise ConfigError(f"headers: {seen[name.lower()]} and {name} are one header; give it once")
        if not isinstance(value, str):
            raise ConfigError(f"headers: the value of {name} must be a string, got {type(value).__name__}")
        text = value.strip()
        if not all(ch == " " or ch == "\t" or (ch.isascii() and ch.isprintable()) for ch in text):
            raise ConfigError(
                f"headers: the value of {name} holds a control or non-ASCII character; give it as plain ASCII text"
            )
        seen[name.lower()] = name
        out[name] = text
    return out


def merged_headers(base: Mapping[str, str], given: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``given`` put in: a name in ``given`` replaces ``base``'s however either spells it (header names
    are case-insensitive, and ``x-team`` beside ``X-Team`` would send both)."""
    names = {name.lower() for name in given if isinstance(name, str)}
    return {**{name: value for name, value in base.items() if name.lower() not in names}, **given}


def check_timeout(value: TimeoutTypes) -> None:
    """A per-call ``timeout=`` checked when the call is made (``None``: the client's), as :func:`as_timeout` checks
    it: a lazy query or an async call that returns first was refused only when it sent, far from the mistake."""
    if value is not None:
        as_timeout(value)


LIBRARY_KEY_HINT: Final = f"set {ADMIN_KEY_ENV} or pass api_key="
"""How a caller of the library gives the key: what a missing key's error says unless the caller knows better."""


def _no_key(hint: str = LIBRARY_KEY_HINT) -> ConfigError:
    return ConfigError(f"no admin API key: {hint}")


def read_clock(clock: Callable[[], float]) -> float:
    """What ``clock`` says now, or a :class:`ConfigError` naming ``clock``: ``clock=datetime.now`` raised a TypeError
    from deep inside, and ``time.time_ns`` was blamed on ``start_time`` ("'2d' is after the year 9999")."""
    value: object = clock()
    seconds: float | None = integer(value)  # numpy's int64 too
    if seconds is None and isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
    if seconds is None or not 0 <= seconds <= MAX_UNIX:
        hint = "; time.time_ns gives nanoseconds" if seconds is not None and seconds > MAX_UNIX else ""
        raise ConfigError(f"clock must return Unix seconds (as time.time does), got {value!r}{hint}")
    return seconds


def key_from(api_key: str | None, *, hint: str | None = None, param: str = "api_key=") -> str:
    """The admin key: the argument (``param``, as the caller spells it: ``UsageApi``'s is ``access_token=``), else
    ``OPENAI_ADMIN_KEY``, normalised naming where it came from; else an error whose fix is ``hint``, how the caller's
    user gives a key (the CLI names its own ways, not ``api_key=``); by default, the variable or ``param``."""
    api_key = hidden(api_key)  # this frame's locals show the prefix alone (a traceback's, a debugger's)
    raw = hidden(api_key if api_key is not None else os.environ.get(ADMIN_KEY_ENV))
    key = normalize_key(raw, param if api_key is not None else ADMIN_KEY_ENV) if raw else raw
    if not key and api_key is not None and os.environ.get(ADMIN_KEY_ENV, "").strip():
        # `Client(api_key=os.environ.get("MY_KEY", ""))`: the blank argument wins over the variable, and "set
        # OPENAI_ADMIN_KEY" sent the user to set what was set
        raise ConfigError(f"{param} is blank; pass the admin key there, or leave it out to use {ADMIN_KEY_ENV}")
    if not key:
        raise _no_key(hint or f"set {ADMIN_KEY_ENV} or pass {param}")
    return key


def base_url_from(base_url: str | None, *, source: str = "base_url=") -> str:
    """The base URL: the argument (given by ``source``: ``--base-url`` for the CLI), else ``OPENAI_BASE_URL``, else
    the public API; normalised by :func:`normalize_base_url`, whose refusal names where the URL came from."""
    where = base_url_origin(base_url, source=source)
    if where is None:
        return DEFAULT_BASE_URL
    return normalize_base_url(os.environ[BASE_URL_ENV] if base_url is None else base_url, where)


def base_url_origin(base_url: str | None, *, source: str = "base_url=") -> str | None:
    """Where :func:`base_url_from` takes the URL from: ``source`` when ``base_url`` is given (a blank one too, which
    is refused as blank: ``base_url=os.environ.get("EMULATOR_URL", "")`` sent the admin key to the public API), else
    ``OPENAI_BASE_URL`` when it is set, else ``None`` (the public API)."""
    if base_url is not None:
        return source
    return BASE_URL_ENV if os.environ.get(BASE_URL_ENV) else None


def retry_from(retry: RetryPolicy | None, max_retries: int | None) -> RetryPolicy:
    """The policy given (else the default), with ``max_retries`` put in when given."""
    policy = retry or RetryPolicy()
    return policy if max_retries is None else replace(policy, max_retries=max_retries)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Every setting of a client, checked once; change one with ``dataclasses.replace`` (checked again).

    The clients' constructor builds it from its arguments with :func:`key_from`, :func:`base_url_from` and
    :func:`retry_from` (argument, else environment, else the default or a clear error).

    ``timeout`` may be given in seconds and is kept as an ``httpx.Timeout``; ``base_url`` loses a trailing slash.
    ``clock`` is the wall clock (Unix seconds) used for "now"; ``max_concurrency`` bounds the async client's
    parallel requests.
    """

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    array_format: ArrayFormat = "brackets"
    allow_insecure_http: bool = False
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    max_concurrency: int = 4
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        sets = object.__setattr__  # normalising a frozen value, before anyone can see it
        if not isinstance(self.api_key, str) or not self.api_key.strip():
            raise _no_key()
        sets(self, "api_key", normalize_key(self.api_key, "api_key="))
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy, got {type(self.retry).__name__}")
        if self.array_format not in ARRAY_FORMATS:
            raise ConfigError(f"array_format must be one of {', '.join(ARRAY_FORMATS)}, got {self.array_format!r}")
        if not isinstance(self.allow_insecure_http, bool):
            raise ConfigError(f"allow_insecure_http must be True or False, got {self.allow_insecure_http!r}")
        sets(self, "base_url", check_base_url(self.base_url, allow_insecure_http=self.allow_insecure_http))
        sets(self, "timeout", as_timeout(self.timeout))
        concurrency = integer(self.max_concurrency)
        if concurrency is None or concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1, got {self.max_concurrency!r}")
        sets(self, "max_concurrency", concurrency)
        if not callable(self.clock):
            raise ConfigError(f"clock must be a function returning Unix seconds, got {self.clock!r}")
        sets(self, "headers", MappingProxyType(check_headers(self.headers)))

    def arguments(self) -> dict[str, Any]:
        """The settings as constructor keywords: ``Client(**options.arguments())`` builds a client with them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def redact(self, text: str) -> str:
        """``text`` with this key (and anything key-shaped) hidden."""
        return redact(text, self.api_key)

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("ClientOptions holds the admin key and is not picklable")
