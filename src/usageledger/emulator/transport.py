"""One in-process httpx transport for sync and async clients, as ``httpx.MockTransport`` is: no sockets.

It builds a :class:`~usageledger.emulator.messages.Request`, calls the handler and realises the fault the handler
decided: latency goes to the injected ``sleep``, a drop or a truncated body raises ``httpx.RemoteProtocolError``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import httpx

from usageledger.emulator.messages import Handler, Request, Response

__all__ = ["EmulatorTransport"]


class EmulatorTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Serves ``httpx.Client`` and ``httpx.AsyncClient`` alike from ``handler`` (usually ``Emulator.handle``).

    ``sleep`` receives each injected latency in seconds; ``None`` skips latency (what tests want). An async client
    awaits what ``sleep`` returns when it is awaitable, so ``asyncio.sleep`` serves there and ``time.sleep`` or a
    recording ``list.append`` serve both.
    """

    def __init__(self, handler: Handler, *, sleep: Callable[[float], object] | None = None) -> None:
        self.handler = handler
        self.sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._call(request)
        waited = self._pause(response)
        if waited is not None:
            if inspect.iscoroutine(waited):
                waited.close()
            raise TypeError("EmulatorTransport: a sync client was given an async sleep; pass time.sleep")
        return _to_httpx(response, request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = self._call(request)
        waited = self._pause(response)
        if waited is not None:
            await waited
        return _to_httpx(response, request)

    def _pause(self, response: Response) -> Awaitable[object] | None:
        """Start the injected latency; what is left to await (an async ``sleep``'s awaitable), else ``None``."""
        if response.fault.delay <= 0 or self.sleep is None:
            return None
        waited = self.sleep(response.fault.delay)
        return waited if inspect.isawaitable(waited) else None

    def _call(self, request: httpx.Request) -> Response:
        url = request.url
        return self.handler(Request.from_raw(request.method, url.path, url.query, request.headers.raw))


def _to_httpx(response: Response, request: httpx.Request) -> httpx.Response:
    kind = response.fault.kind
    if kind == "drop":
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
    if kind == "truncate":
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body", request=request)
    return httpx.Response(response.status, headers=list(response.headers), content=response.body, request=request)
