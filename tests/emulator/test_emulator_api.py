"""The emulator against the outside world: the official SDK, the public OpenAPI spec, live error rules, paging."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml
from werkzeug.datastructures import Headers, ImmutableMultiDict

from usageledger import catalogue
from usageledger.emulator import Emulator, EmulatorConfig, FaultConfig
from usageledger.emulator.cursor import INVALID_TOKEN_MESSAGE
from usageledger.errors import EmulatorConfigError

from fixtures.data import EXAMPLES, FAKE_ADMIN_KEY, SPEC
from fixtures.emulator import EMULATOR_NOW

if TYPE_CHECKING:
    # Imported where used: every pytest-xdist worker imports every test module to collect it, and the openai SDK
    # and openapi-core cost ~0.6 s of CPU to import; only the worker that runs these tests pays it.
    from openai import OpenAI
    from openapi_core import OpenAPI
    from openapi_core.datatypes import RequestParameters

KEY = {"Authorization": f"Bearer {FAKE_ADMIN_KEY}"}
DAY = 86400
TODAY = EMULATOR_NOW - EMULATOR_NOW % DAY
START = TODAY - 14 * DAY


@pytest.fixture(scope="module")
def api(emulator: Emulator) -> Iterator[httpx.Client]:
    """An httpx client on the shared emulator's in-process transport."""
    with httpx.Client(transport=emulator.transport(), base_url="http://emulator/v1", headers=KEY) as client:
        yield client


@pytest.fixture(scope="module")
def sdk(emulator_url: str) -> Iterator[OpenAI]:
    """The official openai SDK pointed at the loopback emulator."""
    from openai import OpenAI

    client = OpenAI(admin_api_key=FAKE_ADMIN_KEY, base_url=emulator_url, max_retries=0)
    yield client
    client.close()


def error_of(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "param", "code"}
    assert r.headers["x-request-id"].startswith("req_")
    return body["error"]


# --- the official SDK -------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", catalogue.ENDPOINTS, ids=lambda e: e.name)
def test_openai_sdk_calls_and_parses_every_endpoint(sdk: OpenAI, endpoint: catalogue.Endpoint) -> None:
    """client.admin.organization.usage.<endpoint>(...) with group_by parses every emulator response."""
    method = getattr(sdk.admin.organization.usage, endpoint.sdk_method)
    page = method(start_time=START, limit=3, group_by=list(endpoint.default_group_by))
    assert page.object == "page" and len(page.data) == 3 and page.has_more is True
    results = [r for b in page.data for r in b.results]
    assert results and all(r.object == endpoint.result_object for r in results)
    following = method(start_time=START, limit=3, group_by=list(endpoint.default_group_by), page=page.next_page)
    assert following.data[0].start_time == page.data[-1].end_time


def test_openai_sdk_sends_filters_the_emulator_honours(sdk: OpenAI, emulator: Emulator) -> None:
    """The SDK's bracket arrays and booleans filter rows as asked."""
    project = emulator.source.org.projects[0].id  # type: ignore[attr-defined]
    page = sdk.admin.organization.usage.completions(
        start_time=START, project_ids=[project], batch=False, group_by=["project_id", "batch"], limit=7
    )
    rows = [r for b in page.data for r in b.results]
    assert rows and all(r.project_id == project and r.batch is False for r in rows)


def test_decisions_fit_the_sdk_model_exactly(api: httpx.Client) -> None:
    """Decisions (not in the YAML) carry exactly the SDK model's fields, and the SDK model parses them."""
    from openai.types.admin.organization.usage_decisions_response import DataResult, UsageDecisionsResponse

    body = api.get("/organization/usage/decisions", params={"start_time": START, "group_by": "model,api_source"}).json()
    UsageDecisionsResponse.model_validate(body)
    known = set(DataResult.model_fields)
    example = json.loads((EXAMPLES / "decisions.json").read_text())["data"][0]["results"][0]
    rows = [r for b in body["data"] for r in b["results"]]
    assert rows and all(set(r) <= known and set(r) == set(example) for r in rows)


# --- the public OpenAPI spec ------------------------------------------------------------------------------


@dataclass
class _SpecRequest:
    path: str
    query: list[tuple[str, str]]
    host_url: str = "https://api.openai.com"
    method: str = "get"
    body: bytes | None = None
    content_type: str = "application/json"
    parameters: RequestParameters = field(init=False)

    def __post_init__(self) -> None:
        from openapi_core.datatypes import RequestParameters

        self.parameters = RequestParameters(query=ImmutableMultiDict(self.query), header=Headers(KEY))


