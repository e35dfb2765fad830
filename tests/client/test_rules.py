"""The live API's parameter rules and window planning."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usageledger import catalogue
from usageledger.catalogue import BUCKET_SECONDS, ENDPOINTS
from usageledger.rules import QueryParams, Window, bucket_starts, check, count_buckets, plan_windows

NOW = 1_795_176_000  # 2026-11-20T12:00:00Z


def q(**kw: object) -> QueryParams:
    return QueryParams(**{"start_time": 1_767_225_600, **kw})  # type: ignore[arg-type]


def test_valid_query_passes() -> None:
    """A plain query with defaults breaks no rule."""
    assert check(catalogue.get("completions"), q(group_by=("model",)), now=NOW) is None


def test_limit_over_the_maximum_has_the_live_message() -> None:
    """A limit over the maximum is refused with the live API's wording, never clamped."""
    v = check(catalogue.get("costs"), q(limit=366), now=NOW)
    assert v is not None and v.param == "limit"
    assert v.message == "Invalid limit provided: 366. Limit must be less than or equal to 180."


@pytest.mark.parametrize(("width", "maximum"), [("1d", 31), ("1h", 168), ("1m", 1440)])
def test_limit_maximum_per_width(width: str, maximum: int) -> None:
    """Each width accepts its maximum and refuses one more."""
    e = catalogue.get("embeddings")
    assert check(e, q(bucket_width=width, limit=maximum), now=NOW) is None
    assert check(e, q(bucket_width=width, limit=maximum + 1), now=NOW) is not None
    assert check(e, q(bucket_width=width, limit=0), now=NOW) is not None


def test_costs_accepts_only_daily_buckets() -> None:
    """Costs with 1h is refused, naming '1d'."""
    v = check(catalogue.get("costs"), q(bucket_width="1h"), now=NOW)
    assert v is not None and v.param == "bucket_width" and "'1d'" in v.message and v.allowed == ("1d",)


def test_group_by_and_enum_filters_name_the_allowed_values() -> None:
    """Unknown group_by fields and filter values are refused with the allowed list."""
    v = check(catalogue.get("vector_stores"), q(group_by=("model",)), now=NOW)
    assert v is not None and v.param == "group_by" and v.allowed == ("project_id",)
    v = check(catalogue.get("web_search_calls"), q(filters={"context_levels": ("huge",)}), now=NOW)
    assert v is not None and v.param == "context_levels" and v.allowed == ("low", "medium", "high")
    v = check(catalogue.get("file_search_calls"), q(filters={"models": ("gpt-4o",)}), now=NOW)
    assert v is not None and v.param == "models"
    v = check(catalogue.get("completions"), q(filters={"batch": ("true",)}), now=NOW)
    assert v is not None and v.param == "batch"


def test_start_must_come_before_end_and_is_required() -> None:
    """end_time at or before start_time is refused; a missing start_time is refused."""
    e = catalogue.get("moderations")
    v = check(e, q(end_time=1_767_225_600), now=NOW)
    assert v is not None and v.param == "end_time"
    v = check(e, QueryParams(start_time=None), now=NOW)
    assert v is not None and v.param == "start_time"


def test_costs_api_key_grouping_cutoff() -> None:
    """Costs grouped by api_key_id before the cut-off is refused on start_time; after it, accepted."""
    costs = catalogue.get("costs")
    cutoff = catalogue.COSTS_API_KEY_GROUPING_CUTOFF
    v = check(costs, q(start_time=cutoff - 86400, group_by=("project_id", "api_key_id")), now=NOW)
    assert v is not None and v.param == "start_time"
    assert check(costs, q(start_time=cutoff, group_by=("api_key_id",)), now=NOW) is None


def test_future_end_time_is_refused_as_the_live_api_refuses_it() -> None:
    """An end_time in the future is the live API's 400 (reference §10); the client clamps before it checks."""
    v = check(catalogue.get("completions"), q(end_time=NOW + 10 * 86400), now=NOW)
    assert v is not None and v.param == "end_time"
    assert v.message == f"end_time ({NOW + 10 * 86400}) must not be in the future (now: {NOW}); omit it to end at now."
    assert check(catalogue.get("completions"), q(end_time=NOW), now=NOW) is None


def test_a_start_after_now_is_blamed_on_start_time() -> None:
    """`end_time (1796171145) must be greater than start_time (1796165745)` was said of an end that *was* greater,
    before it was clamped to now: a range that starts at or after now is refused on start_time, with the now it was
    compared with; without an end_time it passes (it holds no buckets)."""
    v = check(catalogue.get("completions"), q(start_time=NOW + 3600, end_time=NOW + 7200), now=NOW)
    assert v is not None and v.param == "start_time"
    assert v.message == f"start_time ({NOW + 3600}) must be before now ({NOW})."
    assert check(catalogue.get("completions"), q(start_time=NOW + 3600), now=NOW) is None


def test_windows_split_at_the_maximum() -> None:
    """70 days of daily buckets from an unaligned start split into 31 + 31 + 9 buckets, contiguous."""
    start = 1_767_225_600 + 1000
    windows = plan_windows(catalogue.get("completions"), start, start + 70 * 86400, "1d")
    assert [w.limit for w in windows] == [31, 31, 9]
    assert windows[0].start == start and windows[-1].end == start + 70 * 86400
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert windows[1].start % 86400 == 0


