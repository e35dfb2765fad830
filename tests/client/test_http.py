"""The transport: configuration, query encoding, retries, error mapping, and keeping the key secret."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import gc
import logging
import pickle
import ssl
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from usageledger import AsyncClient, Client
from usageledger._http import (
    DEFAULT_TIMEOUT,
    ClientOptions,
    RetryPolicy,
    SyncHTTP,
    decide_retry,
    encode_query,
    parse_retry_after,
    tls_context,
)
from usageledger.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CertificateError,
    ClientClosedError,
    ConfigError,
    InsecureURLError,
    InternalServerError,
    NotFoundError,
    ParameterError,
    RateLimitError,
)

from fixtures.data import EXAMPLES, FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

CURSOR = "page_AAAA+bb/cc==="
EXAMPLE = (EXAMPLES / "completions.json").read_bytes()
NOW = 1_790_000_000.0


class Sleeps:
    """A fake monotonic clock whose sleep records the wait and moves the clock on, without waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self(seconds)


def no_wait(sleeps: Sleeps | None = None, **kw: object) -> RetryPolicy:
    s = sleeps or Sleeps()
    return RetryPolicy(
        sleep=s,
        async_sleep=s.async_sleep,
        monotonic=s.monotonic,
        random=lambda: 0.5,
        wall_clock=lambda: NOW,
        **kw,  # type: ignore[arg-type]
    )


def make_config(max_retries: int | None = None, **kw: object) -> ClientOptions:
    policy: RetryPolicy = kw.pop("retry", no_wait())  # type: ignore[assignment]
    if max_retries is not None:
        policy = dataclasses.replace(policy, max_retries=max_retries)
    return ClientOptions(api_key=FAKE_ADMIN_KEY, retry=policy, **kw)  # type: ignore[arg-type]


