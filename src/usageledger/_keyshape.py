"""What a key looks like, and masking it: the one pattern, below :mod:`usageledger.errors` so errors can mask.

Import these from :mod:`usageledger._secrets`, the module that owns secrets; they live in this leaf only because
every error (``UsageLedgerError``, the root) masks its message with them while ``_secrets`` raises ``ConfigError``,
and layers point down.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["KEY_SHAPED", "QUERY_PASSWORD", "URL_PASSWORD", "WEBHOOK_SHAPED", "mask_keys"]

# A key-shaped value: ``sk-`` (optionally ``admin-``/``proj-``/``svcacct-``), then at least 8 characters that are
# not a separator. The body also takes non-ASCII letters and backslash escapes (``\n``, ``\t``, ``\xe9``,
# ``\u00e9``) so a malformed key printed through ``repr`` is still cut at its prefix.
_BODY: Final = r"(?:[A-Za-z0-9_\-]|[^\x00-\x7f\s]|\\(?:[ntr]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}))"
_RUN_WITHIN: Final = 256
"""How far into a key's body (inside a word) its run of 16 letters and digits is looked for: a real key has one
within its first few characters. Unbounded, each ``sk-`` inside one long word scanned the rest of it: a path of
``ask-ask-...`` echoed in a 404 took 3 s to mask at 16,000 characters, growing with the square of its length, all of
it on the dashboard's event loop."""
# Where a key starts: a word's start, or a ``repr``'s escape just before it (``'\nsk-admin-…'``, ``\x0bsk-…``,
# ``\u00a0sk-…``). Inside a word ``sk-`` is mostly a name's (``task-automation-prod``, ``risk-assessment``), and
# masking those turned a user's own project ID into ``task-…`` in the very warning that quoted it; there a key is
# still known by its random body, 16 letters and digits in a row (``ssk-admin-…``, a key pasted after a stray
# letter), which a name of hyphenated words never has.
_KEY_START: Final = (
    r"(?:(?<![A-Za-z0-9])|(?<=\\[ntr])|(?<=\\x[0-9a-fA-F]{2})|(?<=\\u[0-9a-fA-F]{4})"
    rf"|(?=sk-(?:(?:admin|proj|svcacct)-)?{_BODY}{{0,{_RUN_WITHIN}}}?[A-Za-z0-9_]{{16}}))"
)
KEY_SHAPED: Final = re.compile(rf"{_KEY_START}sk-(?:(admin|proj|svcacct)-)?{_BODY}{{8,}}")


# A URL's password: ``scheme://user:password@`` (a PostgreSQL store URL carries one), also when the separator is
# mistyped (``postgresql:/u:pw@h``, ``postgresql:u:pw@h``, ``postgresql//u:pw@h``): a URL spelled wrong is refused
# in a message that quotes it, and its password is as secret as a well-formed one's.
# Up to the last ``@`` of the word: a password holding an unencoded ``@`` or ``/`` (``u:p@ss@host``) is masked whole
# (a ``host:port/path@x`` is masked too: showing too little is the safe side).
# The scheme is read from the start of its run of scheme characters (a ``1postgresql://`` is masked as the scheme
# ``postgresql`` would be, its leading ``1`` kept in group 1), and what it reads is never given back (``*+``): tried
# from every letter of a long word, the scan was quadratic: a path of 100,000 letters echoed in a 404 held the
# dashboard's event loop for over a minute. :func:`mask_keys` applies it only to a word up to its last ``@``, where
# every match ends, for the same reason (``a:a:a:...`` without one scanned to the word's end from each ``a``).
URL_PASSWORD: Final = re.compile(
    r"(?<![A-Za-z0-9+.\-])([0-9+.\-]*+[A-Za-z][A-Za-z0-9+.\-]*+(?::/{0,3}|//)[^\s/:@]*+):\S+@"
)
_UP_TO_AT: Final = re.compile(r"(?<!\S)\S*@")
"""A word up to its last ``@``: where :data:`URL_PASSWORD` can match."""

