"""Fuzzed parameters: every case is either sent and accepted by the emulator, or refused before sending.

Hypothesis throws arbitrary parameters (widths, limits, group_by lists, filters of any type, time orders, future
ends, the costs ``api_key_id`` cut-off) at ``Client.page`` and ``Client.query`` for every endpoint. A case the
client sends must get a 200 from the emulator; a case it refuses must raise :class:`ParameterError` naming the
parameter, before any request. A mirror property checks the other direction for inputs both sides can spell: the
client refuses exactly what the emulator refuses, naming the same parameter.

``USAGELEDGER_HEAVY=1`` runs 10x the examples.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from usageledger import Client, catalogue, timeutil
from usageledger._http import encode_query
from usageledger.catalogue import BUCKET_WIDTHS
from usageledger.cli import app
from usageledger.emulator import Emulator, Request
from usageledger.errors import APIStatusError, ParameterError
from usageledger.models import decode_page

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_CONFIG, EMULATOR_NOW

HEAVY: Final = os.environ.get("USAGELEDGER_HEAVY") == "1"
EXAMPLES: Final = 3000 if HEAVY else 300
DAY: Final = 86400
CUTOFF: Final = catalogue.COSTS_API_KEY_GROUPING_CUTOFF

# Names Python itself would refuse as **filters (they are the methods' own keyword arguments).
KEYWORDS: Final = frozenset({"endpoint", "start_time", "end_time", "bucket_width", "group_by", "limit", "page"})
KEYWORDS_WITH_TIMEOUT: Final = KEYWORDS | {"timeout"}
PARAMS: Final = KEYWORDS | {"endpoint"}

ALL_GROUP_FIELDS: Final = sorted({g for e in catalogue.ENDPOINTS for g in e.group_by})
ALL_FILTERS: Final = sorted({f.name for e in catalogue.ENDPOINTS for f in e.filters})
CLOSED_VALUES: Final = sorted({v for e in catalogue.ENDPOINTS for f in e.filters for v in f.allowed or ()})
ORG = Emulator(EMULATOR_CONFIG).source.org
ENTITY_IDS: Final = sorted(
    {p.id for p in ORG.projects}
    | {u for p in ORG.projects for u in p.users}
    | {k for p in ORG.projects for k in p.api_keys}
    | {v for p in ORG.projects for v in p.vector_stores}
    | {m.name for m in (*ORG.chat_models, *ORG.other_models)}
)

settings.register_profile(
    "fuzz", max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)

# --- strategies -------------------------------------------------------------------------------------------

near_now = st.integers(EMULATOR_NOW - 400 * DAY, EMULATOR_NOW + 10 * DAY)
any_text = st.text(max_size=24) | st.text(st.characters(exclude_categories=()), max_size=6)
time_strings = st.sampled_from(
    ["now", "today", "90d", "36h", "15m", "2w", "100ms", "2026-11-01", "2026-11-20T12:00:00Z", "2026-11-19T00:00+01:00"]
) | st.builds(lambda n, u: f"{n}{u}", st.integers(0, 10**7), st.sampled_from(["ms", "s", "m", "h", "d", "w"]))
any_time: st.SearchStrategy[Any] = st.one_of(
    near_now,
    st.integers(-(10**6), 10**13),
    st.integers(),
    st.floats(),
    st.datetimes(min_value=datetime(1960, 1, 1), timezones=st.none() | st.just(UTC)),
    st.dates(),
    near_now.map(str),
    st.integers(0, 10**30).map(str),
    time_strings,
    any_text,
    st.lists(st.integers(), max_size=2),
    st.binary(max_size=4),
)
widths: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(BUCKET_WIDTHS),
    st.sampled_from(BUCKET_WIDTHS),
    st.sampled_from(["1w", "1M", "60s", "1D", " 1d", "1d ", "", "1h,1d"]),
    any_text,
    st.integers(),
    st.none(),
)
limits: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.integers(-3, 40),
    st.sampled_from([0, 1, 7, 24, 31, 32, 60, 168, 169, 180, 181, 1440, 1441, -1]),
    st.integers(),
    st.floats(),
    st.booleans(),
    any_text,
)
group_values = st.sampled_from(ALL_GROUP_FIELDS) | any_text | st.sampled_from(["model ", " project_id", "Model", "*"])
group_bys: st.SearchStrategy[Any] = st.one_of(
    st.just(()),
    st.lists(st.sampled_from(ALL_GROUP_FIELDS), max_size=6),  # valid, duplicates allowed
    st.lists(group_values, max_size=5),
    st.lists(st.sampled_from(ALL_GROUP_FIELDS), min_size=1, max_size=4).map(",".join),
    st.lists(st.sampled_from(ALL_GROUP_FIELDS), min_size=1, max_size=4).map(", ".join),
    any_text,
    st.lists(st.integers(), max_size=2),
)
filter_items = st.sampled_from(ENTITY_IDS) | st.sampled_from(CLOSED_VALUES) | any_text | st.just("")
filter_values: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(ENTITY_IDS),
    st.sampled_from(CLOSED_VALUES),
    st.lists(filter_items, max_size=4),
    st.lists(st.sampled_from(CLOSED_VALUES), min_size=1, max_size=3).map(",".join),
    any_text,
    st.integers(),
    st.floats(allow_nan=False),
    st.tuples(st.integers(), st.sampled_from(ENTITY_IDS)),
)
filter_names = (st.sampled_from(ALL_FILTERS) | any_text).filter(lambda n: n not in KEYWORDS_WITH_TIMEOUT)


@dataclass
class Case:
    """One call: the endpoint, the method, and its keyword arguments."""

    endpoint: Any
    method: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def filters(self) -> set[str]:
        return set(self.kwargs) - KEYWORDS


def wild(draw: st.DrawFn, valid: st.SearchStrategy[Any], arbitrary: st.SearchStrategy[Any], percent: int) -> Any:
    """A draw from ``valid``, or in about ``percent`` % of cases from ``arbitrary``."""
    return draw(arbitrary) if draw(st.integers(0, 99)) >= 100 - percent else draw(valid)


def valid_filter(flt: catalogue.Filter) -> st.SearchStrategy[Any]:
    if flt.kind == "bool":
        return st.booleans()
    items = st.sampled_from(flt.allowed) if flt.allowed else st.sampled_from(ENTITY_IDS) | any_text
    return st.lists(items, min_size=1, max_size=3) | items


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Calls that are mostly well-formed, each parameter sometimes wild: the edges and the plainly wrong."""
    endpoint: catalogue.Endpoint = draw(st.sampled_from(catalogue.ENDPOINTS))
    name: Any = wild(draw, st.sampled_from([endpoint, endpoint.name]), any_text, 3)
    method = draw(st.sampled_from(["page", "page", "query"]))
    kind = draw(st.sampled_from(["ordered", "ordered", "ordered", "cutoff", "arbitrary"]))
    start: Any
    end: Any
    if kind == "ordered":  # an int start with an end before, at, after it, or in the future
        start = draw(near_now)
        end = draw(st.none() | st.integers(-3 * DAY, 60 * DAY).map(lambda d: start + d))
    elif kind == "cutoff":  # around the costs api_key_id cut-off
        start = CUTOFF + draw(st.integers(-2 * DAY, 2 * DAY))
        end = draw(st.none() | st.just(start + 7 * DAY))
    else:
        start = draw(any_time)
        end = draw(st.none() | any_time)
    kwargs: dict[str, Any] = {"start_time": start, "end_time": end}
    width = wild(draw, st.sampled_from(endpoint.bucket_widths), widths, 15)
    kwargs["bucket_width"] = width
    rule = endpoint.limits.get(width, catalogue.USAGE_LIMITS["1d"])
    if method == "page" or draw(st.integers(0, 99)) >= 90:  # a range query refuses limit=
        limit = wild(draw, st.none() | st.integers(rule.minimum, rule.maximum), limits, 15)
        if limit is not None:
            kwargs["limit"] = limit
    kwargs["group_by"] = wild(draw, st.lists(st.sampled_from(endpoint.group_by), max_size=4), group_bys, 15)
    for flt in endpoint.filters:
        if draw(st.integers(0, 99)) >= 70:
            kwargs[flt.name] = wild(draw, valid_filter(flt), filter_values, 15)
    if draw(st.integers(0, 99)) >= 85:
        kwargs.update(draw(st.dictionaries(filter_names, filter_values, max_size=2)))
    return Case(name, method, kwargs)


