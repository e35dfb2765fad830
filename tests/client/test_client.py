"""Client: single pages, validated ranges split into windows and pages, rows and tables, the typed methods."""

from __future__ import annotations

import inspect
import itertools
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, get_args, get_origin

import httpx
import pytest

from usageledger import AsyncClient, Client, catalogue
from usageledger._http import RetryPolicy
from usageledger.errors import PaginationError, ParameterError, ResponseDecodeError
from usageledger.models import CompletionsResult

from fixtures.data import EXAMPLES, FAKE_ADMIN_KEY
from fixtures.paging import DAY, NOW, START, PagedServer, expected_starts, starts_of


def no_sleep_policy() -> RetryPolicy:
    async def nap(seconds: float) -> None:
        return None

    return RetryPolicy(sleep=lambda s: None, async_sleep=nap, random=lambda: 0.0)


# --- ranges: windows and pages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "span", "page_size"),
    [("1d", 100 * DAY, None), ("1d", 100 * DAY, 7), ("1h", 20 * DAY + 3600 * 5, 50), ("1m", 2 * DAY, 500)],
)
def test_range_returns_every_bucket_once_in_order(width: str, span: int, page_size: int | None) -> None:
    """Ranges over several windows and several pages per window give every bucket exactly once, in order."""
    server = PagedServer(page_size=page_size)
    start = START + 1234  # not on a boundary: the first bucket is partial
    query = server.client().query("completions", start_time=start, end_time=start + span, bucket_width=width)
    buckets = list(query)
    assert starts_of(buckets) == expected_starts(start, start + span, width)
    assert [b.results[0].num_model_requests for b in buckets] == starts_of(buckets)  # type: ignore[union-attr]
    assert len(query.windows) > 1
    maximum = catalogue.get("completions").limits[width].maximum  # type: ignore[index]
    limits = [int(r.url.params["limit"]) for r in server.requests if "page" not in r.url.params]
    assert limits == [w.limit for w in query.windows] and max(limits) <= maximum
    if page_size:
        assert any("page" in r.url.params for r in server.requests)


def test_each_window_asks_for_exactly_its_buckets() -> None:
    """The limit sent for a window is its bucket count, and windows tile the range without gaps."""
    server = PagedServer()
    query = server.client().query("costs", start_time=START - 200 * DAY, end_time=START + 200 * DAY)
    list(query)
    sent = [
        (int(r.url.params["start_time"]), int(r.url.params["end_time"]), int(r.url.params["limit"]))
        for r in server.requests
    ]
    assert sent == [(w.start, w.end, w.limit) for w in query.windows]
    assert [w.limit for w in query.windows] == [180, 180, 40]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(sent))


def test_the_cursor_is_sent_back_exactly() -> None:
    """Every follow-up request carries the previous next_page byte for byte, with the rest of the query unchanged."""
    server = PagedServer(page_size=3)
    list(server.client().query("embeddings", start_time=START, end_time=START + 10 * DAY, group_by=["model"]))
    assert len(server.requests) == 4
    for prev, nxt in zip(server.requests, server.requests[1:], strict=False):
        body = server.handler(prev)  # re-ask the server what it answered
        cursor = json.loads(body.content)["next_page"]
        assert any(ch in cursor for ch in "+/=")
        assert nxt.url.params["page"] == cursor
        rest = [[kv for kv in r.url.params.multi_items() if kv[0] != "page"] for r in (prev, nxt)]
        assert rest[0] == rest[1]


