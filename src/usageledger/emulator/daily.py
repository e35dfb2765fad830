"""The synthetic organisation's daily activity for a block of days at once, with numpy.

Every step is the same IEEE double or 64-bit integer operation, in the same order, as the per-leaf, per-day rule it
replaces (:func:`usageledger.emulator.activity.mix`, the day factor, the leaf's shape), so the integers are exactly
the same; only the Python loop is gone. A block is ``(values, present)``: ``values[day, leaf, atom]`` (int64, zero
where the leaf had no activity) and ``present[day, leaf]`` (the leaf appears in that day's results).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from usageledger.emulator.activity import Family

__all__ = ["Block", "LeafRule", "Shape", "block", "np_mix", "np_unit"]

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
Words = npt.NDArray[np.uint64]
Block = tuple[Ints, Bools]

_MASK: Final = (1 << 64) - 1
_START: Final = np.uint64(0x9E3779B97F4A7C15)
_M1: Final = np.uint64(0xBF58476D1CE4E5B9)
_M2: Final = np.uint64(0x94D049BB133111EB)
_S31: Final = np.uint64(31)
_S29: Final = np.uint64(29)
_S11: Final = np.uint64(11)
_TWO53: Final = float(1 << 53)
_WEEKLY: Final = np.array((1.0, 1.06, 1.08, 1.04, 0.94, 0.34, 0.28))  # Monday first, as in org.py


@dataclass(frozen=True, slots=True)
class Shape:
    """How a leaf's request count becomes its atom vector (org.py's rule, by kind).

    ``chat``: tokens per request of the model; ``per_request``: ``metric`` is ``per_request`` times the requests
    (at least the requests); ``count``: the requests alone.
    """

    kind: str
    input_per_request: int = 0
    output_per_request: int = 0
    scale: float = 1.0
    cached_share: float = 0.0
    write_share: float = 0.0
    audio_share: float = 0.0
    image_share: float = 0.0
    metric: str = ""
    per_request: float = 0.0


@dataclass(frozen=True, slots=True)
class LeafRule:
    """What a leaf's day depends on: its hash, project, volume, activity odds, shape and retirement day."""

    uid: int
    project: int
    base: float
    p_active: float
    shape: Shape
    until: int | None


def _words(parts: Sequence[int | Words]) -> list[Words]:
    return [p if isinstance(p, np.ndarray) else np.array([p & _MASK], dtype=np.uint64) for p in parts]


