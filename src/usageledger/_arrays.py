"""Arrow arrays built from Python values without ``pa.array``.

``pa.array`` (and ``pa.table``, ``pa.scalar``) on Python objects makes pyarrow import pandas, where it is installed,
to ask whether the object is one of pandas' types: about 0.3 s of CPU and 50 MB in every process that loads a
window of costs, though nothing here uses pandas. :func:`array_of` builds the columns a store loads (text, whole
numbers, timestamps, booleans, decimals) straight from their buffers, and leaves any other type, and any value it
does not expect, to ``pa.array``, so its result and its errors are ``pa.array``'s.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

__all__ = ["array_of"]

_INT32_MAX = 2**31 - 1


def array_of(values: Sequence[Any], type: pa.DataType) -> pa.Array:
    """``pa.array(values, type)``, the same array, for a list of ``None`` and values of the type."""
    if sys.byteorder == "little":
        try:
            built = _built(values, type)
        except (TypeError, ValueError, AttributeError, OverflowError, InvalidOperation):
            built = None  # a value of another kind: pa.array says what is wrong with it
        if built is not None:
            return built
    return pa.array(values, type)


def _built(values: Sequence[Any], type: pa.DataType) -> pa.Array | None:
    n = len(values)
    nulls = sum(v is None for v in values)
    validity = _validity(values) if nulls else None
    if pa.types.is_string(type):
        data = bytearray()
        offsets = array("i", [0])
        for v in values:
            if v is not None:
                if not isinstance(v, str):
                    return None
                data += v.encode()
                if len(data) > _INT32_MAX:
                    return None
            offsets.append(len(data))
        return pa.Array.from_buffers(type, n, [validity, pa.py_buffer(offsets), pa.py_buffer(data)], nulls)
    if pa.types.is_int64(type) or (pa.types.is_timestamp(type) and type.unit == "s"):
        if any(v is not None and type_name(v) != "int" for v in values):
            return None
        whole = array("q", (0 if v is None else v for v in values))
        return pa.Array.from_buffers(type, n, [validity, pa.py_buffer(whole)], nulls)
    if pa.types.is_boolean(type):
        if any(v is not None and not isinstance(v, bool) for v in values):
            return None
        bits = _bitmap(bool(v) for v in values)
        return pa.Array.from_buffers(type, n, [validity, pa.py_buffer(bits)], nulls)
    if pa.types.is_decimal(type) and type.bit_width == 128:
        data = bytearray()
        bound = 10**type.precision
        for v in values:
            if v is None:
                data += bytes(16)
                continue
            if isinstance(v, bool) or not isinstance(v, Decimal | int):
                return None
            whole_value = _unscaled(Decimal(v), type.scale)
            if whole_value is None or not -bound < whole_value < bound:
                return None  # more places than the type keeps, or too many digits: pa.array refuses it, and says why
            data += whole_value.to_bytes(16, "little", signed=True)
        return pa.Array.from_buffers(type, n, [validity, pa.py_buffer(data)], nulls)
    return None


def _unscaled(value: Decimal, scale: int) -> int | None:
    """``value`` times ``10**scale`` as a whole number, exactly (no context's rounding), or ``None`` when it is not
    one (more places than ``scale``) or not a number."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return None  # NaN or infinity
    coefficient = int("".join(map(str, digits))) if digits else 0
    shift = exponent + scale
    whole: int
    if shift >= 0:
        whole = coefficient * int(10**shift)
    else:
        whole, rest = divmod(coefficient, int(10 ** (-shift)))
        if rest:
            return None
    return -whole if sign else whole


def type_name(value: object) -> str:
    """``int`` for a whole number that is not a bool (``True`` is an ``int`` to Python, not to Arrow)."""
    return "int" if isinstance(value, int) and not isinstance(value, bool) else type(value).__name__


def _validity(values: Sequence[Any]) -> pa.Buffer:
    return pa.py_buffer(_bitmap(v is not None for v in values))


def _bitmap(bits: Any) -> bytes:
    """Arrow's bit order: the first value is the lowest bit of the first byte."""
    out = bytearray()
    byte = position = 0
    for bit in bits:
        if bit:
            byte |= 1 << position
        position += 1
        if position == 8:
            out.append(byte)
            byte = position = 0
    if position:
        out.append(byte)
    return bytes(out)