# --- running one case -------------------------------------------------------------------------------------


def make_client(base_url: str, transport: Any = None, array_format: str = "brackets") -> Client:
    return Client(
        FAKE_ADMIN_KEY,
        base_url,
        transport=transport,
        array_format=array_format,  # type: ignore[arg-type]
        max_retries=0,
        clock=lambda: EMULATOR_NOW,
    )


def run_case(client: Client, case: Case) -> str:
    """Call the client; 'sent' when the emulator accepted it, else the refused parameter's name."""
    try:
        if case.method == "page":
            page = client.page(case.endpoint, **case.kwargs)
            assert page.object == "page"
        else:
            query = client.query(case.endpoint, **case.kwargs)
            first = next(iter(query.pages()))  # one request per case: the first page of the first window
            assert first.object == "page"
            if len(query.windows) > 1:  # and the last window, whose end was clamped to now
                last = query.windows[-1]
                assert client.page(
                    query.endpoint,
                    start_time=last.start,
                    end_time=last.end,
                    limit=last.limit,
                    **{k: v for k, v in case.kwargs.items() if k not in ("start_time", "end_time", "limit")},
                ).data
    except ParameterError as exc:
        assert exc.param in PARAMS | case.filters, f"{exc.param!r} is not a parameter of {case}"
        assert str(exc).startswith(f"{exc.param}: "), str(exc)
        event(f"refused: {exc.param if exc.param in PARAMS else 'a filter'}")
        return exc.param
    except APIStatusError as exc:
        pytest.fail(f"the client sent a request the emulator refused: {exc}\ncase: {case}")
    event("sent and accepted")
    return "sent"


