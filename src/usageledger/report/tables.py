"""Tables for the terminal in which no number is ever cut.

Every table the CLI prints is a :class:`DataTable`. Its columns are labels (names, IDs, line items) or numbers
(money, counts, ratios, times). The widths are chosen when the table is rendered, for the console's width:

* number columns are as wide as their widest value, so a value never wraps, folds or shortens (a narrow header
  wraps above it instead); a cell holding several numbers separated by spaces may wrap between them;
* label columns share what is left: they keep their natural width when it fits, else the widest are shortened with
  ``…`` first, unless shortening would make two different labels read the same: then that column's labels wrap
  onto more lines instead, at their spaces, the column kept as wide as its widest word (``Search Assistant,
  gpt-4o-mini-tts`` is two lines, never ``gpt-4o-mini-tt`` over ``s``); a column of names that must be read whole
  (``label(..., whole=True)``: a project and model in ``changes``) is never shortened, only wrapped so;
* if the numbers do not fit even beside labels at their floor (:func:`label_floor`: 40% of their width, at least
  :data:`MIN_LABEL` characters; a wrapping column's widest word), the table drops its borders, and if that is
  still too wide, every row is printed as a block of ``header: value`` lines (a label cut to a few characters no
  longer says which row it is);
  an empty cell (a total row's blank status) has no line there, and a header may not hold ``:``, which would read
  as two labels (``last run: +ins: +385``).

Rich alone cannot promise this: when a table is too wide it shrinks every column in turn, numbers included, and the
console crops what sticks out on the right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Span, Text

from usageledger._text import ASCII_ERRORS, encodes_everything, terminal_safe

__all__ = ["MIN_LABEL", "Column", "DataTable", "Flow", "label", "label_floor", "number"]

MIN_LABEL: Final = 8
"""The fewest characters a label column is shortened to before the table changes its layout."""
_KEPT_SHARE: Final = 0.4
_Cell = str | Text


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its header, and whether its values are numbers (never cut) or labels (may be shortened, or with
    ``whole`` only wrapped at their spaces)."""

    header: str
    numeric: bool
    whole: bool = False


def label(header: str, *, whole: bool = False) -> Column:
    """A column of names: shortened with ``…`` when the table is too wide; with ``whole``, never shortened but
    wrapped at its spaces, every word on one line (names a reader must see whole, as ``changes``' groups)."""
    return Column(header, numeric=False, whole=whole)


def number(header: str) -> Column:
    """A column of numbers, money or times: always printed whole, right-aligned."""
    return Column(header, numeric=True)


def _text(cell: _Cell) -> Text:
    """A cell as rich text, a control character in it escaped before the widths are measured (names come from the
    API and from files; see :func:`usageledger._text.terminal_safe`)."""
    plain = cell.plain if isinstance(cell, Text) else cell
    if plain.isprintable() or terminal_safe(plain) == plain:
        return cell if isinstance(cell, Text) else Text(cell)
    return Text(terminal_safe(plain), style=cell.style if isinstance(cell, Text) else "")