@dataclass
class _SpecResponse:
    data: bytes
    status_code: int = 200
    content_type: str = "application/json"
    headers: Headers = field(default_factory=Headers)


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    """The public usage/costs slice of openai-openapi, with its result discriminator made explicit.

    The YAML's ``discriminator: {propertyName: object}`` has no ``mapping``, so OpenAPI's implicit rule looks for a
    schema named after each ``object`` value (``organization.usage.completions.result``), which does not exist. The
    mapping added here sends each value to the schema whose ``object`` enum holds it, so every result is still
    validated against its own schema.
    """
    from openapi_core import OpenAPI

    document = yaml.safe_load(SPEC.read_text())
    schemas = document["components"]["schemas"]
    items = schemas["UsageTimeBucket"]["properties"]["results"]["items"]
    mapping = {}
    for option in items["oneOf"]:
        name = option["$ref"].rsplit("/", 1)[1]
        (value,) = schemas[name]["properties"]["object"]["enum"]
        mapping[value] = option["$ref"]
    items["discriminator"]["mapping"] = mapping
    return OpenAPI.from_dict(document)


@pytest.mark.parametrize("endpoint", [e for e in catalogue.ENDPOINTS if e.in_yaml], ids=lambda e: e.name)
def test_responses_validate_against_the_public_spec(
    api: httpx.Client, spec: OpenAPI, endpoint: catalogue.Endpoint
) -> None:
    """Ungrouped and grouped pages of every YAML endpoint validate against usage-api.yaml."""
    yaml_groups = [g for g in endpoint.default_group_by if g != "api_source"]
    for params in ({"start_time": START, "limit": 3}, {"start_time": START, "limit": 3, "group_by": yaml_groups}):
        r = api.get(endpoint.path, params=params)
        assert r.status_code == 200
        query = [(k, str(v)) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
        spec.validate_response(_SpecRequest("/v1" + endpoint.path, query), _SpecResponse(r.content))


def test_minute_and_hour_pages_validate_too(api: httpx.Client, spec: OpenAPI) -> None:
    """Minute and hour pages of completions validate against the spec."""
    for width, limit in (("1m", 1440), ("1h", 168)):
        params = {"start_time": str(TODAY - DAY), "bucket_width": width, "limit": str(limit)}
        r = api.get("/organization/usage/completions", params=params)
        path = "/v1/organization/usage/completions"
        spec.validate_response(_SpecRequest(path, list(params.items())), _SpecResponse(r.content))


# --- live error rules (reference §7, §10) -----------------------------------------------------------------


def test_limit_over_the_maximum_is_rejected_with_the_live_message(api: httpx.Client) -> None:
    """limit above the maximum gets 400 with the live wording (never clamped)."""
    r = api.get("/organization/costs", params={"start_time": START, "limit": 366})
    assert r.status_code == 400
    err = error_of(r)
    assert err["message"] == "Invalid limit provided: 366. Limit must be less than or equal to 180."
    assert err["param"] == "limit" and err["type"] == "invalid_request_error"
    for width, maximum in (("1d", 31), ("1h", 168), ("1m", 1440)):
        r = api.get(
            "/organization/usage/completions", params={"start_time": START, "bucket_width": width, "limit": maximum + 1}
        )
        assert r.status_code == 400 and f"less than or equal to {maximum}." in error_of(r)["message"]


def test_costs_accept_daily_buckets_only(api: httpx.Client) -> None:
    """Costs with bucket_width=1h is a 400 naming '1d'."""
    r = api.get("/organization/costs", params={"start_time": START, "bucket_width": "1h"})
    assert r.status_code == 400
    err = error_of(r)
    assert "'1d'" in err["message"] and err["param"] == "bucket_width"


def test_missing_start_time_is_a_400_naming_it(api: httpx.Client) -> None:
    """Without start_time the answer is 400 with param start_time."""
    r = api.get("/organization/usage/embeddings")
    assert r.status_code == 400 and error_of(r)["param"] == "start_time"


def test_costs_api_key_grouping_before_the_cutoff_is_refused(api: httpx.Client) -> None:
    """Costs grouped by api_key_id (alone or with others) before the cut-off: 400 with param start_time."""
    early = catalogue.COSTS_API_KEY_GROUPING_CUTOFF - DAY
    for group_by in ("api_key_id", "project_id,api_key_id"):
        r = api.get("/organization/costs", params={"start_time": early, "group_by": group_by})
        assert r.status_code == 400 and error_of(r)["param"] == "start_time"
    ok = api.get(
        "/organization/costs", params={"start_time": catalogue.COSTS_API_KEY_GROUPING_CUTOFF, "group_by": "api_key_id"}
    )
    assert ok.status_code == 200


def test_invalid_values_are_400s(api: httpx.Client) -> None:
    """Unknown group_by values, filter values, filters and non-integers answer 400 naming the parameter."""
    cases = {
        "group_by": {"group_by": "colour"},
        "sizes": {"sizes": "3x3"},
        "vector_store_ids": {"vector_store_ids": "vs_1"},
        "limit": {"limit": "ten"},
        "batch": {"batch": "maybe"},
    }
    for param, extra in cases.items():
        r = api.get("/organization/usage/images", params={"start_time": START, **extra})
        if param == "batch":
            r = api.get("/organization/usage/completions", params={"start_time": START, **extra})
        assert r.status_code == 400, param
        assert error_of(r)["param"] == param


@pytest.mark.parametrize("raw", ["1_000", " 7", "7 ", "\uff17", "\u0663", "7.0", "0x7", "", "9" * 5000])
@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/organization/usage/images", "limit"),
        ("/organization/costs", "start_time"),
        ("/organization/usage/completions", "end_time"),
        ("/organization/users", "limit"),
    ],
)
def test_integers_are_ascii_digits_only(api: httpx.Client, path: str, param: str, raw: str) -> None:
    """start_time, end_time and limit take a sign and ASCII digits only: Python's int() let through "1_000",
    padded numbers and other scripts' digits ("\uff17" as 7), which an HTTP API refuses as not integers."""
    params = {"start_time": START, param: raw} if "usage" in path or "costs" in path else {param: raw}
    r = api.get(path, params=params)
    assert r.status_code == 400, raw
    assert error_of(r) == {
        "message": f"Invalid value for '{param}': '{raw}'. Expected an integer.",
        "type": "invalid_request_error",
        "param": param,
        "code": "invalid_type",
    }
    assert api.get(path, params={**params, param: "+7" if param == "limit" else str(START + DAY)}).status_code == 200


