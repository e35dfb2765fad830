"""``Client`` and ``AsyncClient``: one page, or a whole range as buckets, rows and tables.

Both clients have the same constructor and the same methods with the same signatures (a test checks it). What
does no I/O lives once, in this module's helpers: turning friendly inputs into :class:`~usageledger.rules.QueryParams`,
the pre-flight check, the window plan and the cursor rules. The I/O is in :mod:`usageledger._http`.

A range longer than one request's maximum ``limit`` is split into windows (:func:`usageledger.rules.plan_windows`),
each asked for with exactly its bucket count as ``limit``; every window's pages are followed by cursor. The async
client fetches up to ``max_concurrency`` windows at once and still yields buckets in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from abc import abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeAlias, TypeVar

import httpx

from usageledger import catalogue, rows, rules, timeutil
from usageledger._closing import Closing
from usageledger._directory import Items
from usageledger._directory_endpoints import AsyncDirectoryMethods, DirectoryMethods
from usageledger._endpoints import EndpointCall, EndpointMethods
from usageledger._http import AsyncHTTP, QueryValue, SyncHTTP
from usageledger._options import (
    ArrayFormat,
    ClientOptions,
    RetryPolicy,
    TimeoutTypes,
    as_timeout,
    base_url_from,
    key_from,
    merged_headers,
    read_clock,
    retry_from,
)
from usageledger._paging import AsyncPaged, Paged
from usageledger._secrets import hidden, refuse_key
from usageledger._text import counted
from usageledger.catalogue import BucketWidth, Endpoint
from usageledger.errors import BadRequestError, ConfigError, PaginationError, ParameterError
from usageledger.models import Bucket, UsageResponse, decode_page
from usageledger.timeutil import TimeInput

if TYPE_CHECKING:
    import pandas
    import polars
    import pyarrow

__all__ = ["AsyncClient", "AsyncQuery", "Client", "FilterInput", "Query"]

logger = logging.getLogger("usageledger.client")

FilterInput: TypeAlias = str | Sequence[str] | bool | None
"""A filter's value: a list of strings (a lone string is a list of one), or a boolean for ``batch``."""

EndpointLike: TypeAlias = str | Endpoint
AnyTransport: TypeAlias = httpx.BaseTransport | httpx.AsyncBaseTransport | None
AnyHTTPClient: TypeAlias = httpx.Client | httpx.AsyncClient | None

C = TypeVar("C")
"""The client a lazy query fetches with."""
Q = TypeVar("Q")
"""A client's lazy range query: :class:`Query` or :class:`AsyncQuery`."""
PageT = TypeVar("PageT")
"""What a client's ``page`` returns: the page, or (async) a coroutine of it."""
BucketsT = TypeVar("BucketsT")
"""What a client's ``fetch_range`` returns: the buckets, or (async) a coroutine of them."""

# --- pure helpers (shared by both clients) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Range:
    """A validated range query: the endpoint, its checked parameters (no limit, no page) and the windows."""

    endpoint: Endpoint
    params: rules.QueryParams
    windows: tuple[rules.Window, ...]


def _endpoint(value: EndpointLike) -> Endpoint:
    if isinstance(value, Endpoint):
        return value
    if not isinstance(value, str):  # `query(["costs"], ...)` was "unhashable type: 'list'" from the catalogue
        several = isinstance(value, list | tuple | set | frozenset)
        raise ParameterError(
            "endpoint",
            f"expected a usage endpoint's name such as 'costs', got {type(value).__name__}"
            + ("; query one endpoint per call" if several else ""),
            allowed=catalogue.ENDPOINT_NAMES,
        )
    try:
        return catalogue.get(value)
    except KeyError:
        raise ParameterError("endpoint", f"unknown endpoint {value!r}", allowed=catalogue.ENDPOINT_NAMES) from None


def _merged_headers(old: Mapping[str, str], new: object) -> object:
    """``old`` with ``new`` put in; a name in ``new`` replaces ``old``'s however it is spelled (``x-team`` replaces
    ``X-Team``: header names are case-insensitive, and both would be sent). Anything but a mapping is left for
    ``ClientOptions`` to refuse."""
    return merged_headers(old, new) if isinstance(new, Mapping) else new


