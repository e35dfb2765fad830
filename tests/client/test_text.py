"""Text the CLI prints: counts that agree with their nouns, and values that stay on one line."""

from __future__ import annotations

import pytest

from usageledger._text import counted, one_line, terminal_safe


@pytest.mark.parametrize(
    ("n", "noun", "plural", "expected"),
    [
        (1, "file", None, "1 file"),
        (0, "file", None, "0 files"),
        (2, "Delta table", None, "2 Delta tables"),
        (12_500, "row", None, "12,500 rows"),
        (1, "month partition", None, "1 month partition"),
        (3, "query", "queries", "3 queries"),
        (1, "query", "queries", "1 query"),
    ],
)
def test_counted_agrees_with_its_number(n: int, noun: str, plural: str | None, expected: str) -> None:
    assert counted(n, noun, plural) == expected


def test_one_line_escapes_what_would_break_the_line() -> None:
    assert one_line("plain text") == "plain text"
    assert one_line("a\nb\r\tc\x1b[31m") == "a\\nb\\r\\tc\\u001b[31m"


def test_terminal_safe_escapes_what_would_drive_the_terminal() -> None:
    """ESC (screen clears, titles, links), carriage returns, C1 controls and bidirectional overrides are written as
    escapes; newlines, tabs, emoji joiners and ordinary text stay."""
    assert terminal_safe("\x1b[2JEvil\rx\x9b1m") == "\\u001b[2JEvil\\rx\\u009b1m"
    assert terminal_safe("abc\u202egnp.exe") == "abc\\u202egnp.exe"
    kept = "Søren's team 👩\u200d💻\tline one\nline two"
    assert terminal_safe(kept) == kept
