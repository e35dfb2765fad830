"""The sync's Arrow path reads every page exactly as the models do: the same rows, keys, checks and errors."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usageledger import catalogue, rows, rules
from usageledger.errors import ResponseDecodeError, StoreError
from usageledger.models import decode_page
from usageledger.store import Stream, WindowWrite
from usageledger.store.schema import table_for
from usageledger.store.streams import encode_group_key
from usageledger.sync._arrow import (
    ArrowPage,
    _fast,
    _from_models,
    _group_keys,
    _shape,
    arrow_readable,
    page_decoder,
    window_table,
)

from fixtures.data import EXAMPLES, FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

READABLE = [e for e in catalogue.ENDPOINTS if arrow_readable(e)]
COMPLETIONS = catalogue.get("completions")
TAG = "organization.usage.completions.result"


def _same(fast: ArrowPage, reference: ArrowPage) -> None:
    assert (fast.has_more, fast.next_page, fast.lo, fast.hi) == (
        reference.has_more,
        reference.next_page,
        reference.lo,
        reference.hi,
    )
    assert fast.rows.to_pylist() == reference.rows.to_pylist()


def _page(results: list[dict[str, Any]], **extra: Any) -> bytes:
    bucket = {"object": "bucket", "start_time": 1730419200, "end_time": 1730505600, "results": results}
    return json.dumps({"object": "page", "data": [bucket], "has_more": False, "next_page": None, **extra}).encode()


def test_every_usage_endpoint_takes_the_arrow_path_and_costs_does_not() -> None:
    assert {e.name for e in READABLE} == {e.name for e in catalogue.ENDPOINTS if not e.is_costs}


def test_a_costs_page_is_made_columns_equal_to_the_models_rows(emulator_url: str) -> None:
    """Costs has no Arrow reader: its page decoder gives the models' rows as columns, money exact, page by page."""
    costs = catalogue.get("costs")
    params = [
        ("start_time", EMULATOR_NOW - 5 * 86400),
        ("bucket_width", "1d"),
        ("limit", 5),
        *(("group_by", g) for g in costs.default_group_by),
    ]
    body = httpx.get(
        f"{emulator_url}{costs.path}", params=params, headers={"Authorization": f"Bearer {FAKE_ADMIN_KEY}"}
    ).content
    page = page_decoder(costs)(body)
    reference = decode_page(body)
    expected = [{k: v for k, v in row.items() if k != "endpoint"} for row in rows.flatten(costs, reference.data)]
    assert page.rows.num_rows > 0
    assert page.rows.to_pylist() == expected
    assert (page.has_more, page.next_page) == (reference.has_more, reference.next_page)
    assert (page.lo, page.hi) == (reference.data[0].start_time, reference.data[-1].end_time)


@pytest.mark.parametrize("endpoint", READABLE, ids=lambda e: e.name)
def test_emulator_pages_read_the_same_as_through_the_models(emulator_url: str, endpoint: catalogue.Endpoint) -> None:
    """A grouped hourly window from the emulator over HTTP, and the recorded example page of the endpoint."""
    window = rules.plan_windows(endpoint, EMULATOR_NOW - 3 * 86400, EMULATOR_NOW, "1h")[0]
    params = [
        ("start_time", window.start),
        ("end_time", window.end),
        ("bucket_width", "1h"),
        ("limit", window.limit),
        *(("group_by", g) for g in endpoint.default_group_by),
    ]
    body = httpx.get(
        f"{emulator_url}{endpoint.path}", params=params, headers={"Authorization": f"Bearer {FAKE_ADMIN_KEY}"}
    ).content
    page = page_decoder(endpoint)(body)
    assert page.rows.num_rows > 0
    _same(page, _from_models(endpoint, body))
    example = (EXAMPLES / f"{endpoint.name}.json").read_bytes()
    _same(page_decoder(endpoint)(example), _from_models(endpoint, example))
    shape = _shape(endpoint)
    assert shape is not None
    assert _fast(endpoint, shape, body) is not None  # read by Arrow itself, not handed to the models
    assert _fast(endpoint, shape, example) is not None


