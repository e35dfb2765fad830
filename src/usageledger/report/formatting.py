"""Turning exact values into text: the one place money is rounded, and only for display."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Final

__all__ = ["format_count", "format_money", "format_ratio", "format_signed_money"]

_SYMBOLS: Final = {"usd": "$", "eur": "€", "gbp": "£"}


def format_money(amount: Decimal, currency: str | None = "usd", *, places: int = 2) -> str:
    """``$1,234.57`` for usd (half-up to ``places``); other currencies get their code: ``1,234.57 CHF``."""
    quantum = Decimal(1).scaleb(-places)
    rounded = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    if rounded == 0:
        rounded = abs(rounded)
    code = (currency or "usd").lower()
    symbol = _SYMBOLS.get(code)
    sign = "-" if rounded < 0 else ""
    text = f"{abs(rounded):,.{places}f}"
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {code.upper()}"


def format_signed_money(amount: Decimal, currency: str | None = "usd") -> str:
    """Like :func:`format_money` with an explicit ``+`` for increases."""
    text = format_money(amount, currency)
    return text if text.startswith("-") or amount.quantize(Decimal("0.01")) == 0 else f"+{text}"


def format_count(value: int | Decimal) -> str:
    """An integer with thousands separators."""
    return f"{int(value):,}"


PERCENT_PLACES: Final = 6
"""Decimal places a percentage keeps: a tolerance of ``Decimal("1e-999")`` printed a thousand digits."""


def format_percent(fraction: Decimal) -> str:
    """A fraction as a plain percentage without trailing zeros, to at most 6 decimal places: ``0.5`` is ``50%``
    (never ``5E+1%``); a fraction too small to show is ``<0.000001%``, and an absurdly large one is shortened
    (``1e+1001%``), never a thousand digits."""
    pct = fraction * 100
    if abs(pct) >= 10**15:
        return f"{pct.normalize():.6g}%"
    step = Decimal(1).scaleb(-PERCENT_PLACES)
    rounded = pct.quantize(step, rounding=ROUND_HALF_UP)
    if rounded == 0 and pct != 0:
        return f"<{step:f}%" if pct > 0 else f">-{step:f}%"
    return f"{rounded.normalize():f}%"


def format_ratio(ratio: Decimal | None) -> str:
    """A relative change as ``+12.5%``; ``new`` when there was nothing to compare with."""
    if ratio is None:
        return "new"
    pct = (ratio * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{pct:+}%"