def serve(*responses: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering with ``responses`` in turn (an exception is raised as a failed connection)."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


def http(transport: httpx.MockTransport, sleeps: Sleeps | None = None, **kw: object) -> SyncHTTP:
    return SyncHTTP(make_config(retry=no_wait(sleeps), **kw), transport=transport)


def ok() -> httpx.Response:
    return httpx.Response(200, content=EXAMPLE, headers={"content-type": "application/json"})


def api_error(status: int, **headers: str) -> httpx.Response:
    body = {"error": {"type": "invalid_request_error", "message": "Bad limit", "param": "limit", "code": None}}
    return httpx.Response(status, json=body, headers={"x-request-id": "req_123", **headers})


# --- the retry decision (pure) ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(status: int) -> None:
    """408, 409, 429 and every 5xx are retried."""
    d = decide_retry(RetryPolicy(), retries_done=0, status_code=status, now=NOW, jitter=0.5)
    assert d.retry and str(status) in d.reason


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    """Other 4xx are final: retrying cannot help."""
    assert not decide_retry(RetryPolicy(), retries_done=0, status_code=status, now=NOW, jitter=0.5).retry


def test_no_response_is_retried() -> None:
    """A connection failure (no status) is retried."""
    d = decide_retry(RetryPolicy(), retries_done=1, status_code=None, now=NOW, jitter=0.25)
    assert d.retry and d.reason.startswith("no response")


def test_retries_are_bounded() -> None:
    """After max_retries retries the decision is to give up."""
    policy = RetryPolicy(max_retries=3)
    assert decide_retry(policy, retries_done=2, status_code=500, now=NOW, jitter=0.1).retry
    assert not decide_retry(policy, retries_done=3, status_code=500, now=NOW, jitter=0.1).retry


def test_backoff_is_exponential_full_jitter_and_capped() -> None:
    """The delay is jitter × min(max_delay, initial × 2^n)."""
    policy = RetryPolicy(max_retries=10, initial_delay=0.5, max_delay=8.0)
    delays = [decide_retry(policy, retries_done=n, status_code=503, now=NOW, jitter=1.0).delay for n in range(7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert decide_retry(policy, retries_done=2, status_code=503, now=NOW, jitter=0.25).delay == 0.5
    assert decide_retry(policy, retries_done=2, status_code=503, now=NOW, jitter=0.0).delay == 0.0


def test_retry_after_seconds_is_honoured_up_to_the_cap() -> None:
    """Retry-After replaces the backoff, but never beyond max_retry_after."""
    policy = RetryPolicy(max_retry_after=30.0)
    d = decide_retry(policy, retries_done=0, status_code=429, headers={"retry-after": "7"}, now=NOW, jitter=0.9)
    assert (d.retry, d.delay, d.server_asked) == (True, 7.0, True)
    d = decide_retry(policy, retries_done=0, status_code=429, headers={"retry-after": "3600"}, now=NOW, jitter=0.9)
    assert d.delay == 30.0


def test_retry_after_ms_wins_over_retry_after() -> None:
    """retry-after-ms is read first, as the official SDK does."""
    headers = {"retry-after-ms": "1500", "retry-after": "9"}
    assert parse_retry_after(headers, now=NOW) == 1.5


def test_retry_after_http_date() -> None:
    """An HTTP-date Retry-After becomes the seconds until that date."""
    when = format_datetime(datetime.fromtimestamp(NOW + 12, UTC), usegmt=True)
    assert parse_retry_after({"retry-after": when}, now=NOW) == pytest.approx(12.0)
    assert parse_retry_after({"retry-after": "not a date"}, now=NOW) is None
    assert parse_retry_after({}, now=NOW) is None


def test_x_should_retry_overrides_the_status() -> None:
    """x-should-retry: false stops a retry; true forces one."""
    no = decide_retry(
        RetryPolicy(), retries_done=0, status_code=503, headers={"x-should-retry": "false"}, now=NOW, jitter=0
    )
    yes = decide_retry(
        RetryPolicy(), retries_done=0, status_code=400, headers={"x-should-retry": "true"}, now=NOW, jitter=0
    )
    assert (no.retry, yes.retry) == (False, True)


# --- query strings ------------------------------------------------------------------------------------------

ITEMS: list[tuple[str, object]] = [
    ("start_time", 1730419200),
    ("end_time", None),
    ("models", ["gpt-4o", "o3 mini"]),
    ("batch", False),
    ("group_by", ["project_id", "model"]),
    ("user_ids", []),
    ("page", CURSOR),
]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (
            "brackets",
            "start_time=1730419200&models%5B%5D=gpt-4o&models%5B%5D=o3%20mini&batch=false"
            "&group_by%5B%5D=project_id&group_by%5B%5D=model&page=page_AAAA%2Bbb%2Fcc%3D%3D%3D",
        ),
        (
            "repeat",
            "start_time=1730419200&models=gpt-4o&models=o3%20mini&batch=false"
            "&group_by=project_id&group_by=model&page=page_AAAA%2Bbb%2Fcc%3D%3D%3D",
        ),
        (
            "comma",
            "start_time=1730419200&models=gpt-4o,o3%20mini&batch=false&group_by=project_id,model"
            "&page=page_AAAA%2Bbb%2Fcc%3D%3D%3D",
        ),
    ],
)
def test_encode_query_in_each_array_format(fmt: str, expected: str) -> None:
    """Arrays follow the chosen spelling; None and empty lists are left out; booleans are true/false."""
    assert encode_query(ITEMS, fmt) == expected  # type: ignore[arg-type]


def test_cursor_goes_back_byte_exact() -> None:
    """A cursor holding +, / and = is percent-encoded once and decodes to the same bytes on the server."""
    transport, seen = serve(ok())
    http(transport).get("/organization/usage/completions", [("start_time", 1), ("page", CURSOR)])
    url = seen[0].url
    assert url.params["page"] == CURSOR
    assert b"page=page_AAAA%2Bbb%2Fcc%3D%3D%3D" in url.query
    assert b"%25" not in url.query  # never double-encoded


# --- configuration ----------------------------------------------------------------------------------------


def test_missing_key_says_what_to_do() -> None:
    """No argument and no OPENAI_ADMIN_KEY is a ConfigError naming both fixes."""
    with pytest.raises(ConfigError, match=r"set OPENAI_ADMIN_KEY or pass api_key="):
        Client()


def test_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_ADMIN_KEY and OPENAI_BASE_URL are read once, in the constructor."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://proxy.example/v1/")
    transport, seen = serve(ok())
    client = Client(transport=transport)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://elsewhere.example/v1")
    client.page("completions", start_time=1730419200)
    assert client.base_url == "https://proxy.example/v1"
    assert str(seen[0].url).startswith("https://proxy.example/v1/organization/usage/completions?")
    assert seen[0].headers["authorization"] == f"Bearer {FAKE_ADMIN_KEY}"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit key and base URL beat the environment; the default base URL is the public API."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-from-env")
    transport, seen = serve(ok())
    Client("sk-admin-from-arg", transport=transport).page("costs", start_time=1730419200)
    assert seen[0].headers["authorization"] == "Bearer sk-admin-from-arg"
    assert str(seen[0].url).startswith("https://api.openai.com/v1/organization/costs?")