def test_page_token_is_bound_to_its_query(api: httpx.Client) -> None:
    """Re-sending next_page with any other parameter changed gets the live 400 wording."""
    params: dict[str, Any] = {"start_time": START, "limit": 2, "group_by": "model"}
    token = api.get("/organization/usage/completions", params=params).json()["next_page"]
    assert token.startswith("page_")
    assert api.get("/organization/usage/completions", params={**params, "page": token}).status_code == 200
    for change in ({"limit": 3}, {"group_by": "project_id"}, {"start_time": START + DAY}, {"models": "x"}):
        r = api.get("/organization/usage/completions", params={**params, **change, "page": token})
        assert r.status_code == 400
        err = error_of(r)
        assert err["message"] == INVALID_TOKEN_MESSAGE and err["param"] == "page"
    r = api.get("/organization/usage/embeddings", params={**params, "page": token})
    assert r.status_code == 400 and error_of(r)["message"] == INVALID_TOKEN_MESSAGE


def test_page_tokens_hold_base64_specials_and_must_be_sent_exactly(api: httpx.Client) -> None:
    """Tokens contain '+', '/' or '='; an unencoded '+' (read as a space) is refused."""
    tokens = []
    for start in range(START, START + 40 * 3600, 3600):
        page = api.get(
            "/organization/usage/moderations", params={"start_time": start, "bucket_width": "1h", "limit": 1}
        ).json()
        tokens.append((start, page["next_page"]))
    assert all(t.endswith("=") for _, t in tokens)
    start, plus = next((s, t) for s, t in tokens if "+" in t)
    assert any("/" in t for _, t in tokens)
    base = f"/organization/usage/moderations?start_time={start}&bucket_width=1h&limit=1"
    assert api.get(f"{base}&page={plus.replace('+', '%2B').replace('/', '%2F').replace('=', '%3D')}").status_code == 200
    assert api.get(f"{base}&page={plus}").status_code == 400