def _encodes(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _spelled(text: str, encoding: str) -> str:
    return text.encode(encoding, ASCII_ERRORS).decode(encoding)


def _as_shown(cell: Text, encoding: str) -> Text:
    """``cell`` as an output in ``encoding`` shows it: each character the encoding lacks spelled as the standard
    streams write it (:data:`usageledger._text.ASCII_ERRORS`: ``€`` as ``EUR``, ``…`` as ``...``), its styles kept.
    Measured so, before the layout: the stream spelled ``€5`` as ``EUR5`` after rich had laid it out in two cells
    fewer, and the row stuck out past the table's edge (``statement --currency EUR``, ``PYTHONIOENCODING=ascii``)."""
    plain = cell.plain
    if plain.isascii() or _encodes(plain, encoding):
        return cell
    cuts = sorted({at for i, c in enumerate(plain) if not _encodes(c, encoding) for at in (i, i + 1)})
    shown = Text(style=cell.style, justify=cell.justify, overflow=cell.overflow, no_wrap=cell.no_wrap, end=cell.end)
    for piece in cell.divide(cuts):
        spelled = _spelled(piece.plain, encoding)
        if spelled != piece.plain:  # one character the encoding lacks: its spelling takes on its styles
            piece = Text(spelled, spans=[Span(0, len(spelled), span.style) for span in piece.spans])
        shown.append_text(piece)
    return shown


def _width(cell: Text) -> int:
    return max((cell_len(line) for line in cell.plain.split("\n")), default=0)


def _longest_word(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)


def label_floor(natural: int) -> int:
    """How far a label column ``natural`` cells wide may be shortened: 40% of it, at least :data:`MIN_LABEL`."""
    return min(natural, max(MIN_LABEL, math.ceil(natural * _KEPT_SHARE)))


def _shrink(natural: list[int], floor: list[int], room: int) -> list[int] | None:
    """Label widths that fit in ``room``: the widest labels give way first, none below its ``floor``."""
    widths = list(natural)
    if sum(floor) > room:
        return None
    while sum(widths) > room:
        # The widest that can still give way (a `whole` column of one long name may be the widest, at its floor):
        # there is one, as the floors fit.
        widest = max(w for w, f in zip(widths, floor, strict=True) if w > f)
        i = next(j for j, w in enumerate(widths) if w == widest and w > floor[j])
        below = max((w for w in widths if w < widest), default=0)
        widths[i] = max(floor[i], below, widest - (sum(widths) - room))
    return widths


class DataTable:
    """A titled table of label and number columns whose numbers are never cut (see the module docstring)."""

    def __init__(self, title: str | None, *columns: Column) -> None:
        if not columns:
            raise ValueError("a table needs at least one column")
        for col in columns:  # the block layout writes `header: value`; a colon in the header reads as two labels
            if ":" in col.header:
                raise ValueError(f"column header {col.header!r} holds ':'; a row's block line would read garbled")
        self.title = title
        self.columns = columns
        self.rows: list[tuple[Text, ...]] = []
        self._measured: dict[tuple[bool, int], int] = {}
        self._collides: dict[tuple[int, int], bool] = {}
        self._measured_rows = 0

    def add_row(self, *cells: _Cell) -> None:
        """One row; a ``str`` is plain text (never markup), a :class:`~rich.text.Text` keeps its style."""
        if len(cells) != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} cells, got {len(cells)}")
        self.rows.append(tuple(_text(c) for c in cells))

    def without(self, header: str) -> DataTable:
        """This table without the column named ``header``: the same rows, and what was already measured of the other
        columns (the collision answers are cheap and asked again). `query` drops its least needed columns one at a time
        until the rest fits; rebuilding the table for each drop converted and measured every cell again (a query of
        1,352 rows took ~4 s before printing, now ~1 s)."""
        drop = next((i for i, col in enumerate(self.columns) if col.header == header), None)
        if drop is None:  # a bare StopIteration out of here ends the generator or loop a caller runs it in, unsaid
            raise ValueError(f"the table has no column {header!r}")
        kept = [i for i in range(len(self.columns)) if i != drop]
        if not kept:
            raise ValueError("a table needs at least one column")
        table = DataTable(self.title, *(self.columns[i] for i in kept))
        table.rows = [tuple(row[i] for i in kept) for row in self.rows]
        self._forget_if_changed()
        new = {old: new for new, old in enumerate(kept)}
        table._measured = {(words, new[i]): v for (words, i), v in self._measured.items() if i in new}
        table._measured_rows = len(table.rows)
        return table

    def _widths(self, room: int, overhead: int) -> list[int] | None:
        """Content widths for every column within ``room`` cells, or None when the numbers do not fit."""
        widths: list[int] = []
        for i, col in enumerate(self.columns):
            data = self._measure(i, words=False)
            if col.numeric:
                widths.append(max(data, _longest_word(col.header), 1))
            else:
                widths.append(max(data, cell_len(col.header), 1))
        labels = [i for i, col in enumerate(self.columns) if not col.numeric]
        numbers = [i for i, col in enumerate(self.columns) if col.numeric]
        floors = [self._floor(i, widths[i]) for i in labels]
        left = room - overhead - sum(widths[i] for i in numbers)
        # A cell of several numbers ("+685 ~0 =0 -0") may wrap between them, never inside one: when the labels
        # need the room, such columns narrow to their longest single number, the roomiest first.
        need = sum(floors) - left
        for i in sorted(numbers, key=lambda i: widths[i] - self._widest_word(i), reverse=True):
            if need <= 0:
                break
            give = min(need, widths[i] - self._widest_word(i))
            widths[i] -= give
            left += give
            need -= give
        shrunk = _shrink([widths[i] for i in labels], floors, left)
        if shrunk is None:
            return None
        for i, w in zip(labels, shrunk, strict=True):
            widths[i] = w
        # Spare room keeps a number column's header on one line, else at least its words whole.
        spare = left - sum(shrunk)
        for i in numbers:
            header = self.columns[i].header
            for wanted in (cell_len(header), _longest_word(header)):
                grow = max(wanted - widths[i], 0)
                if grow <= spare:
                    widths[i] += grow
                    spare -= grow
                    break
        return widths

    def _floor(self, i: int, natural: int) -> int:
        """How narrow label column ``i`` (``natural`` cells wide) may be: its widest word if it wraps (a ``whole``
        column, or one whose labels cut to :func:`label_floor` would read the same), unless some narrower width cuts
        them apart; else :func:`label_floor`. Wrapped narrower than a word, ``gpt-4o-mini-tts`` broke as
        ``gpt-4o-mini-tt`` over ``s``."""
        words = min(natural, self._widest_word(i))
        if self.columns[i].whole:
            return words
        low = label_floor(natural)
        if low >= words or not self._shortening_collides(i, low):
            return low
        # Cut labels that read the same at a width read the same at any narrower one: the narrowest width at which
        # they stay apart, found by halving, or the widest word, at which they wrap whole.
        high = words
        while low < high:
            mid = (low + high) // 2
            if self._shortening_collides(i, mid):
                low = mid + 1
            else:
                high = mid
        return high

    def _widest_word(self, i: int) -> int:
        """The widest space-free run in column ``i`` or its header: how narrow it can be without cutting a value
        (or a header word)."""
        longest = self._measure(i, words=True)
        return max(longest, _longest_word(self.columns[i].header), 1)

    def _measure(self, i: int, *, words: bool) -> int:
        """Column ``i``'s widest cell (or, with ``words``, widest space-free run) over the rows, measured once while
        the rows stay the same: each layout tried (up to two per :meth:`fits` or render) measured every row of every
        column again, which made a table of thousands of rows take seconds before printing."""
        self._forget_if_changed()
        key = (words, i)
        if key not in self._measured:
            cells = (_longest_word(row[i].plain) if words else _width(row[i]) for row in self.rows)
            self._measured[key] = max(cells, default=0)
        return self._measured[key]

    def _forget_if_changed(self) -> None:
        """Drop the measures and the collision answers when rows were added since they were taken."""
        if self._measured_rows != len(self.rows):
            self._measured, self._collides, self._measured_rows = {}, {}, len(self.rows)

    def _table(self, widths: list[int], *, bordered: bool) -> Table:
        table = Table(
            box=box.HEAVY_HEAD if bordered else None,
            pad_edge=bordered,
            expand=False,
        )
        for i, (col, width) in enumerate(zip(self.columns, widths, strict=True)):
            if col.numeric:
                table.add_column(col.header, justify="right", width=width, no_wrap=False, overflow="fold")
            elif col.whole or self._shortening_collides(i, width):
                # Two rows would read the same (`text-embeddin…` twice), or the names must be whole: the labels wrap
                # at their spaces onto more lines instead (the width is at least the widest word: see `_floor`).
                table.add_column(col.header, justify="left", width=width, no_wrap=False, overflow="fold")
            else:
                table.add_column(col.header, justify="left", width=width, no_wrap=True, overflow="ellipsis")
        for row in self.rows:
            table.add_row(*row)
        return table

    def _shortening_collides(self, i: int, width: int) -> bool:
        """Whether cutting column ``i``'s labels to ``width`` cells with ``…`` would make two different labels read
        the same (asked for several widths while the widths are chosen: each answer is kept until rows change)."""
        self._forget_if_changed()
        key = (i, width)
        if key not in self._collides:
            self._collides[key] = self._collide(i, width)
        return self._collides[key]

    def _collide(self, i: int, width: int) -> bool:
        seen: dict[str, str] = {}
        for row in self.rows:
            plain = row[i].plain
            shown = plain if _width(row[i]) <= width else plain[: max(width - 1, 0)] + "…"
            if seen.setdefault(shown, plain) != plain:
                return True
        return False

    def _records(self, width: int) -> Group:
        """The narrowest layout: each row as a block of ``header: value`` lines. A line wider than ``width`` goes on
        with a hanging indent, two cells past its own: a long name's second line at the left edge read as the next
        record (``project:`` / ``CustomerSupport...Number`` / ``7``, the 7 under it a line of its own)."""
        lines: list[Text] = []
        if self.title:
            lines.append(Text(self.title, style="bold"))
        for row in self.rows:
            # A blank cell (the total row's status or window count) says nothing: no `windows: ` line for it.
            shown = [(col, cell) for col, cell in zip(self.columns, row, strict=True) if cell.plain.strip()]
            for i, (col, cell) in enumerate(shown):
                indent = "" if i == 0 else "  "
                line = Text.assemble(indent, (f"{col.header}: ", "dim"), cell)
                lines.extend(_hanging(line, width, len(indent) + 2))
        return Group(*lines)

    def _layouts(self) -> tuple[tuple[bool, int], ...]:
        """(bordered, cells taken by borders and padding) for each table layout, widest first."""
        n = len(self.columns)
        # Bordered: a rule left of every column and one on the right, one space of padding on each side of a cell.
        # Borderless: one space between columns, none at the edges.
        return ((True, 3 * n + 1), (False, 2 * (n - 1)))

    def fits(self, width: int) -> bool:
        """Whether the rows fit ``width`` columns as a table (else they are printed as blocks of lines)."""
        return any(self._widths(width, overhead) is not None for _, overhead in self._layouts())

    def _shown_in(self, encoding: str) -> DataTable:
        """This table as an output in ``encoding`` shows it (:func:`_as_shown`): itself when it shows every character,
        else a copy whose title, headers and cells are spelled as the output will write them, so the widths are those
        of what is written."""
        if encodes_everything(encoding):  # a UTF: nothing to spell, and no cell to look at on every render
            return self
        texts = [text.plain for row in self.rows for text in row]
        texts += [self.title or "", *(col.header for col in self.columns)]
        # A label cut to its column ends in the `…` rich adds as it lays the row out, which an output without it
        # spelled `...` after: the row stuck out two cells past the table's edge. There, labels wrap whole instead.
        cuts = _encodes("\u2026", encoding)
        if all(text.isascii() or _encodes(text, encoding) for text in texts) and (
            cuts or all(col.whole or col.numeric for col in self.columns)
        ):
            return self
        columns = (Column(_spelled(col.header, encoding), col.numeric, col.whole or not cuts) for col in self.columns)
        table = DataTable(None if self.title is None else _spelled(self.title, encoding), *columns)
        table.rows = [tuple(_as_shown(text, encoding) for text in row) for row in self.rows]
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        shown = self._shown_in(options.encoding)
        if shown is not self:
            yield shown
            return
        for bordered, overhead in self._layouts():
            widths = self._widths(options.max_width, overhead)
            if widths is not None:
                # The title is a line of its own, as wide as the console: as the table's, it wrapped to the table's
                # width (`Forecast 2026-12 as of 2026-11-22  project Search` over `Assistant`).
                if self.title:
                    yield Text(self.title, style="bold")
                yield self._table(widths, bordered=bordered)
                return
        yield self._records(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(1, options.max_width)


def _hanging(line: Text, width: int, hang: int) -> list[Text]:
    """``line`` in lines of at most ``width`` cells, broken at its last space that fits (a word wider than a line is
    folded), every line after the first indented by ``hang`` cells; the space broken at is left out, no other."""
    plain = line.plain
    if _width(line) <= width or width <= hang + 1:
        line.overflow = "fold"
        return [line]
    out: list[Text] = []
    start, room = 0, width
    while start < len(plain):
        end, cells, space = start, 0, -1
        while end < len(plain) and cells + cell_len(plain[end]) <= room:
            space = end if plain[end] == " " else space
            cells += cell_len(plain[end])
            end += 1
        end = max(end, start + 1)  # one character wider than the room still goes somewhere
        if end < len(plain) and plain[end] == " ":
            stop, start_next = end, end + 1  # the line is full up to a space
        elif end < len(plain) and space > start:
            stop, start_next = space, space + 1  # broken at the last space that fits
        else:
            stop, start_next = end, end  # folded: the word is wider than the line
        piece = line[start:stop]
        out.append(piece if not out else Text.assemble(" " * hang, piece))
        start, room = start_next, width - hang
    return out


class Flow:
    """Parts of one line (``Spend $446.18 (...)``, ``Tokens 124,618,296``, ``Requests 41,611``), laid out as one line
    where the width allows, else as many lines as needed, breaking only between parts: a label never ends one line
    with its number on the next (``Tokens`` at the end of an 80-column line, ``124,618,296`` below it). A part wider
    than the line alone is wrapped at its spaces, as any text is."""

    def __init__(self, *parts: Text, gap: int = 3) -> None:
        self.parts = [p for p in parts if p.plain]
        self.gap = gap

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        lines: list[Text] = []
        for part in self.parts:
            current = lines[-1] if lines else None
            if current is not None and cell_len(current.plain) + self.gap + cell_len(part.plain) <= width:
                current.append(" " * self.gap)
                current.append_text(part)
            else:
                lines.append(part.copy())
        yield Group(*lines)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        longest = max((cell_len(p.plain) for p in self.parts), default=0)
        total = sum(cell_len(p.plain) for p in self.parts) + self.gap * max(len(self.parts) - 1, 0)
        return Measurement(min(longest, options.max_width), min(total, options.max_width))
