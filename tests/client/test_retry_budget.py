"""One retry budget per page: every kind of failure, an undecodable 200 included, counts against one ``max_retries``.

The server is a real one on loopback that answers from a script (a 429, a 500, a read timeout, a dropped
connection, or a 200 whose body is not a usage page), because the emulator's faults are drawn at random per
request number and it never sends a 200 that stays undecodable.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar, Final

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from usageledger import AsyncClient, Client, RetryPolicy
from usageledger.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    InternalServerError,
    RateLimitError,
    ResponseDecodeError,
)

from fixtures.data import EXAMPLES, FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

KINDS: Final = ("429", "500", "503", "timeout", "drop", "bad")
RAISED: Final[dict[str, type[APIError]]] = {
    "429": RateLimitError,
    "500": InternalServerError,
    "503": InternalServerError,
    "timeout": APITimeoutError,
    "drop": APIConnectionError,
    "bad": ResponseDecodeError,
}
# A scripted timeout costs the client this long, and the draws hold a few dozen of them. The other answers come from
# a thread of this process on loopback in milliseconds, but under a loaded suite (four workers on two cores) one can
# stall for a good part of a second, and a real answer read as a timeout on the last attempt fails the test: half a
# second (a quarter was tried, and saves ~4 s of one module's wall) keeps that margin.
READ_TIMEOUT: Final = 0.5
START: Final = EMULATOR_NOW - 3 * 86400


class Script:
    """What the server answers, request by request; once the script is used up, every answer is ``bad``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kinds: list[str] = []
        self.served: list[str] = []

    def reset(self, kinds: list[str]) -> None:
        with self.lock:
            self.kinds = list(kinds)
            self.served = []

    def next(self) -> str:
        with self.lock:
            kind = self.kinds.pop(0) if self.kinds else "bad"
            self.served.append(kind)
            return kind


class _Handler(BaseHTTPRequestHandler):
    script: ClassVar[Script]
    protocol_version = "HTTP/1.1"
    # The body goes out in a write of its own after the headers; with Nagle's algorithm on it waits for the client's
    # delayed ACK (~40 ms a response), which the test's hundreds of requests paid for nothing.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        kind = self.script.next()
        if kind == "drop":
            self.close_connection = True
            return
        if kind == "timeout":
            time.sleep(READ_TIMEOUT * 3)
            self.close_connection = True
            return
        status, body, extra = {
            "429": (429, b'{"error": {"message": "slow down", "type": "rate_limit"}}', {"retry-after": "0"}),
            "500": (500, b'{"error": {"message": "boom", "type": "server_error"}}', {}),
            "503": (503, b"<html>Service Unavailable</html>", {"content-type": "text/html"}),
            "bad": (200, b"<html><body>502 Bad Gateway</body></html>", {}),
        }[kind]
        self.send_response(status)
        for name, value in ({"content-type": "application/json"} | extra).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the script, not the access log."""


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[str, Script]]:
    """A loopback HTTP server answering from a script, and its base URL."""
    script = Script()
    handler = type("ScriptedHandler", (_Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    # shutdown() returns at the serving loop's next look, every 0.5 s by default: half a second per server.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def _no_wait(_: float) -> None:
    return None


def _policy(max_retries: int) -> RetryPolicy:
    return RetryPolicy(max_retries=max_retries, sleep=lambda _: None, async_sleep=_no_wait, random=lambda: 0.0)


def _options(url: str, max_retries: int) -> dict[str, object]:
    return {
        "api_key": FAKE_ADMIN_KEY,
        "base_url": url,
        "retry": _policy(max_retries),
        "timeout": httpx.Timeout(READ_TIMEOUT, connect=2.0),
        "clock": lambda: float(EMULATOR_NOW),
    }


def _expect(script: Script, before: list[str], max_retries: int, raised: BaseException) -> None:
    attempts = max_retries + 1
    assert len(script.served) == attempts, (before, script.served)
    last = (before + ["bad"] * attempts)[max_retries]
    assert type(raised) is RAISED[last], (before, last, raised)


MIXES: Final = st.lists(st.sampled_from(KINDS), max_size=5)
BUDGETS: Final = st.integers(min_value=0, max_value=4)
SETTINGS: Final = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Mixes tried on every run, whatever hypothesis draws: every kind of failure before the undecodable 200s, failures
# that outlast the budget, and undecodable 200s alone.
EVERY_KIND: Final = example(before=["429", "500", "timeout", "drop", "503"], max_retries=4)
EVERY_KIND_SHORT: Final = example(before=["drop", "bad", "429", "503", "timeout"], max_retries=2)
ONLY_BAD: Final = example(before=[], max_retries=3)
NO_RETRY: Final = example(before=["bad"], max_retries=0)


def _examples(test: Callable[..., None]) -> Callable[..., None]:
    for add in (EVERY_KIND, EVERY_KIND_SHORT, ONLY_BAD, NO_RETRY):
        test = add(test)
    return test


@SETTINGS
@_examples
@given(before=MIXES, max_retries=BUDGETS)
def test_sync_client_asks_for_an_undecodable_page_at_most_max_retries_plus_one_times(
    scripted: tuple[str, Script], before: list[str], max_retries: int
) -> None:
    """Client: whatever failures come first, a 200 that never decodes costs max_retries + 1 requests in all,
    through page() and through a query's pages."""
    url, script = scripted
    for use_query in (False, True):
        script.reset(before)
        with Client(**_options(url, max_retries)) as client, pytest.raises(APIError) as info:  # type: ignore[arg-type]
            if use_query:
                list(client.query("completions", start_time=START, end_time=START + 86400).pages())
            else:
                client.page("completions", start_time=START, end_time=START + 86400)
        _expect(script, before, max_retries, info.value)


