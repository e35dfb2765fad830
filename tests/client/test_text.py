"""Text the CLI prints: counts that agree with their nouns, and values that stay on one line."""

from __future__ import annotations

import pytest

from usageledger._text import counted, is_one_line, one_line, quoted, terminal_safe


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


SCOTLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"


@pytest.mark.parametrize(
    "name",
    [
        "\U0001f469\u200d\U0001f4bb Developer Tools",  # woman technologist: two emoji joined
        "\u2764\ufe0f\u200d\U0001f525 Launch",  # heart on fire: a variation selector, then the joiner
        "\U0001f1ef\U0001f1f5 Japan Rollout",  # a country flag: two regional indicators
        f"{SCOTLAND} Scotland",  # a subdivision flag: a black flag and its tags
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian: the non-joiner keeps two letters apart
        "\u0915\u094d\u200d\u0937",  # Devanagari: a half form made by the joiner
        "\u691c\u7d22\u30a2\u30b7\u30b9\u30bf\u30f3\u30c8 \u05ea\u05de\u05d9\u05db\u05d4",  # CJK and Hebrew
    ],
)
def test_one_line_keeps_what_a_name_needs_to_be_itself(name: str) -> None:
    """A joined emoji printed as ``👩\\u200d💻 Developer Tools`` in every table, though the joiner is part of the
    name: joiners between characters past ASCII, a flag's tags, variation selectors stay, and the name is quoted as
    it reads."""
    assert one_line(name) == name
    assert is_one_line(name)
    assert quoted(name) == f"'{name}'"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Evil\u202eexe.txt", "Evil\\u202eexe.txt"),  # a right-to-left override reorders what follows
        ("a\u2066b\u2069\u200ec\u061c", "a\\u2066b\\u2069\\u200ec\\u061c"),  # isolates, marks
        ("row\n| forged | $0.00 |", "row\\n| forged | $0.00 |"),  # a newline would forge a table row
        ("a\rb\x1b[2J\x9b1m\x7f", "a\\rb\\u001b[2J\\u009b1m\\u007f"),  # C0 and C1 controls
        ("Bo\u200dt", "Bo\\u200dt"),  # a joiner between ASCII letters joins nothing: it only hides
        ("\u200d\U0001f469", "\\u200d\U0001f469"),  # at either end it joins nothing either
        ("\U0001f469\u200d", "\U0001f469\\u200d"),
        ("\U0001f469\u200d\u200d\U0001f4bb", "\U0001f469\\u200d\\u200d\U0001f4bb"),  # two: one is hidden
        ("\U0001f469 \u200d\U0001f4bb", "\U0001f469 \\u200d\U0001f4bb"),  # beside a blank
        ("B\u200bot\u2060", "B\\u200bot\\u2060"),  # zero-width space and word joiner: invisible, escaped
        ("Bot\U000e0067", "Bot\\udb40\\udc67"),  # a tag with no black flag before it
    ],
)
def test_one_line_still_escapes_what_could_reorder_or_forge_a_row(name: str, shown: str) -> None:
    assert one_line(name) == shown
    assert not is_one_line(name)
    assert quoted(name) == repr(name)


def test_terminal_safe_escapes_what_would_drive_the_terminal() -> None:
    """ESC (screen clears, titles, links), carriage returns, C1 controls and bidirectional overrides are written as
    escapes; newlines, tabs, emoji joiners and ordinary text stay."""
    assert terminal_safe("\x1b[2JEvil\rx\x9b1m") == "\\u001b[2JEvil\\rx\\u009b1m"
    assert terminal_safe("abc\u202egnp.exe") == "abc\\u202egnp.exe"
    kept = "Søren's team 👩\u200d💻\tline one\nline two"
    assert terminal_safe(kept) == kept