@pytest.mark.parametrize("url", ["http://api.example.com/v1", "http://10.0.0.8:8080/v1"])
def test_plain_http_to_a_remote_host_is_refused(url: str) -> None:
    """http:// to anything but loopback raises InsecureURLError unless explicitly allowed."""
    with pytest.raises(InsecureURLError, match="allow_insecure_http=True"):
        Client(FAKE_ADMIN_KEY, url)
    assert Client(FAKE_ADMIN_KEY, url, allow_insecure_http=True).base_url == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/v1", "http://127.8.9.10/v1", "http://localhost:1/v1", "http://[::1]:9/v1"]
)
def test_plain_http_to_loopback_is_fine(url: str) -> None:
    """Loopback (127.0.0.0/8, ::1, localhost) may use plain http."""
    assert Client(FAKE_ADMIN_KEY, url).base_url == url


def test_bad_base_url_and_array_format_are_config_errors() -> None:
    """A base URL without a scheme or host, or an unknown array format, fails in the constructor."""
    with pytest.raises(ConfigError, match="https://"):
        Client(FAKE_ADMIN_KEY, "api.openai.com/v1")
    with pytest.raises(ConfigError, match="array_format"):
        Client(FAKE_ADMIN_KEY, array_format="pipes")  # type: ignore[arg-type]


