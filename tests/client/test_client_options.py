"""One options object: ``ClientOptions`` checks every setting, ``with_options`` goes through the constructor, and the
sync has one set of defaults (``SyncConfig.to_options()``)."""

from __future__ import annotations

import dataclasses
import pickle
import re
import tomllib
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from usageledger import AsyncClient, Client, UsageApi
from usageledger._options import DEFAULT_TIMEOUT, ClientOptions, RetryPolicy
from usageledger.cli import app
from usageledger.config import SyncConfig, default_config_text, parse_config
from usageledger.errors import ConfigError, InsecureURLError
from usageledger.sync import SyncOptions

from fixtures.data import EXAMPLES, FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

LOOPBACK = "http://127.0.0.1:9/v1"


def test_options_hide_the_key_and_refuse_pickling() -> None:
    """The key is a field left out of the repr; pickling the options is refused."""
    options = ClientOptions(api_key=FAKE_ADMIN_KEY)
    assert FAKE_ADMIN_KEY not in repr(options) and "api_key" not in repr(options)
    assert (options.base_url, options.timeout, options.retry.max_retries) == (
        "https://api.openai.com/v1",
        DEFAULT_TIMEOUT,
        2,
    )
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(options)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"base_url": "http://api.example.com/v1"}, InsecureURLError, "allow_insecure_http=True"),
        ({"timeout": -1}, ConfigError, "^timeout must be"),
        ({"array_format": "pipes"}, ConfigError, "^array_format must be one of"),
        ({"max_concurrency": 0}, ConfigError, "^max_concurrency must be at least 1"),
        ({"api_key": "sk-admin-ab cd"}, ConfigError, r"the admin key from api_key= \(sk-admin-…\) has a whitespace"),
        ({"api_key": " "}, ConfigError, "no admin API key: set OPENAI_ADMIN_KEY or pass api_key="),
    ],
)
def test_a_replaced_copy_is_checked_as_a_new_one(change: dict[str, Any], error: type[Exception], message: str) -> None:
    """dataclasses.replace runs the same checks as the constructor, with the same messages."""
    with pytest.raises(error, match=message):
        dataclasses.replace(ClientOptions(api_key=FAKE_ADMIN_KEY, base_url=LOOPBACK), **change)


@pytest.mark.parametrize("port", ["99999", "65536", "0"])
def test_a_base_url_port_out_of_range_is_refused_not_tried(port: str, tmp_path: Any) -> None:
    """`--base-url http://127.0.0.1:99999/v1` (a digit too many) was tried, retried and reported as "Connection
    refused"; `doctor` said the URL "does not answer". It is now refused when read, naming the port."""
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ConfigError, match=f"has port {port}, which no server listens on; give a port from 1 to 65535"):
        ClientOptions(api_key=FAKE_ADMIN_KEY, base_url=url)
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(
        app, ["doctor", "--base-url", url, "--store", str(tmp_path / "none.duckdb")]
    )
    assert f"has port {port}, which no server listens on" in done.output and "does not answer" not in done.output