@SETTINGS
@_examples
@given(before=MIXES, max_retries=BUDGETS)
def test_async_client_asks_for_an_undecodable_page_at_most_max_retries_plus_one_times(
    scripted: tuple[str, Script], before: list[str], max_retries: int
) -> None:
    """AsyncClient: the same single budget, through page() and through a range query's window."""
    url, script = scripted

    async def run(use_range: bool) -> BaseException:
        async with AsyncClient(**_options(url, max_retries)) as client:  # type: ignore[arg-type]
            try:
                if use_range:
                    await client.fetch_range("completions", start_time=START, end_time=START + 86400)
                else:
                    await client.page("completions", start_time=START, end_time=START + 86400)
            except APIError as exc:
                return exc
        raise AssertionError("the page decoded, but the server never sent one")

    for use_range in (False, True):
        script.reset(before)
        _expect(script, before, max_retries, asyncio.run(run(use_range)))


def test_sync_client_waits_again_when_another_request_extends_the_pause() -> None:
    """Sync as async: a request waiting out a 429's pause waits again when another thread's 429 extends it."""
    page = (EXAMPLES / "completions.json").read_bytes()
    t0 = time.monotonic()
    sent: dict[str, list[float]] = {"a": [], "b": []}
    b_arrived = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        who = "a" if request.url.params["start_time"] == str(START) else "b"
        sent[who].append(time.monotonic() - t0)
        if len(sent[who]) > 1:
            return httpx.Response(200, content=page)
        if who == "b":
            b_arrived.set()
            time.sleep(0.3)  # b's 429 lands while a already waits out its own, shorter pause
        return httpx.Response(429, headers={"retry-after": "0.5" if who == "a" else "1.5"})

    policy = RetryPolicy(max_retries=2, random=lambda: 0.0)
    with Client(FAKE_ADMIN_KEY, transport=httpx.MockTransport(handler), retry=policy, clock=lambda: EMULATOR_NOW) as c:

        def ask(start: int) -> None:
            c.page("completions", start_time=start, end_time=start + 86400)

        b = threading.Thread(target=ask, args=(START - 86400,))
        b.start()
        assert b_arrived.wait(5)
        ask(START)
        b.join()
    assert len(sent["a"]) == 2 and len(sent["b"]) == 2
    assert sent["a"][1] >= 1.5, sent  # old sync code sent again at ~0.5 s, inside b's pause (~1.8 s)
