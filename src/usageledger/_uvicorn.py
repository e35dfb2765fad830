"""Serving an ASGI app with uvicorn on a socket bound beforehand: the one way the dashboard (``serve``) and the
emulator start a server.

Binding first makes port 0 usable (the real port is known before the server starts), and the server says when it is
listening. SIGINT/SIGTERM shut it down gracefully and ``run`` returns normally (uvicorn would re-raise the signal
after); a second SIGINT forces the exit.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import Any, Final, cast

import uvicorn
from starlette.types import ASGIApp

from usageledger._text import counted
from usageledger.errors import ListenError

__all__ = ["SHUTDOWN_GRACE", "ReadyServer", "bind", "listen_address", "quiet_config", "url_to_open"]

logger = logging.getLogger("usageledger.server")

SHUTDOWN_GRACE: Final = 2.0
"""Seconds SIGINT/SIGTERM leave requests in flight to finish before they are cancelled and the server exits: an
emulator answering after ``--latency 30s``, or a dashboard report still reading, no longer holds the stop."""


class ReadyServer(uvicorn.Server):
    """uvicorn's server with a readiness callback; see the module's docstring."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, with requests still running after :data:`SHUTDOWN_GRACE` said in one line: uvicorn
        logs each cancelled one as an "Exception in ASGI application" with its traceback."""
        quiet = _CancelledQuietly()
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.addFilter(quiet)
        try:
            await super().shutdown(sockets)
            cancelled = [task for task in self.server_state.tasks if not task.done()]
            if cancelled:  # they log their cancellation when they next run: let them, with the filter on
                await asyncio.wait(cancelled, timeout=1.0)
        finally:
            uvicorn_log.removeFilter(quiet)
        if quiet.cancelled:
            logger.warning("stopped %s still running after %g s", counted(quiet.cancelled, "request"), SHUTDOWN_GRACE)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._on_ready is not None and not self.should_exit:
            self._on_ready()


class _CancelledQuietly(logging.Filter):
    """Drops uvicorn's records of the requests its shutdown cancels (their tracebacks, and its own count, kept in
    ``cancelled``); lets every other record through."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _CANCEL_MESSAGE and record.args:
            self.cancelled = int(cast(tuple[Any, ...], record.args)[0])
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


_CANCEL_MESSAGE: Final = "Cancel %s running task(s), timeout graceful shutdown exceeded"
"""uvicorn's record when :data:`SHUTDOWN_GRACE` runs out (``uvicorn.server.Server.shutdown``)."""


def listen_address(host: str, port: int) -> tuple[str, int]:
    """``--host`` and ``--port`` as every server command reads them, before anything else is done: the host with the
    white space a paste brings trimmed (``' 127.0.0.1'`` was "Name or service not known", or "not a loopback
    address"), and a port from 0 (any free one) to 65535, else a :class:`ListenError` naming the flag."""
    if not 0 <= port <= 65535:
        raise ListenError(f"--port {port} is not a port; pick one from 1 to 65535 (0 = any free)")
    if not host.strip():
        raise ListenError("--host is empty; give an address of this machine, e.g. 127.0.0.1")
    slip = _not_an_address(host.strip(), port)
    if slip is not None:
        raise ListenError(slip)
    return host.strip(), port


def _not_an_address(host: str, port: int) -> str | None:
    """What is wrong with a ``--host`` that holds more than an address (``http://127.0.0.1``, ``127.0.0.1:19313``,
    ``[::1]:8080``, ``localhost/``), with the flags to give instead; ``None`` for anything else (``::1`` is an
    address: its colons are not a port's)."""
    from urllib.parse import urlsplit

    if "://" in host or "/" in host:
        what = "a URL" if "://" in host else "an address with a path"
        parts = urlsplit(host if "://" in host else f"//{host}")
    elif (host.startswith("[") and "]:" in host) or host.count(":") == 1:
        what = "an address with a port"
        parts = urlsplit(f"//{host}")
    else:
        return None
    try:
        given = parts.port
    except ValueError:  # `127.0.0.1:abc`: no port to carry over
        given = None
    address = parts.hostname or "127.0.0.1"
    return (
        f"--host {host} is {what}; --host takes the address alone and --port the port: "
        f"--host {address} --port {port if given is None else given}"
    )


def bind(host: str, port: int, *, backlog: int, inheritable: bool = False) -> socket.socket:
    """A TCP socket listening on ``host`` (IPv6 when it holds a ``:``, brackets allowed) and ``port`` (0: a free
    one); a host or port it cannot listen on raises :class:`ListenError` (naming the flag to change) without
    leaking the socket."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on accepted sockets whose protocol says
        # TCP, and an accepted socket takes its listener's. With Nagle on, a body written after its headers waits
        # for their ACK, which the client delays by 40 ms: every small response would be 40 ms late.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except OSError as exc:
        raise _listen_error(exc, host, port) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise _listen_error(exc, host, port) from None
    if inheritable:
        sock.set_inheritable(True)
    return sock


def url_to_open(sock: socket.socket, path: str) -> tuple[str, bool]:
    """The URL a client on this machine opens for the server listening on ``sock`` (``path`` appended), and whether
    ``sock`` listens on every interface. Such a socket (``--host 0.0.0.0`` or ``::``) is given by its loopback
    address: ``http://0.0.0.0:8080/`` is no address a browser opens, and the client refuses plain http to it as to any
    host that is not loopback. The emulator's and ``serve``'s ready lines both print this URL."""
    host, port = sock.getsockname()[:2]
    everywhere = ipaddress.ip_address(host.partition("%")[0]).is_unspecified
    if everywhere:
        host = "::1" if ":" in host else "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}", everywhere


def _listen_error(exc: OSError, host: str, port: int) -> ListenError:
    """What failed and what to change: the port when it is taken or privileged, else the host."""
    if isinstance(exc, socket.gaierror) or exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        advice = "--host must be an address of this machine, e.g. 127.0.0.1 (0.0.0.0 for every interface)"
    elif exc.errno == errno.EACCES and 0 < port < 1024:
        advice = "ports below 1024 need privileges; pick another --port (0 = any free)"
    else:
        advice = "pick another --port (0 = any free)"
    error = ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; {advice}")
    error.errno = exc.errno
    return error


def quiet_config(app: ASGIApp, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn's config for ``app`` as usageledger serves it: HTTP/1.1 (h11), no websockets, asyncio, warnings only,
    no access log and no ``Server`` header; ``options`` are more of ``uvicorn.Config``'s (``lifespan``, ...)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        ws="none",
        loop="asyncio",
        access_log=False,
        log_level="warning",
        server_header=False,
        **{"timeout_graceful_shutdown": SHUTDOWN_GRACE, **options},
    )