@pytest.mark.parametrize(
    ("url", "shown", "why"),
    [
        (f"http://127.0.0.1:9/v1?key={FAKE_ADMIN_KEY}", "http://127.0.0.1:9/v1?key=sk-admin-…", "holds an API key"),
        (f"https://api.openai.com/v1/{FAKE_ADMIN_KEY}", "https://api.openai.com/v1/sk-admin-…", "holds an API key"),
        ("http://127.0.0.1:9/v1?token=XSECRETX", "http://127.0.0.1:9/v1?…", "has a query, which no request"),
        ("http://127.0.0.1:9/v1#XSECRETX", "http://127.0.0.1:9/v1#…", "has a fragment, which no request"),
    ],
)
def test_a_base_url_holding_a_key_or_a_query_is_refused_without_showing_it(url: str, shown: str, why: str) -> None:
    """`base_url=".../v1?key=sk-admin-..."` was kept, sent in every request line and shown whole by repr(Client);
    a query can reach no route (`/v1?x=1/organization/costs`). Both are refused naming the source, the value cut."""
    for face in (Client, AsyncClient):
        with pytest.raises(ConfigError) as info:
            face(FAKE_ADMIN_KEY, url)
        assert str(info.value).startswith(f"base_url=: the base URL {shown} {why}")
        assert FAKE_ADMIN_KEY not in repr(info.value) and "XSECRETX" not in repr(info.value)
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": url}).invoke(
        app, ["query", "costs", "--start", "2d"]
    )
    assert done.exit_code == 1 and done.output.startswith(f"error: OPENAI_BASE_URL: the base URL {shown} {why}")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("127.0.0.1:8787/v1", "must start with https://"),
        ("http://[::1", "is not a URL"),
        ("http://127.0.0.1:99999/v1", "has port 99999"),
    ],
)
def test_a_malformed_base_url_names_where_it_came_from(url: str, why: str) -> None:
    """`--base-url 127.0.0.1:8787/v1` said only "base URL ... must start with https://", never whether the flag,
    OPENAI_BASE_URL or base_url= gave it, as every other refusal of a base URL says. The flag's value is bad input
    (exit 2), the variable the set-up's (exit 1)."""
    with pytest.raises(ConfigError, match=rf"^base_url=: the base URL .* {why}"):
        Client(FAKE_ADMIN_KEY, url)
    for argv, environ, source in [
        (["--base-url", url], {}, "--base-url"),
        ([], {"OPENAI_BASE_URL": url}, "OPENAI_BASE_URL"),
    ]:
        done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, **environ}).invoke(
            app, ["query", "costs", "--start", "2d", *argv]
        )
        assert done.exit_code == (2 if source == "--base-url" else 1), done.output
        assert done.output.startswith(f"error: {source}: the base URL {url} {why}"), done.output


@pytest.mark.parametrize(
    ("url", "meant"),
    [
        ("http://127.0.0.1:9/v1?token=XSECRETX", "http://127.0.0.1:9/v1"),
        ("http://127.0.0.1:9/#top", "http://127.0.0.1:9/v1"),
        ("127.0.0.1:8787/v1", "http://127.0.0.1:8787/v1"),
        ("localhost:8787", "http://localhost:8787/v1"),
        ("api.openai.com/v1/organization", "https://api.openai.com/v1"),
    ],
)
def test_a_refused_base_url_gives_the_url_it_meant_as_its_example(url: str, meant: str) -> None:
    """`--base-url 127.0.0.1:8787/v1` or `.../v1?x=1` was told "e.g. https://api.openai.com/v1": the example is
    now the given URL with the slip mended (scheme added, query cut, path made to end in /v1)."""
    with pytest.raises(ConfigError) as info:
        Client(FAKE_ADMIN_KEY, url)
    assert str(info.value).endswith(f": {meant}") or str(info.value).endswith(f"e.g. {meant}"), info.value
    assert "XSECRETX" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "meant"),
    [
        ('"http://127.0.0.1:9/v1"', "http://127.0.0.1:9/v1"),
        ("'http://127.0.0.1:9'", "http://127.0.0.1:9/v1"),
        ('https://api.openai.com/v1"', "https://api.openai.com/v1"),
        ('"https://user:XSECRETX@api.openai.com/v1"', None),
    ],
)
def test_a_base_url_in_quotes_is_told_so(url: str, meant: str | None) -> None:
    """`OPENAI_BASE_URL='"http://127.0.0.1:8787/v1"'` (an env file keeps its quotes, as it does the key's) was told
    "must start with https:// (or http:// to loopback)", though it did, inside its quotes. It is told what the key
    is told, "has quotes around it; set it without them", with the URL meant (never a password it holds)."""
    with pytest.raises(ConfigError) as info:
        Client(FAKE_ADMIN_KEY, url)
    fix = f"set it without them: {meant}" if meant else "set it without them, e.g. https://api.openai.com/v1"
    assert str(info.value) == f"base_url=: the base URL has quotes around it; {fix}"
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": url}).invoke(
        app, ["query", "costs", "--start", "2d"]
    )
    assert done.exit_code == 1
    assert done.output == f"error: OPENAI_BASE_URL: the base URL has quotes around it; {fix}\n"


