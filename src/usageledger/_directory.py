"""The directory lists at run time: checked parameters, the three pagination styles, lazy queries, rows and Arrow.

The typed methods (``client.projects(...)``, ``client.project_api_keys(project_id)``, ``client.project(...)``) are
written from the catalogue by ``scripts/generate`` into :mod:`usageledger._directory_endpoints`; each builds one
:class:`DirectoryCall` and hands it, with the client's one GET function, to what is here. Nothing here does I/O of
its own: the client's ``_directory_get`` sends the request (retries and errors as for usage).

Paging follows the official SDK exactly: ``last_id`` lists send ``after=<last_id>``, the admin keys send
``after=<id of the page's last item>``, the groups' lists send ``after=<next>``. A repeated cursor, or
``has_more`` without one, is a :class:`~usageledger.errors.PaginationError`, never a silent stop.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar
from urllib.parse import quote

import msgspec

from usageledger import catalogue, rules, timeutil
from usageledger._http import QueryValue, TimeoutTypes
from usageledger._options import check_timeout
from usageledger._paging import AsyncPaged, Paged
from usageledger._secrets import refuse_key
from usageledger.catalogue import DirectoryEndpoint
from usageledger.directory_models import DirectoryPage
from usageledger.errors import PaginationError, ParameterError, ResponseDecodeError

if TYPE_CHECKING:
    import pandas
    import polars
    import pyarrow

__all__ = [
    "AsyncDirectoryQuery",
    "AsyncGet",
    "DirectoryCall",
    "DirectoryQuery",
    "Get",
    "aretrieve",
    "arrow_schema",
    "next_after",
    "page",
    "retrieve",
    "to_rows",
]

T = TypeVar("T")
Items: TypeAlias = list[tuple[str, QueryValue]]
Get: TypeAlias = Callable[[str, Items, TimeoutTypes], bytes]
"""The client's one GET: path (after the base URL), query items, timeout -> the 200 body."""
AsyncGet: TypeAlias = Callable[[str, Items, TimeoutTypes], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class DirectoryCall:
    """One directory method's arguments; ``None`` parameters are not sent."""

    endpoint: str
    path_args: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, QueryValue] = field(default_factory=dict)
    limit: int | None = None
    after: str | None = None
    item_id: str | None = None
    timeout: TimeoutTypes = None

    def __post_init__(self) -> None:
        check_timeout(self.timeout)  # when the method is called: a lazy list or an async retrieve returns first


# --- pure helpers ---------------------------------------------------------------------------------------------


def _path_part(name: str, value: object) -> str:
    """One ID as a path segment: percent-encoded, so ``/``, ``?`` and ``#`` stay inside it. ``.`` and ``..`` are
    refused: no encoding keeps them (``%2E`` is the same dot), and the URL's dot segments were resolved away, so
    ``client.project_users("..")`` listed the organization's users as the project's and ``client.project(".")``
    asked for the list of projects."""
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise ParameterError(name, f"expected a non-empty ID without spaces around it, got {value!r}")
    if value in (".", ".."):
        raise ParameterError(name, f"{value!r} is a path step, not an ID; pass the ID itself (such as proj_abc123)")
    return quote(refuse_key(name, value), safe="")


def path_of(ep: DirectoryEndpoint, call: DirectoryCall, *, item: bool = False) -> str:
    """The request path with its IDs percent-encoded, or :class:`ParameterError` naming an empty one. ``item``: a
    retrieve's, whose ID is checked like any other (``client.project(None)`` asked for the list of projects)."""
    item = item or call.item_id is not None
    path = ep.item_path if item else ep.path
    args: dict[str, object] = dict(call.path_args)
    if item:
        args[ep.item_param] = call.item_id
    for name in re.findall(r"{(\w+)}", path):
        path = path.replace("{" + name + "}", _path_part(name, args.get(name)))
    return path


def _checked_limit(ep: DirectoryEndpoint, limit: object, *, paging: bool) -> int | None:
    if limit is None:
        return None
    given, limit = limit, timeutil.integer(limit)
    if limit is None:
        raise ParameterError("limit", f"expected a whole number of items, got {given!r}")
    rule = ep.limit
    low = max(rule.minimum, 1) if paging else rule.minimum
    if not low <= limit <= rule.maximum:
        hint = "; 0 returns no items, so paging by it would never end" if paging and limit == 0 else ""
        raise ParameterError("limit", f"{ep.name} takes {low} to {rule.maximum} items a page, got {limit}{hint}")
    return limit


def _checked_params(ep: DirectoryEndpoint, params: Mapping[str, QueryValue]) -> Items:
    items: Items = []
    for p in ep.params:
        value = params.get(p.name)
        if value is None:
            continue
        if p.kind == "bool":
            if not isinstance(value, bool):
                raise ParameterError(p.name, f"expected True or False, got {value!r}")
        elif p.kind == "choice":
            if value not in p.allowed:
                raise ParameterError(p.name, f"unknown value {value!r}", allowed=p.allowed)
        else:
            # the usage filters' one rule: `emails=[]` sent no filter and listed every user, `emails=5.0` was a
            # TypeError from deep inside
            values = rules.filter_value(p.name, value)
            if isinstance(values, bool):
                raise ParameterError(p.name, f"expected a list of strings, got {value!r}")
            value = [refuse_key(p.name, v) for v in values]
        items.append((p.name, value))
    return items


