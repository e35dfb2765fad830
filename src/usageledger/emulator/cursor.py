"""Page cursors: opaque ``page_<base64>`` tokens bound to the query that produced them.

A token packs the start of the next bucket and a digest of every other query parameter. Standard base64 is used
on purpose, so tokens hold ``+``, ``/`` and ``=`` like the live API's do and a client must send them back exactly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from typing import Final

__all__ = ["INVALID_TOKEN_MESSAGE", "decode", "digest", "encode"]

INVALID_TOKEN_MESSAGE: Final = "The page token is invalid, have you modified the query parameters?"
_PREFIX: Final = "page_"
_LAYOUT: Final = struct.Struct(">q12s")


def digest(canonical: str) -> bytes:
    """The 12-byte binding of a token to its query."""
    return hashlib.blake2b(canonical.encode(), digest_size=12).digest()


def encode(position: int, query_digest: bytes) -> str:
    return _PREFIX + base64.b64encode(_LAYOUT.pack(position, query_digest)).decode("ascii")


def decode(token: str, query_digest: bytes) -> int | None:
    """The next bucket start a token holds, or ``None`` if it is malformed or belongs to another query."""
    if not token.startswith(_PREFIX):
        return None
    try:
        raw = base64.b64decode(token[len(_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _LAYOUT.size:
        return None
    position, bound = _LAYOUT.unpack(raw)
    if bound != query_digest:
        return None
    return int(position)
