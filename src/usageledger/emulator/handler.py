"""The emulator's pure request handler: ``Emulator.handle(Request) -> Response``, no sockets.

Routes, parameters and rules come from :mod:`usageledger.catalogue` and :mod:`usageledger.rules`; the server
(:mod:`usageledger.emulator.server`) and the in-process httpx transport (:mod:`usageledger.emulator.transport`)
both call :meth:`Emulator.handle` and see only :mod:`usageledger.emulator.messages`, never this module.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Final
from urllib.parse import parse_qsl

import msgspec

from usageledger import catalogue, rules
from usageledger.catalogue import BUCKET_SECONDS, DirectoryEndpoint, Endpoint
from usageledger.emulator import cursor
from usageledger.emulator.activity import ActivitySource, mix
from usageledger.emulator.config import EmulatorConfig
from usageledger.emulator.directory import Directory
from usageledger.emulator.faults import decide
from usageledger.emulator.messages import API_PREFIX, Request, Response
from usageledger.emulator.messages import error_body as _error
from usageledger.emulator.results import FiltersKey, ResultBuilder, filters_key
from usageledger.emulator.transport import EmulatorTransport

__all__ = ["Emulator"]
_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")
_JSON: Final = ("content-type", "application/json")
_HTML: Final = ("content-type", "text/html")
_GATEWAY_PAGE: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    b"\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)
_SCALARS: Final = frozenset({"start_time", "end_time", "bucket_width", "limit", "page"})
_LISTS: Final = frozenset({"group_by"})
_ENTRY_OVERHEAD: Final = 300  # bytes per cache entry beyond the body: key tuple, dict slot, bytes header
_PACK_LEVEL: Final = 2  # zlib: ~10x on pages, ~240 MB/s packing, ~650 MB/s unpacking (bench/BENCHMARKS.md)
_COMMA: Final = re.compile(r",(?! )")  # "a,b" splits; "gpt-4o, input" (a line item) does not


class _Packed:
    """A body kept zlib-compressed by :class:`_Lru`; ``get`` hands it back whole."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _Lru:
    """Encoded bodies by key, least recently used dropped first once ``budget`` bytes are spent. Thread-safe.

    Once more than ``pack_after`` bytes are held, new bodies are kept compressed (zlib level :data:`_PACK_LEVEL`:
    JSON pages shrink about tenfold, and unpacking one costs a small part of computing it again), so a cache under
    pressure holds ten times the pages instead of dropping them: two years of hourly pages for every usage endpoint
    (about 830 MB of JSON) fit the default budget, and a second pass over them is answered from the cache. Below
    ``pack_after`` nothing is compressed, so the small caches of tests and the demo pay nothing for it.
    """

    def __init__(self, budget: int, *, pack_after: int | None = None) -> None:
        self.budget = budget
        self.pack_after = pack_after
        self.size = 0
        self._items: OrderedDict[tuple[object, ...], bytes | _Packed] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> bytes | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
        return zlib.decompress(hit.data) if isinstance(hit, _Packed) else hit

    def put(self, key: tuple[object, ...], body: bytes) -> None:
        if self.budget <= _ENTRY_OVERHEAD:
            return  # no cache (`--cache-mb 0`): nothing to keep, nothing to pack
        kept: bytes | _Packed = body
        if self.pack_after is not None and self.size + len(body) > self.pack_after:
            kept = _Packed(zlib.compress(body, _PACK_LEVEL))
        if _held(kept) > self.budget:
            return  # it could never stay; putting it would only empty the cache
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= _held(old)
            self.size += _held(kept)
            self._items[key] = kept
            while self.size > self.budget and self._items:
                _, dropped = self._items.popitem(last=False)
                self.size -= _held(dropped)


def _held(kept: bytes | _Packed) -> int:
    """The bytes one cache entry holds: its body as kept, plus the entry's own overhead."""
    return (len(kept.data) if isinstance(kept, _Packed) else len(kept)) + _ENTRY_OVERHEAD


class _BadRequest(Exception):
    def __init__(self, violation: rules.Violation) -> None:
        super().__init__(violation.message)
        self.violation = violation


