"""Transport: configuration, auth, query encoding, timeouts, retries and error mapping, for sync and async.

Nothing here knows about endpoints: it sends ``GET <base_url><path>?<query>`` and returns the body bytes, or
raises one of :mod:`usageledger.errors`. The admin key lives in one private attribute and is never part of a
repr, a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Final, Generic, Literal, TypeAlias, TypeVar, get_args
from urllib.parse import quote

import httpx

from usageledger._secrets import normalize_key, redact
from usageledger.catalogue import ADMIN_KEY_ENV, ADMIN_KEY_PREFIX, BASE_URL_ENV, DEFAULT_BASE_URL
from usageledger.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigError,
    InsecureURLError,
    ResponseDecodeError,
    status_error_class,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ArrayFormat",
    "AsyncHTTP",
    "HTTPConfig",
    "QueryValue",
    "RetryDecision",
    "RetryPolicy",
    "SyncHTTP",
    "TimeoutTypes",
    "decide_retry",
    "encode_query",
    "parse_retry_after",
    "redact",
]

logger = logging.getLogger("usageledger.http")

ArrayFormat = Literal["brackets", "repeat", "comma"]
ARRAY_FORMATS: Final[tuple[ArrayFormat, ...]] = get_args(ArrayFormat)
QueryValue: TypeAlias = str | int | bool | Sequence[str] | None
TimeoutTypes: TypeAlias = float | httpx.Timeout | None

DEFAULT_TIMEOUT: Final = httpx.Timeout(60.0, connect=5.0)
"""Connect within 5 s; 60 s for each read, write and pool wait."""

RETRY_STATUSES: Final = frozenset({408, 409, 429})
_REDACTED: Final = ADMIN_KEY_PREFIX + "…"
T = TypeVar("T")


def _user_agent() -> str:
    try:
        return f"usageledger/{metadata.version('usageledger')}"
    except metadata.PackageNotFoundError:
        return "usageledger"


_USER_AGENT: Final = _user_agent()


# --- retries: a pure decision ---------------------------------------------------------------------------


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
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"max_retries must be a whole number, 0 or more, got {self.max_retries!r}")
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise ConfigError(f"{name} must be 0 or more seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Whether to retry, after how many seconds, and why (for the debug log)."""

    retry: bool
    delay: float
    reason: str
    server_asked: bool = False
    """The delay came from the server (``Retry-After``), not from our backoff."""