def _sendable(name: str, text: str) -> str:
    """``text``, or :class:`ParameterError` when it cannot go out as UTF-8 (a lone surrogate such as ``\\ud800``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ParameterError(name, f"{text!r} holds a lone surrogate and cannot be sent as UTF-8") from None
    return text


def _filters(endpoint: Endpoint, raw: Mapping[str, FilterInput]) -> Mapping[str, rules.FilterValue]:
    out: dict[str, rules.FilterValue] = {}
    for name, value in raw.items():
        if value is None:
            continue
        if name not in endpoint.filter_names:  # `foo=1` is an unknown filter, not "expected a list of strings": the
            out[name] = ()  # rules refuse it whatever its value, in the API's order (a bad bucket_width comes first)
            continue
        normal = rules.filter_value(name, value, endpoint.filter(name).kind, parts_of=name)
        out[name] = normal if isinstance(normal, bool) else tuple(refuse_key(name, _sendable(name, v)) for v in normal)
    return MappingProxyType(out)


def _checked(endpoint: Endpoint, params: rules.QueryParams, now: int) -> rules.QueryParams:
    """``params`` with ``end_time`` clamped to now (the live API refuses a future one), or :class:`ParameterError`
    naming the broken rule."""
    end = rules.effective_end(params, now=now)
    if end != params.end_time and params.start_time is not None and params.start_time < now:  # else: start refused
        logger.debug("end_time %s is in the future; clamped to now (%s)", params.end_time, end)
        params = replace(params, end_time=end)
    violation = rules.check(endpoint, params, now=now)
    if violation is not None:
        raise violation.to_error()
    return params


def _page_params(call: EndpointCall, now: float) -> tuple[Endpoint, rules.QueryParams]:
    """The endpoint and the checked parameters of one request."""
    ep = _endpoint(call.endpoint)
    limit, page = None if call.limit is None else timeutil.integer(call.limit), call.page
    if call.limit is not None and limit is None:
        raise ParameterError("limit", f"expected an integer number of buckets, got {call.limit!r}")
    if page is not None:
        if not isinstance(page, str):
            raise ParameterError("page", f"expected the previous page's next_page string, got {page!r}")
        if not page.strip():  # the API's 400 says "invalid page" about a value that was never a cursor
            raise ParameterError("page", "is empty; pass the previous page's next_page, or leave page out")
        _sendable("page", page)
    params = rules.QueryParams(
        start_time=timeutil.to_unix(call.start_time, now=now, param="start_time"),
        end_time=None if call.end_time is None else timeutil.to_unix(call.end_time, now=now, param="end_time"),
        bucket_width=call.bucket_width,
        group_by=rules.group_by_names(call.group_by),
        limit=limit,
        page=page,
        filters=_filters(ep, call.filters),
    )
    return ep, _checked(ep, params, int(now))


def _range(call: EndpointCall, now: float) -> _Range:
    """Validate a range query (any method's: ``query``, ``client.completions(...)``) and plan its windows; an open
    end means now."""
    for name in ("limit", "page"):
        if name in call.filters:
            raise ParameterError(
                name,
                "a range query picks the limit of each window and follows pages itself; use page() for one request",
            )
    start = timeutil.to_unix(call.start_time, now=now, param="start_time")
    end = None if call.end_time is None else timeutil.to_unix(call.end_time, now=now, param="end_time")
    timeutil.check_range(start, end, now=now)
    whole = replace(call, end_time=now if call.end_time is None else call.end_time, limit=None, page=None)
    ep, params = _page_params(whole, now)
    assert params.start_time is not None and params.end_time is not None  # guaranteed by rules.check
    width: BucketWidth = params.bucket_width  # type: ignore[assignment]  # checked against the catalogue
    windows = rules.plan_windows(ep, params.start_time, params.end_time, width)
    logger.debug("%s: %d window(s) for [%s, %s)", ep.name, len(windows), params.start_time, params.end_time)
    return _Range(ep, params, tuple(windows))


def _query_items(endpoint: Endpoint, params: rules.QueryParams) -> list[tuple[str, QueryValue]]:
    """The query string's items, in the seed's order: times, width, filters, group_by, limit, page."""
    items: list[tuple[str, QueryValue]] = [
        ("start_time", params.start_time),
        ("end_time", params.end_time),
        ("bucket_width", params.bucket_width),
    ]
    items += [(f.name, params.filters[f.name]) for f in endpoint.filters if f.name in params.filters]
    items += [("group_by", params.group_by), ("limit", params.limit), ("page", params.page)]
    return items


def _window_params(spec: _Range, window: rules.Window, page: str | None, *, open_end: bool) -> rules.QueryParams:
    end = None if open_end else window.end
    return replace(spec.params, start_time=window.start, end_time=end, limit=window.limit, page=page)


def _ends_at_the_apis_now(exc: BadRequestError, params: rules.QueryParams, where: str) -> bool:
    """Whether to ask a window's first page again without ``end_time``: the API refused ours (a 400 on
    ``end_time``, which the pre-flight checks passed, so it is after the API's now: its clock is behind ours, or
    ``--now`` is ahead). Asked without it, the API ends the window at its own now, and the sync sees the window
    cut short (``StreamRun.cut_short``) instead of failing it."""
    if exc.param != "end_time" or params.end_time is None or params.page is not None:
        return False
    logger.debug("%s: the API refused end_time %s (%s); asking again up to its own now", where, params.end_time, exc)
    return True


def _starts_after_the_apis_now(exc: BadRequestError, first: int | None, params: rules.QueryParams, where: str) -> bool:
    """Whether a later window of the range holds nothing yet: the API refused its ``start_time`` (a 400 on it, which
    the pre-flight checks passed, so it is after the API's now: its clock is behind ours by more than a window, or
    ``--now`` is ahead). The range starts before the API's now (else its first window is refused, and that error is
    the range's), so the window holding the API's now was cut short there (:func:`_ends_at_the_apis_now`); this
    one is read as empty instead of failing the range after its first windows were read. ``first``: the range's
    start (a sync fetches its plan's windows one by one, each a range of its own)."""
    if exc.param != "start_time" or params.page is not None or params.start_time is None or first is None:
        return False
    if params.start_time <= first:
        return False
    logger.debug("%s: the API refused start_time %s (%s): after its now, nothing yet", where, params.start_time, exc)
    return True


class _Cursor(Protocol):
    """What paging reads of a page: :class:`UsageResponse`, or the sync's Arrow page."""

    @property
    def has_more(self) -> bool: ...

    @property
    def next_page(self) -> str | None: ...


P = TypeVar("P", bound=_Cursor)


def _next_cursor(response: _Cursor, seen: set[str], where: str) -> str | None:
    """The cursor to send next, ``None`` at the end, or :class:`PaginationError` for a loop or a dead end."""
    if not response.has_more:
        return None
    cursor = response.next_page
    if not cursor:
        raise PaginationError(
            f"{where}: the server said has_more=true but sent no next_page; stopping here would lose buckets"
        )
    if cursor in seen:
        raise PaginationError(f"{where}: the server sent the same next_page twice; following it would loop forever")
    seen.add(cursor)
    return cursor


def _where(spec: _Range, window: rules.Window) -> str:
    return f"{spec.endpoint.name} [{window.start}, {window.end})"


# --- queries ----------------------------------------------------------------------------------------------


class _QueryBase(Generic[C]):
    """What the lazy query twins share: the client they fetch with, the validated range and its windows."""

    def __init__(self, client: C, spec: _Range, timeout: TimeoutTypes) -> None:
        self._client = client
        self._spec = spec
        self._timeout = timeout

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """A copy over a copy of the client; the validated range is frozen (and its filters, a read-only mapping,
        refused deep copying), so both share it."""
        return type(self)(copy.deepcopy(self._client, memo), self._spec, self._timeout)

    @property
    def endpoint(self) -> Endpoint:
        return self._spec.endpoint

    @property
    def windows(self) -> tuple[rules.Window, ...]:
        """The requests' time windows, each at most one maximum ``limit`` of buckets."""
        return self._spec.windows

    def __repr__(self) -> str:
        p = self._spec.params
        return (
            f"{type(self).__name__}({self.endpoint.name!r}, [{p.start_time}, {p.end_time}), {p.bucket_width}, "
            f"{counted(len(self.windows), 'window')})"
        )


class Query(_QueryBase["Client"], Paged[Bucket]):
    """A lazy range query: iterate it for buckets, or ask for ``rows()``, ``pages()`` or a table.

    Nothing is sent until you iterate; each iteration fetches again.
    """

    def pages(self) -> Iterator[UsageResponse]:
        """Every page of every window, in order."""
        for window in self._spec.windows:
            yield from self._client._window_pages(self._spec, window, self._timeout)

    def buckets(self) -> list[Bucket]:
        return list(self)

    def rows(self) -> Iterator[rows.Row]:
        """Flat rows: ``endpoint``, ``bucket_start``, ``bucket_end``, then the endpoint's columns."""
        return rows.flatten(self.endpoint, iter(self))

    def to_arrow(self) -> pyarrow.Table:
        return rows.to_arrow(self.endpoint, self.rows())

    def to_pandas(self) -> pandas.DataFrame:
        return rows.to_pandas(self.endpoint, self.rows())

    def to_polars(self) -> polars.DataFrame:
        return rows.to_polars(self.endpoint, self.rows())


class AsyncQuery(_QueryBase["AsyncClient"], AsyncPaged[Bucket]):
    """The async twin of :class:`Query`: ``async for`` buckets; windows are fetched concurrently, yielded in order."""

    async def pages(self) -> AsyncIterator[UsageResponse]:
        """Every page of every window, in order; up to ``max_concurrency`` windows are in flight."""
        client = self._client
        ahead = max(1, client.max_concurrency)
        pending: deque[asyncio.Task[list[UsageResponse]]] = deque()
        windows = iter(self._spec.windows)
        try:
            for window in windows:
                pending.append(asyncio.ensure_future(client._window_pages(self._spec, window, self._timeout)))
                if len(pending) >= ahead:
                    break
            while pending:
                done = await pending.popleft()
                nxt = next(windows, None)
                if nxt is not None:
                    pending.append(asyncio.ensure_future(client._window_pages(self._spec, nxt, self._timeout)))
                for page in done:
                    yield page
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def buckets(self) -> list[Bucket]:
        return await self._collect()

    async def rows(self) -> AsyncIterator[rows.Row]:
        """Flat rows, as :meth:`Query.rows`."""
        async for page in self.pages():
            for row in rows.flatten(self.endpoint, page.data):
                yield row

    async def to_arrow(self) -> pyarrow.Table:
        return rows.to_arrow(self.endpoint, rows.flatten(self.endpoint, await self.buckets()))

    async def to_pandas(self) -> pandas.DataFrame:
        return rows.to_pandas(self.endpoint, rows.flatten(self.endpoint, await self.buckets()))

    async def to_polars(self) -> polars.DataFrame:
        return rows.to_polars(self.endpoint, rows.flatten(self.endpoint, await self.buckets()))


# --- the clients ------------------------------------------------------------------------------------------


class _ClientBase(EndpointMethods[Q], Generic[Q, PageT, BucketsT]):
    """What the twins share: the constructor and ``with_options`` (the arguments become one :class:`ClientOptions`),
    and the generic methods, which hand the I/O to the twin's hooks."""

    _config: ClientOptions
    _http: SyncHTTP | AsyncHTTP

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: TimeoutTypes = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        array_format: ArrayFormat = "brackets",
        allow_insecure_http: bool = False,
        transport: AnyTransport = None,
        max_concurrency: int = 4,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        http_client: AnyHTTPClient = None,
    ) -> None:
        api_key = hidden(api_key)  # a traceback's locals show this frame's key by its prefix alone
        self._config = ClientOptions(
            api_key=key_from(api_key),
            base_url=base_url_from(base_url),
            timeout=as_timeout(timeout),
            retry=retry_from(retry, max_retries),
            array_format=array_format,
            allow_insecure_http=allow_insecure_http,
            headers=headers or {},
            max_concurrency=max_concurrency,
            clock=clock or time.time,
        )
        if transport is not None and http_client is not None:
            raise ConfigError("pass transport= or http_client=, not both: the http_client already has its transport")
        self._connect(transport, http_client)

    @abstractmethod
    def _connect(self, transport: AnyTransport, http_client: AnyHTTPClient) -> None:
        """The twin's transport over ``self._config``: its own httpx client, or the ``http_client`` it is handed."""

    def with_options(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: TimeoutTypes = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        array_format: ArrayFormat | None = None,
        allow_insecure_http: bool | None = None,
        max_concurrency: int | None = None,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> Self:
        """A copy with some settings changed (headers are merged), built by the constructor and sharing this
        client's connections; closing the copy leaves them open. An async copy has its own backoff."""
        api_key = hidden(api_key)
        old = self._config
        policy = retry_from(retry or old.retry, max_retries)
        given: dict[str, Any] = {  # None: keep; a timeout in seconds becomes an httpx.Timeout in __post_init__
            "api_key": api_key,
            "base_url": base_url,
            "timeout": timeout,
            "array_format": array_format,
            "allow_insecure_http": allow_insecure_http,
            "max_concurrency": max_concurrency,
            "clock": clock,
            "headers": _merged_headers(old.headers, headers or {}),  # refused in __post_init__ unless a mapping
        }
        options = replace(
            old,
            retry=policy,
            **{name: value for name, value in given.items() if value is not None},
        )
        twin = type(self)(**options.arguments(), http_client=self._http.http_client)
        twin._http.copied_from(self._http)  # async: the pool this client renews in each event loop, not today's
        return twin

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def array_format(self) -> ArrayFormat:
        return self._config.array_format

    @property
    def retry(self) -> RetryPolicy:
        return self._config.retry

    @property
    def timeout(self) -> httpx.Timeout:
        return self._config.timeout

    @property
    def max_concurrency(self) -> int:
        """How many windows the async client fetches at once (the sync client fetches one at a time)."""
        return self._config.max_concurrency

    def _clock(self) -> float:
        return read_clock(self._config.clock)

    def __repr__(self) -> str:
        if not hasattr(self, "_config"):  # its constructor failed: a traceback's `self` was a repr error
            return f"{type(self).__name__}(<not made: its constructor failed>)"
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, api_key='sk-admin-…', "
            f"array_format={self.array_format!r}, max_retries={self.retry.max_retries}, "
            f"max_concurrency={self.max_concurrency})"
        )

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError(f"{type(self).__name__} holds the admin key and is not picklable")

    def __copy__(self) -> Self:
        """``copy.copy(client)``: :meth:`with_options` with nothing changed (it fell through to ``__reduce__`` and was
        refused as "not picklable", which nobody asked for), so a copy closes without closing this client."""
        return self.with_options()

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """``copy.deepcopy`` of the client, or of a query or a notebook's dict holding it: as :meth:`__copy__`; the
        connection pool is a resource both share, not a value to duplicate."""
        return self.with_options()

    def page(
        self,
        endpoint: EndpointLike,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: str | Sequence[str] = (),
        limit: int | None = None,
        page: str | None = None,
        timeout: TimeoutTypes = None,
        **filters: FilterInput,
    ) -> PageT:
        """One request, one page (async: awaited). Parameters are checked against the live rules first."""
        return self._page(
            EndpointCall(endpoint, start_time, end_time, bucket_width, group_by, filters, limit, page, timeout)
        )

    def query(
        self,
        endpoint: EndpointLike,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: str | Sequence[str] = (),
        timeout: TimeoutTypes = None,
        **filters: FilterInput,
    ) -> Q:
        """A lazy query over ``[start_time, end_time)`` (open end: now), validated now, fetched when iterated."""
        return self._endpoint_query(
            EndpointCall(endpoint, start_time, end_time, bucket_width, group_by, filters, timeout=timeout)
        )

    def fetch_range(
        self,
        endpoint: EndpointLike,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: str | Sequence[str] = (),
        timeout: TimeoutTypes = None,
        **filters: FilterInput,
    ) -> BucketsT:
        """Every bucket of the range, every page, in order (async: awaited; windows are fetched concurrently)."""
        call = EndpointCall(endpoint, start_time, end_time, bucket_width, group_by, filters, timeout=timeout)
        return self._all_buckets(self._endpoint_query(call))

    def _page(self, call: EndpointCall) -> PageT:
        """One checked request for the call (``page()``, and ``UsageApi``'s ``usage_<endpoint>`` methods)."""
        ep, params = _page_params(call, self._clock())
        return self._send_page(ep.path, _query_items(ep, params), call.timeout)

    def _endpoint_query(self, call: EndpointCall) -> Q:
        return self._lazy(_range(call, self._clock()), call.timeout)

    # --- what each twin supplies: its query type and its I/O ---

    @abstractmethod
    def _lazy(self, spec: _Range, timeout: TimeoutTypes) -> Q:
        """The twin's lazy query over ``spec``."""

    @abstractmethod
    def _send_page(self, path: str, items: list[tuple[str, QueryValue]], timeout: TimeoutTypes) -> PageT:
        """One page, decoded inside the transport's attempt loop (an undecodable 200 is one more retry)."""

    @abstractmethod
    def _all_buckets(self, query: Q) -> BucketsT:
        """Every bucket of ``query``."""


