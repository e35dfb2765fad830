"""Transport: auth, query encoding, timeouts, retries and error mapping, for sync and async.

Nothing here knows about endpoints: it sends ``GET <base_url><path>?<query>`` and decodes the body inside the
same attempt (:meth:`SyncHTTP.fetch`), or raises one of :mod:`usageledger.errors`. Its settings are one
:class:`~usageledger._options.ClientOptions`; the admin key is never part of a repr, a log line or an exception
message.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import email.utils
import functools
import inspect
import logging
import os
import ssl
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Final, Generic, TypeAlias, TypeVar
from urllib.parse import quote

import httpx

from usageledger._options import (
    ARRAY_FORMATS,
    DEFAULT_TIMEOUT,
    ArrayFormat,
    ClientOptions,
    RetryPolicy,
    TimeoutTypes,
    as_timeout,
    corrected_base_url,
    merged_headers,
)
from usageledger._secrets import redact
from usageledger.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CertificateError,
    ClientClosedError,
    ConfigError,
    ResponseDecodeError,
    is_retryable_status,
    status_error_class,
)

__all__ = [
    "ARRAY_FORMATS",
    "CERT_ENVS",
    "DEFAULT_TIMEOUT",
    "ArrayFormat",
    "AsyncHTTP",
    "ClientOptions",
    "QueryValue",
    "RetryDecision",
    "RetryPolicy",
    "SyncHTTP",
    "TimeoutTypes",
    "decide_retry",
    "encode_query",
    "parse_retry_after",
    "redact",
    "tls_context",
    "verify_for",
]

logger = logging.getLogger("usageledger.http")

QueryValue: TypeAlias = str | int | bool | Sequence[str] | None
QueryItems: TypeAlias = Iterable[tuple[str, QueryValue]]
"""A query string's items, in order; a list value is one parameter repeated (see :func:`encode_query`)."""

T = TypeVar("T")


def _user_agent() -> str:
    try:
        return f"usageledger/{metadata.version('usageledger')}"
    except metadata.PackageNotFoundError:
        return "usageledger"


_USER_AGENT: Final = _user_agent()


# --- retries: a pure decision ---------------------------------------------------------------------------


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


# --- query strings --------------------------------------------------------------------------------------


def _q(text: str) -> str:
    # Percent-encode everything outside the unreserved set, once: a cursor's `+`, `/` and `=` go out as
    # %2B, %2F and %3D and come back byte for byte; a space is %20, never `+`.
    return quote(text, safe="")


def encode_query(params: QueryItems, array_format: ArrayFormat) -> str:
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


def _status_error(response: httpx.Response, config: ClientOptions, *, now: float) -> APIStatusError:
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
        hint=_not_found_hint(config.base_url, code) if status == 404 else None,
    )


def _not_found_hint(base_url: str, code: str | None) -> str | None:
    """A 404 under a base URL that does not end in /v1 (``http://127.0.0.1:8787/``, ``…/v1/organization``): the URL
    it meant, built from it, in place of the generic example. Under one that does, the API's ``not_found`` is an ID
    it does not know (``client.project("proj_nope")``), which the generic "it must end in /v1" sent the user to fix
    a base URL that was right; else ``None``, the generic hint (a proxy's path, another server)."""
    corrected = corrected_base_url(base_url)
    if corrected is not None:
        return f"Check the base URL: it must end in /v1, so use {corrected}"
    if code == "not_found":
        return "Check the ID: the organization has nothing by that ID (a list method, such as projects(), gives them)"
    return None


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _no_response_error(exc: httpx.TransportError, config: ClientOptions, url: str) -> APIConnectionError:
    where = httpx.URL(url).host
    detail = config.redact(str(exc) or type(exc).__name__)
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"no response from {where} in time ({detail})")
    return APIConnectionError(f"could not reach {where} ({detail})")


@dataclass(frozen=True, slots=True)
class _Decoded(Generic[T]):
    """A successful attempt's decoded body (a box, so that no decoded value is mistaken for a retry)."""

    value: T


@dataclass(frozen=True, slots=True)
class _Body:
    """The attempt loop asks its driver to decode a success's body; it is sent back the :class:`_Decoded` value or
    the :class:`ResponseDecodeError` (the driver chooses where the decoding runs: inline, or in a worker thread)."""

    content: bytes


