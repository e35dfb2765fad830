"""Models tolerate the future: unknown fields and result types, the seed-era `result`, exact money."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import httpx
import pytest

from usageledger import Client, catalogue
from usageledger.models import CompletionsResult, CostsResult, OpaqueResult, decode_page

from fixtures.data import EXAMPLES, FAKE_ADMIN_KEY

FIRST = (EXAMPLES / "completions.json").read_bytes()
CURSOR = json.loads(FIRST)["next_page"]

SECOND = json.dumps(
    {
        "object": "page",
        "schema_version": "2027-01-01",
        "data": [
            {
                "object": "bucket",
                "start_time": 1730505600,
                "end_time": 1730592000,
                "region": "eu",
                "results": [
                    {
                        "object": "organization.usage.completions.result",
                        "input_tokens": 7,
                        "output_tokens": 3,
                        "num_model_requests": 1,
                        "input_cache_write_30m_tokens": 2,
                        "reasoning_tokens": 11,
                        "api_source": "some_future_source",
                        "carbon": {"grams": 0.3},
                    },
                    {
                        "object": "organization.usage.teleportation.result",
                        "num_jumps": 4,
                        "project_id": "proj_x",
                    },
                ],
            }
        ],
        "has_more": False,
        "next_page": None,
        "total": 2,
    }
).encode()


def test_second_page_with_unknown_fields_and_result_type_parses(caplog: pytest.LogCaptureFixture) -> None:
    """Following the cursor to a page with new fields and an unknown result object keeps every bucket."""
    caplog.set_level(logging.WARNING, logger="usageledger")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=SECOND if "page" in request.url.params else FIRST)

    client = Client(FAKE_ADMIN_KEY, transport=httpx.MockTransport(handler), clock=lambda: 1730592000)
    pages = list(client.query("completions", start_time=1730419200, end_time=1730592000).pages())
    assert seen[1].url.params["page"] == CURSOR
    assert [b.start_time for p in pages for b in p.data] == [1730419200, 1730505600]
    known, unknown = pages[1].data[0].results
    assert isinstance(known, CompletionsResult)
    assert (known.input_tokens, known.input_cache_write_30m_tokens, known.api_source) == (7, 2, "some_future_source")
    assert isinstance(unknown, OpaqueResult)
    assert unknown.object_name == "organization.usage.teleportation.result"
    assert unknown.fields == {"num_jumps": 4, "project_id": "proj_x"}
    assert "teleportation" in caplog.text


def test_rows_skip_unknown_results_but_keep_known_ones() -> None:
    """Flattening the tolerant page gives rows for the known results only."""
    client = Client(
        FAKE_ADMIN_KEY,
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=SECOND)),
        clock=lambda: 1730592000,
    )
    rows = list(client.query("completions", start_time=1730505600, end_time=1730592000).rows())
    assert [(r["bucket_start"], r["input_tokens"]) for r in rows] == [(1730505600, 7)]


def test_seed_era_result_array_is_accepted() -> None:
    """A bucket whose array is named `result` (the seed-era spec) decodes like `results`."""
    data = json.loads(FIRST)
    bucket = data["data"][0]
    bucket["result"] = bucket.pop("results")
    page = decode_page(json.dumps(data).encode())
    assert len(page.data[0].results) == 1 and page.data[0].results[0].input_tokens == 1000  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["0.06", "1234567.123456789012345678", "0", "1e-7", "12.50"])
def test_money_is_decimal_exactly_as_sent(text: str) -> None:
    """amount.value and quantity keep the digits the server sent."""
    body = (
        '{"object":"page","has_more":false,"next_page":null,"data":[{"object":"bucket","start_time":1,"end_time":2,'
        '"results":[{"object":"organization.costs.result","amount":{"value":' + text + ',"currency":"usd"},'
        '"quantity":' + text + ',"quantity_unit":"tokens","line_item":"gpt-6-astra, input_tokens"}]}]}'
    )
    (result,) = decode_page(body.encode()).data[0].results
    assert isinstance(result, CostsResult)
    assert result.amount_value == Decimal(text) and str(result.amount_value) == str(Decimal(text))
    assert result.quantity == Decimal(text)
    assert (result.currency, result.line_item) == ("usd", "gpt-6-astra, input_tokens")


@pytest.mark.parametrize("endpoint", catalogue.ENDPOINTS, ids=lambda e: e.name)
def test_every_endpoint_s_result_stays_typed_beside_an_unknown_one(endpoint: catalogue.Endpoint) -> None:
    """A page holding an unknown result takes the tolerant path; every catalogue endpoint's result is still decoded
    to its own type there, never kept as opaque (a new endpoint's model needs no second list to be known)."""
    page = json.loads((EXAMPLES / f"{endpoint.name}.json").read_text())
    known = page["data"][0]["results"][0]
    page["data"][0]["results"] = [{"object": "organization.usage.new_thing.result", "x": 1}, known]
    results = decode_page(json.dumps(page)).data[0].results
    assert type(results[0]) is OpaqueResult
    assert type(results[1]) is endpoint.result_type
