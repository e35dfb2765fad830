"""The one module that owns secrets: key patterns, key normalisation, masking, URL redaction and the permission
check of a file that holds a key.

Every message that may reach output, logs or the store goes through :func:`mask_keys` (or :func:`redact` when the
exact key is known). Masking does not depend on the key being well formed: a key with a newline, a space, a tab or a
non-ASCII letter in it is masked too, raw or in its ``repr``-escaped form (``sk-admin-abc\\n``).
"""

from __future__ import annotations

import logging
import re
import stat
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from usageledger._keyshape import KEY_SHAPED, QUERY_PASSWORD, URL_PASSWORD, mask_keys
from usageledger.errors import ParameterError

__all__ = [
    "ADMIN_KEY_PREFIX",
    "KEY_SHAPED",
    "HiddenKey",
    "MaskKeysFilter",
    "check_private",
    "check_webhook_url",
    "exposure",
    "hidden",
    "holds_key",
    "holds_password",
    "key_named",
    "mask_keys",
    "normalize_key",
    "redact",
    "redact_url",
    "redact_url_password",
    "redact_webhook",
    "refuse_key",
    "url_userinfo",
    "url_without_password",
]

ADMIN_KEY_PREFIX: Final = "sk-admin-"
REDACTED_KEY: Final = ADMIN_KEY_PREFIX + "…"


def _prefix(raw: str) -> str:
    for kind in ("admin", "proj", "svcacct"):
        if raw.startswith(f"sk-{kind}-"):
            return f"sk-{kind}-…"
    return "sk-…" if raw.startswith("sk-") else "…"


class HiddenKey(str):
    """A key whose ``repr`` is its prefix alone (``'sk-admin-…'``), its text the key (``str()``, f-strings, the
    header). A traceback's locals (rich's ``show_locals``, a debugger, ``%r`` in a log) print a frame's values by
    ``repr``: every frame that held the key as a plain string (the constructor's ``api_key``, ``key_from``'s,
    ``dataclasses.replace``'s changes) showed it whole."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(_prefix(self))


S = TypeVar("S")


def hidden(value: S) -> S:
    """``value`` as a :class:`HiddenKey` when it is a string (a key, or what was given as one), else as it is: the
    first step of every function that takes a key, so that its frame never holds the plain text."""
    if isinstance(value, str) and not isinstance(value, HiddenKey):
        return HiddenKey(value)  # type: ignore[return-value]  # a str subclass, where S is str
    return value


def normalize_key(raw: str, source: str) -> str:
    """The key with surrounding whitespace stripped; a :class:`ConfigError` naming ``source`` if it is malformed.

    Inner whitespace, control characters and non-ASCII characters cannot go into an HTTP header, so they are
    refused here, once, with a one-line message that shows only the key's prefix.
    """
    from usageledger.errors import ConfigError

    if not isinstance(raw, str):  # a number or bytes from careless code: name the source, never show the value
        raise ConfigError(f"the admin key from {source} must be a string, got {type(raw).__name__}")
    raw = hidden(raw)
    key = HiddenKey(raw.strip())
    problem = None
    if key[:1] in ("'", '"') or key[-1:] in ("'", '"'):  # an env file (docker --env-file, systemd) keeps quotes
        problem = "quotes around it; set the key without them"
    elif "sk-" in key and not key.startswith("sk-"):  # `Bearer sk-admin-…`, `OPENAI_ADMIN_KEY=sk-admin-…`
        problem = "text before its sk- prefix; set the key alone"
    for ch in "" if problem else key:
        if ch.isspace():
            problem = "a whitespace character inside it"
        elif not ch.isascii():
            problem = "a non-ASCII character"
        elif not ch.isprintable():
            problem = "a control character"
        if problem:
            break
    if problem:
        fix = "" if ";" in problem else "; paste the key again, exactly as issued"
        raise ConfigError(f"the admin key from {source} ({_prefix(key.strip(chr(34) + chr(39)))}) has {problem}{fix}")
    if key.lower().startswith(("http://", "https://")):  # `Client(base_url)`: the URL went out as the Bearer key
        raise ConfigError(
            f"the admin key from {source} is a URL; give the admin key (sk-admin-…) there, and the URL as the base URL"
            " (base_url=, --base-url or OPENAI_BASE_URL)"
        )
    return key


_KEY_WORD: Final = re.compile(rf"(?<![A-Za-z0-9]){KEY_SHAPED.pattern}")
"""A key-shaped value that starts a word: ``sk-admin-…``, ``Bearer sk-…``, but not ``disk-analyzer1``."""


def refuse_key(param: str, value: str) -> str:
    """``value`` (an ID a request sends in its URL: a filter's, a directory path's), or a :class:`ParameterError`
    naming ``param`` when it holds a key: ``api_key_ids=[os.environ["OPENAI_ADMIN_KEY"]]`` or
    ``client.admin_api_key(key)`` put the key in the request line, which httpx logs at INFO and the retry log at
    DEBUG, in clear. No ID the API takes starts with ``sk-``; inside a word it is no key (a fine-tuned model named
    ``ft:gpt-4o-mini:acme:disk-analyzer1:x``)."""
    found = _KEY_WORD.search(value)
    if found is None:
        return value
    fix = (
        "pass the key's ID (key_…): client.admin_api_keys() and client.project_api_keys(project_id) list them"
        if "key" in param
        else "pass the ID the API gave (such as proj_… or user-…)"
    )
    raise ParameterError(param, f"holds an API key ({_prefix(found.group(0))}), not an ID; {fix}")


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (raw and ``repr``-escaped) replaced by ``sk-admin-…``, then every key-shaped value."""
    if secret:
        text = text.replace(secret, REDACTED_KEY)
        escaped = repr(str(secret))[1:-1]  # the text's repr, not a HiddenKey's (which is masked)
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