def query_items(ep: DirectoryEndpoint, call: DirectoryCall, after: str | None, *, paging: bool) -> Items:
    """The query string's items: the endpoint's parameters, ``limit``, then ``after``."""
    limit = _checked_limit(ep, call.limit, paging=paging)
    if after is not None and (not isinstance(after, str) or not after):
        raise ParameterError("after", f"expected the previous page's cursor, got {after!r}")
    return [*_checked_params(ep, call.params), ("limit", limit), ("after", after)]


def next_after(ep: DirectoryEndpoint, page: DirectoryPage[Any], seen: set[str]) -> str | None:
    """The ``after`` to send next in the endpoint's style, ``None`` at the end, or :class:`PaginationError`."""
    if not page.has_more:
        return None
    if ep.pagination == "last_id":
        cursor, field_name = page.last_id, "last_id"
    elif ep.pagination == "next":
        cursor, field_name = page.next, "next"
    else:
        last = page.data[-1] if page.data else None
        cursor, field_name = (getattr(last, ep.key_field, None) if last is not None else None), "an item id"
    if not cursor:
        raise PaginationError(f"{ep.name}: the server said has_more=true but sent no {field_name} to page on")
    if cursor in seen:
        raise PaginationError(f"{ep.name}: the server sent the same cursor {cursor!r} twice; following it would loop")
    seen.add(cursor)
    return cursor


_PAGE_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {}
_ITEM_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {}


def decode_page(ep: DirectoryEndpoint, body: bytes) -> DirectoryPage[Any]:
    decoder = _PAGE_DECODERS.get(ep.name)
    if decoder is None:
        decoder = _PAGE_DECODERS[ep.name] = msgspec.json.Decoder(DirectoryPage[ep.item_type])  # type: ignore[name-defined]
    try:
        page: DirectoryPage[Any] = decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ResponseDecodeError(f"the response body is not a valid {ep.name} list: {exc}") from exc
    return page


def decode_item(ep: DirectoryEndpoint, body: bytes) -> Any:
    decoder = _ITEM_DECODERS.get(ep.name)
    if decoder is None:
        decoder = _ITEM_DECODERS[ep.name] = msgspec.json.Decoder(ep.item_type)
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ResponseDecodeError(f"the response body is not a valid {ep.item}: {exc}") from exc


# --- one request ----------------------------------------------------------------------------------------------


def page(get: Get, call: DirectoryCall, item_type: type[T]) -> DirectoryPage[T]:
    """One list request (``after`` and ``limit`` as given): one page."""
    ep = catalogue.DIRECTORY_BY_NAME[call.endpoint]
    body = get(path_of(ep, call), query_items(ep, call, call.after, paging=False), call.timeout)
    return decode_page(ep, body)


def retrieve(get: Get, call: DirectoryCall, item_type: type[T]) -> T:
    """One item by its ID."""
    ep = catalogue.DIRECTORY_BY_NAME[call.endpoint]
    item: T = decode_item(ep, get(path_of(ep, call, item=True), [], call.timeout))
    return item


def aretrieve(get: AsyncGet, call: DirectoryCall, item_type: type[T]) -> Coroutine[Any, Any, T]:
    """The async twin of :func:`retrieve`: the path (its IDs checked) is made now, at the call; the coroutine
    returned sends the request when awaited."""
    ep = catalogue.DIRECTORY_BY_NAME[call.endpoint]
    path = path_of(ep, call, item=True)

    async def fetch() -> T:
        item: T = decode_item(ep, await get(path, [], call.timeout))
        return item

    return fetch()


# --- rows and Arrow -------------------------------------------------------------------------------------------


def _columns(info: msgspec.inspect.Type, prefix: str) -> list[tuple[str, str]]:
    """``(column, kind)`` for a struct's fields, nested structs flattened as ``owner_user_name``."""
    out: list[tuple[str, str]] = []
    assert isinstance(info, msgspec.inspect.StructType)
    for f in info.fields:
        t = f.type
        if isinstance(t, msgspec.inspect.UnionType):
            t = next(x for x in t.types if not isinstance(x, msgspec.inspect.NoneType))
        name = prefix + f.encode_name
        if isinstance(t, msgspec.inspect.StructType):
            out += _columns(t, name + "_")
        elif isinstance(t, msgspec.inspect.IntType):
            out.append((name, "int"))
        elif isinstance(t, msgspec.inspect.BoolType):
            out.append((name, "bool"))
        elif isinstance(t, msgspec.inspect.StrType):
            out.append((name, "str"))
        else:
            out.append((name, "json"))
    return out