_Sent: TypeAlias = httpx.Response | httpx.TransportError | _Decoded[T] | ResponseDecodeError
"""What the attempt loop is sent back: the response or the error of no response after a request, the outcome of
decoding after a body."""


def _decode(decode: Callable[[bytes], T], content: bytes) -> _Decoded[T] | ResponseDecodeError:
    try:
        return _Decoded(decode(content))
    except ResponseDecodeError as exc:
        return exc


@dataclass(frozen=True, slots=True)
class _Request:
    """The attempt loop asks its driver to send this ``GET``."""

    url: str
    timeout: httpx.Timeout


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


class _Base(abc.ABC):
    """What the sync and async transports share: settings, URL building, and the client-wide pause."""

    _owns: bool
    """Whether the httpx client was made here (else it was handed in as ``http_client=``)."""
    _origin: _Base | None = None
    """The transport of the client this one is a copy of (``with_options``), whose connections it shares."""

    def __init__(self, config: ClientOptions) -> None:
        self._config = config
        self._not_before = 0.0
        """Monotonic time before which no request of this client is sent (a 429's Retry-After)."""

    @property
    def config(self) -> ClientOptions:
        return self._config

    def copied_from(self, origin: _Base) -> None:
        """This client is ``origin``'s ``with_options()`` copy, sending through its connections."""
        self._origin = origin

    def _prepare(self, path: str, params: QueryItems) -> str:
        query = encode_query(params, self._config.array_format)
        return f"{self._config.base_url}{path}?{query}" if query else f"{self._config.base_url}{path}"

    def _headers(self) -> httpx.Headers:
        """Every request's headers: the defaults, replaced by ``headers=`` however it spells them (``user-agent``
        beside ``User-Agent`` would send both), then the key (``headers=`` may not hold it). As ``httpx.Headers``,
        whose ``repr`` hides the key: a plain dict showed it whole among httpx's frames' locals in a traceback."""
        defaults = {"Accept": "application/json", "User-Agent": _USER_AGENT}
        own = {**merged_headers(defaults, self._config.headers), "Authorization": f"Bearer {self._config.api_key}"}
        return httpx.Headers(own)

    def _pause_all_until(self, until: float) -> None:
        if until > self._not_before:
            self._not_before = until

    def _judge(
        self,
        url: str,
        retries: int,
        response: httpx.Response | None,
        error: httpx.TransportError | ResponseDecodeError | None,
    ) -> RetryDecision:
        """What one failed attempt means, with no I/O: how to retry; raises when no retry is left.

        A 200 whose body the decoder refuses (``error`` is the :class:`ResponseDecodeError`: a body cut short
        without a length to betray it, a proxy's HTML page sent with 200) is as transient as a lost response and is
        judged like one, against the same ``retries``: one page never costs more than ``max_retries + 1``
        requests. A 429's wait moves into the client-wide pause, which every request of this client waits for.
        """
        config = self._config
        policy = config.retry
        if isinstance(error, ResponseDecodeError):
            decision = decide_retry(
                policy, retries_done=retries, status_code=None, now=policy.wall_clock(), jitter=policy.random()
            )
            if not decision.retry:
                raise error
            return RetryDecision(True, decision.delay, f"HTTP 200 but {error}, backoff")
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

    def _attempts(
        self, url: str, timeout: httpx.Timeout
    ) -> Generator[_Request | _Body | float | _Decoded[T], _Sent[T] | None, None]:
        """The one attempt loop, with its I/O left to the twin that drives it: it yields a :class:`_Request` to
        send (and is sent back the response, or the transport error), a success's :class:`_Body` to decode (and is
        sent back the outcome), a number of seconds to sleep, and at last the decoded body of the first success; it
        raises the last failure's error (see :meth:`_judge`).

        Before each attempt it waits out the client-wide pause, again only while another request's 429 moves it.
        """
        policy = self._config.retry
        request = _Request(url, timeout)
        retries = 0
        while True:
            waited_for: float | None = None
            while (pause := self._pause_left(policy, waited_for)) is not None:
                wait, waited_for = pause
                logger.debug("waiting %.3fs: the client is paused after a 429", wait)
                yield wait
            sent = yield request
            if isinstance(sent, httpx.Response) and sent.is_success:
                sent = yield _Body(sent.content)
                if isinstance(sent, _Decoded):
                    yield sent
                    return
            if isinstance(sent, httpx.Response):
                outcome = self._judge(url, retries, sent, None)
            else:
                assert isinstance(sent, httpx.TransportError | ResponseDecodeError)  # the driver answers every ask
                outcome = self._judge(url, retries, None, sent)
            retries += 1
            _log_retry(outcome, url, retries, policy)
            if outcome.delay > 0:
                yield outcome.delay

    def _timeout(self, timeout: TimeoutTypes) -> httpx.Timeout:
        return self._config.timeout if timeout is None else as_timeout(timeout)

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """Whether a request sent now would be refused: this client (or its original, or its given pool) closed.
        Each transport twin says it from its own pool (:class:`SyncHTTP`, :class:`AsyncHTTP`)."""

    def refuse_reopening(self) -> None:
        """``with client:`` on a closed client: refused at once, as httpx refuses to reopen one, rather than a block
        whose first request was refused with the advice to "send requests inside the with block"."""
        if self.closed and self._owns and self._origin is None:
            raise ClientClosedError(
                "this client is closed (close() was called, or its with block ended), and a with block cannot reopen"
                " it; make a new client"
            )
        self._refuse_if_closed(self.closed)

    def _refuse_if_closed(self, closed: bool) -> None:
        """A request on a closed connection pool is a :class:`ClientClosedError` saying which was closed and the fix
        (httpx's own was a bare ``RuntimeError``, outside the package's errors)."""
        if not closed:
            return
        root = self
        while root._origin is not None:
            root = root._origin
        if root is not self and root._owns:  # a copy never owns its pool: "the http_client= given" was no help
            raise ClientClosedError(
                "the client this one was copied from (with_options(), copy.copy) is closed, and with it the"
                " connections they share; copy a client that is open, or make a new one"
            )
        if self._owns:
            raise ClientClosedError(
                "this client is closed (close() was called, or its with block ended); make a new client, or send"
                " requests inside the with block"
            )
        raise ClientClosedError("the http_client= this client was given is closed; pass one that is open")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._config.base_url!r})"


