"""UsageApi, the seed's face: its methods and parameters, what goes over HTTP, and the parsed examples."""

from __future__ import annotations

import inspect
import json
import re
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from usageledger import AsyncClient, Client, UsageApi, catalogue
from usageledger.catalogue import Endpoint
from usageledger.errors import BadRequestError, ConfigError, ParameterError
from usageledger.models import UsageResponse

from fixtures.data import EXAMPLES, FAKE_ADMIN_KEY, SEED
from fixtures.emulator import EMULATOR_NOW

CURSOR = "page_AAAAAGdGxdEiJdKO+/AAAAAGcqsYA="
SEED_SIGNATURE = re.compile(r"^UsageResponse (usage_\w+)\((.*)\)$", re.MULTILINE)


def seed_methods() -> dict[str, list[str]]:
    """The Perl UsageApi's methods and their keyword parameters, read from the seed document itself."""
    text = SEED.read_text()
    return {name: re.findall(r"(\w+) => \$", args) for name, args in SEED_SIGNATURE.findall(text)}


def sample_args(endpoint: Endpoint, names: tuple[str, ...]) -> dict[str, Any]:
    """A value for every parameter in ``names``: two values per array, allowed values where the set is closed."""
    args: dict[str, Any] = {}
    for name in names:
        if name == "start_time":
            args[name] = 1730419200
        elif name == "end_time":
            args[name] = 1730505600
        elif name == "bucket_width":
            args[name] = "1d"
        elif name == "group_by":
            args[name] = list(endpoint.group_by[:2])
        elif name == "limit":
            args[name] = 3
        elif name == "page":
            args[name] = CURSOR
        else:
            f = endpoint.filter(name)
            if f.kind == "bool":
                args[name] = True
            elif f.allowed:
                args[name] = list(f.allowed[:2])
            else:
                args[name] = [f"{name}_a", f"{name} b/+"]
    return args


def parse_raw_query(query: bytes) -> list[tuple[str, str]]:
    """The query string as (key, value) pairs, percent-decoded once, with no other interpretation."""
    return [tuple(unquote(part).split("=", 1)) for part in query.decode().split("&")]  # type: ignore[misc]


def expected_pairs(args: dict[str, Any], array_format: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in args.items():
        if isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        elif isinstance(value, list):
            if array_format == "comma":
                pairs.append((name, ",".join(value)))
            else:
                key = f"{name}[]" if array_format == "brackets" else name
                pairs.extend((key, v) for v in value)
        else:
            pairs.append((name, str(value)))
    return pairs


def recording_api(endpoint: str, array_format: str = "brackets") -> tuple[UsageApi, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    raw = (EXAMPLES / f"{endpoint}.json").read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=raw, headers={"content-type": "application/json"})

    api = UsageApi(
        access_token=FAKE_ADMIN_KEY,
        transport=httpx.MockTransport(handler),
        array_format=array_format,  # type: ignore[arg-type]
        clock=lambda: 1_790_000_000,
    )
    return api, seen


def assert_same(model: Any, data: Any, where: str) -> None:
    """``model`` holds exactly ``data`` (JSON numbers with a fraction compared as exact Decimals)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "object":
                tag = type(model).__struct_config__.tag
                assert value == (tag if tag is not None else model.object), f"{where}.object"
                continue
            assert_same(getattr(model, key), value, f"{where}.{key}")
    elif isinstance(data, list):
        assert len(model) == len(data), where
        for i, (m, d) in enumerate(zip(model, data, strict=True)):
            assert_same(m, d, f"{where}[{i}]")
    else:
        assert type(model) is type(data) and model == data, f"{where}: {model!r} != {data!r}"


# --- the surface --------------------------------------------------------------------------------------------


def test_the_seed_documents_nine_methods() -> None:
    """Sanity for the parser below: the seed describes the nine methods the catalogue marks as seed endpoints."""
    assert sorted(seed_methods()) == sorted(e.seed_method for e in catalogue.SEED_ENDPOINTS)


@pytest.mark.parametrize("method", sorted(seed_methods()))
def test_seed_methods_take_exactly_the_seed_keywords_first(method: str) -> None:
    """Each seed method starts with exactly the Perl method's keyword parameters, then the newer filters."""
    params = inspect.signature(getattr(UsageApi, method)).parameters
    names = [n for n in params if n != "self"]
    seed = seed_methods()[method]
    endpoint = next(e for e in catalogue.ENDPOINTS if e.seed_method == method)
    assert names[: len(seed)] == seed
    assert names == list(endpoint.seed_params) + [f for f in endpoint.filter_names if f not in endpoint.seed_params]
    assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in names)
    assert [n for n in names if params[n].default is inspect.Parameter.empty] == ["start_time"]
    assert params["bucket_width"].default == "1d"


