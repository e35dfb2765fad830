"""The one module that owns secrets: key patterns, key normalisation, masking and URL redaction.

Every message that may reach output, logs or the store goes through :func:`mask_keys` (or :func:`redact` when the
exact key is known). Masking does not depend on the key being well formed: a key with a newline, a space, a tab or a
non-ASCII letter in it is masked too, raw or in its ``repr``-escaped form (``sk-admin-abc\\n``).
"""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import urlsplit

from usageledger._keyshape import KEY_SHAPED, mask_keys

__all__ = [
    "ADMIN_KEY_PREFIX",
    "KEY_SHAPED",
    "MaskKeysFilter",
    "mask_keys",
    "normalize_key",
    "redact",
    "redact_url",
    "redact_url_password",
]

ADMIN_KEY_PREFIX: Final = "sk-admin-"
REDACTED_KEY: Final = ADMIN_KEY_PREFIX + "…"


def _prefix(raw: str) -> str:
    for kind in ("admin", "proj", "svcacct"):
        if raw.startswith(f"sk-{kind}-"):
            return f"sk-{kind}-…"
    return "sk-…" if raw.startswith("sk-") else "…"


def normalize_key(raw: str, source: str) -> str:
    """The key with surrounding whitespace stripped; a :class:`ConfigError` naming ``source`` if it is malformed.

    Inner whitespace, control characters and non-ASCII characters cannot go into an HTTP header, so they are
    refused here, once, with a one-line message that shows only the key's prefix.
    """
    from usageledger.errors import ConfigError

    key = raw.strip()
    problem = None
    for ch in key:
        if ch.isspace():
            problem = "a whitespace character inside it"
        elif not ch.isascii():
            problem = "a non-ASCII character"
        elif not ch.isprintable():
            problem = "a control character"
        if problem:
            break
    if problem:
        raise ConfigError(
            f"the admin key from {source} ({_prefix(key)}) has {problem}; paste the key again, exactly as issued"
        )
    return key


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (raw and ``repr``-escaped) replaced by ``sk-admin-…``, then every key-shaped value."""
    if secret:
        text = text.replace(secret, REDACTED_KEY)
        escaped = repr(secret)[1:-1]
        if escaped != secret:
            text = text.replace(escaped, REDACTED_KEY)
    return mask_keys(text)


def redact_url(url: str) -> str:
    """A webhook URL shown by its scheme and host only: its path and query are the credential (Slack's are)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "<webhook URL>"
    if not parts.scheme or not host:
        return "<webhook URL>"
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}{f':{port}' if port else ''}"


def redact_url_password(url: str) -> str:
    """The URL without its password (``postgresql://user:***@host/db``)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
    return url


class MaskKeysFilter(logging.Filter):
    """A handler filter that masks key-shaped text in every record's message before any formatter (text or JSON)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_keys(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
