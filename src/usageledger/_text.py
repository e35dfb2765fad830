"""Text that must print on one line: an error names what the user typed, and what they typed may hold anything."""

from __future__ import annotations

import json

__all__ = ["counted", "one_line"]


def one_line(text: str) -> str:
    """``text`` with each character that is not printable (a newline, a carriage return, a tab, an escape sequence's
    ESC, a line separator) written as its JSON escape (``\\n``, ``\\u001b``): it prints on one line, cannot drive
    the terminal, and still shows which character was there."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with thousands separators and ``noun`` agreeing with it: ``1 file``, ``0 files``, ``12,500 rows``
    (``plural`` where adding an *s* is wrong)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