@pytest.mark.parametrize("endpoint", catalogue.ENDPOINTS, ids=lambda e: e.name)
def test_every_endpoint_has_a_method_accepting_all_its_filters(endpoint: Endpoint) -> None:
    """Every endpoint has usage_<name>, accepting every catalogue filter (newer ones included)."""
    params = inspect.signature(getattr(UsageApi, endpoint.seed_method)).parameters
    assert set(endpoint.filter_names) <= set(params)
    assert set(params) - {"self"} == set(endpoint.seed_params) | set(endpoint.filter_names)


# --- over HTTP ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("array_format", ["brackets", "repeat", "comma"])
@pytest.mark.parametrize("endpoint", catalogue.SEED_ENDPOINTS, ids=lambda e: e.name)
def test_every_seed_parameter_goes_over_http(endpoint: Endpoint, array_format: str) -> None:
    """Calling with every seed parameter sends each one, in the chosen array spelling, to the right path."""
    api, seen = recording_api(endpoint.name, array_format)
    args = sample_args(endpoint, endpoint.seed_params)
    getattr(api, endpoint.seed_method)(**args)
    (request,) = seen
    assert request.method == "GET"
    assert request.url.path == "/v1" + endpoint.path
    assert request.headers["authorization"] == f"Bearer {FAKE_ADMIN_KEY}"
    assert sorted(parse_raw_query(request.url.query)) == sorted(expected_pairs(args, array_format))
    assert request.url.params["page"] == CURSOR


@pytest.mark.parametrize("endpoint", catalogue.ENDPOINTS, ids=lambda e: e.name)
def test_newer_filters_go_over_http(endpoint: Endpoint) -> None:
    """Every filter of every endpoint (api_key_ids and line_items on costs, vector_store_ids, ...) is sent."""
    api, seen = recording_api(endpoint.name)
    args = sample_args(endpoint, ("start_time", *endpoint.filter_names))
    getattr(api, endpoint.seed_method)(**args)
    assert sorted(parse_raw_query(seen[0].url.query)) == sorted(
        expected_pairs({**args, "bucket_width": "1d"}, "brackets")
    )


@pytest.mark.parametrize("endpoint", catalogue.ENDPOINTS, ids=lambda e: e.name)
def test_each_example_parses_field_for_field(endpoint: Endpoint) -> None:
    """The reference example comes back as a UsageResponse holding exactly its fields, money as exact Decimal."""
    api, _ = recording_api(endpoint.name)
    page = getattr(api, endpoint.seed_method)(start_time=1730419200)
    assert isinstance(page, UsageResponse)
    data = json.loads((EXAMPLES / f"{endpoint.name}.json").read_bytes(), parse_float=Decimal)
    assert_same(page, data, endpoint.name)


def test_costs_money_is_exact() -> None:
    """0.06 in the costs example is Decimal('0.06'), not a binary float."""
    api, _ = recording_api("costs")
    result = api.usage_costs(start_time=1730419200).data[0].results[0]
    assert result.amount.value == Decimal("0.06")  # type: ignore[union-attr]
    assert str(result.amount.value) == "0.06"  # type: ignore[union-attr]


def test_booleans_go_as_true_and_false() -> None:
    """batch=False is sent as batch=false, never as 0 or False."""
    api, seen = recording_api("completions")
    api.usage_completions(start_time=1730419200, batch=False)
    assert b"batch=false" in seen[0].url.query


def test_unset_parameters_are_not_sent() -> None:
    """Parameters left at None are absent from the query string; bucket_width defaults to 1d."""
    api, seen = recording_api("vector_stores")
    api.usage_vector_stores(start_time=1730419200)
    assert seen[0].url.query == b"start_time=1730419200&bucket_width=1d"