@given(
    endpoint=st.sampled_from(ENDPOINTS),
    start=st.integers(0, 2_000_000_000),
    span=st.integers(1, 3_000_000),
    width=st.sampled_from(["1m", "1h", "1d"]),
)
def test_windows_cover_every_bucket_once_within_limits(
    endpoint: catalogue.Endpoint, start: int, span: int, width: str
) -> None:
    """Windows partition the range, respect the maximum, and their limits add up to the bucket count."""
    if width not in endpoint.bucket_widths:
        width = "1d"
    if span // BUCKET_SECONDS[width] > 20_000:  # type: ignore[index]
        span = 20_000 * BUCKET_SECONDS[width]  # type: ignore[index]
    windows = plan_windows(endpoint, start, start + span, width)  # type: ignore[arg-type]
    maximum = endpoint.limit_for(width).maximum  # type: ignore[arg-type]
    assert all(isinstance(w, Window) and 1 <= w.limit <= maximum for w in windows)
    assert sum(w.limit for w in windows) == count_buckets(start, start + span, width)  # type: ignore[arg-type]
    starts = [b for w in windows for b in bucket_starts(w.start, w.end, width)]  # type: ignore[arg-type]
    assert starts == bucket_starts(start, start + span, width)  # type: ignore[arg-type]


# --- one check for requests and stream definitions ---------------------------------------------------------------

_DEFINITIONS = [
    ("costs", "1h", (), {}),
    ("costs", "1d", ("model",), {}),
    ("images", "1d", (), {"sizes": ("huge",)}),
    ("images", "1d", (), {"batch": True}),
    ("completions", "1d", (), {"colour": ("red",)}),
]


@pytest.mark.parametrize(("endpoint", "width", "group_by", "filters"), _DEFINITIONS)
def test_a_stream_definition_is_refused_with_the_request_rule_s_message(
    endpoint: str, width: str, group_by: tuple[str, ...], filters: dict[str, object]
) -> None:
    """Stream.create refuses a definition with the message rules.check gives a request of the same shape."""
    from usageledger.errors import ConfigError
    from usageledger.store.streams import Stream

    violation = check(
        catalogue.get(endpoint),
        q(bucket_width=width, group_by=group_by, filters=filters),
        now=NOW,
    )
    assert violation is not None
    with pytest.raises(ConfigError) as info:
        Stream.create(endpoint, width, group_by, filters)  # type: ignore[arg-type]
    assert str(info.value).endswith(f"{violation.param}: {violation.message}")


def test_a_stream_filter_of_blanks_is_refused_as_a_request_filter_is() -> None:
    """A filter value of only spaces is refused by Stream.create, as the client refuses it (it would match nothing)."""
    from usageledger.errors import ConfigError
    from usageledger.store.streams import Stream

    with pytest.raises(ConfigError, match=r"^filters\.models: .* holds an empty value"):
        Stream.create("completions", "1d", (), {"models": ["  "]})


def test_a_boolean_stream_filter_names_what_it_takes() -> None:
    """A boolean filter given a string says it takes true or false."""
    from usageledger.errors import ConfigError
    from usageledger.store.streams import Stream

    with pytest.raises(ConfigError, match=r"^filters\.batch: expected true or false, got 'yes'$"):
        Stream.create("completions", "1d", (), {"batch": "yes"})


def test_filter_value_is_one_type() -> None:
    """The rules, the store's streams and the emulator share the one FilterValue alias, not copies of it."""
    from usageledger import rules
    from usageledger.emulator import results
    from usageledger.store import streams

    assert streams.FilterValue is rules.FilterValue
    assert results.FilterValue is rules.FilterValue


@pytest.mark.parametrize("value", [[], (), "", "  ", [""], ["gpt-4o", " "]])
def test_an_empty_models_filter_is_refused_by_every_library_entry(value: object) -> None:
    """`--models ''` is refused on the command line; `models=[]` or `models=""` is refused alike by the client, the
    seed-compatible UsageApi, a stream's filters and a report's scope, by the one rule (`rules`), before any request:
    never read as "no filter" (every row) or as a filter that matches nothing (a spend of 0)."""
    import httpx

    from usageledger import Client, UsageApi
    from usageledger.errors import ConfigError, ParameterError
    from usageledger.report.queries import Scope
    from usageledger.store.streams import Stream

    def no_request(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"a request was sent: {request.url}")

    client = Client("sk-admin-" + "x" * 40, transport=httpx.MockTransport(no_request))
    calls = {
        "models": [
            lambda: client.page("completions", start_time=0, models=value),
            lambda: client.query("completions", start_time=0, models=value),
            lambda: UsageApi(client=client).usage_completions(start_time=0, models=value),
        ],
        "filters.models": [lambda: Stream.create("completions", "1d", (), {"models": value})],
        "model": [lambda: Scope(model=value)],  # type: ignore[arg-type]
    }
    for param, refused in calls.items():
        for call in refused:
            with pytest.raises((ParameterError, ConfigError)) as info:  # a stream's filters are its config's
                call()
            assert str(info.value).startswith(f"{param}: ") and "\n" not in str(info.value), info.value