class Client(Closing, _ClientBase[Query, UsageResponse, list[Bucket]], DirectoryMethods):
    """The blocking client.

    The key comes from ``api_key`` or ``OPENAI_ADMIN_KEY``; the base URL (ending in ``/v1``) from ``base_url``,
    ``OPENAI_BASE_URL`` or the public API. ``max_retries`` overrides ``retry.max_retries`` (default 2).
    ``clock`` is the wall clock (Unix seconds) used for "now" (open ranges, relative times, clamping).
    ``max_concurrency`` bounds the async twin's parallel windows; this client fetches one window at a time.
    ``transport`` (an ``httpx.BaseTransport``) or a ready ``http_client`` (an ``httpx.Client``, which ``close()``
    leaves open) carries the requests. The settings are held as one frozen ``ClientOptions``.
    """

    _http: SyncHTTP

    def _connect(self, transport: AnyTransport, http_client: AnyHTTPClient) -> None:
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise ConfigError("Client needs a sync transport (httpx.BaseTransport); use AsyncClient for async ones")
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise ConfigError("Client needs an httpx.Client as http_client=; use AsyncClient for an httpx.AsyncClient")
        self._http = SyncHTTP(self._config, transport=transport, client=http_client)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        self._http.refuse_reopening()
        return self

    def _lazy(self, spec: _Range, timeout: TimeoutTypes) -> Query:
        return Query(self, spec, timeout)

    def _send_page(self, path: str, items: list[tuple[str, QueryValue]], timeout: TimeoutTypes) -> UsageResponse:
        return self._http.fetch(path, items, decode_page, timeout=timeout)

    def _all_buckets(self, query: Query) -> list[Bucket]:
        return query.buckets()

    def _directory_get(self, path: str, items: Items, timeout: TimeoutTypes) -> bytes:
        """One directory request through the same transport (auth, retries, errors) as usage."""
        return self._http.get(path, items, timeout=timeout)

    def _window_pages(self, spec: _Range, window: rules.Window, timeout: TimeoutTypes) -> Iterator[UsageResponse]:
        seen: set[str] = set()
        cursor: str | None = None
        path = spec.endpoint.path
        open_end = False
        while True:
            params = _window_params(spec, window, cursor, open_end=open_end)
            try:
                response = self._send_page(path, _query_items(spec.endpoint, params), timeout)
            except BadRequestError as exc:
                if _starts_after_the_apis_now(exc, spec.params.start_time, params, _where(spec, window)):
                    return
                if open_end or not _ends_at_the_apis_now(exc, params, _where(spec, window)):
                    raise
                open_end = True
                continue
            yield response
            cursor = _next_cursor(response, seen, _where(spec, window))
            if cursor is None:
                return