def test_replace_normalises_as_the_constructor_does() -> None:
    """A timeout in seconds becomes an httpx.Timeout and a pasted key loses its newline, on a copy too."""
    copy = dataclasses.replace(ClientOptions(api_key=FAKE_ADMIN_KEY), timeout=2, api_key=f" {FAKE_ADMIN_KEY}\n")
    assert copy.timeout == httpx.Timeout(2.0, connect=2.0) and copy.api_key == FAKE_ADMIN_KEY
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.base_url = "https://evil.example/v1"  # type: ignore[misc]


@pytest.mark.parametrize("face", [Client, AsyncClient])
def test_with_options_checks_what_the_constructor_checks(face: Any) -> None:
    """with_options(max_concurrency=0) is refused as the constructor refuses it, not silently ignored."""
    client = face(FAKE_ADMIN_KEY, LOOPBACK)
    with pytest.raises(ConfigError, match=r"^max_concurrency must be at least 1"):
        client.with_options(max_concurrency=0)
    assert client.with_options(max_concurrency=2).max_concurrency == 2


class _Tagged(Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tag = "made by __init__"


def test_with_options_goes_through_the_constructor() -> None:
    """A subclass's copy is made by its own __init__, keeps every setting not changed, and merges headers."""
    policy = RetryPolicy(max_retries=5, sleep=lambda _: None)
    original = _Tagged(FAKE_ADMIN_KEY, LOOPBACK, retry=policy, headers={"OpenAI-Organization": "org_a"})
    copy = original.with_options(max_retries=1, headers={"X-Trace": "t"}, clock=lambda: 42.0)
    assert isinstance(copy, _Tagged) and copy.tag == "made by __init__"
    assert (copy.base_url, copy.retry.max_retries, copy.retry.sleep) == (LOOPBACK, 1, policy.sleep)
    assert dict(copy._config.headers) == {"OpenAI-Organization": "org_a", "X-Trace": "t"}
    assert (copy._config.clock(), original.retry.max_retries) == (42.0, 5)


def test_a_copy_shares_the_connections_and_closing_it_leaves_them_open() -> None:
    """Both clients send through one httpx client; closing the copy does not close the original's."""
    seen: list[str] = []
    body = (EXAMPLES / "completions.json").read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-copy", "original"))
        return httpx.Response(200, content=body)

    ask = {"start_time": EMULATOR_NOW - 86400, "end_time": EMULATOR_NOW}
    with Client(FAKE_ADMIN_KEY, transport=httpx.MockTransport(handler), clock=lambda: EMULATOR_NOW) as original:
        with original.with_options(headers={"x-copy": "yes"}) as copy:
            copy.page("completions", **ask)
            assert copy._http.http_client is original._http.http_client
        original.page("completions", **ask)
    assert seen == ["yes", "original"]


@pytest.mark.parametrize("face", [Client, AsyncClient])
def test_transport_and_http_client_are_one_or_the_other(face: Any) -> None:
    """An http_client of the other twin's kind, or both transport= and http_client=, is a one-line ConfigError."""
    wrong = httpx.AsyncClient() if face is Client else httpx.Client()
    with pytest.raises(ConfigError, match="http_client="):
        face(FAKE_ADMIN_KEY, LOOPBACK, http_client=wrong)
    right = httpx.Client() if face is Client else httpx.AsyncClient()
    with pytest.raises(ConfigError, match="not both"):
        face(FAKE_ADMIN_KEY, LOOPBACK, http_client=right, transport=httpx.MockTransport(lambda r: httpx.Response(200)))


def test_usage_api_builds_its_client_from_the_same_options() -> None:
    """UsageApi's options end in the same ClientOptions as Client's."""
    api = UsageApi(access_token=FAKE_ADMIN_KEY, base_url=LOOPBACK, max_retries=3, timeout=4)
    client = Client(FAKE_ADMIN_KEY, LOOPBACK, max_retries=3, timeout=4)
    assert api.client._config == client._config
    assert api.client._config.retry.max_retries == 3


def test_sync_has_one_set_of_defaults() -> None:
    """The [sync] defaults, the written template and the engine's SyncOptions agree, retries included (4)."""
    assert SyncConfig().to_options() == SyncOptions()
    assert SyncOptions().max_retries == 4
    template = tomllib.loads(default_config_text().split("# Organisations")[0])
    assert parse_config(template).sync == SyncConfig()


def test_to_options_maps_every_key() -> None:
    """Every [sync] key lands on its engine option; the range and the http switch come from the run."""
    config = SyncConfig(lag_days=1, minute_grace=60, hour_grace=3600, since=86400, concurrency=2, max_retries=7)
    assert config.to_options(since=10, until=20, allow_insecure_http=True) == SyncOptions(
        since=10,
        until=20,
        lag_days=1,
        hour_grace=3600,
        minute_grace=60,
        first_since=86400,
        concurrency=2,
        max_retries=7,
        allow_insecure_http=True,
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-Proxy-Token": "tok-abc\r\nX-Evil: 1"}, "the value of X-Proxy-Token holds a control or non-ASCII"),
        ({"X-Proxy-Token": "tok-abcé"}, "the value of X-Proxy-Token holds a control or non-ASCII"),
        ({"X-Retries": 3}, "the value of X-Retries must be a string, got int"),
        ({"X Team": "search"}, "'X Team' is not a header name"),
        ({"authorization": "Bearer tok-abc"}, "authorization is set by the client; the admin key goes as api_key="),
        ({"X-Team": "a", "x-team": "b"}, "X-Team and x-team are one header; give it once"),
        ("X-Team: search", "headers must be a mapping of header names to values, got str"),
    ],
)
@pytest.mark.parametrize("face", [Client, AsyncClient])
def test_headers_are_checked_when_the_client_is_made(face: Any, headers: Any, message: str, emulator_url: str) -> None:
    """A bad header was found only at the first request: a TypeError, a UnicodeEncodeError, or (a newline in a value)
    an APIConnectionError 'could not reach' quoting the value, a token, in full; a lowercase `authorization` went
    out beside the client's own, so the server could read either key. Each is a ConfigError when the client is made
    (or copied), naming the header and never showing its value."""
    with pytest.raises(ConfigError, match=re.escape(message)) as made:
        face(FAKE_ADMIN_KEY, emulator_url, headers=headers)
    with pytest.raises(ConfigError, match=re.escape(message)) as copied:
        face(FAKE_ADMIN_KEY, emulator_url).with_options(headers=headers)
    assert "tok-abc" not in str(made.value) + str(copied.value)


