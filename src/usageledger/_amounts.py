"""The one reader of money amounts that people type: budgets, thresholds and limits in flags and in the config, and
prepaid top-ups.

Every such amount is a finite decimal, zero or more (more than zero where zero means nothing, as for a top-up), and
below :data:`MAX_AMOUNT`: a larger one (``1e400``) is no budget anyone means, and it cannot be rounded to cents
within :mod:`decimal`'s 28 digits (``quantize`` raised ``InvalidOperation`` where it was printed).

And :func:`apportion`, the one rule that rounds amounts which must add up (a month's statements, a closed month's
adjustments per project) to cents that do.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Final

from usageledger.errors import ParameterError

__all__ = ["CENT", "MAX_AMOUNT", "Cents", "apportion", "cents", "finite_decimal", "parse_amount", "trimmed"]

MAX_AMOUNT: Final = Decimal("1e15")
"""Amounts are below a thousand trillion: 15 digits before the point leave room for cents (and six places) in 28."""
CENT: Final = Decimal("0.01")


def parse_amount(
    value: object,
    *,
    param: str,
    noun: str = "an amount",
    positive: bool = False,
    places: int | None = None,
    example: str = "150 or 12.50",
    at_most: Decimal | None = None,
    money: bool = True,
) -> Decimal:
    """``value`` (text or a number) as a :class:`~decimal.Decimal`, else a :class:`ParameterError` naming ``param``.

    ``positive``: zero is refused too. ``places``: at most that many decimal places. ``at_most``: the largest value
    (a rate's 1). ``noun`` and ``example`` word the refusals (``a top-up must be more than zero, got '0'; write it
    like 500 or 500.00``): every refusal ends in the example, ``nan`` and ``inf`` included. ``money``: a leading
    ``$`` is read as the terminal prints money (``$5`` is 5, ``-$5`` the negative amount -5); a threshold, a
    tolerance or a rate (``money=False``) takes none.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ParameterError(param, f'expected an amount (a number or a string such as "12.50"), got {value!r}')
    text = value.strip() if isinstance(value, str) else value
    if money and isinstance(text, str) and text.lstrip("+-").startswith("$"):
        text = text.replace("$", "", 1)  # `-$5` is the negative amount it looks like, refused as one below
    amount = finite_decimal(text, param=param, example=example, shown=value)
    if amount < 0 or (positive and amount == 0):
        rule = "more than zero" if positive else "zero or more"
        raise ParameterError(param, f"{noun} must be {rule}, got {value!r}; write it like {example}")
    if at_most is not None and amount > at_most:
        raise ParameterError(param, f"{noun} is at most {at_most}, got {value!r}; write it like {example}")
    if amount >= MAX_AMOUNT:
        raise ParameterError(param, f"{value!r} is too large; {noun} is below 1,000,000,000,000,000")
    if places is not None and amount != amount.quantize(Decimal(1).scaleb(-places)):
        raise ParameterError(param, f"{value!r} has too many digits; give at most {places} decimal places")
    return amount


def finite_decimal(
    value: object, *, param: str, noun: str = "an amount", example: str, shown: object = None
) -> Decimal:
    """``value``'s text as a finite :class:`~decimal.Decimal`: text that is no number (``1_000`` too, which
    :class:`~decimal.Decimal` reads), and ``nan``, ``inf`` or ``1e400`` read as a float, are one
    :class:`ParameterError` naming ``param`` and ending in ``example``. ``shown`` is what the user typed when
    ``value`` is a part of it (``inf`` of ``inf%``)."""
    typed = value if shown is None else shown
    text = str(value).strip()
    if "_" in text:  # Decimal reads `1_000` as Python source does; a number with a point has no separators
        raise ParameterError(
            param,
            f"{typed!r} is not {noun} (no underscores: a point before the decimals, no thousands separators); write "
            f"it like {example}",
        )
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ParameterError(param, f"{typed!r} is not {noun} ({_unreadable(text)}); write it like {example}") from None
    if not amount.is_finite():
        raise ParameterError(param, f"{typed!r} is not a finite number; write it like {example}")
    return amount


def _unreadable(text: str) -> str:
    """Why ``text`` is no number, in the words of what is accepted."""
    if not text:
        return "no digits"
    if "," in text:
        return "no commas: a point before the decimals, no thousands separators"
    if any(c.isalpha() or c in "$€£¥" for c in text):
        return "the number alone: digits and a point, no currency or unit"
    return "digits with at most one point"


def trimmed(value: Decimal) -> Decimal:
    """``value`` without the trailing zeros after its point (the store's 18 places: ``0.060000000000000000`` is
    ``0.06``, ``1424931.000000000000000000`` is ``1424931``), exactly: never rounded (``normalize()`` rounds to the
    context's 28 digits) and never in exponent form (``1E-7`` is ``0.0000001``); a negative zero is ``0``."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return Decimal("0" if text == "-0" else text)


class Cents(Decimal):
    """A figure rounded to the cent for display (see :func:`cents`)."""

    __slots__ = ()


def cents(value: Decimal) -> Decimal:
    """``value``, a figure already rounded to the cent (a statement's total, a forecast), marked so that the JSON
    documents write it with its two places (``"2170.90"``, ``"2.00"``), as the terminal shows it, where every other
    decimal is written exact with its trailing zeros trimmed. Equal to ``value`` and a ``Decimal`` in every other
    respect (arithmetic on it gives a plain ``Decimal``)."""
    rounded = value.quantize(CENT)
    return Cents(abs(rounded) if rounded == 0 else rounded)  # never "-0.00"


def apportion(values: Sequence[Decimal], target: Decimal) -> list[Decimal]:
    """``values`` rounded to cents so they add up to ``target`` (a whole number of cents), by largest remainder:
    each is floored, and the cents left go one each to the largest remainders (ties: the first listed)."""
    floors = [v.quantize(CENT, rounding=ROUND_FLOOR) for v in values]
    if not values:
        return []
    left = int((target - sum(floors, Decimal(0))) / CENT)
    order = sorted(range(len(values)), key=lambda i: (-(values[i] - floors[i]), i))
    out = list(floors)
    step = CENT if left > 0 else -CENT
    ranked = order if left > 0 else list(reversed(order))
    for n in range(abs(left)):
        out[ranked[n % len(ranked)]] += step
    return out