def columns(ep: DirectoryEndpoint) -> list[tuple[str, str]]:
    return _columns(msgspec.inspect.type_info(ep.item_type), "")


def _flat(value: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, v in value.items():
        if isinstance(v, dict):
            _flat(v, f"{prefix}{key}_", out)
        else:
            out[prefix + key] = v


def to_rows(ep: DirectoryEndpoint, items: Iterator[Any]) -> Iterator[dict[str, Any]]:
    """Flat rows: every column of the item type (nested objects joined by ``_``), ``None`` where absent."""
    cols = columns(ep)
    for item in items:
        flat: dict[str, Any] = {}
        _flat(msgspec.to_builtins(item), "", flat)
        row = {}
        for name, kind in cols:
            value = flat.get(name)
            row[name] = msgspec.json.encode(value).decode() if kind == "json" and value is not None else value
        yield row


def arrow_schema(ep: DirectoryEndpoint) -> pyarrow.Schema:
    import pyarrow as pa

    types = {"int": pa.int64(), "bool": pa.bool_(), "str": pa.string(), "json": pa.string()}
    return pa.schema([(name, types[kind]) for name, kind in columns(ep)])


def to_arrow(ep: DirectoryEndpoint, rows: Iterator[dict[str, Any]]) -> pyarrow.Table:
    import pyarrow as pa

    return pa.Table.from_pylist(list(rows), schema=arrow_schema(ep))


# --- lazy queries ---------------------------------------------------------------------------------------------


class _Lazy(Generic[T]):
    """What both lazy queries share: the endpoint, the call (checked at once, sent when iterated), the item type."""

    def __init__(self, call: DirectoryCall, item_type: type[T]) -> None:
        self.endpoint = catalogue.DIRECTORY_BY_NAME[call.endpoint]
        query_items(self.endpoint, call, None, paging=True)
        path_of(self.endpoint, call)
        self._call = call
        self.item_type = item_type

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint.name!r}, {dict(self._call.path_args)!r})"


class DirectoryQuery(_Lazy[T], Paged[T]):
    """Every item of a directory list, fetched page by page when iterated; each iteration fetches again."""

    def __init__(self, get: Get, call: DirectoryCall, item_type: type[T]) -> None:
        super().__init__(call, item_type)
        self._get = get

    def pages(self) -> Iterator[DirectoryPage[T]]:
        ep, call = self.endpoint, self._call
        path = path_of(ep, call)
        seen: set[str] = set()
        after: str | None = None
        while True:
            response: DirectoryPage[T] = decode_page(
                ep, self._get(path, query_items(ep, call, after, paging=True), call.timeout)
            )
            yield response
            after = next_after(ep, response, seen)
            if after is None:
                return

    def items(self) -> list[T]:
        return list(self)

    def rows(self) -> Iterator[dict[str, Any]]:
        return to_rows(self.endpoint, iter(self))

    def to_arrow(self) -> pyarrow.Table:
        return to_arrow(self.endpoint, self.rows())

    def to_pandas(self) -> pandas.DataFrame:
        from usageledger.rows import pandas_frame  # dtypes by the schema, as a usage query's

        return pandas_frame(self.to_arrow())

    def to_polars(self) -> polars.DataFrame:
        import polars as pl

        frame = pl.from_arrow(self.to_arrow())
        assert isinstance(frame, pl.DataFrame)
        return frame


class AsyncDirectoryQuery(_Lazy[T], AsyncPaged[T]):
    """The async twin of :class:`DirectoryQuery`: ``async for`` items; pages are fetched one after another."""

    def __init__(self, get: AsyncGet, call: DirectoryCall, item_type: type[T]) -> None:
        super().__init__(call, item_type)
        self._get = get

    async def pages(self) -> AsyncIterator[DirectoryPage[T]]:
        ep, call = self.endpoint, self._call
        path = path_of(ep, call)
        seen: set[str] = set()
        after: str | None = None
        while True:
            body = await self._get(path, query_items(ep, call, after, paging=True), call.timeout)
            response: DirectoryPage[T] = decode_page(ep, body)
            yield response
            after = next_after(ep, response, seen)
            if after is None:
                return

    async def items(self) -> list[T]:
        return await self._collect()

    async def rows(self) -> AsyncIterator[dict[str, Any]]:
        """Flat rows, as :meth:`DirectoryQuery.rows`, page by page."""
        async for p in self.pages():
            for row in to_rows(self.endpoint, iter(p.data)):
                yield row

    async def to_arrow(self) -> pyarrow.Table:
        return to_arrow(self.endpoint, iter([row async for row in self.rows()]))

    async def to_pandas(self) -> pandas.DataFrame:
        from usageledger.rows import pandas_frame

        return pandas_frame(await self.to_arrow())

    async def to_polars(self) -> polars.DataFrame:
        import polars as pl

        frame = pl.from_arrow(await self.to_arrow())
        assert isinstance(frame, pl.DataFrame)
        return frame