def test_repeated_cursor_raises_pagination_error() -> None:
    """A server that hands back the same cursor twice is an error, not an endless loop."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        page = {"object": "page", "data": [], "has_more": True, "next_page": "page_same+/="}
        return httpx.Response(200, json=page)

    client = Client(FAKE_ADMIN_KEY, transport=httpx.MockTransport(handler), clock=lambda: NOW)
    with pytest.raises(PaginationError, match="same next_page twice"):
        list(client.query("completions", start_time=START, end_time=START + 3 * DAY))
    assert len(calls) == 2


def test_has_more_without_next_page_raises_pagination_error() -> None:
    """has_more with no cursor is an error, never a silent early stop."""
    page = {"object": "page", "data": [], "has_more": True, "next_page": None}
    client = Client(
        FAKE_ADMIN_KEY, transport=httpx.MockTransport(lambda r: httpx.Response(200, json=page)), clock=lambda: NOW
    )
    with pytest.raises(PaginationError, match="has_more=true but sent no next_page"):
        client.fetch_range("completions", start_time=START, end_time=START + DAY)


def test_query_is_lazy_and_refetches() -> None:
    """Creating a query sends nothing; each iteration fetches again."""
    server = PagedServer()
    query = server.client().query("images", start_time=START, end_time=START + 3 * DAY)
    assert server.requests == []
    assert len(query.buckets()) == len(list(query)) == 3
    assert len(server.requests) == 2


def test_pages_yields_whole_pages() -> None:
    """.pages() gives the UsageResponse of every request, in order."""
    server = PagedServer(page_size=2)
    pages = list(server.client().query("moderations", start_time=START, end_time=START + 5 * DAY).pages())
    assert [len(p.data) for p in pages] == [2, 2, 1]
    assert [p.has_more for p in pages] == [True, True, False]


# --- pre-flight validation ------------------------------------------------------------------------------------


def _refusing_client() -> tuple[Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500)

    return Client(FAKE_ADMIN_KEY, transport=httpx.MockTransport(handler), clock=lambda: NOW), seen


@pytest.mark.parametrize(
    ("endpoint", "kwargs", "param", "allowed"),
    [
        ("costs", {"bucket_width": "1h"}, "bucket_width", ("1d",)),
        ("completions", {"limit": 32}, "limit", None),
        ("completions", {"limit": 0}, "limit", None),
        ("costs", {"limit": 181}, "limit", None),
        ("vector_stores", {"group_by": ["model"]}, "group_by", ("project_id",)),
        ("images", {"sizes": ["640x480"]}, "sizes", catalogue.GROUP_FIELD_VALUES["size"]),
        ("file_search_calls", {"models": ["gpt-4o"]}, "models", None),
        ("completions", {"batch": ["yes"]}, "batch", None),
        ("completions", {"end_time": START - 1}, "end_time", None),
        ("nonsense", {}, "endpoint", catalogue.ENDPOINT_NAMES),
    ],
)
def test_preflight_errors_name_the_parameter_before_any_request(
    endpoint: str, kwargs: dict[str, Any], param: str, allowed: tuple[str, ...] | None
) -> None:
    """Rule breaks raise ParameterError naming the parameter (and allowed values), and send nothing."""
    client, seen = _refusing_client()
    with pytest.raises(ParameterError) as info:
        client.page(endpoint, start_time=START, **kwargs)
    assert info.value.param == param
    assert str(info.value).startswith(f"{param}: ")
    if allowed is not None:
        assert info.value.allowed == tuple(allowed)
        assert all(a in str(info.value) for a in allowed)
    with pytest.raises(ParameterError):
        client.query(endpoint, start_time=START, **{"end_time": START + DAY, **kwargs})
    assert seen == []


def test_future_end_time_is_clamped_to_now() -> None:
    """An end_time after the injected now is sent as now."""
    server = PagedServer()
    client = server.client()
    client.page("completions", start_time=NOW - 3 * DAY, end_time=NOW + 30 * DAY)
    assert server.requests[-1].url.params["end_time"] == str(NOW)
    buckets = client.fetch_range("completions", start_time=NOW - 3 * DAY, end_time=NOW + 30 * DAY)
    assert buckets[-1].end_time == NOW


def test_a_future_range_is_blamed_on_its_start_not_on_the_clamped_end() -> None:
    """A start and an end both after now: the end clamped to now is before the start, but the refusal names
    start_time (the clamped end_time was never the user's), and nothing is sent."""
    server = PagedServer()
    with pytest.raises(ParameterError, match=rf"^start_time: start_time \({NOW + 3600}\) must be before now"):
        server.client().page("completions", start_time=NOW + 3600, end_time=NOW + 7200)
    assert server.requests == []


def test_open_range_ends_now() -> None:
    """A query without end_time runs up to the injected now."""
    server = PagedServer()
    buckets = server.client().query("completions", start_time=NOW - 2 * DAY - 60).buckets()
    assert buckets[0].start_time == NOW - 2 * DAY - 60 and buckets[-1].end_time == NOW


@pytest.mark.parametrize(
    "value",
    [
        START,
        float(START),
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1),
        date(2026, 1, 1),
        "2026-01-01",
        "2026-01-01T00:00:00Z",
        str(START),
    ],
)
def test_time_inputs(value: object) -> None:
    """Datetimes, dates, Unix seconds and ISO strings all become the same Unix start_time."""
    server = PagedServer()
    server.client().page("completions", start_time=value)  # type: ignore[arg-type]
    assert server.requests[0].url.params["start_time"] == str(START)