class AsyncClient(
    _ClientBase[AsyncQuery, Coroutine[Any, Any, UsageResponse], Coroutine[Any, Any, list[Bucket]]],
    AsyncDirectoryMethods,
):
    """The async twin of :class:`Client`: same constructor, same methods; I/O methods return coroutines to await.

    One client shares a semaphore of ``max_concurrency`` requests and one backoff: a 429 pauses every
    concurrent request of the client until its ``Retry-After`` has passed.
    """

    _http: AsyncHTTP

    def _connect(self, transport: AnyTransport, http_client: AnyHTTPClient) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ConfigError("AsyncClient needs an async transport (httpx.AsyncBaseTransport); use Client for sync")
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigError("AsyncClient needs an httpx.AsyncClient as http_client=; use Client for an httpx.Client")
        self._http = AsyncHTTP(self._config, transport=transport, client=http_client)
        self._semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        self._http.refuse_reopening()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _semaphore(self) -> asyncio.Semaphore:
        """The running loop's semaphore (``max_concurrency`` requests at once in each loop), made on first use.

        Loops in several threads may ask at once: the map is changed in place, one atomic dict operation at a time,
        never rebuilt. A rebuild (the live entries copied, then assigned) dropped an entry another thread had just
        added, and that loop's next request got a second semaphore: up to twice ``max_concurrency`` at once."""
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores.setdefault(loop, asyncio.Semaphore(self.max_concurrency))
            for gone in [lp for lp in list(self._semaphores) if lp.is_closed()]:
                self._semaphores.pop(gone, None)
        return sem

    def _lazy(self, spec: _Range, timeout: TimeoutTypes) -> AsyncQuery:
        return AsyncQuery(self, spec, timeout)

    async def _send_page(self, path: str, items: list[tuple[str, QueryValue]], timeout: TimeoutTypes) -> UsageResponse:
        return await self._decoded(path, items, timeout, decode_page)

    async def _decoded(
        self,
        path: str,
        items: list[tuple[str, QueryValue]],
        timeout: TimeoutTypes,
        decode: Callable[[bytes], P],
        *,
        offload: bool = False,
        slot: contextlib.AbstractAsyncContextManager[object] | None = None,
    ) -> P:
        """One page decoded by ``decode`` inside the attempt loop, within the client's concurrency limit; or, given
        ``slot`` (a caller's bound shared by several clients), within that one, let go while the page decodes
        (:meth:`AsyncHTTP.fetch <usageledger._http.AsyncHTTP.fetch>`)."""
        if slot is not None:
            return await self._http.fetch(path, items, decode, timeout=timeout, offload=offload, slot=slot)
        async with self._semaphore():
            return await self._http.fetch(path, items, decode, timeout=timeout, offload=offload)

    def _all_buckets(self, query: AsyncQuery) -> Coroutine[Any, Any, list[Bucket]]:
        return query.buckets()

    async def _directory_get(self, path: str, items: Items, timeout: TimeoutTypes) -> bytes:
        """One directory request through the same transport and concurrency bound as usage."""
        async with self._semaphore():
            return await self._http.get(path, items, timeout=timeout)

    async def _fetch_pages(
        self,
        endpoint: EndpointLike,
        decode: Callable[[bytes], P],
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: str | Sequence[str] = (),
        timeout: TimeoutTypes = None,
        slot: contextlib.AbstractAsyncContextManager[object] | None = None,
        range_start: int | None = None,
        **filters: FilterInput,
    ) -> list[P]:
        """Every page of the range, in order, each body decoded by ``decode`` in a worker thread, inside the attempt
        loop (a body ``decode`` refuses with :class:`ResponseDecodeError` is retried like a lost response).

        For a decoder that works without the GIL (the sync's Arrow reader): the event loop keeps receiving other
        pages meanwhile; the sync reads costs through it too, with :func:`decode_page`, for ``range_start``. A page
        is anything with ``has_more`` and ``next_page``. ``slot``: see :meth:`_decoded`.
        ``range_start``: where the caller's whole range starts, when this one is a later window of it (a window
        starting after the API's now is then empty, not an error: :func:`_starts_after_the_apis_now`).
        """
        call = EndpointCall(endpoint, start_time, end_time, bucket_width, group_by, filters, timeout=timeout)
        spec = _range(call, self._clock())
        pages: list[P] = []
        for window in spec.windows:
            pages += await self._window_pages(
                spec, window, timeout, decode, offload=True, slot=slot, range_start=range_start
            )
        return pages

    async def _window_pages(
        self,
        spec: _Range,
        window: rules.Window,
        timeout: TimeoutTypes,
        decode: Callable[[bytes], P] = decode_page,  # type: ignore[assignment]  # P is UsageResponse by default
        *,
        offload: bool = False,
        slot: contextlib.AbstractAsyncContextManager[object] | None = None,
        range_start: int | None = None,
    ) -> list[P]:
        seen: set[str] = set()
        cursor: str | None = None
        path = spec.endpoint.path
        pages: list[P] = []
        open_end = False
        while True:
            params = _window_params(spec, window, cursor, open_end=open_end)
            items = _query_items(spec.endpoint, params)
            try:
                response = await self._decoded(path, items, timeout, decode, offload=offload, slot=slot)
            except BadRequestError as exc:
                first = spec.params.start_time if range_start is None else range_start
                if _starts_after_the_apis_now(exc, first, params, _where(spec, window)):
                    return pages
                if open_end or not _ends_at_the_apis_now(exc, params, _where(spec, window)):
                    raise
                open_end = True
                continue
            pages.append(response)
            cursor = _next_cursor(response, seen, _where(spec, window))
            if cursor is None:
                return pages
