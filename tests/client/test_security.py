"""Security: plain http:// only to loopback, no redirects followed, and the emulator's key checks over real HTTP.

``tests/client/test_http.py`` already covers the constructor's basic http/loopback cases and
``tests/emulator/test_emulator_api.py`` the emulator's key rules in-process; this file adds the other ways in
(environment, ``with_options``, the async client, ``UsageApi``, the CLI, look-alike hosts) and the emulator's answers
over a real socket.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, Final

import httpx
import pytest
from typer.testing import CliRunner

from usageledger import AsyncClient, Client, UsageApi
from usageledger.cli import app
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.errors import (
    APIStatusError,
    AuthenticationError,
    ConfigError,
    InsecureURLError,
    PermissionDeniedError,
)

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

START: Final = EMULATOR_NOW - 3 * 86400
PINNED: Final = "sk-admin-" + "pinned" + "k" * 14

# --- plain http:// ----------------------------------------------------------------------------------------

REMOTE_HTTP: Final = [
    "http://api.openai.com/v1",
    "HTTP://API.EXAMPLE.COM/v1",
    "http://localhost.evil.example/v1",  # looks like localhost, is not
    "http://127.0.0.1.nip.io/v1",  # resolves to loopback through someone else's DNS
    "http://0.0.0.0:8000/v1",
    "http://192.168.1.10/v1",
    "http://[2001:db8::1]/v1",
    "http://[::ffff:10.0.0.1]/v1",
]
LOOPBACK_HTTP: Final = ["http://127.0.0.1:9/v1", "http://localhost/v1", "http://[::1]:9/v1", "http://127.1.2.3/v1"]


@pytest.mark.parametrize("url", REMOTE_HTTP)
def test_every_client_refuses_plain_http_to_a_remote_host(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Client, AsyncClient, UsageApi, OPENAI_BASE_URL and with_options all refuse http:// off loopback."""
    with pytest.raises(InsecureURLError, match="allow_insecure_http"):
        Client(FAKE_ADMIN_KEY, url)
    with pytest.raises(InsecureURLError):
        AsyncClient(FAKE_ADMIN_KEY, url)
    with pytest.raises(InsecureURLError):
        UsageApi(FAKE_ADMIN_KEY, url)
    with Client(FAKE_ADMIN_KEY, "https://api.openai.com/v1") as client, pytest.raises(InsecureURLError):
        client.with_options(base_url=url)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with pytest.raises(InsecureURLError):
        Client(FAKE_ADMIN_KEY)


@pytest.mark.parametrize("url", REMOTE_HTTP[:3])
def test_plain_http_is_allowed_only_when_asked_for(url: str) -> None:
    """allow_insecure_http=True lets http:// through, on the client and on a with_options copy."""
    with Client(FAKE_ADMIN_KEY, url, allow_insecure_http=True) as client:
        assert client.base_url == url
    with Client(FAKE_ADMIN_KEY, "https://api.openai.com/v1") as client:
        assert client.with_options(base_url=url, allow_insecure_http=True).base_url == url


@pytest.mark.parametrize("url", [*LOOPBACK_HTTP, "https://api.openai.com/v1", "https://10.0.0.8/v1"])
def test_https_anywhere_and_http_to_loopback_are_fine(url: str) -> None:
    """https:// to any host, and http:// to 127.0.0.0/8, ::1 or localhost, need no opt-in."""
    with Client(FAKE_ADMIN_KEY, url) as client:
        assert client.base_url == url


def test_the_cli_refuses_plain_http_to_a_remote_host_in_one_line() -> None:
    """`usageledger query --base-url http://remote` exits 2 (a flag's value refused) with the reason and the fix, no
    traceback."""
    result = CliRunner().invoke(
        app,
        ["query", "costs", "--start", "7d", "--base-url", "http://usage.example.com/v1"],
        env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY},
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: refusing plain http:// to usage.example.com")
    assert "Traceback" not in result.output and FAKE_ADMIN_KEY not in result.output


# --- what a base URL may hold ---------------------------------------------------------------------------

CREDENTIALED: Final = [
    "http://user:pw-SECRET@127.0.0.1:{port}/v1",
    "https://user:pw-SECRET@api.openai.com/v1",
    "http://pw-SECRET@127.0.0.1:{port}/v1",  # a token given as the user name
    "http://127.0.0.1@evil.example/v1",  # the host is evil.example; 127.0.0.1 is the user name
]