@pytest.mark.parametrize(
    ("body", "rows", "fast"),
    [
        # another endpoint's result: skipped with a warning, as the models do
        (
            _page([{"object": "organization.usage.embeddings.result", "input_tokens": 1, "num_model_requests": 1}]),
            0,
            False,
        ),
        # the seed-era array name
        (
            json.dumps(
                {
                    "object": "page",
                    "data": [
                        {
                            "object": "bucket",
                            "start_time": 1,
                            "end_time": 2,
                            "result": [{"object": TAG, "input_tokens": 1, "output_tokens": 2, "num_model_requests": 3}],
                        }
                    ],
                }
            ).encode(),
            1,
            False,
        ),
        # pretty-printed, with unknown fields at every level
        (
            json.dumps(
                {
                    "object": "page",
                    "region": "eu",
                    "data": [
                        {
                            "object": "bucket",
                            "start_time": 1,
                            "end_time": 2,
                            "extra": [1, {"a": None}],
                            "results": [
                                {
                                    "object": TAG,
                                    "input_tokens": 1,
                                    "output_tokens": 2,
                                    "num_model_requests": 3,
                                    "carbon": {"grams": 0.3},
                                }
                            ],
                        }
                    ],
                    "has_more": True,
                    "next_page": "page_2",
                },
                indent=2,
            ).encode(),
            1,
            True,
        ),
        # no buckets at all
        (b'{"object":"page","data":[],"has_more":false,"next_page":null}', 0, True),
        # a bucket without results, a page without has_more
        (b'{"object":"page","data":[{"object":"bucket","start_time":5,"end_time":9}],"has_more":false}', 0, True),
        (b'{"object":"page","data":[{"object":"bucket","start_time":5,"end_time":9}]}', 0, False),
        # an empty seed-era array beside the results
        (b'{"object":"page","data":[{"object":"bucket","start_time":5,"end_time":9,"result":[]}]}', 0, False),
    ],
    ids=[
        "foreign-result",
        "seed-era-result",
        "pretty-unknown-fields",
        "empty",
        "bucket-without-results",
        "no-has-more",
        "empty-seed-era-array",
    ],
)
def test_unusual_pages_read_the_same_as_through_the_models(
    body: bytes, rows: int, fast: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Each page gives what the models give, whichever path reads it; ``fast``: Arrow reads it itself."""
    caplog.set_level(logging.WARNING)
    shape = _shape(COMPLETIONS)
    assert shape is not None
    assert (_fast(COMPLETIONS, shape, body) is not None) is fast
    page = page_decoder(COMPLETIONS)(body)
    assert page.rows.num_rows == rows
    _same(page, _from_models(COMPLETIONS, body))


def test_code_interpreter_old_name_sessions_is_read_as_num_sessions() -> None:
    endpoint = catalogue.get("code_interpreter_sessions")
    result = {"object": "organization.usage.code_interpreter_sessions.result", "sessions": 4, "project_id": "p"}
    body = _page([result])
    shape = _shape(endpoint)
    assert shape is not None and _fast(endpoint, shape, body) is None  # the model renames it
    assert page_decoder(endpoint)(body).rows.column("num_sessions").to_pylist() == [4]


@pytest.mark.parametrize(
    "result",
    [
        {"object": TAG, "output_tokens": 2, "num_model_requests": 3},  # a required count missing
        {"object": TAG, "input_tokens": "1", "output_tokens": 2, "num_model_requests": 3},  # a count as a string
        {"object": TAG, "input_tokens": 1.5, "output_tokens": 2, "num_model_requests": 3},  # not an integer
        {"object": TAG, "input_tokens": 2**63, "output_tokens": 2, "num_model_requests": 3},  # past int64
        {"object": TAG, "input_tokens": 1, "output_tokens": 2, "num_model_requests": 3, "model": 7},  # id as number
    ],
    ids=["missing", "string", "float", "overflow", "number-id"],
)
def test_a_page_the_models_refuse_is_refused_alike(result: dict[str, Any]) -> None:
    """The refusal is the models' ResponseDecodeError, which the attempt loop retries like a lost response."""
    body = _page([result])
    with pytest.raises(ResponseDecodeError):
        page_decoder(COMPLETIONS)(body)


@pytest.mark.parametrize(
    "body",
    [b"<html>bad gateway</html>", b'{"object":"page","data":[', b"", b"[1, 2]", b'{"data":[],"has_more":null}'],
)
def test_a_body_that_is_not_a_page_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(ResponseDecodeError):
        page_decoder(COMPLETIONS)(body)


_VALUE = st.one_of(st.none(), st.booleans(), st.text(max_size=6), st.sampled_from(['"', "\\", "\n", "é", "null"]))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=3).flatmap(lambda k: st.lists(st.tuples(*[_VALUE] * k), max_size=6)))
def test_group_keys_equal_encode_group_key(rows: list[tuple[Any, ...]]) -> None:
    """Kernels build the same key text as encode_group_key, for nulls, booleans and strings JSON must escape."""
    width = len(rows[0]) if rows else 0
    names = [f"g{i}" for i in range(width)]
    columns = {}
    for i, name in enumerate(names):
        values = [r[i] for r in rows]
        kinds = {type(v) for v in values if v is not None}
        column_type = pa.bool_() if kinds == {bool} else pa.string()
        columns[name] = pa.array([v if v is None or column_type == pa.bool_() else str(v) for v in values], column_type)
    table = pa.table(columns) if columns else pa.table({"x": pa.array([0] * len(rows))})
    expected = [encode_group_key([table.column(n)[j].as_py() for n in names]) for j in range(len(rows))]
    assert _group_keys(table, names).to_pylist() == expected


def _write(stream: Stream, lo: int, hi: int) -> WindowWrite:
    return WindowWrite("acme", stream, (), lo, hi, "run", 0)


def test_window_table_refuses_a_group_twice_in_a_bucket_and_a_bucket_outside_the_window() -> None:
    stream = Stream.create(COMPLETIONS, bucket_width="1d", group_by=("model",))
    result = {"object": TAG, "input_tokens": 1, "output_tokens": 2, "num_model_requests": 3, "model": "m"}
    twice = page_decoder(COMPLETIONS)(_page([result, {**result, "input_tokens": 5}]))
    with pytest.raises(StoreError, match="the same group twice in one bucket"):
        window_table(table_for(COMPLETIONS), _write(stream, 1730419200, 1730505600), [twice])
    once = page_decoder(COMPLETIONS)(_page([result]))
    with pytest.raises(StoreError, match="a bucket starting at 1730419200 lies outside"):
        window_table(table_for(COMPLETIONS), _write(stream, 1730505600, 1730592000), [once])
    table = window_table(
        table_for(COMPLETIONS),
        _write(stream, 1730419200, 1730505600),
        [once, once.__class__(False, None, once.rows.slice(0, 0), None, None)],
    )
    assert table.schema == table_for(COMPLETIONS).arrow_schema()
    assert table.column("group_key").to_pylist() == ['["m"]']
    assert table.column("org").to_pylist() == ["acme"] and table.column("stream").to_pylist() == [stream.id]