# --- construction and errors --------------------------------------------------------------------------------


def test_default_base_url_includes_v1() -> None:
    """UsageApi defaults to https://api.openai.com/v1, as the Perl client does."""
    assert UsageApi(access_token=FAKE_ADMIN_KEY).base_url == "https://api.openai.com/v1"
    assert UsageApi(access_token=FAKE_ADMIN_KEY, base_url="http://127.0.0.1:9/v1").base_url == "http://127.0.0.1:9/v1"


def test_access_token_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without access_token the key comes from OPENAI_ADMIN_KEY; without either, a clear error."""
    with pytest.raises(ConfigError, match="OPENAI_ADMIN_KEY"):
        UsageApi()
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    assert "sk-admin-…" in repr(UsageApi()) and FAKE_ADMIN_KEY not in repr(UsageApi())


@pytest.mark.parametrize("token", [None, "", "  "])
def test_a_missing_access_token_is_named_as_usage_api_spells_it(token: str | None) -> None:
    """UsageApi's own argument is access_token=: a missing or blank one said "pass api_key=", Client's name."""
    with pytest.raises(ConfigError) as info:
        UsageApi(access_token=token)
    assert str(info.value) == "no admin API key: set OPENAI_ADMIN_KEY or pass access_token="
    with pytest.raises(ConfigError, match=r"^the admin key from access_token= \(sk-admin-…\) has a whitespace"):
        UsageApi(access_token="sk-admin-abc def")


def test_api_errors_raise_typed_exceptions_naming_the_parameter() -> None:
    """Where the Perl client dies, UsageApi raises BadRequestError with the API's param."""
    body = {"error": {"type": "invalid_request_error", "message": "Bad group", "param": "group_by", "code": None}}
    api = UsageApi(FAKE_ADMIN_KEY, transport=httpx.MockTransport(lambda r: httpx.Response(400, json=body)))
    with pytest.raises(BadRequestError) as info:
        api.usage_costs(start_time=1764979200, group_by=["user_id", "project_id"])
    assert info.value.param == "group_by" and "param: group_by" in str(info.value)


def test_rule_breaks_raise_before_sending() -> None:
    """A costs call with bucket_width=1h raises ParameterError naming bucket_width and '1d'."""
    api, seen = recording_api("costs")
    with pytest.raises(ParameterError, match=r"bucket_width.*'1d'"):
        api.usage_costs(start_time=1730419200, bucket_width="1h")
    assert seen == []


def test_usage_api_wraps_a_client() -> None:
    """UsageApi exposes its Client for range queries, and is a context manager."""
    api, _ = recording_api("completions")
    with api as same:
        assert same.client.query("completions", start_time=1730419200, end_time=1730505600).windows


def test_a_ready_client_is_not_given_settings_it_would_ignore(emulator_url: str) -> None:
    """UsageApi(access_token=..., client=c) sent every call with c's key, and base_url= or max_retries= beside a
    client were dropped the same way; an AsyncClient made every method return an unawaited coroutine. Each is
    refused in one line naming what would be ignored, and a Client alone is used as it is."""
    client = Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW)
    other_key = "sk-admin-" + "z" * 24
    for beside, named in [
        ({"access_token": other_key}, "access_token"),
        ({"base_url": "https://api.openai.com/v1"}, "base_url"),
        ({"max_retries": 0, "timeout": 3}, "max_retries, timeout"),
    ]:
        with pytest.raises(ConfigError, match=rf"takes its settings from the client; {named} would be ignored") as info:
            UsageApi(client=client, **beside)  # type: ignore[arg-type]
        assert other_key not in str(info.value)
    with pytest.raises(
        ConfigError, match=r"client= must be a usageledger.Client, got AsyncClient; UsageApi is blocking"
    ):
        UsageApi(client=AsyncClient(FAKE_ADMIN_KEY, emulator_url))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"client= must be a usageledger.Client, got str"):
        UsageApi(client="sk-admin-secret")  # type: ignore[arg-type]
    with UsageApi(client=client) as api:
        assert api.client is client and api.usage_costs(start_time="3d").data
