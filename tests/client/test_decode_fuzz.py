"""Hostile and arbitrary JSON never crashes or hangs the response decoder: a typed error or a tolerated parse."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usageledger import ResponseDecodeError, UsageResponse, catalogue, decode_page
from usageledger.models import OpaqueResult

from fixtures.data import EXAMPLES

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)
EXAMPLE_PAGES = [json.loads((EXAMPLES / f"{e.name}.json").read_text()) for e in catalogue.ENDPOINTS]
FIELD_NAMES = sorted(
    {c.name for e in catalogue.ENDPOINTS for c in e.columns}
    | {"object", "data", "results", "result", "start_time", "end_time", "has_more", "next_page", "amount", "value"}
)


def _decode(body: bytes) -> UsageResponse | None:
    try:
        page = decode_page(body)
    except ResponseDecodeError:
        return None
    assert isinstance(page, UsageResponse)
    return page


@given(json_values)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_json_is_a_typed_error_or_a_page(value: Any) -> None:
    """Any JSON document decodes to a UsageResponse or raises ResponseDecodeError."""
    _decode(json.dumps(value).encode())


@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_a_typed_error_or_a_page(body: bytes) -> None:
    """Random bytes never raise anything but ResponseDecodeError."""
    _decode(body)


def _mutate(page: Any, path: list[str | int], value: Any) -> Any:
    node = page
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return page


@given(
    page_index=st.integers(0, len(EXAMPLE_PAGES) - 1),
    field=st.sampled_from(FIELD_NAMES),
    value=json_values,
    where=st.sampled_from(["page", "bucket", "result"]),
)
@settings(max_examples=600)
def test_wrong_types_in_real_pages_are_typed_errors(page_index: int, field: str, value: Any, where: str) -> None:
    """A real page with one field replaced by any JSON value is a typed error or still a page."""
    page = json.loads(json.dumps(EXAMPLE_PAGES[page_index]))
    path: list[str | int] = {"page": [], "bucket": ["data", 0], "result": ["data", 0, "results", 0]}[where]
    _decode(json.dumps(_mutate(page, [*path, field], value)).encode())


def test_deep_nesting_is_refused_quickly() -> None:
    """100 000 levels of nesting inside an unknown result give a typed error, not a RecursionError."""
    nested = b"[" * 100_000 + b"]" * 100_000
    body = (
        b'{"object":"page","has_more":false,"data":[{"object":"bucket","start_time":1,"end_time":2,'
        b'"results":[{"object":"organization.usage.future.result","x":' + nested + b"}]}]}"
    )
    assert _decode(body) is None


def test_huge_numbers_are_typed_errors_or_exact() -> None:
    """Out-of-range integers are refused; a huge money value stays exact rather than becoming a float."""
    assert (
        _decode(b'{"object":"page","data":[{"object":"bucket","start_time":1' + b"0" * 400 + b',"end_time":2}]}')
        is None
    )
    assert _decode(b'{"object":"page","data":[{"object":"bucket","start_time":1e400,"end_time":2}]}') is None
    page = _decode(
        b'{"object":"page","data":[{"object":"bucket","start_time":1,"end_time":2,"results":[{"object":'
        b'"organization.costs.result","amount":{"value":12345678901234567890.123456789012345678,"currency":"usd"}}]}]}'
    )
    assert page is not None
    assert str(page.data[0].results[0].amount_value) == "12345678901234567890.123456789012345678"  # type: ignore[union-attr]


def test_unknown_objects_are_kept_opaque_next_to_known_ones() -> None:
    """An unknown result object is kept as OpaqueResult with its fields; the known result still parses."""
    page = _decode(
        b'{"object":"page","has_more":true,"next_page":"page_x","data":[{"object":"bucket","start_time":1,'
        b'"end_time":2,"results":[{"object":"organization.usage.teleport.result","jumps":3},'
        b'{"object":"organization.usage.embeddings.result","input_tokens":5,"num_model_requests":1,"new":1}]}]}'
    )
    assert page is not None and page.next_page == "page_x"
    opaque, known = page.data[0].results
    assert isinstance(opaque, OpaqueResult) and opaque.object_name == "organization.usage.teleport.result"
    assert opaque.fields == {"jumps": 3}
    assert known.input_tokens == 5  # type: ignore[union-attr]