# A password given as a URL's query parameter: libpq reads ``postgresql://user@host/db?password=…`` (and
# ``sslpassword=``, the client key's) as it reads ``user:password@``; or as a word of libpq's keyword/value
# connection string (``host=db password=… dbname=ledger``, quoted ``password='a b'`` too), which a careless
# ``--store`` gets: usageledger refuses that form, in a message that must not show the password.
QUERY_PASSWORD: Final = re.compile(
    r"((?:[?&]|(?<![^\s'\"]))(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&#\s]+)", re.IGNORECASE
)
_CLOSING: Final = ":;,.)]}>\"'"
"""What ends a sentence or a quote after a URL (``... ?password=pw: connection refused``, ``"...?password=pw".``):
left outside the password masked before a space or the text's end, where a URL's own query goes on with ``&`` or
``#``. One character at least is always masked: ``?password=.`` is ``?password=***``."""


def _masked_query_password(match: re.Match[str]) -> str:
    """``?password=`` and its value as ``***``, keeping what closes the sentence after it (:data:`_CLOSING`): it was
    taken into the value and lost (``?password=***connection refused`` for ``?password=pw: connection refused``)."""
    value = match.group(2)
    if value.startswith("'") or match.string[match.end() : match.end() + 1] in ("&", "#"):
        return f"{match.group(1)}***"
    kept = value.rstrip(_CLOSING) or value[:1]
    return f"{match.group(1)}***{value[len(kept) :]}"


# A webhook URL whose path is its credential, by the hosts that issue them (Slack's ``hooks.slack.com/services/...``,
# which `check --webhook` documents; Discord's ``/api/webhooks/...``; Microsoft's ``*.webhook.office.com``): shown by
# its scheme and host, as ``_secrets.redact_url`` shows a webhook, wherever a message quotes one it was never meant
# to (a config value in the wrong key: ``daily_budget = "https://hooks.slack.com/services/..."``).
WEBHOOK_SHAPED: Final = re.compile(
    r"(https?://(?:hooks\.slack\.com|(?:[\w-]+\.)?discord(?:app)?\.com(?=/api/webhooks)"
    r"|[\w.-]+\.webhook\.office\.com))[/?][^\s'\"<>]*",
    re.IGNORECASE,
)

# A credential in any URL's query: ``?token=``, ``&sig=`` (a signed URL), ``key=``, ``secret=``.
# A key-shaped value (``?key=sk-admin-...``) is left to KEY_SHAPED, which shows its prefix.
_QUERY_TOKEN: Final = re.compile(
    r"([?&](?:token|access_token|sig|signature|key|secret)=)(?!sk-)[^&#\s'\"]+", re.IGNORECASE
)

# The API's own echo of a rejected key (``Incorrect API key provided: SECRETga****bage.``): it keeps 8 leading and 4
# trailing characters, which for a short or mangled key is nearly all of it.
_ECHOED_KEY: Final = re.compile(r"(API key provided: )\S+?(?=[.,;]?(?:\s|$))")


def mask_keys(text: str) -> str:
    """``text`` with every key-shaped value cut to its prefix (``sk-admin-…``), the API's echo of a rejected key
    removed, every URL's password (``user:password@``, ``?password=``) shown as ``***``, a webhook URL of the hosts
    above cut to its host and a query's token (``?token=``, ``&sig=``) to ``…``, so no message can echo a key, a store
    password or a webhook's credential."""
    text = _UP_TO_AT.sub(lambda m: URL_PASSWORD.sub(r"\1:***@", m.group()), text)
    text = QUERY_PASSWORD.sub(_masked_query_password, text)
    text = WEBHOOK_SHAPED.sub(r"\1/…", text)
    text = _QUERY_TOKEN.sub(r"\1…", text)
    text = _ECHOED_KEY.sub(r"\1…", text)
    return KEY_SHAPED.sub(lambda m: f"sk-{m.group(1)}-…" if m.group(1) else "sk-…", text)