def parse_retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms``, else ``Retry-After`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def is_retryable_status(status_code: int) -> bool:
    return status_code in RETRY_STATUSES or status_code >= 500


def decide_retry(
    policy: RetryPolicy,
    *,
    retries_done: int,
    status_code: int | None,
    headers: Mapping[str, str] | None = None,
    now: float,
    jitter: float,
) -> RetryDecision:
    """Decide one retry. ``status_code`` is ``None`` when no response arrived; ``jitter`` is in ``[0, 1)``.

    Pure: the same inputs give the same answer, so it is tested without a network or a clock.
    """
    headers = headers or {}
    if retries_done >= policy.max_retries:
        return RetryDecision(False, 0.0, f"gave up after {retries_done} retries")
    should = headers.get("x-should-retry")
    if should == "false":
        return RetryDecision(False, 0.0, "the server said x-should-retry: false")
    if status_code is None:
        reason = "no response"
    elif should == "true":
        reason = f"HTTP {status_code} with x-should-retry: true"
    elif is_retryable_status(status_code):
        reason = f"HTTP {status_code}"
    else:
        return RetryDecision(False, 0.0, f"HTTP {status_code} is not retried")
    asked = parse_retry_after(headers, now=now)
    if asked is not None:
        return RetryDecision(True, min(asked, policy.max_retry_after), f"{reason}, server asked to wait", True)
    ceiling = min(policy.max_delay, policy.initial_delay * 2.0**retries_done)
    return RetryDecision(True, ceiling * jitter, f"{reason}, backoff")


# --- configuration --------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_base_url(base_url: str, *, allow_insecure_http: bool) -> str:
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"base URL {base_url!r} is not a URL: {exc}; pass e.g. {DEFAULT_BASE_URL}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"base URL {base_url!r} must start with https:// and name a host, e.g. {DEFAULT_BASE_URL}")
    if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.host):
        raise InsecureURLError(
            f"refusing plain http:// to {url.host}: the admin key would travel unencrypted. Use https://, "
            "a loopback host, or accept the risk with --allow-insecure-http (allow_insecure_http=True in the library)"
        )
    return base_url.rstrip("/")


def _timeout(value: TimeoutTypes) -> httpx.Timeout:
    if isinstance(value, httpx.Timeout):
        return value
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise ConfigError(f"timeout must be a positive number of seconds or an httpx.Timeout, got {value!r}")
    return httpx.Timeout(float(value), connect=min(float(value), DEFAULT_TIMEOUT.connect or 5.0))


class HTTPConfig:
    """Resolved, immutable transport settings. Build with :meth:`resolve`; change with :meth:`replace`."""

    __slots__ = ("_api_key", "allow_insecure_http", "array_format", "base_url", "headers", "retry", "timeout")

    _api_key: str
    base_url: str
    timeout: httpx.Timeout
    retry: RetryPolicy
    array_format: ArrayFormat
    allow_insecure_http: bool
    headers: Mapping[str, str]

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout: httpx.Timeout,
        retry: RetryPolicy,
        array_format: ArrayFormat,
        allow_insecure_http: bool,
        headers: Mapping[str, str],
    ) -> None:
        if array_format not in ARRAY_FORMATS:
            raise ConfigError(f"array_format must be one of {', '.join(ARRAY_FORMATS)}, got {array_format!r}")
        sets = object.__setattr__
        sets(self, "_api_key", api_key)
        sets(self, "base_url", _check_base_url(base_url, allow_insecure_http=allow_insecure_http))
        sets(self, "timeout", timeout)
        sets(self, "retry", retry)
        sets(self, "array_format", array_format)
        sets(self, "allow_insecure_http", allow_insecure_http)
        sets(self, "headers", dict(headers))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use with_options() for a changed copy")

    def __repr__(self) -> str:
        return (
            f"HTTPConfig(api_key={_REDACTED!r}, base_url={self.base_url!r}, array_format={self.array_format!r}, "
            f"max_retries={self.retry.max_retries}, allow_insecure_http={self.allow_insecure_http})"
        )

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("HTTPConfig holds the admin key and is not picklable")

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: TimeoutTypes,
        max_retries: int | None,
        retry: RetryPolicy | None,
        array_format: ArrayFormat,
        allow_insecure_http: bool,
        headers: Mapping[str, str] | None,
    ) -> HTTPConfig:
        """Argument, else environment, else a clear :class:`ConfigError`."""
        raw = api_key if api_key is not None else os.environ.get(ADMIN_KEY_ENV)
        key = normalize_key(raw, "api_key=" if api_key is not None else ADMIN_KEY_ENV) if raw else raw
        if not key:
            raise ConfigError(f"no admin API key: set {ADMIN_KEY_ENV} or pass api_key=")
        url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        policy = retry or RetryPolicy()
        if max_retries is not None and max_retries != policy.max_retries:
            policy = _replace_retries(policy, max_retries)
        return cls(
            api_key=key,
            base_url=url,
            timeout=_timeout(timeout),
            retry=policy,
            array_format=array_format,
            allow_insecure_http=allow_insecure_http,
            headers=headers or {},
        )

    def replace(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: TimeoutTypes = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        array_format: ArrayFormat | None = None,
        allow_insecure_http: bool | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTTPConfig:
        """A copy with the given settings changed; the rest are kept."""
        policy = retry or self.retry
        if max_retries is not None:
            policy = _replace_retries(policy, max_retries)
        return HTTPConfig(
            api_key=normalize_key(api_key, "api_key=") if api_key is not None else self._api_key,
            base_url=base_url if base_url is not None else self.base_url,
            timeout=self.timeout if timeout is None else _timeout(timeout),
            retry=policy,
            array_format=array_format or self.array_format,
            allow_insecure_http=self.allow_insecure_http if allow_insecure_http is None else allow_insecure_http,
            headers={**self.headers, **(headers or {})},
        )

    def url(self, path: str, query: str) -> str:
        return f"{self.base_url}{path}?{query}" if query else f"{self.base_url}{path}"

    def request_headers(self) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
            **self.headers,
            "Authorization": f"Bearer {self._api_key}",
        }

    def redact(self, text: str) -> str:
        return redact(text, self._api_key)


def _replace_retries(policy: RetryPolicy, max_retries: int) -> RetryPolicy:
    return RetryPolicy(
        max_retries=max_retries,
        initial_delay=policy.initial_delay,
        max_delay=policy.max_delay,
        max_retry_after=policy.max_retry_after,
        random=policy.random,
        sleep=policy.sleep,
        async_sleep=policy.async_sleep,
        monotonic=policy.monotonic,
        wall_clock=policy.wall_clock,
    )


# --- query strings --------------------------------------------------------------------------------------


def _q(text: str) -> str:
    # Percent-encode everything outside the unreserved set, once: a cursor's `+`, `/` and `=` go out as
    # %2B, %2F and %3D and come back byte for byte; a space is %20, never `+`.
    return quote(text, safe="")


def encode_query(params: Iterable[tuple[str, QueryValue]], array_format: ArrayFormat) -> str:
    """The query string for ``params``, in order: ``None`` and empty lists are left out; booleans are true/false.

    Arrays are spelled as ``brackets`` (``group_by[]=a&group_by[]=b``, the official SDK's form), ``repeat``
    (``group_by=a&group_by=b``) or ``comma`` (``group_by=a,b``).
    """
    parts: list[str] = []
    for name, value in params:
        if value is None:
            continue
        if isinstance(value, bool):
            parts.append(f"{_q(name)}={'true' if value else 'false'}")
        elif isinstance(value, int):
            parts.append(f"{_q(name)}={value}")
        elif isinstance(value, str):
            parts.append(f"{_q(name)}={_q(value)}")
        else:
            items = list(value)
            if not items:
                continue
            if array_format == "comma":
                parts.append(f"{_q(name)}={','.join(_q(v) for v in items)}")
            else:
                key = _q(f"{name}[]" if array_format == "brackets" else name)
                parts.extend(f"{key}={_q(v)}" for v in items)
    return "&".join(parts)


# --- error mapping --------------------------------------------------------------------------------------


def _status_error(response: httpx.Response, config: HTTPConfig, *, now: float) -> APIStatusError:
    """The typed exception for an error response; a body that is not the API's error JSON still maps by status."""
    status = response.status_code
    err_type = param = code = None
    message = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        message = str(err.get("message") or "")
        err_type = _opt_str(err.get("type"))
        param = _opt_str(err.get("param"))
        code = _opt_str(err.get("code"))
    if not message:
        snippet = " ".join(response.text.split())[:200]
        message = snippet or response.reason_phrase or "error"
    return status_error_class(status)(
        config.redact(message),
        status_code=status,
        type=err_type,
        param=param,
        code=code,
        request_id=response.headers.get("x-request-id"),
        retry_after=parse_retry_after(response.headers, now=now),
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _no_response_error(exc: httpx.TransportError, config: HTTPConfig, url: str) -> APIConnectionError:
    where = httpx.URL(url).host
    detail = config.redact(str(exc) or type(exc).__name__)
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"no response from {where} in time ({detail}); raise timeout= or try again later")
    return APIConnectionError(f"could not reach {where} ({detail}); check the base URL and the network")


@dataclass(frozen=True, slots=True)
class _Decoded(Generic[T]):
    """A successful attempt's decoded body (a box, so that no decoded value is mistaken for a retry)."""

    value: T


def _body(content: bytes) -> bytes:
    return content


def _paused(decision: RetryDecision) -> RetryDecision:
    """The decision with its wait moved into the client-wide pause (see ``_Base._pause_all_until``)."""
    return RetryDecision(True, 0.0, f"{decision.reason}; client paused for {decision.delay:.3f}s", True)


def _log_retry(decision: RetryDecision, url: str, attempt: int, policy: RetryPolicy) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "retry %d/%d of GET %s in %.3fs: %s",
            attempt,
            policy.max_retries,
            url,
            decision.delay,
            decision.reason,
        )


# --- the two transports ---------------------------------------------------------------------------------


class _Base:
    """What the sync and async transports share: settings, URL building, and the client-wide pause."""

    def __init__(self, config: HTTPConfig) -> None:
        self._config = config
        self._not_before = 0.0
        """Monotonic time before which no request of this client is sent (a 429's Retry-After)."""

    @property
    def config(self) -> HTTPConfig:
        return self._config

    def _prepare(self, path: str, params: Iterable[tuple[str, QueryValue]]) -> str:
        return self._config.url(path, encode_query(params, self._config.array_format))

    def _pause_all_until(self, until: float) -> None:
        if until > self._not_before:
            self._not_before = until

    def _judge(
        self,
        url: str,
        retries: int,
        response: httpx.Response | None,
        error: httpx.TransportError | None,
        decode: Callable[[bytes], T],
    ) -> _Decoded[T] | RetryDecision:
        """What one attempt means, with no I/O: the decoded body of a success, or how to retry; raises when no
        retry is left.

        A 200 whose body ``decode`` refuses (:class:`ResponseDecodeError`: a body cut short without a length to
        betray it, a proxy's HTML page sent with 200) is as transient as a lost response and is judged like one,
        against the same ``retries``: one page never costs more than ``max_retries + 1`` requests. A 429's wait
        moves into the client-wide pause, which every request of this client waits for.
        """
        config = self._config
        policy = config.retry
        if response is not None and response.is_success:
            try:
                return _Decoded(decode(response.content))
            except ResponseDecodeError as exc:
                decision = decide_retry(
                    policy, retries_done=retries, status_code=None, now=policy.wall_clock(), jitter=policy.random()
                )
                if not decision.retry:
                    raise
                return RetryDecision(True, decision.delay, f"HTTP 200 but {exc}, backoff")
        if response is None:
            assert error is not None
            decision = decide_retry(
                policy, retries_done=retries, status_code=None, now=policy.wall_clock(), jitter=policy.random()
            )
            if not decision.retry:
                raise _no_response_error(error, config, url) from error
            return decision
        decision = decide_retry(
            policy,
            retries_done=retries,
            status_code=response.status_code,
            headers=response.headers,
            now=policy.wall_clock(),
            jitter=policy.random(),
        )
        if not decision.retry:
            raise _status_error(response, config, now=policy.wall_clock())
        if response.status_code == 429:
            self._pause_all_until(policy.monotonic() + decision.delay)
            return _paused(decision)
        return decision

    def _pause_left(self, policy: RetryPolicy, waited_for: float | None) -> tuple[float, float] | None:
        """The client-wide pause still to wait and the end it waits for, or ``None`` when a request may go.

        After one wait (``waited_for``: the end it waited for) it waits again only when another request's 429
        moved the end later meanwhile, so an injected sleep that does not move the clock still ends.
        """
        until = self._not_before
        if waited_for is not None and until <= waited_for:
            return None
        wait = until - policy.monotonic()
        return (wait, until) if wait > 0 else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._config.base_url!r})"


class SyncHTTP(_Base):
    """Blocking transport over an ``httpx.Client``."""

    def __init__(
        self, config: HTTPConfig, *, transport: httpx.BaseTransport | None = None, client: httpx.Client | None = None
    ) -> None:
        super().__init__(config)
        self._owns = client is None
        self._client = client or httpx.Client(transport=transport, follow_redirects=False)
        self._lock = threading.Lock()

    def with_config(self, config: HTTPConfig) -> SyncHTTP:
        """A transport with other settings over the same connection pool (the original keeps owning it)."""
        return SyncHTTP(config, client=self._client)

    def close(self) -> None:
        if self._owns:
            self._client.close()

    def fetch(
        self,
        path: str,
        params: Iterable[tuple[str, QueryValue]],
        decode: Callable[[bytes], T],
        *,
        timeout: TimeoutTypes = None,
    ) -> T:
        """``GET`` and ``decode`` the body, in one attempt loop with one retry counter: the first success that
        decodes, else the error of the last failure (an undecodable body raises ``decode``'s error)."""
        config = self._config
        policy = config.retry
        url = self._prepare(path, params)
        request_timeout = config.timeout if timeout is None else _timeout(timeout)
        retries = 0
        while True:
            self._wait_for_pause(policy)
            try:
                response = self._client.get(url, headers=config.request_headers(), timeout=request_timeout)
            except httpx.TransportError as exc:
                outcome = self._judge(url, retries, None, exc, decode)
            else:
                outcome = self._judge(url, retries, response, None, decode)
            if isinstance(outcome, _Decoded):
                return outcome.value
            retries += 1
            _log_retry(outcome, url, retries, policy)
            if outcome.delay > 0:
                policy.sleep(outcome.delay)

    def get(self, path: str, params: Iterable[tuple[str, QueryValue]], *, timeout: TimeoutTypes = None) -> bytes:
        """:meth:`fetch` that keeps the body as bytes."""
        return self.fetch(path, params, _body, timeout=timeout)

    def _pause_all_until(self, until: float) -> None:
        with self._lock:  # several threads may share one sync client
            super()._pause_all_until(until)

    def _wait_for_pause(self, policy: RetryPolicy) -> None:
        waited_for: float | None = None
        while (pause := self._pause_left(policy, waited_for)) is not None:
            wait, waited_for = pause
            logger.debug("waiting %.3fs: the client is paused after a 429", wait)
            policy.sleep(wait)


class AsyncHTTP(_Base):
    """Non-blocking transport over an ``httpx.AsyncClient``; a 429 pauses every concurrent request of the client."""

    def __init__(
        self,
        config: HTTPConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(config)
        self._owns = client is None
        self._client = client or httpx.AsyncClient(transport=transport, follow_redirects=False)

    def with_config(self, config: HTTPConfig) -> AsyncHTTP:
        """A transport with other settings over the same connection pool (the original keeps owning it)."""
        return AsyncHTTP(config, client=self._client)

    async def aclose(self) -> None:
        if self._owns:
            await self._client.aclose()

    async def fetch(
        self,
        path: str,
        params: Iterable[tuple[str, QueryValue]],
        decode: Callable[[bytes], T],
        *,
        timeout: TimeoutTypes = None,
    ) -> T:
        """The async twin of :meth:`SyncHTTP.fetch`."""
        config = self._config
        policy = config.retry
        url = self._prepare(path, params)
        request_timeout = config.timeout if timeout is None else _timeout(timeout)
        retries = 0
        while True:
            await self._wait_for_pause(policy)
            try:
                response = await self._client.get(url, headers=config.request_headers(), timeout=request_timeout)
            except httpx.TransportError as exc:
                outcome = self._judge(url, retries, None, exc, decode)
            else:
                outcome = self._judge(url, retries, response, None, decode)
            if isinstance(outcome, _Decoded):
                return outcome.value
            retries += 1
            _log_retry(outcome, url, retries, policy)
            if outcome.delay > 0:
                await policy.async_sleep(outcome.delay)

    async def get(self, path: str, params: Iterable[tuple[str, QueryValue]], *, timeout: TimeoutTypes = None) -> bytes:
        """:meth:`fetch` that keeps the body as bytes."""
        return await self.fetch(path, params, _body, timeout=timeout)

    async def _wait_for_pause(self, policy: RetryPolicy) -> None:
        waited_for: float | None = None
        while (pause := self._pause_left(policy, waited_for)) is not None:
            wait, waited_for = pause
            logger.debug("waiting %.3fs: the client is paused after a 429", wait)
            await policy.async_sleep(wait)