def _unbound(response: httpx.Response) -> httpx.Response:
    """A read (and closed) response, out of the reference cycle httpx puts it in.

    httpx binds a response's stream to the response (``BoundAsyncStream._response``, to time it), so every response,
    body and all, outlived its last reference until the cyclic collector next walked its generation: a request
    takes long enough that it is usually the oldest, so tens of megabytes of read pages piled up between full
    collections (every response of a 90-day sync was found in cyclic garbage). Once the body is read the
    stream has nothing left to give; an empty one in its place breaks the cycle, and the body goes with the last
    reference.
    """
    response.stream = httpx.ByteStream(b"")
    return response


CERT_ENVS: Final = ("SSL_CERT_FILE", "SSL_CERT_DIR")
"""Where the certificates come from instead of certifi's bundle: the first one set, as httpx reads them."""


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client this process makes, made as httpx makes its own (certifi, or
    :data:`CERT_ENVS`): loading the certificates takes ~25 ms a client, and a sync makes two (usage and directory).

    Certificates that cannot be loaded (``SSL_CERT_FILE`` naming a missing file) are a :class:`CertificateError`
    naming the variable, not a bare ``No such file or directory``.
    """
    try:
        return httpx.create_ssl_context()
    except (OSError, ssl.SSLError) as exc:
        given = next((f"{name}={os.environ[name]}" for name in CERT_ENVS if os.environ.get(name)), None)
        source, fix = (given, "point it at a readable CA bundle or unset it") if given else ("certifi", "reinstall it")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CertificateError(f"could not load the TLS certificates from {source}: {reason}; {fix}") from None


def verify_for(transport: object | None) -> ssl.SSLContext | bool:
    """httpx's ``verify``: the shared context, or httpx's own default where a transport is given (it needs none)."""
    return tls_context() if transport is None else True


class SyncHTTP(_Base):
    """Blocking transport over an ``httpx.Client``."""

    def __init__(
        self, config: ClientOptions, *, transport: httpx.BaseTransport | None = None, client: httpx.Client | None = None
    ) -> None:
        super().__init__(config)
        self._owns = client is None
        self._client = client or httpx.Client(transport=transport, follow_redirects=False, verify=verify_for(transport))
        self._lock = threading.Lock()

    @property
    def http_client(self) -> httpx.Client:
        """The ``httpx.Client`` underneath (its connection pool); closed by :meth:`close` only when made here."""
        return self._client

    @property
    def closed(self) -> bool:
        return self._client.is_closed

    def close(self) -> None:
        if self._owns:
            self._client.close()

    def fetch(self, path: str, params: QueryItems, decode: Callable[[bytes], T], *, timeout: TimeoutTypes = None) -> T:
        """``GET`` and ``decode`` the body, in one attempt loop with one retry counter (:meth:`_Base._attempts`):
        the first success that decodes, else the error of the last failure (an undecodable body raises
        ``decode``'s error)."""
        attempts: Generator[_Request | _Body | float | _Decoded[T], _Sent[T] | None, None]
        attempts = self._attempts(self._prepare(path, params), self._timeout(timeout))
        step = next(attempts)
        while not isinstance(step, _Decoded):
            step = attempts.send(_decode(decode, step.content) if isinstance(step, _Body) else self._act(step))
        return step.value

    def _act(self, step: _Request | float) -> _Sent[T] | None:
        """Do what the attempt loop asks: send the request, or sleep."""
        if not isinstance(step, _Request):
            self._config.retry.sleep(step)
            return None
        self._refuse_if_closed(self._client.is_closed)
        try:
            return _unbound(self._client.get(step.url, headers=self._headers(), timeout=step.timeout))
        except httpx.TransportError as exc:
            return exc

    def get(self, path: str, params: QueryItems, *, timeout: TimeoutTypes = None) -> bytes:
        """:meth:`fetch` that keeps the body as bytes."""
        return self.fetch(path, params, _body, timeout=timeout)

    def _pause_all_until(self, until: float) -> None:
        with self._lock:  # several threads may share one sync client
            super()._pause_all_until(until)


async def _close_at_loop_end(pool: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Started in a loop, this waits at its ``yield`` until the loop finalizes its async generators as it ends
    (``asyncio.run``, pytest-asyncio and ``IsolatedAsyncioTestCase`` all do), and then closes ``pool`` in it, while
    its connections can still be closed."""
    try:
        yield
    finally:
        await pool.aclose()


class AsyncHTTP(_Base):
    """Non-blocking transport over an ``httpx.AsyncClient``; a 429 pauses every concurrent request of the client."""

    def __init__(
        self,
        config: ClientOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(config)
        self._owns = client is None
        self._transport = transport
        self._client = client or self._new_client()
        """The caller's pool (or the one over a given transport); else the pool made last, for :attr:`http_client`."""
        self._fresh: httpx.AsyncClient | None = self._client if self._renews else None
        """The pool made with the client, until a loop takes it: every loop after that gets a new one."""
        self._pools: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        """The pool of each event loop that sent a request (only for pools made here)."""
        self._pools_lock = threading.Lock()  # loops in several threads may take their pools at once
        self._closers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
        self._closed = False

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self._transport, follow_redirects=False, verify=verify_for(self._transport))

    _follow: AsyncHTTP | None = None

    def copied_from(self, origin: _Base) -> None:
        """Send through ``origin``'s pool, whichever it holds (this client is its ``with_options()`` copy): the pool
        it had when copied was a given one here, never renewed, so the copy used in a second ``asyncio.run`` was
        ``RuntimeError: Event loop is closed`` while the original renewed its own."""
        super().copied_from(origin)
        self._follow = origin if isinstance(origin, AsyncHTTP) else None

    @property
    def _renews(self) -> bool:
        """Whether this client makes a pool per event loop: yes, unless it was handed one (``http_client=``) or a
        transport (``transport=``), which are the caller's and are used as given."""
        return self._owns and self._transport is None

    async def _pool(self) -> httpx.AsyncClient | None:
        """The connection pool of the running loop. httpx's pool serves one loop: its connections and waiters
        belong to the loop that made them, so a second ``asyncio.run`` reusing them was ``RuntimeError: Event loop
        is closed``, and two loops running at once in two threads (one client shared by worker threads) handed
        each other's connections about and hung for good. Each loop gets its own pool, closed when that loop's
        ``asyncio.run`` ends (its async generators are finalized then: :func:`_close_at_loop_end`); a loop ended
        otherwise leaves its sockets to the collector. A pool handed in (``http_client=``), or over a
        ``transport=`` given, is the caller's and is used as given. A copy's is its original's
        (:meth:`copied_from`). ``None`` once :meth:`aclose` was called: the request is refused."""
        if self._follow is not None:
            return await self._follow._pool()
        if not self._renews:
            return self._client
        if self._closed:
            return None
        loop = asyncio.get_running_loop()
        with self._pools_lock:
            pool = self._pools.get(loop)
            if pool is not None:
                return pool
            ended = [lp for lp in self._pools if lp.is_closed()]
            for lp in ended:  # their connections cannot be closed without their loop: the collector frees them
                del self._pools[lp]
                self._closers.pop(lp, None)
            pool, self._fresh = self._fresh or self._new_client(), None
            self._pools[loop] = self._client = pool
            closer = self._closers[loop] = _close_at_loop_end(pool)
        await anext(closer)  # started in this loop, which then finalizes it (and so closes the pool) as it ends
        return pool

    @property
    def closed(self) -> bool:
        if self._follow is not None:
            return self._follow.closed
        return self._closed if self._renews else self._client.is_closed

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The ``httpx.AsyncClient`` underneath; closed by :meth:`aclose` only when made here."""
        return self._client if self._follow is None else self._follow.http_client

    async def aclose(self) -> None:
        """Close the running loop's pool (or the caller's transport's), and refuse every request after it, in any
        loop: another loop still running closes its pool as it ends; a pool of an ended loop is the collector's."""
        if not self._owns:
            return
        if not self._renews:
            await self._client.aclose()
            return
        with self._pools_lock:
            self._closed = True
            pool = self._pools.pop(asyncio.get_running_loop(), None)
            pools = [p for p in (pool, self._fresh) if p is not None]
            self._client, self._fresh = pools[0] if pools else self._client, None
        for each in pools:
            await each.aclose()

    async def fetch(
        self,
        path: str,
        params: QueryItems,
        decode: Callable[[bytes], T],
        *,
        timeout: TimeoutTypes = None,
        offload: bool = False,
        slot: contextlib.AbstractAsyncContextManager[object] | None = None,
    ) -> T:
        """The async twin of :meth:`SyncHTTP.fetch`: the same attempt loop, driven with ``await``.

        ``offload``: decode in a worker thread, for a ``decode`` that does its work without the GIL (Arrow's JSON
        reader), so that the event loop keeps receiving other responses meanwhile.

        ``slot``: the caller's bound on requests in flight (a semaphore, entered with ``async with``), held while
        requests are out and their retries wait, and let go while a body is decoded: decoding goes on beside the
        next request, and one page's retries still hold their place (no other request slips in between)."""
        attempts: Generator[_Request | _Body | float | _Decoded[T], _Sent[T] | None, None]
        attempts = self._attempts(self._prepare(path, params), self._timeout(timeout))
        step = next(attempts)
        while not isinstance(step, _Decoded):
            if not isinstance(step, _Body):
                async with slot or contextlib.nullcontext():  # requests and retry waits, until a body is in
                    while not isinstance(step, (_Body, _Decoded)):
                        step = attempts.send(await self._act(step))
            elif offload:
                step = attempts.send(await asyncio.to_thread(_decode, decode, step.content))
            else:
                step = attempts.send(_decode(decode, step.content))
        return step.value

    async def _act(self, step: _Request | float) -> _Sent[T] | None:
        """Do what the attempt loop asks: send the request, or sleep (every concurrent request keeps going)."""
        if not isinstance(step, _Request):
            waited = self._config.retry.async_sleep(step)
            if not inspect.isawaitable(waited):  # `async_sleep=time.sleep`: it blocked the loop, then a TypeError
                raise ConfigError(
                    f"async_sleep must return an awaitable (as asyncio.sleep does), got {waited!r}; a blocking sleep"
                    " such as time.sleep goes in sleep="
                )
            await waited
            return None
        pool = await self._pool()
        self._refuse_if_closed(pool is None or pool.is_closed)
        assert pool is not None  # refused above
        try:
            return _unbound(await pool.get(step.url, headers=self._headers(), timeout=step.timeout))
        except httpx.TransportError as exc:
            return exc
        except RuntimeError as exc:
            if str(exc) != "Event loop is closed":
                raise
            # only a pool this client may not renew (the caller's) keeps connections of an ended loop
            raise ClientClosedError(
                "the http_client= (or transport=) this client was given holds connections of an event loop that has"
                " ended (asyncio.run called again?); make it inside the loop that uses it, or leave it out and the"
                " client renews its own"
            ) from exc

    async def get(self, path: str, params: QueryItems, *, timeout: TimeoutTypes = None) -> bytes:
        """:meth:`fetch` that keeps the body as bytes."""
        return await self.fetch(path, params, _body, timeout=timeout)