def test_headers_replace_the_defaults_however_they_are_spelled(emulator_url: str) -> None:
    """`user-agent` replaced `User-Agent` in the dict but both went out; a header's value loses the white space a paste
    brings; with_options(headers={"x-team": ...}) replaces X-Team instead of sending both. The emulator answers."""
    seen: list[list[tuple[str, str]]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.multi_items())
        return httpx.Response(200, content=(EXAMPLES / "costs.json").read_bytes())

    client = Client(
        FAKE_ADMIN_KEY,
        transport=httpx.MockTransport(record),
        headers={"user-agent": "my-tool/1.0", "X-Team": " search\n"},
        clock=lambda: EMULATOR_NOW,
    )
    client.page("costs", start_time="3d")
    client.with_options(headers={"x-team": "ads"}).page("costs", start_time="3d")
    first, second = ({name: [v for n, v in sent if n == name] for name, _ in sent} for sent in seen)
    assert first["user-agent"] == ["my-tool/1.0"] and first["x-team"] == ["search"]
    assert second["x-team"] == ["ads"] and first["authorization"] == [f"Bearer {FAKE_ADMIN_KEY}"]
    with Client(FAKE_ADMIN_KEY, emulator_url, headers={"User-Agent": "my-tool/1.0"}, clock=lambda: EMULATOR_NOW) as c:
        assert c.page("costs", start_time="3d").data