@pytest.mark.parametrize("url", CREDENTIALED)
def test_a_base_url_with_credentials_is_refused_naming_its_source(
    url: str, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpx sends a URL's user name and password as Basic auth in place of the Bearer key (the emulator said 401
    `invalid_authorization_header`, blaming a good key): every client refuses them before any request, naming where
    the URL came from (`base_url=`, `OPENAI_BASE_URL`) and never showing the password or the user name."""
    url = url.format(port=httpx.URL(emulator_url).port)
    for make in (Client, AsyncClient, UsageApi):
        with pytest.raises(
            ConfigError, match=r"^base_url=: the base URL \S+//…@\S+ holds a user name or pass"
        ) as caught:
            make(FAKE_ADMIN_KEY, url)
        assert "SECRET" not in str(caught.value) and "user" not in str(caught.value).split("holds")[0]
    with Client(FAKE_ADMIN_KEY, emulator_url) as client, pytest.raises(ConfigError, match=r"^base_url=: "):
        client.with_options(base_url=url)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with pytest.raises(ConfigError, match=r"^OPENAI_BASE_URL: the base URL ") as caught:
        Client(FAKE_ADMIN_KEY)
    assert "SECRET" not in str(caught.value) and "remove the part before '@'" in str(caught.value)


def test_white_space_around_a_base_url_is_trimmed_and_inside_it_refused(
    emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`OPENAI_BASE_URL='http://host/v1 '` asked for `/v1 /organization/costs` (a 404 blaming the URL's path): the
    white space a paste brings is trimmed, as the key's is, and the emulator answers; inside the URL it is refused."""
    monkeypatch.setenv("OPENAI_BASE_URL", f"{emulator_url} \n")
    with Client(FAKE_ADMIN_KEY, clock=lambda: EMULATOR_NOW) as client:
        assert client.base_url == emulator_url
        assert client.page("costs", start_time=START).data
    with Client(FAKE_ADMIN_KEY, f"\t{emulator_url}/ ", clock=lambda: EMULATOR_NOW) as client:
        assert client.base_url == emulator_url and client.page("costs", start_time=START).data
    inside = emulator_url.replace("/v1", "/ v1")
    with pytest.raises(ConfigError, match=r"^base_url=: the base URL .* has white space or a control character"):
        Client(FAKE_ADMIN_KEY, inside)
    monkeypatch.setenv("OPENAI_BASE_URL", emulator_url + "\x1b[2J")
    with pytest.raises(ConfigError, match=r"^OPENAI_BASE_URL: the base URL \S+\\u001b\[2J has white space"):
        Client(FAKE_ADMIN_KEY)


