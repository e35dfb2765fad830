"""How many rows a long table lists: one rule for the terminal report, the HTML report and the dashboard.

A big org's project table is hundreds of rows (the emulator's 300-project org: 280 with spend in 30 days), and every
table after it scrolled out of sight. A table longer than :data:`ROWS_SHOWN` + :data:`ROWS_SLACK` rows lists its
:data:`ROWS_SHOWN` first rows, the biggest (the order it is shown in), and then the rest: summed into one row in the
terminal (``… 255 more projects``, so every column still adds up to the table's total: its exact figures do; each
printed cell is rounded on its own, so the printed ones may miss it by a cent or a few), behind an ``N more`` button
on a page (``report.js`` reads both numbers from the page's ``<body>``: :meth:`RowLimit.page_attributes`). A table
at most :data:`ROWS_SLACK` rows longer is listed whole: a "more" row or button for a few rows would hide next to
nothing, and a "more" row or button never stands for one row alone (that row takes its place: ``--limit-rows 2``
of three teams lists the three). Every figure is still computed over every row; only what is listed is cut, never
a JSON document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from usageledger._text import counted
from usageledger.errors import ParameterError

__all__ = ["ROWS_SHOWN", "ROWS_SLACK", "RowLimit", "more_rows"]

ROWS_SHOWN: Final = 25
"""How many rows a long table lists by default, biggest first."""
ROWS_SLACK: Final = 5
"""How many rows past :data:`ROWS_SHOWN` a table may have and still be listed whole, by default."""

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RowLimit:
    """How many rows each long table lists: ``shown`` (``None``: every row), unless the table is at most ``slack``
    rows longer than that. The default is the dashboard's rule; :meth:`of` reads ``report --limit-rows``."""

    shown: int | None = ROWS_SHOWN
    slack: int = ROWS_SLACK

    def __post_init__(self) -> None:
        if self.shown is not None and (isinstance(self.shown, bool) or not isinstance(self.shown, int)):
            raise ParameterError("shown", f"expected a whole number of 1 or more, or None, got {self.shown!r}")
        if self.shown is not None and self.shown < 1:
            raise ParameterError("shown", f"expected 1 or more (None lists every row), got {self.shown}")
        if isinstance(self.slack, bool) or not isinstance(self.slack, int) or self.slack < 0:
            raise ParameterError("slack", f"expected a whole number of 0 or more, got {self.slack!r}")

    @classmethod
    def of(cls, limit: int | None) -> RowLimit:
        """``--limit-rows``: ``None`` (not given) is the default rule, ``0`` every row, ``N`` exactly the ``N``
        biggest (no slack: a user who asks for 10 rows gets 10 and the rest summed, never 14)."""
        if limit is None:
            return cls()
        return cls(None, 0) if limit == 0 else cls(limit, 0)

    def split(self, rows: Sequence[_T]) -> tuple[Sequence[_T], Sequence[_T]]:
        """The rows a table lists, in their order, and the rest (empty when it lists them all): never one row alone,
        which its "more" row would print in its place."""
        if self.shown is None or len(rows) <= self.shown + max(self.slack, 1):
            return rows, ()
        return rows[: self.shown], rows[self.shown :]

    def page_attributes(self) -> str:
        """The ``<body>`` attributes ``report.js`` folds the page's tables by: ``data-rows-shown`` (0: fold none)
        and ``data-rows-slack``."""
        return f'data-rows-shown="{self.shown or 0}" data-rows-slack="{self.slack}"'


def more_rows(count: int, what: str) -> str:
    """The label of the row that stands for the ``count`` rows a table does not list: ``… 255 more projects``."""
    return f"… {counted(count, f'more {what}')}"
