"""What passes between the emulator's layers: the request and response the pure handler speaks.

The handler (:mod:`usageledger.emulator.handler`) answers a :class:`Request` with a :class:`Response`; the in-process
transport (:mod:`usageledger.emulator.transport`) and the ASGI server (:mod:`usageledger.emulator.server`) translate
to and from them and know nothing else of the handler. Every arrow points down to this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

import msgspec

from usageledger.emulator.faults import NO_FAULT, Fault

__all__ = ["API_PREFIX", "Handler", "Request", "Response", "error_body"]

API_PREFIX: Final = "/v1"


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request as the handler sees it: method, path (with ``/v1``), raw query string, lower-case headers."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, method: str, path: str, query: bytes, headers: Iterable[tuple[bytes, bytes]]) -> Request:
        """A request from the raw parts httpx and ASGI both have: latin-1 bytes for the query and header pairs."""
        lowered = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
        return cls(method, path, query.decode("latin-1"), lowered)


@dataclass(frozen=True, slots=True)
class Response:
    """The handler's answer, plus the fault the server should realise (latency, drop, slow body)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    fault: Fault = NO_FAULT


Handler = Callable[[Request], Response]
"""What the transport and the server call: ``Emulator.handle``, or any function of the same shape."""


def error_body(message: str, type_: str, param: str | None, code: str | None) -> bytes:
    """The API's error body, ``{"error": {message, type, param, code}}``, for every refusal the emulator sends."""
    return msgspec.json.encode({"error": {"message": message, "type": type_, "param": param, "code": code}})