def np_mix(*parts: int | Words) -> Words:
    """:func:`usageledger.emulator.activity.mix` element-wise over broadcast uint64 arrays (or Python ints)."""
    words = _words(parts)
    shape = np.broadcast_shapes(*(w.shape for w in words))
    h = np.full(shape, _START, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for p in words:
            h = (h ^ p) * _M1
            h = (h ^ (h >> _S31)) * _M2
            h ^= h >> _S29
    return h


def np_unit(*parts: int | Words) -> Floats:
    """:func:`usageledger.emulator.activity.unit` element-wise."""
    return (np_mix(*parts) >> _S11).astype(np.float64) / _TWO53


def _trunc(x: Floats) -> Ints:
    return x.astype(np.int64)  # truncates towards zero, as int() does


def _noise(bits: Words, i: int, spread: float = 0.3) -> Floats:
    x = ((bits >> np.uint64(5 * i)) & np.uint64(31)).astype(np.float64)
    return (1.0 - spread) + (2 * spread) * (x / 31.0)


def _column(rules: Sequence[LeafRule], name: str) -> Floats:
    return np.array([getattr(r.shape, name) for r in rules], dtype=np.float64)


def _shape(family: Family, rules: Sequence[LeafRule], req: Ints, bits: Words) -> Ints:
    """The atom vectors ``[day, leaf, atom]`` of the request counts ``req[day, leaf]``."""
    kind = rules[0].shape.kind
    assert all(r.shape.kind == kind for r in rules), "a family's leaves share one shape kind"
    values: dict[str, Ints] = {}
    driver = family.atoms[family.driver]
    if kind == "chat":
        ipr = np.array([r.shape.input_per_request for r in rules], dtype=np.int64)
        opr = np.array([r.shape.output_per_request for r in rules], dtype=np.int64)
        scale = _column(rules, "scale")
        cs, ws = _column(rules, "cached_share"), _column(rules, "write_share")
        aus, ims = _column(rules, "audio_share"), _column(rules, "image_share")
        inp = _trunc((req * ipr).astype(np.float64) * scale * _noise(bits, 0))
        cached = _trunc(inp.astype(np.float64) * cs * _noise(bits, 1))
        write = _trunc(inp.astype(np.float64) * ws * _noise(bits, 2))
        w30 = _trunc(write.astype(np.float64) * 0.8)
        uncached = inp - cached - write
        audio = _trunc(uncached.astype(np.float64) * aus)
        image = _trunc(uncached.astype(np.float64) * ims * _noise(bits, 3))
        c_audio = _trunc(cached.astype(np.float64) * aus * 0.5)
        c_image = _trunc(cached.astype(np.float64) * ims)
        out = _trunc((req * opr).astype(np.float64) * scale * _noise(bits, 4))
        o_audio = _trunc(out.astype(np.float64) * aus * 0.8)
        values = {
            "num_model_requests": req,
            "input_cache_write_30m_tokens": w30,
            "input_cache_write_12h_tokens": write - w30,
            "input_text_tokens": uncached - audio - image,
            "input_audio_tokens": audio,
            "input_image_tokens": image,
            "input_cached_text_tokens": cached - c_audio - c_image,
            "input_cached_audio_tokens": c_audio,
            "input_cached_image_tokens": c_image,
            "output_text_tokens": out - o_audio,
            "output_audio_tokens": o_audio,
        }
    elif kind == "per_request":
        metric = rules[0].shape.metric
        assert all(r.shape.metric == metric for r in rules)
        per_request = _column(rules, "per_request")
        values[driver] = req
        values[metric] = np.maximum(req, _trunc(req.astype(np.float64) * per_request * _noise(bits, 0)))
    else:
        values[driver] = req
    zeros = np.zeros_like(req)
    return np.stack([values.get(a, zeros) for a in family.atoms], axis=-1)


def block(family: Family, rules: Sequence[LeafRule], days: Ints, *, seed: int, day0: int, history: int) -> Block:
    """The final (unrevised) activity of every leaf of ``family`` on each Unix day number of ``days``."""
    n_days, n_leaves = len(days), len(rules)
    if n_leaves == 0:
        return np.zeros((n_days, 0, len(family.atoms)), dtype=np.int64), np.zeros((n_days, 0), dtype=np.bool_)
    d = days[:, None]
    dw = days.astype(np.uint64)[:, None]
    uid = np.array([r.uid for r in rules], dtype=np.uint64)[None, :]
    base = np.array([r.base for r in rules], dtype=np.float64)[None, :]
    until = np.array([r.until if r.until is not None else np.iinfo(np.int64).max for r in rules], dtype=np.int64)
    live = (d < until[None, :]) & (d >= day0)
    if family.gauge:
        progress = np.minimum(1.0, (days - day0 + 1) / history)[:, None]
        level = _trunc(base * (0.25 + 0.75 * progress) * (0.98 + 0.04 * np_unit(uid, dw)))
        level = np.where(live, level, 0)
        return level[:, :, None], live
    growth = 0.45 + 0.55 * np.minimum(1.0, (days - day0) / history)
    factor = _WEEKLY[(days + 3) % 7] * growth
    factor = np.where((days < day0) | (np_unit(seed, 11, days.astype(np.uint64)) < 0.02), 0.0, factor)
    project = np.array([r.project for r in rules], dtype=np.uint64)[None, :]
    p_active = np.array([r.p_active for r in rules], dtype=np.float64)[None, :]
    weeks = (days // 7).astype(np.uint64)[:, None]
    active = live & (factor[:, None] > 0.0)
    active &= ~(np_unit(seed, 12, project, weeks) < 0.05)
    active &= np_unit(uid, 13, dw) < p_active
    bits = np_mix(uid, 14, dw)
    req = _trunc(base * factor[:, None] * (0.6 + 0.8 * np_unit(uid, 15, dw)))
    present = active & (req > 0)
    req = np.where(present, req, 0)
    bits = np.where(present, bits, np.uint64(0))
    return _shape(family, rules, req, bits), present
