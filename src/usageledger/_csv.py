"""The one CSV writer of the command line's files (``export``, ``query --format csv``, ``statement --csv``, FOCUS).

Its rows are values, not text, because what a cell is decides how it is written:

* a text cell (``str``: a name, a line item, a model, an ID) that a spreadsheet would run as a formula (starting
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return: OWASP's list) is written after an apostrophe, ``'=cmd|...``,
  which a spreadsheet shows as the text it is (:func:`usageledger._text.spreadsheet_text`);
* a number (``Decimal``, ``int``) is written as digits, never an exponent, never after an apostrophe: an amount of
  ``-0.08`` stays a number a spreadsheet or pandas reads as one;
* ``None`` is an empty cell, ``True``/``False`` are ``true``/``false``, a time is ISO 8601 UTC with a ``Z``;
* a cell holding a newline or a carriage return is quoted, so the row stays one CSV record. Python's ``csv`` quotes
  only the characters of its line terminator, and ours is ``\\n``: a name holding a bare ``\\r`` was written
  unquoted and read back as two records.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import TextIO

from usageledger._amounts import trimmed
from usageledger._text import spreadsheet_text
from usageledger.timeutil import iso_moment

__all__ = ["CsvWriter", "plain_decimal"]


def plain_decimal(value: Decimal) -> str:
    """Exact decimal text without trailing zeros (:func:`usageledger._amounts.trimmed`): ``0.060000000000000000`` ->
    ``0.06``, ``1E-7`` -> ``0.0000001``."""
    return format(trimmed(value), "f")


class CsvWriter:
    """Rows of values to ``out`` as CSV lines ending in ``\\n`` (see the module docstring); ``decimal`` writes a
    ``Decimal`` (default: :func:`plain_decimal`)."""

    def __init__(self, out: TextIO, *, decimal: Callable[[Decimal], str] = plain_decimal) -> None:
        self._out = out
        self._decimal = decimal
        self._writer = csv.writer(out, lineterminator="\n")
        self._held = io.StringIO()
        # "\r\n" makes csv quote a cell holding either character; the row's own "\r\n" is then written as "\n"
        self._quoting = csv.writer(self._held, lineterminator="\r\n")

    def cell(self, value: object) -> str:
        """One value as the text of its cell."""
        if value is None:
            return ""
        if isinstance(value, str):
            return spreadsheet_text(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, Decimal):
            return self._decimal(value)
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):  # its shortest exact text (0.1, not 0.1000000000000000055511151231257827)
            return plain_decimal(Decimal(repr(value)))
        if isinstance(value, datetime):
            return iso_moment(value)
        if isinstance(value, date):
            return value.isoformat()
        raise TypeError(f"cannot write {type(value).__name__} to CSV")

    def writerow(self, values: Iterable[object]) -> None:
        cells = [self.cell(v) for v in values]
        if not any("\r" in c for c in cells):  # csv quotes "\n" itself (the line terminator)
            self._writer.writerow(cells)
            return
        self._quoting.writerow(cells)
        line = self._held.getvalue()
        self._held.seek(0)
        self._held.truncate()
        self._out.write(line[:-2] + "\n")

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)

    def header(self, names: Iterable[str]) -> None:
        """The header row: column names are ours, written as they are."""
        self._writer.writerow(list(names))