def test_config_is_immutable_and_with_options_copies() -> None:
    """Settings cannot be changed in place; with_options returns a changed copy and leaves the original alone."""
    client = Client(FAKE_ADMIN_KEY, max_retries=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        client._config.base_url = "https://evil.example/v1"  # type: ignore[misc]
    other = client.with_options(base_url="https://proxy.example/v1", array_format="comma", max_retries=0)
    assert (other.base_url, other.array_format, other.retry.max_retries) == ("https://proxy.example/v1", "comma", 0)
    assert (client.base_url, client.array_format, client.retry.max_retries) == (
        "https://api.openai.com/v1",
        "brackets",
        5,
    )


def test_timeouts_have_defaults_and_per_call_overrides() -> None:
    """Connect 5 s and read 60 s by default; a per-call timeout reaches the request."""
    assert (DEFAULT_TIMEOUT.connect, DEFAULT_TIMEOUT.read) == (5.0, 60.0)
    transport, seen = serve(ok())
    client = Client(FAKE_ADMIN_KEY, transport=transport)
    client.page("completions", start_time=1730419200)
    client.page("completions", start_time=1730419200, timeout=httpx.Timeout(2.0, connect=1.0))
    assert seen[0].extensions["timeout"] == {"connect": 5.0, "read": 60.0, "write": 60.0, "pool": 60.0}
    assert seen[1].extensions["timeout"] == {"connect": 1.0, "read": 2.0, "write": 2.0, "pool": 2.0}


# --- retries over a transport -----------------------------------------------------------------------------


def test_429_with_retry_after_is_retried_through() -> None:
    """Two 429s with Retry-After, then a page: the caller gets the page and we waited as told."""
    sleeps = Sleeps()
    transport, seen = serve(api_error(429, **{"retry-after": "2"}), api_error(429, **{"retry-after-ms": "250"}), ok())
    body = http(transport, sleeps).get("/organization/usage/completions", [("start_time", 1)])
    assert body == EXAMPLE and len(seen) == 3
    assert sleeps.calls == [2.0, 0.25]


def test_last_failure_raises_the_mapped_error() -> None:
    """When retries run out the last error is raised, never swallowed."""
    sleeps = Sleeps()
    transport, seen = serve(httpx.Response(503, text="upstream overloaded"))
    with pytest.raises(InternalServerError, match="upstream overloaded") as info:
        http(transport, sleeps, max_retries=3).get("/x", [])
    assert len(seen) == 4 and len(sleeps.calls) == 3
    assert info.value.status_code == 503


def test_max_retries_zero_sends_once() -> None:
    """max_retries=0 turns retries off."""
    transport, seen = serve(api_error(429))
    with pytest.raises(RateLimitError):
        http(transport, max_retries=0).get("/x", [])
    assert len(seen) == 1


def test_connection_errors_are_retried_then_raised_from_the_cause() -> None:
    """A refused connection is retried; the final APIConnectionError chains the httpx error."""
    transport, seen = serve(httpx.ConnectError("connection refused"))
    with pytest.raises(APIConnectionError, match="Check the base URL and the network") as info:
        http(transport).get("/x", [])
    assert len(seen) == 3
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert not isinstance(info.value, APITimeoutError)


def test_timeouts_raise_api_timeout_error() -> None:
    """A read timeout becomes APITimeoutError (a kind of APIConnectionError)."""
    transport, _ = serve(httpx.ReadTimeout("timed out"))
    with pytest.raises(APITimeoutError, match="raise timeout=") as info:
        http(transport, max_retries=0).get("/x", [])
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


def test_recovery_after_a_connection_error() -> None:
    """A dropped connection followed by a good answer returns the page."""
    transport, seen = serve(httpx.RemoteProtocolError("peer closed"), ok())
    assert http(transport).get("/x", []) == EXAMPLE and len(seen) == 2


def test_retry_decisions_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Each retry logs the attempt, the wait and the reason at debug level."""
    caplog.set_level(logging.DEBUG, logger="usageledger")
    transport, _ = serve(api_error(500), ok())
    http(transport).get("/organization/costs", [("start_time", 5)])
    (record,) = [r for r in caplog.records if r.name == "usageledger.http" and "retry" in r.getMessage()]
    assert record.levelno == logging.DEBUG
    assert "retry 1/2" in record.getMessage() and "HTTP 500" in record.getMessage()


# --- error mapping ----------------------------------------------------------------------------------------


def test_api_error_json_is_parsed_into_the_exception() -> None:
    """type, message, param, code and the request id are carried; the class follows the status."""
    transport, _ = serve(api_error(400))
    with pytest.raises(BadRequestError) as info:
        http(transport).get("/x", [])
    err = info.value
    assert (err.status_code, err.type, err.message, err.param, err.code, err.request_id) == (
        400,
        "invalid_request_error",
        "Bad limit",
        "limit",
        None,
        "req_123",
    )
    assert "param: limit" in str(err) and "req_123" in str(err)


@pytest.mark.parametrize(
    ("status", "cls"),
    [(401, AuthenticationError), (404, NotFoundError), (418, APIStatusError), (502, InternalServerError)],
)
def test_a_body_that_is_not_json_still_maps_by_status(status: int, cls: type[APIStatusError]) -> None:
    """An HTML error page maps to the status's class with a readable message."""
    transport, _ = serve(httpx.Response(status, text="<html><body>Gateway   trouble</body></html>"))
    with pytest.raises(cls) as info:
        http(transport, max_retries=0).get("/x", [])
    assert type(info.value) is cls and info.value.status_code == status
    assert "Gateway trouble" in info.value.message


def test_rate_limit_error_carries_retry_after() -> None:
    """A final 429 exposes how long the server asked to wait."""
    transport, _ = serve(api_error(429, **{"retry-after": "17"}))
    with pytest.raises(RateLimitError) as info:
        http(transport, max_retries=0).get("/x", [])
    assert info.value.retry_after == 17.0


# --- the key never leaks ----------------------------------------------------------------------------------


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


def test_key_is_absent_from_reprs() -> None:
    """Client, config, transport and retry policy reprs never show the key."""
    client = Client(FAKE_ADMIN_KEY)
    texts = [repr(client), str(client), repr(client._config), repr(client._http), repr(client.retry)]
    assert all(FAKE_ADMIN_KEY not in t for t in texts)
    assert "sk-admin-…" in repr(client)


def test_key_cannot_be_pickled_out() -> None:
    """Pickling a client (which would copy the key into bytes) is refused."""
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(Client(FAKE_ADMIN_KEY))


def test_key_is_absent_from_errors_tracebacks_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Status errors, connection errors, their tracebacks and debug logs never contain the key."""
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"type": "invalid_request_error", "message": f"Bad key {FAKE_ADMIN_KEY}", "param": None}}
    failures: list[Callable[[], httpx.Response]] = [
        lambda: httpx.Response(401, json=echo),
        lambda: httpx.Response(500, text=f"proxy saw Authorization: Bearer {FAKE_ADMIN_KEY}"),
    ]
    for failure in failures:
        transport = httpx.MockTransport(lambda request, f=failure: f())  # type: ignore[misc]
        with pytest.raises(APIStatusError) as info:
            Client(FAKE_ADMIN_KEY, transport=transport, retry=no_wait()).page("costs", start_time=1730419200)
        assert FAKE_ADMIN_KEY not in _everything_said(info.value)
        assert "sk-admin-…" in str(info.value)

    def refuse(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {FAKE_ADMIN_KEY}"
        raise httpx.ConnectError("connection refused")

    with pytest.raises(APIConnectionError) as conn:
        Client(FAKE_ADMIN_KEY, transport=httpx.MockTransport(refuse), retry=no_wait()).page(
            "costs", start_time=1730419200
        )
    assert FAKE_ADMIN_KEY not in _everything_said(conn.value)
    assert caplog.records and all(FAKE_ADMIN_KEY not in r.getMessage() for r in caplog.records)
    assert FAKE_ADMIN_KEY not in caplog.text


def _live_responses() -> int:
    """The ``httpx.Response`` objects alive in the collector's youngest generation: with the collector off, every
    object made since is there (only a collection moves objects to an older one), so a response a page left alive
    is counted, without walking the whole heap (which took seconds in a suite worker's heap)."""
    return sum(1 for o in gc.get_objects(generation=0) if isinstance(o, httpx.Response))


def test_every_error_survives_pickle_and_copy_without_the_key(emulator_url: str) -> None:
    """A worker process hands its exception back pickled: a status error (keyword-only ``status_code``) and a
    ParameterError (``param``, ``message``) came back as a TypeError from their ``__init__``, hiding the real error.
    They round-trip whole, attributes and message, and the pickle holds no key."""
    with Client(FAKE_ADMIN_KEY, emulator_url + "x", clock=lambda: EMULATOR_NOW, max_retries=0) as client:
        with pytest.raises(NotFoundError) as status:
            client.page("costs", start_time="3d")
        with pytest.raises(ParameterError) as parameter:
            client.page("costs", start_time="3d", bucket_width="1h")
    errors: list[Exception] = [status.value, parameter.value, ConfigError(f"bad {FAKE_ADMIN_KEY}")]
    for error in errors:
        data = pickle.dumps(error)
        assert FAKE_ADMIN_KEY.encode() not in data
        for again in (pickle.loads(data), copy.copy(error), copy.deepcopy(error)):
            assert type(again) is type(error) and str(again) == str(error) and again.args == error.args
            assert vars(again) == vars(error)
    assert pickle.loads(pickle.dumps(status.value)).status_code == 404
    assert pickle.loads(pickle.dumps(parameter.value)).allowed == ("1d",)


@pytest.mark.parametrize("path", ["/v1/organization", "/v1/organization/costs", "/", "/v1x", "/openai"])
def test_a_404_under_a_base_url_not_ending_in_v1_names_the_url_it_meant(emulator_url: str, path: str) -> None:
    """A 404 under `http://host:P/v1/organization` (or `http://host:P/`) said "for example
    https://api.openai.com/v1": the hint is now the given URL made to end in /v1; under a URL that ends in /v1
    already (an unknown ID, a proxy's path), the generic hint stays."""
    origin = emulator_url.removesuffix("/v1")
    client = Client(FAKE_ADMIN_KEY, origin + path, clock=lambda: EMULATOR_NOW, max_retries=0)
    with client, pytest.raises(NotFoundError) as info:
        client.page("costs", start_time="3d")
    assert info.value.hint == f"Check the base URL: it must end in /v1, so use {emulator_url}"
    assert str(info.value).endswith(info.value.hint)
    proxy = Client(FAKE_ADMIN_KEY, origin + "/api/v1", clock=lambda: EMULATOR_NOW, max_retries=0)
    with proxy, pytest.raises(NotFoundError) as generic:
        proxy.page("costs", start_time="3d")
    assert generic.value.hint == "Check the base URL: it must end in /v1 (for example https://api.openai.com/v1)"


def test_a_closed_client_says_so_in_the_package_error(emulator_url: str) -> None:
    """Using a client after close() (or after its with block) was httpx's bare RuntimeError 'Cannot send a request,
    as the client has been closed', outside the package's errors; now a ClientClosedError (still a RuntimeError)
    with the fix, for pages, queries and the directory, sync and async, and one naming a closed http_client=."""
    at = {"clock": lambda: EMULATOR_NOW}
    with Client(FAKE_ADMIN_KEY, emulator_url, **at) as client:
        assert client.page("costs", start_time="3d").data
    for call in (
        lambda: client.page("costs", start_time="3d"),
        lambda: list(client.costs(start_time="3d")),
        lambda: list(client.projects()),
    ):
        with pytest.raises(ClientClosedError, match=r"this client is closed .*; make a new client") as info:
            call()
        assert isinstance(info.value, RuntimeError)

    async def use_async() -> None:
        async with AsyncClient(FAKE_ADMIN_KEY, emulator_url, **at) as client:
            assert (await client.page("costs", start_time="3d")).data
        with pytest.raises(ClientClosedError, match=r"this client is closed"):
            await client.page("costs", start_time="3d")
        with pytest.raises(ClientClosedError, match=r"this client is closed"):
            await client.costs(start_time="3d").buckets()

    asyncio.run(use_async())
    shared = httpx.Client()
    client = Client(FAKE_ADMIN_KEY, emulator_url, http_client=shared, **at)
    shared.close()
    with pytest.raises(ClientClosedError, match=r"the http_client= this client was given is closed"):
        client.page("costs", start_time="3d")


def test_a_read_response_goes_with_its_last_reference_sync_and_async(emulator_url: str) -> None:
    """httpx ties each response to its stream in a reference cycle; the attempt loops break it once the body is
    read, so a page's response (and its body of megabytes) is freed at once, not at the cyclic collector's next
    pass. With the collector off, no response is left alive after a page, on either transport."""
    query = {"start_time": EMULATOR_NOW - 7 * 86400, "bucket_width": "1h", "limit": 168}

    async def one_async() -> None:
        async with AsyncClient(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
            assert (await client.page("completions", **query)).data

    gc.disable()  # from here on nothing is collected and nothing leaves generation 0 (see _live_responses)
    try:
        before = _live_responses()
        with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
            assert client.page("completions", **query).data
        assert _live_responses() == before
        asyncio.run(one_async())
        assert _live_responses() == before
    finally:
        gc.enable()


def test_the_clients_of_a_process_load_the_certificates_once(
    monkeypatch: pytest.MonkeyPatch, emulator_url: str
) -> None:
    """Every client this process makes shares one TLS context (a sync makes two; each load took ~25 ms), and the
    clients still work."""
    made: list[ssl.SSLContext] = []
    create = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: made.append(create(*a, **k)) or made[-1])
    tls_context.cache_clear()
    clients = [Client(FAKE_ADMIN_KEY, emulator_url) for _ in range(3)]

    async def page_async() -> int:
        async with AsyncClient(FAKE_ADMIN_KEY, emulator_url) as client:
            return len((await client.page("costs", start_time=EMULATOR_NOW - 86400)).data)

    try:
        assert clients[2].page("costs", start_time=EMULATOR_NOW - 86400).data
        assert asyncio.run(page_async()) > 0
        assert len(made) == 1
    finally:
        for client in clients:
            client.close()


def test_certificates_that_cannot_be_loaded_raise_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SSL_CERT_FILE naming a missing file: making a client raises CertificateError (a ConfigError) naming it and the
    fix, not a bare OSError; with a transport of its own a client needs no certificates."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "gone.pem"))
    tls_context.cache_clear()
    try:
        with pytest.raises(CertificateError, match=r"SSL_CERT_FILE=.*gone\.pem: No such file or directory; point it"):
            Client(FAKE_ADMIN_KEY, "https://api.openai.com/v1")
        with pytest.raises(ConfigError):
            AsyncClient(FAKE_ADMIN_KEY, "https://api.openai.com/v1")
        Client(
            FAKE_ADMIN_KEY, "https://api.openai.com/v1", transport=httpx.MockTransport(lambda r: httpx.Response(500))
        ).close()
    finally:
        tls_context.cache_clear()