# --- the properties ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def in_process(emulator: Emulator) -> Iterator[dict[str, Client]]:
    """One client per array spelling over the emulator's in-process transport."""
    clients = {
        fmt: make_client("http://127.0.0.1/v1", emulator.transport(), fmt) for fmt in ("brackets", "repeat", "comma")
    }
    yield clients
    for client in clients.values():
        client.close()


@settings(settings.get_profile("fuzz"))
@given(case=cases(), array_format=st.sampled_from(["brackets", "repeat", "comma"]))
def test_every_case_is_accepted_by_the_emulator_or_refused_naming_the_parameter(
    in_process: dict[str, Client], case: Case, array_format: str
) -> None:
    """In-process: each fuzzed call is sent and gets a 200, or raises ParameterError naming its parameter."""
    run_case(in_process[array_format], case)


@settings(settings.get_profile("fuzz"), max_examples=EXAMPLES // 5)
@given(case=cases())
def test_the_same_holds_over_loopback_http(emulator_url: str, case: Case) -> None:
    """Over real HTTP to the emulator server: sent and accepted, or refused naming the parameter."""
    with make_client(emulator_url) as client:
        run_case(client, case)


# --- the mirror: the client is not stricter than the emulator, for inputs both can spell ------------------

plain_text = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789._-"), min_size=1, max_size=12)


@st.composite
def plain_cases(draw: st.DrawFn) -> tuple[catalogue.Endpoint, dict[str, Any]]:
    """Parameters with one spelling on both sides: int times in range, plain strings, lists without commas."""
    endpoint = draw(st.sampled_from(catalogue.ENDPOINTS))
    start = draw(near_now | st.integers(CUTOFF - DAY, CUTOFF + DAY) | st.integers(0, timeutil.MAX_UNIX))
    end = draw(st.none() | st.integers(-2 * DAY, 40 * DAY).map(lambda d: min(timeutil.MAX_UNIX, max(0, start + d))))
    kwargs: dict[str, Any] = {
        "start_time": start,
        "end_time": end,
        "bucket_width": wild(
            draw, st.sampled_from(endpoint.bucket_widths), st.sampled_from(BUCKET_WIDTHS) | plain_text, 20
        ),
        "group_by": wild(
            draw,
            st.lists(st.sampled_from(endpoint.group_by), max_size=3),
            st.lists(st.sampled_from(ALL_GROUP_FIELDS) | plain_text, max_size=3),
            20,
        ),
    }
    edges = st.integers(-2, 200) | st.sampled_from([0, 31, 32, 168, 169, 180, 181, 1440, 1441])
    limit = wild(draw, st.none() | st.integers(1, 31), edges, 30)
    if limit is not None:
        kwargs["limit"] = limit
    names = st.sampled_from(ALL_FILTERS) | plain_text.filter(lambda n: n not in KEYWORDS_WITH_TIMEOUT)
    own = st.sampled_from([f.name for f in endpoint.filters])
    for name in draw(st.lists(st.one_of(own, own, names), max_size=2, unique=True)):
        is_bool = any(f.name == name and f.kind == "bool" for f in endpoint.filters)
        items = st.sampled_from(ENTITY_IDS) | st.sampled_from(CLOSED_VALUES) | plain_text
        kwargs[name] = draw(st.booleans()) if is_bool else draw(st.lists(items, min_size=1, max_size=3))
    return endpoint, kwargs


def raw_status(emulator: Emulator, endpoint: catalogue.Endpoint, kwargs: dict[str, Any]) -> tuple[int, str | None]:
    """The emulator's status and error param for the same parameters sent without the client's pre-flight."""
    # end_time as the client sends it: clamped to now (the live API refuses a future one, rules.effective_end)
    clamped = (
        {**kwargs, "end_time": min(end, EMULATOR_NOW)} if isinstance(end := kwargs.get("end_time"), int) else kwargs
    )
    items = [(k, v) for k, v in clamped.items() if k in ("start_time", "end_time", "bucket_width")]
    items += [(k, v) for k, v in kwargs.items() if k not in KEYWORDS]
    items += [("group_by", kwargs["group_by"]), ("limit", kwargs.get("limit"))]
    query = encode_query(items, "brackets")
    auth = {"authorization": f"Bearer {FAKE_ADMIN_KEY}"}
    response = emulator.handle(Request("GET", f"/v1{endpoint.path}", query, auth))
    if response.status == 200:
        return 200, None
    return response.status, json.loads(response.body)["error"]["param"]


@settings(settings.get_profile("fuzz"))
@given(case=plain_cases())
def test_the_client_refuses_exactly_what_the_emulator_refuses(
    in_process: dict[str, Client], emulator: Emulator, case: tuple[catalogue.Endpoint, dict[str, Any]]
) -> None:
    """For inputs both sides spell alike, the client refuses a case iff the emulator answers 400, same param."""
    endpoint, kwargs = case
    outcome = run_case(in_process["brackets"], Case(endpoint, "page", dict(kwargs)))
    status, param = raw_status(emulator, endpoint, kwargs)
    if outcome == "sent":
        assert status == 200
    elif isinstance(end := kwargs.get("end_time"), int) and end > EMULATOR_NOW:
        # an end past now is clamped to now first (both sides then see [start, now)), and the client names the start
        # it refuses (`--start now`), where the emulator, given the clamped end, names the end: both refuse
        assert status == 400, f"client refused {outcome!r}; emulator said {status} {param}"
    else:
        assert (status, param) == (400, outcome), f"client refused {outcome!r}; emulator said {status} {param}"


# --- arbitrary time strings -------------------------------------------------------------------------------


@settings(settings.get_profile("fuzz"))
@given(
    text=any_text | time_strings | st.text("0123456789", min_size=1, max_size=5000),
    param=st.sampled_from(["start_time", "since"]),
)
def test_to_unix_reads_a_time_or_refuses_naming_the_parameter(text: str, param: str) -> None:
    """to_unix on any string gives Unix seconds in range or a ParameterError naming the parameter, nothing else."""
    try:
        value = timeutil.to_unix(text, now=EMULATOR_NOW, param=param)
    except ParameterError as exc:
        assert exc.param == param and str(exc).startswith(f"{param}: ")
        assert len(str(exc)) < 400
    else:
        assert 0 <= value <= timeutil.MAX_UNIX


@settings(settings.get_profile("fuzz"), max_examples=EXAMPLES // 6)
@given(start=any_text | time_strings | near_now.map(str) | st.integers(10**11, 10**40).map(str))
def test_cli_start_gives_rows_or_a_one_line_error_naming_start(emulator_url: str, start: str) -> None:
    """`usageledger query costs --start <anything>` exits 0, or 1 with one line naming --start; no traceback."""
    end_at = datetime.fromtimestamp(EMULATOR_NOW, UTC) - timedelta(days=10)
    try:
        parsed = timeutil.to_unix(start)
    except ParameterError:
        parsed = None
    # A start decades back is read fine but means a hundred requests of empty buckets: not what this test is for.
    assume(parsed is None or parsed > end_at.timestamp() - 365 * DAY)
    end = end_at.date().isoformat()
    args = [
        "query",
        "costs",
        "--start",
        start,
        "--end",
        end,
        "--base-url",
        emulator_url,
        "-f",
        "csv",
        "--limit-rows",
        "1",
    ]
    result = CliRunner().invoke(app, args, env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "COLUMNS": "200"})
    assert "Traceback" not in result.output + result.stderr
    if result.exit_code == 0:
        assert result.stdout.startswith("endpoint,bucket_start")
        return
    assert result.exit_code in (1, 2), (result.exit_code, result.stderr, result.exception)
    if result.exit_code == 1:
        assert result.stderr.startswith(("error: --start: ", "error: --end: ")), result.stderr


# --- the emulator on hostile query strings ----------------------------------------------------------------

query_names = st.sampled_from([*sorted(KEYWORDS - {"endpoint"}), *ALL_FILTERS]).flatmap(
    lambda n: st.sampled_from([n, f"{n}[]"])
) | st.text(max_size=8)
query_values = st.one_of(
    st.integers().map(str),
    near_now.map(str),
    st.sampled_from([*BUCKET_WIDTHS, *ALL_GROUP_FIELDS, *CLOSED_VALUES, *ENTITY_IDS[:5], "true", "false", ""]),
    st.text(max_size=16),
    st.sampled_from(["1e5", "-0", "0x10", " 7", "9" * 5000, "page_AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "%", "a,b,,c"]),
)


@settings(settings.get_profile("fuzz"))
@given(
    endpoint=st.sampled_from(catalogue.ENDPOINTS),
    items=st.lists(st.tuples(query_names, query_values), max_size=8),
    start=st.none() | near_now,
)
def test_the_emulator_answers_any_query_string_with_a_page_or_a_400(
    emulator: Emulator, endpoint: catalogue.Endpoint, items: list[tuple[str, str]], start: int | None
) -> None:
    """Raw, hostile query strings never crash the emulator: a 200 usage page or a 400 in the OpenAI error shape."""
    pairs = ([("start_time", str(start))] if start is not None else []) + items
    auth = {"authorization": f"Bearer {FAKE_ADMIN_KEY}"}
    response = emulator.handle(Request("GET", f"/v1{endpoint.path}", urlencode(pairs), auth))
    assert response.status in (200, 400), response
    if response.status == 200:
        assert decode_page(response.body).object == "page"
    else:
        error = json.loads(response.body)["error"]
        assert error["message"] and error["type"] == "invalid_request_error"
        assert error["param"] is None or isinstance(error["param"], str)