def _split_values(values: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        out.extend(p for p in _COMMA.split(v) if p != "")
    return tuple(out)


def _int(name: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    value = rules.query_integer(name, raw)
    if isinstance(value, rules.Violation):
        raise _BadRequest(value)
    return value


def parse_query(endpoint: Endpoint, query: str) -> rules.QueryParams:
    """The query string in any of the three array spellings (``a=x&a=y``, ``a[]=x&a[]=y``, ``a=x,y``)."""
    scalars: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for raw_name, value in parse_qsl(query, keep_blank_values=True):
        name = raw_name[:-2] if raw_name.endswith("[]") else raw_name
        if name in _SCALARS:
            scalars[name] = value
        else:
            lists.setdefault(name, []).append(value)
    filters: dict[str, rules.FilterValue] = {}
    known = {f.name: f for f in endpoint.filters}
    for name, values in lists.items():
        if name in _LISTS:
            continue
        flt = known.get(name)
        if flt is not None and flt.kind == "bool":
            text = values[-1].lower()
            if text not in ("true", "false"):
                raise _BadRequest(
                    rules.Violation(name, f"Invalid value for '{name}': '{values[-1]}'. Expected a boolean.")
                )
            filters[name] = text == "true"
        else:
            filters[name] = _split_values(values)
    return rules.QueryParams(
        start_time=_int("start_time", scalars.get("start_time")),
        end_time=_int("end_time", scalars.get("end_time")),
        bucket_width=scalars.get("bucket_width", "1d"),
        group_by=_split_values(lists.get("group_by", [])),
        limit=_int("limit", scalars.get("limit")),
        page=scalars.get("page"),
        filters=filters,
    )


def _canonical(endpoint: Endpoint, params: rules.QueryParams, fkey: FiltersKey) -> str:
    """Every parameter but ``page``, in a stable form: what a page token is bound to."""
    group = sorted(set(params.group_by))
    return repr((endpoint.name, params.start_time, params.end_time, params.bucket_width, group, params.limit, fkey))


class Emulator:
    """An offline double of the organization Usage & Costs API.

    ``clock`` returns Unix seconds; it defaults to ``config.now`` when set, else the wall clock.
    """

    def __init__(self, config: EmulatorConfig | None = None, *, clock: Callable[[], float] | None = None) -> None:
        self.config = config or EmulatorConfig()
        if clock is None:
            fixed = self.config.now
            clock = (lambda: float(fixed)) if fixed is not None else time.time
        self.clock: Callable[[], float] = clock
        started = time.perf_counter()
        self.source: ActivitySource = self._make_source(int(clock()))
        self.results = ResultBuilder(self.source)
        self.directory: Directory | None = self._make_directory()
        # Buckets and whole pages are kept apart so that one-off pages never push out reusable buckets. Pages get
        # three quarters, packed once they hold a sixteenth of the budget: a sync asks for the same pages again, and
        # packed, two years of hourly pages for every usage endpoint (~830 MB of JSON) fit the default 128 MiB.
        budget = self.config.cache_bytes
        self._buckets = _Lru(budget // 4)
        self._pages = _Lru(budget * 3 // 4, pack_after=budget // 16)
        self._counter = itertools.count()
        self.startup_seconds = time.perf_counter() - started

    def _make_source(self, anchor: int) -> ActivitySource:
        if self.config.replay is not None:
            from usageledger.emulator.replay import ReplaySource

            return ReplaySource.load(self.config.replay)
        from usageledger.emulator.org import SyntheticSource

        return SyntheticSource(self.config, anchor)

    def _make_directory(self) -> Directory | None:
        if self.config.replay_directory is not None:
            return Directory.load(self.config.replay_directory)
        from usageledger.emulator.org import SyntheticSource

        return self.source.directory() if isinstance(self.source, SyntheticSource) else None

    # --- public helpers ----------------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock())

    def transport(self, *, sleep: Callable[[float], object] | None = None) -> EmulatorTransport:
        """An in-process httpx transport (sync and async) that calls :meth:`handle`; no sockets."""
        return EmulatorTransport(self.handle, sleep=sleep)

    # --- handling ------------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request. Pure apart from the request counter that seeds fault decisions."""
        number = next(self._counter)
        request_id = f"req_{mix(self.config.seed, 0x5EED, number):016x}{number:016x}"
        fault = decide(self.config.faults, number)
        headers = [_JSON, ("x-request-id", request_id)]
        if fault.kind == "drop":
            return Response(0, (), b"", fault)
        if fault.kind == "429":
            waits = [("retry-after", str(self.config.faults.retry_after))]
            if self.config.faults.retry_after_ms is not None:  # sent by some live 429s too; read first by clients
                waits.append(("retry-after-ms", str(self.config.faults.retry_after_ms)))
            body = _error(
                "Rate limit reached for requests. Please try again later.", "requests", None, "rate_limit_exceeded"
            )
            return Response(429, (*headers, *waits), body, fault)
        if fault.kind in ("500", "503"):
            status = int(fault.kind)
            message = "The server had an error while processing your request. Sorry about that!"
            if status == 503:
                message = "The engine is currently overloaded, please try again later."
            return Response(status, tuple(headers), _error(message, "server_error", None, None), fault)
        if fault.kind == "malformed":
            # A gateway in front of the API failed: its own HTML page, status and content type, and none of the
            # API's headers. (It was the page's text under a 200 labelled application/json, which no server sends.)
            return Response(502, (_HTML,), _GATEWAY_PAGE, fault)
        status, body = self._answer(request)
        if fault.kind == "truncate":
            body = body[: max(1, len(body) // 2)]
        return Response(status, tuple(headers), body, fault)

    def _answer(self, request: Request) -> tuple[int, bytes]:
        path = request.path
        endpoint = catalogue.BY_PATH.get(path[len(API_PREFIX) :]) if path.startswith(API_PREFIX + "/") else None
        listed = None
        if endpoint is None and path.startswith(API_PREFIX + "/") and self.directory is not None:
            listed = self.directory.route(path[len(API_PREFIX) :])
        if listed is not None and request.method.upper() in ("GET", "HEAD"):
            return self._directory_answer(request, *listed)
        if endpoint is None or request.method.upper() not in ("GET", "HEAD"):
            message = f"Invalid URL ({request.method.upper()} {path})"
            return 404, _error(message, "invalid_request_error", None, None)
        denied = self._authenticate(request.headers.get("authorization"))
        if denied is not None:
            return denied
        now = self.now()
        try:
            params = parse_query(endpoint, request.query)
            violation = rules.check(endpoint, params, now=now) or self._organisation_rule(endpoint, params)
            if violation is not None:
                raise _BadRequest(violation)
            return 200, self._page(endpoint, params, now)
        except _BadRequest as exc:
            v = exc.violation
            return 400, _error(v.message, v.type, v.param, v.code)

    def _directory_answer(
        self, request: Request, ep: DirectoryEndpoint, args: dict[str, str], item_id: str | None
    ) -> tuple[int, bytes]:
        """A directory list or item: authenticated like usage, refused with the same error shape."""
        denied = self._authenticate(request.headers.get("authorization"))
        if denied is not None:
            return denied
        assert self.directory is not None
        return self.directory.answer(ep, args, item_id, request.query)

    def _organisation_rule(self, endpoint: Endpoint, params: rules.QueryParams) -> rules.Violation | None:
        """Rules that depend on the organisation (reference §7): costs user_id grouping with project scoping."""
        if not (self.config.refuse_costs_user_by_project and endpoint.is_costs and "user_id" in params.group_by):
            return None
        if "project_id" in params.group_by or "project_ids" in params.filters:
            return rules.Violation(
                "group_by",
                "Grouping costs by user_id cannot be combined with grouping by project_id or the project_ids filter "
                "for this organization.",
                code="unsupported_grouping",
            )
        return None

    def _authenticate(self, header: str | None) -> tuple[int, bytes] | None:
        if not header:
            return 401, _error(
                "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) "
                "if you're accessing the API from your browser and are prompted for a username.",
                "invalid_request_error",
                None,
                None,
            )
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key or " " in key:
            return 401, _error(
                "The Authorization header is malformed: expected 'Bearer <admin API key>'.",
                "invalid_request_error",
                None,
                "invalid_authorization_header",
            )
        pinned = self.config.admin_key
        if (pinned is not None and key == pinned) or (pinned is None and key.startswith(catalogue.ADMIN_KEY_PREFIX)):
            return None
        if key.startswith("sk-") and not key.startswith(catalogue.ADMIN_KEY_PREFIX):
            return 403, _error(
                "You have insufficient permissions for this operation. Missing scopes: api.usage.read. Check that "
                "you have the correct role in your organization (Reader, Writer, Owner) and project (Member, "
                "Owner), and if you're using a restricted API key, that it has the necessary scopes.",
                "invalid_request_error",
                None,
                "missing_scope",
            )
        shown = key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else "*" * len(key)
        return 401, _error(
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            "invalid_api_key",
        )

    # --- pages ---------------------------------------------------------------------------------------------

    def _page(self, endpoint: Endpoint, params: rules.QueryParams, now: int) -> bytes:
        assert params.start_time is not None
        width = params.bucket_width
        step = BUCKET_SECONDS[width]  # type: ignore[index]
        start = params.start_time
        end = now if params.end_time is None else params.end_time  # rules.check refused one after now
        limit = params.limit or endpoint.limit_for(width).default  # type: ignore[arg-type]
        group_by = tuple(g for g in endpoint.group_by if g in params.group_by)
        fkey = filters_key(params.filters)
        binding = cursor.digest(_canonical(endpoint, params, fkey))
        position = start
        if params.page is not None:
            decoded = cursor.decode(params.page, binding)
            if decoded is None or not (start < decoded < end) or decoded % step:
                raise _BadRequest(rules.Violation("page", cursor.INVALID_TOKEN_MESSAGE, code="invalid_page_token"))
            position = decoded
        settled = not self.config.revisions or end <= now - self.config.revision_window
        page_key = (endpoint.name, width, position, end, limit, group_by, fkey, binding)
        if settled and (hit := self._pages.get(page_key)) is not None:
            return hit
        chunks: list[bytes] = []
        while position < end and len(chunks) < limit:
            bucket_end = position - position % step + step
            chunks.append(
                self._bucket(endpoint, width, position, bucket_end, min(bucket_end, end), group_by, fkey, now)
            )
            position = bucket_end
        has_more = position < end
        next_page = cursor.encode(position, binding) if has_more else None
        tail = _ENCODER.encode({"has_more": has_more, "next_page": next_page})
        parts = [b'{"object":"page","data":[']
        for i, chunk in enumerate(chunks):
            if i:
                parts.append(b",")
            parts.append(chunk)
        parts += (b"],", tail[1:])
        body = b"".join(parts)  # one copy of what may be megabytes
        if settled:
            self._pages.put(page_key, body)
        return body

    def _bucket(
        self,
        endpoint: Endpoint,
        width: str,
        start: int,
        end: int,
        data_end: int,
        group_by: tuple[str, ...],
        fkey: FiltersKey,
        now: int,
    ) -> bytes:
        revising = self.config.revisions and data_end > now - self.config.revision_window
        key = (endpoint.name, width, start, data_end, group_by, fkey, now if revising else None)
        hit = self._buckets.get(key)
        if hit is not None:
            return hit
        if endpoint.is_costs:
            results = self.results.costs(start, data_end, group_by, fkey, now)
        else:
            results = self.results.usage(endpoint, start, data_end, group_by, fkey, now)
        if isinstance(results, msgspec.Raw):  # rows already encoded (numpy paths): one exact-size copy
            body = b'{"object":"bucket","start_time":%d,"end_time":%d,"results":%b}' % (start, end, results)
        else:
            body = _ENCODER.encode({"object": "bucket", "start_time": start, "end_time": end, "results": results})
        self._buckets.put(key, body)
        return body
