"""Text that goes to a terminal: an error names what the user typed, a table shows names the API sent, and either
may hold anything."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from difflib import get_close_matches
from typing import Final

__all__ = ["closest", "counted", "json_line", "name_key", "one_line", "spreadsheet_text", "terminal_safe"]

_UNSAFE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""What data must not send to a terminal: C0 and C1 controls but the newline and the tab (ESC starts the sequences
that move the cursor, clear the screen, set the title or make links; a carriage return overwrites a line), line and
paragraph separators, and the bidirectional controls that make text display in another order than it reads."""


def name_key(text: str) -> str:
    """A name as every lookup by name compares it (``--project``, teams, ``[alerts.projects]``): blanks collapsed
    and ends trimmed, case folded, so ``'  SEARCH   ASSISTANT '`` is ``Search Assistant``."""
    return " ".join(text.split()).casefold()


def one_line(text: str) -> str:
    """``text`` with each character that is not printable (a newline, a carriage return, a tab, an escape sequence's
    ESC, a line separator) written as its JSON escape (``\\n``, ``\\u001b``): it prints on one line, cannot drive
    the terminal, and still shows which character was there."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)


def terminal_safe(text: str) -> str:
    """``text`` with each character of :data:`_UNSAFE` written as its JSON escape (``\\u001b``); newlines, tabs,
    joiners and other format characters that emoji and scripts need, stay. The CLI's consoles pass every piece of
    text through it, so a project named with an escape sequence shows the sequence instead of running it."""
    return _UNSAFE.sub(lambda m: json.dumps(m.group())[1:-1], text)


_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a CSV cell as a formula (OWASP's list): ``=cmd|' /C calc'!A0`` runs a program."""


def spreadsheet_text(text: str) -> str:
    """A text cell of a CSV meant for a spreadsheet (a statement): one that a spreadsheet would run as a formula is
    written after an apostrophe (``'=cmd|...``), which shows it as the text it is. Only for text: an amount such as
    ``-0.08`` is a number and stays as it is."""
    return "'" + text if text.startswith(_FORMULA_START) else text


_LINE_BREAKS_JSON_KEEPS: Final = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)
"""The line breaks JSON may leave raw in a string (NEL, LINE and PARAGRAPH SEPARATOR), as UTF-8, and their escapes."""


def json_line(encoded: bytes) -> bytes:
    """UTF-8 JSON with NEL, U+2028 and U+2029 written as their escapes (``\\u2028``): the same value, and a JSON
    Lines record that is one line for every reader, Python's ``str.splitlines()`` too (which breaks at them, as
    JavaScript once did). In UTF-8 their bytes are never part of another character, so the replacement is exact."""
    for raw, escape in _LINE_BREAKS_JSON_KEEPS:
        if raw in encoded:
            encoded = encoded.replace(raw, escape)
    return encoded


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with thousands separators and ``noun`` agreeing with it: ``1 file``, ``0 files``, ``12,500 rows``
    (``plural`` where adding an *s* is wrong)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The one of ``choices`` a mistyped ``word`` most likely meant (``completion``: ``completions``; ``sotre``:
    ``store``), or ``None`` when none is close: the one rule behind every "did you mean" of a name that has a fixed
    set of values (a config's keys, an endpoint, an option's choices)."""
    close = get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None