def test_relative_times_count_back_from_the_injected_clock() -> None:
    """'7d' means seven days before the client's now."""
    server = PagedServer()
    server.client().page("completions", start_time="7d", end_time="now")
    assert server.requests[0].url.params["start_time"] == str(NOW - 7 * DAY)
    assert server.requests[0].url.params["end_time"] == str(NOW)


@pytest.mark.parametrize("array_format", ["brackets", "repeat", "comma"])
def test_group_by_accepts_lists_and_comma_strings(array_format: str) -> None:
    """group_by may be a list or a comma list; both go out the same in each array format."""
    server = PagedServer()
    client = server.client(array_format=array_format)
    client.page("completions", start_time=START, group_by="project_id, model")
    client.page("completions", start_time=START, group_by=["project_id", "model"])
    first, second = (r.url.query for r in server.requests)
    assert first == second
    expected = {
        "brackets": b"group_by%5B%5D=project_id&group_by%5B%5D=model",
        "repeat": b"group_by=project_id&group_by=model",
        "comma": b"group_by=project_id,model",
    }[array_format]
    assert expected in first


# --- rows and tables ------------------------------------------------------------------------------------------


def test_rows_carry_endpoint_bucket_times_and_metrics() -> None:
    """Each row has the endpoint, bucket_start/bucket_end and the result's columns."""
    server = PagedServer()
    rows = list(server.client().query("audio_speeches", start_time=START, end_time=START + 2 * DAY).rows())
    assert [(r["endpoint"], r["bucket_start"], r["bucket_end"], r["characters"]) for r in rows] == [
        ("audio_speeches", START, START + DAY, START),
        ("audio_speeches", START + DAY, START + 2 * DAY, START + DAY),
    ]


def test_tables_keep_decimal_money() -> None:
    """Arrow, pandas and polars tables hold every row; costs stay exact decimals."""
    server = PagedServer()
    query = server.client().costs(start_time=START, end_time=START + 3 * DAY)
    table = query.to_arrow()
    assert table.num_rows == 3
    assert table.column("amount_value").to_pylist()[0] == Decimal(f"{START}.01")
    frame = query.to_pandas()
    assert list(frame["amount_value"]) == [Decimal(f"{START + i * DAY}.01") for i in range(3)]
    assert query.to_polars().height == 3


# --- single pages against the reference examples --------------------------------------------------------------


@pytest.mark.parametrize("endpoint", catalogue.ENDPOINT_NAMES)
def test_page_parses_each_reference_example(endpoint: str) -> None:
    """page() returns the example page with typed results of the endpoint's type."""
    raw = (EXAMPLES / f"{endpoint}.json").read_bytes()
    client = Client(FAKE_ADMIN_KEY, transport=httpx.MockTransport(lambda r: httpx.Response(200, content=raw)))
    page = client.page(endpoint, start_time=1730419200, end_time=1730505600)
    data = json.loads(raw)
    assert (page.has_more, page.next_page) == (data["has_more"], data["next_page"])
    assert type(page.data[0].results[0]) is catalogue.get(endpoint).result_type


# --- the typed per-endpoint methods and sync/async parity -------------------------------------------------------


def _literal_values(annotation: Any) -> tuple[str, ...]:
    """The strings of a Literal, found inside Sequence[...] / ... | None wrappers."""
    if get_origin(annotation) is None and isinstance(annotation, type):
        return ()
    args = get_args(annotation)
    if args and all(isinstance(a, str) for a in args):
        return args
    return tuple(v for a in args for v in _literal_values(a))