def test_authentication_rules(emulator: Emulator) -> None:
    """Missing key 401, malformed header 401, project or user key 403 (missing scope), any sk-admin- key 200."""
    path = f"/organization/costs?start_time={START}"
    with httpx.Client(transport=emulator.transport(), base_url="http://emulator/v1") as client:
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Basic abc"}).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer"}).status_code == 401
        for key in ("sk-proj-abc123", "sk-abc123"):
            r = client.get(path, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 403 and "Missing scopes: api.usage.read" in error_of(r)["message"]
        r = client.get(path, headers={"Authorization": "Bearer not-a-key"})
        assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"
        assert client.get(path, headers={"Authorization": "Bearer sk-admin-anything"}).status_code == 200


def test_pinned_admin_key_accepts_only_that_key() -> None:
    """--admin-key pins one key; other admin keys get 401."""
    pinned = Emulator(EmulatorConfig(days=5, projects=1, now=EMULATOR_NOW, admin_key="sk-admin-the-one"))
    with httpx.Client(transport=pinned.transport(), base_url="http://emulator/v1") as client:
        path = f"/organization/costs?start_time={TODAY - DAY}"
        assert client.get(path, headers={"Authorization": "Bearer sk-admin-the-one"}).status_code == 200
        assert client.get(path, headers={"Authorization": "Bearer sk-admin-other"}).status_code == 401


def test_unknown_paths_are_404(api: httpx.Client) -> None:
    """Paths outside the catalogue, or without /v1, are 404 in the error shape."""
    for path in ("http://emulator/v1/organization/usage/tokens", "http://emulator/organization/costs"):
        r = api.get(path)
        assert r.status_code == 404 and error_of(r)["type"] == "invalid_request_error"
    assert api.post("/organization/costs").status_code == 404


# --- paging -----------------------------------------------------------------------------------------------


def test_paging_a_year_of_hourly_completions_returns_every_bucket_once(api: httpx.Client) -> None:
    """A year of hourly completions grouped by model, page by page: every hour once, in order, up to now."""
    start = TODAY - 365 * DAY
    params: dict[str, Any] = {"start_time": start, "bucket_width": "1h", "limit": 168, "group_by[]": "model"}
    starts: list[int] = []
    pages = 0
    token = None
    while True:
        page = api.get(
            "/organization/usage/completions", params={**params, **({"page": token} if token else {})}
        ).json()
        pages += 1
        starts += [b["start_time"] for b in page["data"]]
        if not page["has_more"]:
            assert page["next_page"] is None
            break
        token = page["next_page"]
    expected = list(range(start, EMULATOR_NOW, 3600))
    assert starts == expected
    assert pages == -(-len(expected) // 168)


def test_rate_limit_answers_validate_against_the_public_spec(spec: OpenAPI) -> None:
    """A 429 fault is the spec's TooManyRequests: the error body, with an integer Retry-After of at least 1."""
    limited = Emulator(EmulatorConfig(days=5, projects=1, now=EMULATOR_NOW, faults=FaultConfig(rate_429=1.0)))
    with httpx.Client(transport=limited.transport(), base_url="http://emulator/v1", headers=KEY) as client:
        r = client.get("/organization/costs", params={"start_time": START})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    response = _SpecResponse(r.content, 429, headers=Headers({"Retry-After": r.headers["retry-after"]}))
    spec.validate_response(_SpecRequest("/v1/organization/costs", [("start_time", str(START))]), response)


def test_retry_after_ms_is_sent_beside_the_whole_seconds_only_when_asked(spec: OpenAPI) -> None:
    """`retry_after_ms` adds `retry-after-ms: N` to a 429 (as some live 429s carry); `retry-after` stays whole
    seconds and the answer stays the spec's TooManyRequests. Without it, no such header: the default is the live one."""
    for retry_after_ms, expected in ((None, None), (20, "20"), (0, "0")):
        faults = FaultConfig(rate_429=1.0, retry_after_ms=retry_after_ms)
        limited = Emulator(EmulatorConfig(days=5, projects=1, now=EMULATOR_NOW, faults=faults))
        with httpx.Client(transport=limited.transport(), base_url="http://emulator/v1", headers=KEY) as client:
            r = client.get("/organization/costs", params={"start_time": START})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.headers.get("retry-after-ms") == expected
        response = _SpecResponse(r.content, 429, headers=Headers({"Retry-After": r.headers["retry-after"]}))
        spec.validate_response(_SpecRequest("/v1/organization/costs", [("start_time", str(START))]), response)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (-1, "-1 is negative"),
        (60_001, "60,001 is too long"),
        (1.5, "1.5 is not a whole number of milliseconds"),
        (True, "True is not a whole number of milliseconds"),
        ("20", "'20' is not a whole number of milliseconds"),
    ],
)
def test_a_retry_after_ms_out_of_range_is_refused_in_one_line_naming_it(value: object, said: str) -> None:
    with pytest.raises(EmulatorConfigError) as refused:
        FaultConfig(rate_429=0.1, retry_after_ms=value)  # type: ignore[arg-type]  # wrong types on purpose
    assert str(refused.value) == f"retry_after_ms: {said}; give whole milliseconds from 0 to 60,000, e.g. 20"
    assert refused.value.setting == "retry_after_ms"


def test_organisations_can_refuse_costs_by_user_and_project() -> None:
    """With refuse_costs_user_by_project, costs by user_id plus project_id grouping or filter is a 400."""
    strict = Emulator(EmulatorConfig(days=5, projects=2, now=EMULATOR_NOW, refuse_costs_user_by_project=True))
    project = strict.source.org.projects[0].id  # type: ignore[attr-defined]
    with httpx.Client(transport=strict.transport(), base_url="http://emulator/v1", headers=KEY) as client:
        for extra in ({"group_by": "user_id,project_id"}, {"group_by": "user_id", "project_ids": project}):
            r = client.get("/organization/costs", params={"start_time": TODAY - DAY, **extra})
            assert r.status_code == 400 and error_of(r)["param"] == "group_by"
        ok = client.get("/organization/costs", params={"start_time": TODAY - DAY, "group_by": "user_id,line_item"})
        assert ok.status_code == 200