def check_webhook_url(url: str, *, param: str = "--webhook") -> str:
    """The webhook URL as it will be used, trimmed of the white space a paste brings, or a one-line
    :class:`ParameterError` naming ``param``: an ``http``/``https`` URL with a host and nothing unprintable in it.

    Checked before anything runs, so a cron job with a broken URL fails on its first run rather than on the day an
    alert fires. The refusal never shows the URL beyond its scheme and host: its path is the credential.
    """
    if not isinstance(url, str):  # an httpx.URL or bytes from careless code: name the type, never the value
        raise ParameterError(param, f"the webhook URL must be a string, got {type(url).__name__}")
    text = url.strip()
    if not text:
        raise ParameterError(
            param, "the URL is empty; pass the webhook's whole URL (https://hooks.slack.com/services/...)"
        )
    shown = redact_url(text)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ParameterError(param, f"{shown} is not a valid URL; pass the webhook's whole URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ParameterError(
            param, f"{shown} is not an http(s) URL with a host; pass the webhook's whole URL (https://host/path)"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ParameterError(param, f"the URL for {shown} holds white space or control characters; paste it again")
    import httpx  # here, not at the top: every command imports this module, and few check a webhook

    try:
        # the host as the POST will send it: httpx's IDNA reading, then the socket's (a label over 63 characters)
        httpx.URL(text).host.encode("idna")
    except (httpx.InvalidURL, UnicodeError):
        raise ParameterError(
            param, f"{shown} does not have a valid host name; pass the webhook's whole URL (https://host/path)"
        ) from None
    return text


def redact_webhook(text: str, url: str) -> str:
    """``text`` (an error, a response body) without any part of the webhook ``url`` that could be its credential.

    The whole URL becomes :func:`redact_url`'s scheme and host; its path, query and password, which a server may
    echo on their own (``Cannot POST /services/T0/B0/XXXX``), raw, percent-decoded or JSON-escaped (``\\/``),
    become ``…``, and so does each longer part of them alone (``invalid_token: XXXX``): a path segment or a query
    value of four characters or more.
    """
    shown = redact_url(url)
    text = text.replace(url, shown).replace(url.strip(), shown)
    try:
        parts = urlsplit(url.strip())
        password = parts.password
    except ValueError:
        return text
    pieces = {parts.path + (f"?{parts.query}" if parts.query else ""), parts.path, parts.query, password or ""}
    pieces |= {unquote(piece) for piece in pieces}
    pieces |= {piece.replace("/", "\\/") for piece in pieces}
    whole = {piece for piece in pieces if len(piece.strip("/")) > 1}
    # the path's segments and the query's values (its names, `token=`, are words, not the credential)
    parts_alone = [*parts.path.split("/"), *(value for _, value in parse_qsl(parts.query)), password or ""]
    alone = {
        part
        for raw in parts_alone
        for part in (raw, unquote(raw))
        if len(part) >= _ECHOED_PART_MIN  # shorter ones ("v1", "id") are words in any message
    }
    for piece in sorted(whole, key=len, reverse=True):
        text = text.replace(piece, "…")
    for part in sorted(alone, key=len, reverse=True):
        text = text.replace(part, "…")
    return text


_ECHOED_PART_MIN: Final = 4


def url_userinfo(url: str) -> tuple[bool, str]:
    """Whether ``url`` holds a user name or password before its host (``https://user:pw@host/v1``), and the URL as it
    may be shown: that part cut to ``…@``, whether a name or a password (a token is often given as the user name)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False, url
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or not userinfo:
        return False, url
    return True, urlunsplit((parts.scheme, f"…@{host}", parts.path, parts.query, parts.fragment))


def redact_url_password(url: str) -> str:
    """The URL without its password (``postgresql://user:***@host/db``, ``...?password=***``)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        url = f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
    # A password in the query (`?password=`), which libpq reads too: masked whole here, where the text is the URL
    # alone (mask_keys leaves a closing `.` or `:` before a space outside it, as a message's own punctuation).
    return mask_keys(QUERY_PASSWORD.sub(r"\1***", url))


def url_without_password(url: str) -> str:
    """The ``postgresql://`` URL with its password taken out, all else as written: the user info's (which libpq ends
    at the first ``@`` or ``/``, so ``u:pw@host`` becomes ``u@host``) and a ``password=`` of its query. The URL a
    config may keep: the password goes to libpq's password file (``store/_pgpass.py``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo = re.match(r"([^@/:]*):[^@/]*@", rest)
    if userinfo is not None:
        user = userinfo.group(1)
        rest = (f"{user}@" if user else "") + rest[userinfo.end() :]
    base, query_sep, query = rest.partition("?")
    if query_sep:
        kept = [part for part in query.split("&") if part.partition("=")[0] != "password"]
        rest = base + (f"?{'&'.join(kept)}" if kept else "")
    return f"{scheme}{sep}{rest}"


def redact_url_passwords(text: str, url: str) -> str:
    """``text`` (a driver's error about the store ``url``) without the URL's passwords, which libpq may quote
    alone, outside the URL (``invalid percent-encoded token: "pa%ZZ"``): its user info's and a ``?password=``'s, as
    written and percent-decoded, each ``***``. One shorter than four characters is masked only where quoted: alone,
    it is a word of any message."""
    found = [match.group(2).strip("'") for match in QUERY_PASSWORD.finditer(url)]
    if "@" in url and "://" in url:
        creds = url.split("://", 1)[1].rsplit("@", 1)[0]
        if ":" in creds:
            found.append(creds.split(":", 1)[1])
    secrets = {each for raw in found for each in (raw, unquote(raw)) if each}
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _ECHOED_PART_MIN:
            text = text.replace(secret, "***")
        else:
            text = text.replace(f'"{secret}"', '"***"')
    return text


# --- files that hold a key -----------------------------------------------------------------------------

_KEY_NAMED: Final = re.compile(rf"(?:{KEY_SHAPED.pattern})(?:$|[^A-Za-z0-9_\-])")


def key_named(path: str | Path) -> bool:
    """Whether a part of ``path`` (the file's name or a folder's) starts with an API key (``sk-admin-`` and its body):
    the key pasted after a flag that takes a file (``--store``, ``--config``, ``init --path``, ``export -o``), where
    it would become a file's or a folder's name, in every listing, and be written into a config."""
    return any(_KEY_NAMED.match(part) is not None for part in Path(path).parts)


_API_KEY_LINE: Final = re.compile(r"(?m)^\s*api_key\s*=")


def holds_key(text: str) -> bool:
    """Whether a config file's text holds a key: a key-shaped value anywhere, or an ``api_key =`` line."""
    return KEY_SHAPED.search(text) is not None or _API_KEY_LINE.search(text) is not None


def holds_password(text: str) -> bool:
    """Whether a config file's text holds a password in a URL (a ``[store] url`` written by ``init --store
    postgresql://user:pw@host/db``, or ``?password=``): the file must then be as private as one holding a key. The
    patterns are :func:`mask_keys`' own, so what is refused here is what is masked everywhere else."""
    return URL_PASSWORD.search(text) is not None or QUERY_PASSWORD.search(text) is not None


def exposure(path: Path) -> tuple[int, str | None]:
    """``path``'s permission bits, and who besides its owner can reach it (``None``: its owner only)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o004:
        return mode, "every user can read it"
    if mode & 0o040:
        return mode, "its group can read it"
    if mode & 0o077:
        return mode, "users other than its owner have access to it"
    return mode, None


def check_private(path: Path, what: str = "an API key") -> None:
    """Refuse a file that holds ``what`` (a key, a password: a :class:`ConfigError` with the ``chmod 600`` fix)
    unless only its owner can reach it."""
    from usageledger.errors import ConfigError

    mode, who = exposure(path)
    if who is not None:
        raise ConfigError(f"{path} contains {what} but {who} (mode {mode:04o}); run: chmod 600 {path}")


# --- logs -----------------------------------------------------------------------------------------------

_FORMATTER: Final = logging.Formatter()


class MaskKeysFilter(logging.Filter):
    """A handler filter that masks key-shaped text in every part of a record before any formatter (text or JSON)
    sees it: the message with its arguments, the exception text and traceback, the stack, and string extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_keys(message)
        if masked != message or record.args:
            # The arguments are gone once merged: a formatter that reads them again gets the masked text only.
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # The cached traceback text is what formatters print; computing it here lets it be masked.
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and name != "msg":
                setattr(record, name, mask_keys(value))
        return True
