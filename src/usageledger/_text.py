"""Text that goes to a terminal: an error names what the user typed, a table shows names the API sent, and either
may hold anything."""

from __future__ import annotations

import codecs
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from difflib import get_close_matches
from typing import Final

__all__ = [
    "ASCII_ERRORS",
    "ASCII_ESCAPE_ERRORS",
    "FORMULA_START_PATTERN",
    "as_typed",
    "ascii_text",
    "closest",
    "counted",
    "encodes_everything",
    "is_one_line",
    "json_line",
    "name_key",
    "one_line",
    "quoted",
    "spreadsheet_text",
    "terminal_safe",
]

_UNSAFE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""What data must not send to a terminal: C0 and C1 controls but the newline and the tab (ESC starts the sequences
that move the cursor, clear the screen, set the title or make links; a carriage return overwrites a line), line and
paragraph separators, and the bidirectional controls that make text display in another order than it reads."""


def name_key(text: str) -> str:
    """A name as every lookup by name compares it (``--project``, teams, ``[alerts.projects]``): blanks collapsed
    and ends trimmed, case folded, so ``'  SEARCH   ASSISTANT '`` is ``Search Assistant``."""
    return " ".join(text.split()).casefold()


_JOINERS: Final = frozenset("\u200c\u200d")
"""ZERO WIDTH NON-JOINER and JOINER: format characters, so not printable to Python, but part of a name's text: the
joiner makes one emoji of two (``👩\u200d💻``, a woman technologist) and shapes Indic scripts, the non-joiner keeps
Persian and Indic letters apart."""
_TAG_SEQUENCE: Final = re.compile("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f")
"""A subdivision flag (Scotland's: a black flag, tag letters ``gbsct``, a cancel tag), whose tags are invisible
format characters anywhere else."""


def _joins(c: str) -> bool:
    """Whether a joiner beside ``c`` joins something: a printable character past ASCII (an emoji, its variation
    selector or skin tone, a letter or mark of a script that joins). Beside ASCII, a blank or another format
    character it only hides in a name, making ``Bo\u200dt`` read as ``Bot``."""
    return c > "\x7f" and c.isprintable() and not c.isspace()


def one_line(text: str) -> str:
    """``text`` with each character that is not printable (a newline, a carriage return, a tab, an escape sequence's
    ESC, a line separator, a bidirectional override) written as its JSON escape (``\\n``, ``\\u001b``,
    ``\\u202e``): it prints on one line, cannot drive the terminal or reorder a table's row, and still shows which
    character was there. What a name needs to be itself stays: a joiner between two characters past ASCII
    (``👩\u200d💻``, Persian's non-joiner) and a subdivision flag's tags (variation selectors and country flags are
    printable)."""
    if text.isprintable():
        return text
    kept = {i for match in _TAG_SEQUENCE.finditer(text) for i in range(match.start() + 1, match.end())}
    last = len(text) - 1
    return "".join(
        c
        if c.isprintable()
        or i in kept
        or (c in _JOINERS and 0 < i < last and _joins(text[i - 1]) and _joins(text[i + 1]))
        else json.dumps(c)[1:-1]
        for i, c in enumerate(text)
    )


def is_one_line(text: str) -> bool:
    """Whether ``text`` prints as it is by :func:`one_line`'s rule: no character it would escape."""
    return text.isprintable() or one_line(text) == text


def as_typed(value: str) -> str:
    """A value quoted back in a warning: as it is, or quoted when a blank around it or a newline in it would not show
    (a warning on one line, as every message is)."""
    return repr(value) if value != value.strip() or not is_one_line(value) else value


def quoted(text: str) -> str:
    """A name quoted back in a message: as ``repr`` quotes it (``'Bot'``, a newline as ``\\n``), but a name that
    :func:`one_line` prints as it is (a joined emoji, ``'👩\u200d💻 Tools'``) is quoted as it reads, not escaped."""
    if not is_one_line(text):
        return repr(text)
    return f'"{text}"' if "'" in text and '"' not in text else "'" + text.replace("'", "\\'") + "'"


def terminal_safe(text: str) -> str:
    """``text`` with each character of :data:`_UNSAFE` written as its JSON escape (``\\u001b``); newlines, tabs,
    joiners and other format characters that emoji and scripts need, stay. The CLI's consoles pass every piece of
    text through it, so a project named with an escape sequence shows the sequence instead of running it."""
    return _UNSAFE.sub(lambda m: json.dumps(m.group())[1:-1], text)


_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a CSV cell as a formula (OWASP's list): ``=cmd|' /C calc'!A0`` runs a program."""
FORMULA_START_PATTERN: Final = "^([" + "".join("\\" + c if c in "\\]^-" else c for c in _FORMULA_START) + "])"
""":data:`_FORMULA_START` as a regular expression (its one character captured), for a writer that works on whole
columns (the FOCUS CSV, in Arrow) rather than a cell at a time."""


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


_ASCII_FOR: Final = {
    "\u2026": "...",  # …
    "\u2014": "-",  # —
    "\u2013": "-",  # –
    "\u2212": "-",  # − (minus)
    "\u2192": "->",  # →
    "\u2190": "<-",  # ←
    "\u00b7": "-",  # · (a heading's separator)
    "\u00d7": "x",  # ×
    "\u2264": "<=",  # ≤
    "\u2265": ">=",  # ≥
    "\u00b1": "+/-",  # ±
    "\u20ac": "EUR",  # €
    "\u00a3": "GBP",  # £
    "\u00a5": "JPY",  # ¥
    "\u2713": "ok",  # ✓
    "\u2717": "x",  # ✗
    "\u2018": "'",  # ‘
    "\u2019": "'",  # ’
    "\u201c": '"',  # “
    "\u201d": '"',  # ”
    "\u00a7": "S",  # §
    "\u00a0": " ",  # no-break space
    # the trend's eight heights, lowest to highest, one character each so the line keeps its length
    **dict(zip("\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588", "_.,:-=+#", strict=True)),
}
"""What a character the package writes becomes on an output that cannot encode it (``PYTHONIOENCODING=ascii``,
latin-1, a legacy console's code page)."""


def _ascii_char(char: str, escape: bool) -> str:
    if (known := _ASCII_FOR.get(char)) is not None:
        return known
    if "\u2500" <= char <= "\u257f":  # box drawing: rich draws its own tables in ASCII there; anything else
        words = set(unicodedata.name(char, "").split())
        if "HORIZONTAL" in words and not words & {"VERTICAL", "UP", "DOWN"}:
            return "-"
        if "VERTICAL" in words and not words & {"HORIZONTAL", "LEFT", "RIGHT"}:
            return "|"
        return "+"
    if escape:
        return char.encode("ascii", "backslashreplace").decode()
    # a name's accented letter keeps its letter (Ü is U, é is e); a letter with none (名) is a ?
    plain = "".join(c for c in unicodedata.normalize("NFKD", char) if c.isascii() and c.isprintable())
    return plain or "?"


def ascii_text(text: str, *, escape: bool = False) -> str:
    """``text`` in ASCII, each other character replaced by what reads as it: ``…`` by ``...``, ``—`` by ``-``,
    ``€`` by ``EUR``, ``→`` by ``->``, box drawing by ``+-|``, the trend's blocks by ``_.,:-=+#``, an accented
    letter by its letter, anything else by ``?``. With ``escape`` (messages, which may quote what was typed), a
    character not in that list is its escape instead (``\u540d``), which still tells which one it was."""
    return text if text.isascii() else "".join(c if c.isascii() else _ascii_char(c, escape) for c in text)


def encodes_everything(encoding: str | None) -> bool:
    """Whether ``encoding`` (an output's; None: UTF-8) writes every character, that is, is a UTF."""
    try:
        return codecs.lookup(encoding or "utf-8").name.startswith("utf")
    except LookupError:
        return False


ASCII_ERRORS: Final = "usageledger-ascii"
"""The error handler (:func:`codecs.register_error`) that writes what an output's encoding lacks as
:func:`ascii_text` does, where ``errors="replace"`` wrote ``?`` for every ``…`` and each day of the trend."""
ASCII_ESCAPE_ERRORS: Final = "usageledger-ascii-escape"
"""The same for standard error: :func:`ascii_text` with ``escape``."""


def _replacer(escape: bool) -> Callable[[UnicodeError], tuple[str, int]]:
    def replace(error: UnicodeError) -> tuple[str, int]:
        if not isinstance(error, UnicodeEncodeError):
            raise error
        return ascii_text(error.object[error.start : error.end], escape=escape), error.end

    return replace


codecs.register_error(ASCII_ERRORS, _replacer(escape=False))
codecs.register_error(ASCII_ESCAPE_ERRORS, _replacer(escape=True))