def test_a_redirect_is_not_followed() -> None:
    """A 3xx (say, to a plain-http host) is an error; the key is never sent to the redirect's target."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(307, headers={"location": "http://evil.example/v1/organization/costs"})

    transport = httpx.MockTransport(handler)
    with (
        Client(FAKE_ADMIN_KEY, "https://api.openai.com/v1", transport=transport) as client,
        pytest.raises(APIStatusError) as caught,
    ):
        client.page("costs", start_time=START)
    assert caught.value.status_code == 307
    assert [r.url.host for r in seen] == ["api.openai.com"]


# --- the emulator's key checks over a real socket ---------------------------------------------------------


@pytest.fixture(scope="module")
def pinned_url() -> Iterator[str]:
    """An emulator server that accepts only one pinned admin key (what `--admin-key` sets)."""
    emulator = Emulator(EmulatorConfig(days=5, projects=1, now=EMULATOR_NOW, admin_key=PINNED))
    with run_server(emulator) as url:
        yield url


def _get(url: str, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return httpx.get(f"{url}/organization/costs", params={"start_time": START}, headers=headers)


def _error(response: httpx.Response) -> dict[str, Any]:
    """The OpenAI error body: exactly error.{message, type, param, code}, JSON content type."""
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] is None
    assert response.headers["x-request-id"].startswith("req_")
    return dict(body["error"])


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, None),
        ("Basic " + "dXNlcjpwYXNz", "invalid_authorization_header"),
        ("Bearer", "invalid_authorization_header"),
        ("Token sk-admin-abc", "invalid_authorization_header"),
        ("Bearer sk-admin-a sk-admin-b", "invalid_authorization_header"),
        ("Bearer not-an-openai-key", "invalid_api_key"),
    ],
    ids=["missing", "basic", "bearer-alone", "other-scheme", "two-tokens", "not-a-key"],
)
def test_missing_and_malformed_keys_are_401_in_the_openai_shape(
    emulator_url: str, authorization: str | None, code: str | None
) -> None:
    """No key, another scheme, an empty or split Bearer token, or a non-key: 401 with the OpenAI error body."""
    response = _get(emulator_url, authorization)
    assert response.status_code == 401
    assert _error(response)["code"] == code


@pytest.mark.parametrize("key", ["sk-proj-" + "a" * 24, "sk-" + "b" * 24, "sk-svcacct-" + "c" * 20])
def test_non_admin_keys_are_403_missing_scopes(emulator_url: str, key: str) -> None:
    """Project, user and service-account keys get 403 naming the missing scope, and the key is not echoed."""
    response = _get(emulator_url, f"Bearer {key}")
    assert response.status_code == 403
    error = _error(response)
    assert "Missing scopes: api.usage.read" in error["message"] and error["code"] == "missing_scope"
    assert key not in response.text


def test_any_admin_key_is_accepted_and_the_scheme_is_case_insensitive(emulator_url: str) -> None:
    """Without a pinned key any sk-admin- key gets 200, with 'Bearer' or 'bearer'."""
    assert _get(emulator_url, f"Bearer {FAKE_ADMIN_KEY}").status_code == 200
    assert _get(emulator_url, f"bearer {FAKE_ADMIN_KEY}").status_code == 200


def test_a_pinned_key_rejects_every_other_admin_key_without_echoing_it(pinned_url: str) -> None:
    """With --admin-key only that key gets 200; another admin key gets 401 invalid_api_key, shown masked."""
    assert _get(pinned_url, f"Bearer {PINNED}").status_code == 200
    other = "sk-admin-" + "other" + "z" * 15
    response = _get(pinned_url, f"Bearer {other}")
    assert response.status_code == 401
    error = _error(response)
    assert error["code"] == "invalid_api_key" and other not in response.text and "****" in error["message"]
    assert _get(pinned_url, f"Bearer {PINNED}x").status_code == 401


def test_the_client_maps_the_emulators_auth_answers_without_retrying(emulator_url: str, pinned_url: str) -> None:
    """Over HTTP the client raises PermissionDeniedError (403) and AuthenticationError (401) with the fix."""
    with Client("sk-proj-" + "a" * 24, emulator_url) as client, pytest.raises(PermissionDeniedError) as denied:
        client.page("costs", start_time=START)
    assert denied.value.status_code == 403 and "sk-admin-" in str(denied.value)
    with Client(FAKE_ADMIN_KEY, pinned_url) as client, pytest.raises(AuthenticationError) as refused:
        client.page("costs", start_time=START)
    assert refused.value.status_code == 401 and "OPENAI_ADMIN_KEY" in str(refused.value)


def test_the_emulator_takes_its_pinned_key_from_the_environment_not_only_argv() -> None:
    """USAGELEDGER_EMULATOR_ADMIN_KEY pins the key without putting it on the command line (where ps shows it)."""
    key = "sk-admin-" + "fromenv" + "q" * 13
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGELEDGER_"))}
    env["USAGELEDGER_EMULATOR_ADMIN_KEY"] = key
    command = [sys.executable, "-c", "from usageledger.cli import main; main()", "emulator", "--port", "0"]
    proc = subprocess.Popen([*command, "--days", "3", "--projects", "1"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Emulator ready at "), line
        url = line.split(" at ", 1)[1].strip()
        assert key not in " ".join(proc.args)  # type: ignore[arg-type]
        assert _get(url, f"Bearer {key}").status_code == 200
        assert _get(url, f"Bearer {FAKE_ADMIN_KEY}").status_code == 401
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.mark.parametrize("tail", ["?key=SECRET", "/?api_key=SECRET", "#SECRET"])
def test_a_base_url_with_a_query_or_fragment_is_refused_without_showing_it(
    tail: str, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--base-url 'http://host/v1?key=…'` sent `GET /v1?key=…/organization/costs` and got a 404 that blamed the
    path: a query or fragment is refused before any request, naming the source, and what follows '?' or '#' (often
    a key) is never shown."""
    url = emulator_url + tail
    for make in (Client, AsyncClient, UsageApi):
        shown = r"^base_url=: the base URL http://127\.0\.0\.1:\d+/v1/?[?#]… has a (query|fragment), which no"
        with pytest.raises(ConfigError, match=shown) as caught:
            make(FAKE_ADMIN_KEY, url)
        assert "SECRET" not in str(caught.value) and "give the URL alone" in str(caught.value)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with pytest.raises(ConfigError, match=r"^OPENAI_BASE_URL: the base URL ") as caught:
        Client(FAKE_ADMIN_KEY)
    assert "SECRET" not in str(caught.value)