@pytest.mark.parametrize("cls", [Client, AsyncClient])
@pytest.mark.parametrize("endpoint", catalogue.ENDPOINTS, ids=lambda e: e.name)
def test_every_endpoint_has_a_typed_method_matching_the_catalogue(cls: type, endpoint: catalogue.Endpoint) -> None:
    """Each client has one method per endpoint whose filters, group_by and widths are the catalogue's."""
    method = getattr(cls, endpoint.name)
    hints = inspect.get_annotations(method, eval_str=True)
    params = inspect.signature(method).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for n, p in params.items() if n != "self")
    names = [n for n in params if n not in ("self", "start_time", "end_time", "bucket_width", "group_by", "timeout")]
    assert names == list(endpoint.filter_names)
    assert _literal_values(hints["group_by"]) == endpoint.group_by
    assert _literal_values(hints["bucket_width"]) == endpoint.bucket_widths
    for f in endpoint.filters:
        if f.allowed is not None:
            assert _literal_values(hints[f.name]) == f.allowed
        if f.kind == "bool":
            assert hints[f.name] == bool | None


def test_typed_method_sends_its_filters() -> None:
    """client.images(...) validates and sends its own filters."""
    server = PagedServer()
    server.client().images(
        start_time=START, end_time=START + DAY, sources=["image.edit"], sizes=["256x256"], group_by=["size"]
    ).buckets()
    params = server.requests[0].url.params
    assert params.get_list("sources[]") == ["image.edit"] and params.get_list("sizes[]") == ["256x256"]
    assert params.get_list("group_by[]") == ["size"]


_ASYNC_NAMES = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}


def _public(cls: type) -> set[str]:
    return {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")} | {
        n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))
    }


def test_sync_and_async_clients_have_identical_signatures() -> None:
    """Every public method (and the constructor) has the same signature on Client and AsyncClient."""
    sync_names = _public(Client)
    async_names = _public(AsyncClient)
    assert {_ASYNC_NAMES.get(n, n) for n in sync_names} == async_names
    for name in sorted(sync_names | {"__init__", "__enter__", "__exit__"}):
        other = _ASYNC_NAMES.get(name, name)
        sync_sig = inspect.signature(getattr(Client, name))
        async_sig = inspect.signature(getattr(AsyncClient, other))
        assert list(sync_sig.parameters.values()) == list(async_sig.parameters.values()), name


def test_page_method_results_are_typed() -> None:
    """A completions page decodes into CompletionsResult with exact ints."""
    server = PagedServer()
    page = server.client().page("completions", start_time=START, end_time=START + DAY)
    (result,) = page.data[0].results
    assert isinstance(result, CompletionsResult) and result.num_model_requests == START


def test_retry_policy_reaches_range_queries() -> None:
    """A range query retries a 503 inside a window and still returns every bucket."""
    server = PagedServer()
    failures = [httpx.Response(503)]

    def flaky(request: httpx.Request) -> httpx.Response:
        return failures.pop() if failures else server.handler(request)

    client = Client(FAKE_ADMIN_KEY, transport=httpx.MockTransport(flaky), clock=lambda: NOW, retry=no_sleep_policy())
    assert len(client.fetch_range("completions", start_time=START, end_time=START + 40 * DAY)) == 40


@pytest.mark.parametrize("body", [b"<html><body>502 Bad Gateway</body></html>", b'{"object":"page","data":[{"obj'])
async def test_a_200_that_is_not_a_usage_page_is_retried_within_max_retries(body: bytes) -> None:
    """An HTML page or a cut JSON body sent with 200 is asked for again (sync and async); past max_retries it raises."""
    server = PagedServer()

    def handler_for(bad: int) -> tuple[list[httpx.Request], Any]:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, content=body) if len(seen) <= bad else server.handler(request)

        return seen, handler

    seen, handler = handler_for(2)
    client = Client(FAKE_ADMIN_KEY, transport=httpx.MockTransport(handler), clock=lambda: NOW, retry=no_sleep_policy())
    assert client.page("completions", start_time=START, end_time=START + DAY).data and len(seen) == 3
    seen, handler = handler_for(2)
    aclient = AsyncClient(
        FAKE_ADMIN_KEY, transport=httpx.MockTransport(handler), clock=lambda: NOW, retry=no_sleep_policy()
    )
    assert len(await aclient.fetch_range("completions", start_time=START, end_time=START + 3 * DAY)) == 3
    assert len(seen) == 3
    seen, handler = handler_for(3)
    client = Client(FAKE_ADMIN_KEY, transport=httpx.MockTransport(handler), clock=lambda: NOW, retry=no_sleep_policy())
    with pytest.raises(ResponseDecodeError):
        client.page("completions", start_time=START, end_time=START + DAY)
    assert len(seen) == 3
