"""The thin server around the pure handler: an ASGI app and uvicorn runners.

The server realises what the handler only decides: latency (``asyncio.sleep``), dropped connections (the socket
is closed with no response) and slow bodies (sent in small chunks with pauses).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, Final, Protocol

import uvicorn

from usageledger._uvicorn import ReadyServer, bind, quiet_config, url_to_open
from usageledger.emulator.messages import API_PREFIX, Handler, Request, Response, error_body

__all__ = ["Handles", "asgi_app", "run_server", "serve"]

logger = logging.getLogger("usageledger.emulator")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SLOW_CHUNKS: Final = 8
_SLOW_PAUSE: Final = 0.05


class Handles(Protocol):
    """What the server serves: anything with ``handle(Request) -> Response`` (an :class:`~.handler.Emulator`)."""

    def handle(self, request: Request) -> Response: ...


def _request_from_scope(scope: Scope) -> Request:
    return Request.from_raw(scope["method"], scope["path"], scope.get("query_string", b""), scope.get("headers", ()))


async def _drop(send: Send) -> None:
    """Close the connection without a response (uvicorn exposes the transport on its bound ``send``)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("dropped connection (fault injection)")
    transport.close()
    for _ in range(100):  # let the protocol see connection_lost so uvicorn sends nothing after us
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)


STOPPING_RETRY_AFTER: Final = 1
"""``Retry-After`` of the 503 a request gets when the emulator stops before its answer was due."""


async def _send_stopping(send: Send, answer: Response) -> None:
    """Answer a request the stopping server cancels (``SHUTDOWN_GRACE`` ran out during its latency) as the API
    answers when it cannot serve: a JSON 503 with ``Retry-After`` and the request's ID, which the client retries and
    names. uvicorn's own answer was a plain-text 500 ``Internal Server Error``."""
    body = error_body("The emulator is shutting down; try again later.", "server_error", None, None)
    kept = [(k, v) for k, v in answer.headers if k.lower() == "x-request-id"]
    headers = [("content-type", "application/json"), *kept, ("retry-after", str(STOPPING_RETRY_AFTER))]
    headers.append(("content-length", str(len(body))))
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": 503, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def asgi_app(handler: Handler) -> ASGIApp:
    """A minimal ASGI application: every HTTP request goes to ``handler`` (usually ``Emulator.handle``)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        response = handler(_request_from_scope(scope))
        fault = response.fault
        # Injected latency is the time from arrival to the response, as a real server's is: the time spent
        # computing the page counts towards it rather than adding to it.
        remaining = fault.delay - (loop.time() - arrived)
        if remaining > 0:
            try:
                await asyncio.sleep(remaining)
            except asyncio.CancelledError:  # the server stops and its grace ran out before this answer was due
                await _send_stopping(send, response)
                raise
        if fault.kind == "drop":
            await _drop(send)
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        body = response.body
        if fault.kind == "truncate":
            # Promise the whole body, send half: the client sees the connection end early.
            headers.append((b"content-length", str(len(body) * 2).encode()))
        else:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
        elif fault.kind == "truncate":
            await send({"type": "http.response.body", "body": body, "more_body": True})
            await _drop(send)
        elif fault.slow_body:
            size = max(1, -(-len(body) // _SLOW_CHUNKS))
            for i in range(0, len(body), size):
                await send({"type": "http.response.body", "body": body[i : i + size], "more_body": True})
                await asyncio.sleep(_SLOW_PAUSE)
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.body", "body": body})

    return app


def _config(emulator: Handles, host: str, port: int) -> uvicorn.Config:
    return quiet_config(
        asgi_app(emulator.handle),
        host,
        port,
        lifespan="off",
        date_header=False,
        backlog=2048,
        timeout_keep_alive=30,
    )


def _base_url(sock: socket.socket) -> str:
    """The base URL a client on this machine uses: on every interface, the loopback one (see
    :func:`~usageledger._uvicorn.url_to_open`)."""
    return url_to_open(sock, API_PREFIX)[0]


@contextlib.contextmanager
def run_server(emulator: Handles, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``emulator`` with uvicorn in a background thread; yields the base URL (ending in ``/v1``)."""
    sock = bind(host, port, backlog=2048, inheritable=True)
    ready = threading.Event()
    server = ReadyServer(_config(emulator, host, sock.getsockname()[1]), on_ready=ready.set)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="usageledger-emulator", daemon=True)
    thread.start()
    try:
        while not ready.wait(0.05):
            if not thread.is_alive():
                raise RuntimeError("the emulator server failed to start")
        logger.info("emulator serving at %s", _base_url(sock))
        yield _base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def serve(emulator: Handles, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (uvicorn's handlers shut down gracefully)."""
    sock = bind(host, port, backlog=2048, inheritable=True)
    url = _base_url(sock)
    started = time.perf_counter()
    server = ReadyServer(_config(emulator, host, sock.getsockname()[1]), on_ready=lambda: on_ready(url))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        logger.info("emulator stopped after %.1f s", time.perf_counter() - started)
