"""The synthetic organisation's daily activity for a block of days at once, with numpy.

Every step is the same IEEE double or 64-bit integer operation, in the same order, as the per-leaf, per-day rule it
replaces (:func:`usageledger.emulator.activity.mix`, the day factor, the leaf's shape), so the integers are exactly
the same; only the Python loop is gone. A block is ``(values, present)``: ``values[day, leaf, atom]`` (int64, zero
where the leaf had no activity) and ``present[day, leaf]`` (the leaf appears in that day's results).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from usageledger.emulator.activity import Family

__all__ = ["Block", "LeafRule", "LeafTable", "Shape", "Tokens", "blocks", "np_mix", "np_unit", "split"]

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
_INT64: Final = 2**63
_WEEKLY: Final = np.array((1.0, 1.06, 1.08, 1.04, 0.94, 0.34, 0.28))  # Monday first, as in org.py


@dataclass(frozen=True, slots=True)
class Tokens:
    """A model's tokens per request: input and output, and the shares of input that are cached, cache writes, audio
    and image (declared once: a model in org.py carries one, and so does the chat shape of each of its leaves)."""

    input_per_request: int = 0
    output_per_request: int = 0
    cached_share: float = 0.0
    write_share: float = 0.0
    audio_share: float = 0.0
    image_share: float = 0.0


@dataclass(frozen=True, slots=True)
class Shape:
    """How a leaf's request count becomes its atom vector (org.py's rule, by kind).

    ``chat``: ``tokens`` of the model, times ``scale``; ``per_request``: ``metric`` is ``per_request`` times the
    requests (at least the requests); ``count``: the requests alone.
    """

    kind: str
    tokens: Tokens = Tokens()
    scale: float = 1.0
    metric: str = ""
    per_request: float = 0.0


@dataclass(frozen=True, slots=True)
class LeafRule:
    """What a leaf's day depends on: its hash, project, volume, activity odds, shape and retirement day."""

    uid: int
    """The leaf's hash: with the day, it seeds each of the leaf's draws (active or not, requests, noise)."""
    project: int
    """Its project's place in ``Organisation.projects``."""
    base: float
    """Its volume: an active day's requests on average, before the weekday and growth factors (the project's weight
    already applied); a gauge's level once the history has fully grown."""
    p_active: float
    """The chance that the leaf is active on a day."""
    shape: Shape
    until: int | None
    """The Unix day number from which the leaf is gone (its project archived or its key deleted); ``None``: never."""


def _words(parts: Sequence[int | Words]) -> list[Words]:
    return [p if isinstance(p, np.ndarray) else np.array([p & _MASK], dtype=np.uint64) for p in parts]


def np_mix(*parts: int | Words) -> Words:
    """:func:`usageledger.emulator.activity.mix` element-wise over broadcast uint64 arrays (or Python ints)."""
    words = _words(parts)
    shape = np.broadcast_shapes(*(w.shape for w in words))
    # the state takes each part's shape as it comes (leaf-only parts first cost one row, not the whole block)
    h = np.full((1,) * len(shape), _START, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for p in words:
            h = (h ^ p) * _M1
            h = (h ^ (h >> _S31)) * _M2
            h ^= h >> _S29
    return np.broadcast_to(h, shape) if h.shape != shape else h


def np_unit(*parts: int | Words) -> Floats:
    """:func:`usageledger.emulator.activity.unit` element-wise."""
    return (np_mix(*parts) >> _S11).astype(np.float64) / _TWO53


def _trunc(x: Floats) -> Ints:
    return x.astype(np.int64)  # truncates towards zero, as int() does


def _noise(bits: Words, i: int, spread: float = 0.3) -> Floats:
    x = ((bits >> np.uint64(5 * i)) & np.uint64(31)).astype(np.float64)
    return (1.0 - spread) + (2 * spread) * (x / 31.0)


@dataclass(frozen=True, slots=True)
class LeafTable:
    """A family's leaf rules as columns, built once: ``leaf`` arrays of shape (1, leaves), broadcast over days."""

    rules: tuple[LeafRule, ...]
    uid: Words
    project: Words
    base: Floats
    p_active: Floats
    until: Ints
    columns: dict[str, Floats]
    """The shape parameters, by :class:`Tokens` field name, and ``scale`` and ``per_request``."""

    @classmethod
    def of(cls, rules: Sequence[LeafRule]) -> LeafTable:
        def row(values: list[object], dtype: type) -> npt.NDArray[Any]:
            return np.array(values, dtype=dtype).reshape(1, len(rules))

        never = np.iinfo(np.int64).max
        columns = {f.name: row([getattr(r.shape.tokens, f.name) for r in rules], np.float64) for f in fields(Tokens)}
        columns |= {name: row([getattr(r.shape, name) for r in rules], np.float64) for name in ("scale", "per_request")}
        return cls(
            tuple(rules),
            row([r.uid for r in rules], np.uint64),
            row([r.project for r in rules], np.uint64),
            row([r.base for r in rules], np.float64),
            row([r.p_active for r in rules], np.float64),
            row([never if r.until is None else r.until for r in rules], np.int64),
            columns,
        )


def _chat(table: LeafTable, req: Ints, bits: Words, cols: slice) -> dict[str, Ints]:
    """org.py's chat shape: a chat model's tokens per request, split into the token atoms (of the leaves ``cols``:
    ``req`` and ``bits`` are those columns)."""
    col = {name: column[:, cols] for name, column in table.columns.items()}
    ipr = col["input_per_request"].astype(np.int64)
    opr = col["output_per_request"].astype(np.int64)
    scale = col["scale"]
    cs, ws = col["cached_share"], col["write_share"]
    aus, ims = col["audio_share"], col["image_share"]
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
    return {
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


def blocks(
    parts: Sequence[tuple[Family, int, int]], table: LeafTable, days: Ints, *, seed: int, day0: int, history: int
) -> list[Block]:
    """The final (unrevised) activity on each Unix day number of ``days`` of every family in ``parts``.

    ``table`` holds the leaves of all of them, family ``parts[i][0]`` owning columns ``parts[i][1]:parts[i][2]``;
    every step runs once over all leaves (a leaf's shape columns are zero where its kind does not use them), so a
    block of every endpoint costs about what one endpoint's would.
    """
    kinds = {r.shape.kind for r in table.rules}
    d = days[:, None]
    dw = days.astype(np.uint64)[:, None]
    uid, base = table.uid, table.base
    live = (d < table.until) & (d >= day0)
    level: Ints | None = None
    if any(family.gauge for family, _, _ in parts):
        progress = np.minimum(1.0, (days - day0 + 1) / history)[:, None]
        level = np.where(live, _trunc(base * (0.25 + 0.75 * progress) * (0.98 + 0.04 * np_unit(uid, dw))), 0)
    growth = 0.45 + 0.55 * np.minimum(1.0, (days - day0) / history)
    factor = _WEEKLY[(days + 3) % 7] * growth
    factor = np.where((days < day0) | (np_unit(seed, 11, days.astype(np.uint64)) < 0.02), 0.0, factor)
    weeks = (days // 7).astype(np.uint64)[:, None]
    active = live & (factor[:, None] > 0.0)
    active &= ~(np_unit(seed, 12, table.project, weeks) < 0.05)
    active &= np_unit(uid, 13, dw) < table.p_active
    bits = np_mix(uid, 14, dw)
    req = _trunc(base * factor[:, None] * (0.6 + 0.8 * np_unit(uid, 15, dw)))
    present = active & (req > 0)
    req = np.where(present, req, 0)
    bits = np.where(present, bits, np.uint64(0))
    chats = [i for i, r in enumerate(table.rules) if r.shape.kind == "chat"]
    lo, hi = (chats[0], chats[-1] + 1) if chats else (0, 0)  # the chat leaves' span (org.py puts them first)
    chat = _chat(table, req[:, lo:hi], bits[:, lo:hi], slice(lo, hi)) if chats else {}
    metric = None
    if "per_request" in kinds:
        metric = np.maximum(req, _trunc(req.astype(np.float64) * table.columns["per_request"] * _noise(bits, 0)))
    out: list[Block] = []
    for family, a, b in parts:
        if family.gauge:
            assert level is not None
            out.append((level[:, a:b, None], live[:, a:b]))
            continue
        rules = table.rules[a:b]
        kind = rules[0].shape.kind if rules else "count"
        assert all(r.shape.kind == kind for r in rules), "a family's leaves share one shape kind"
        values: dict[str, Ints] = {}
        if kind == "chat":
            values = {name: v[:, a - lo : b - lo] for name, v in chat.items()}
        values[family.atoms[family.driver]] = req[:, a:b]
        if kind == "per_request":
            assert metric is not None and len({r.shape.metric for r in rules}) == 1
            values[rules[0].shape.metric] = metric[:, a:b]
        zeros = np.zeros((len(days), b - a), dtype=np.int64)
        out.append((np.stack([values.get(atom, zeros) for atom in family.atoms], axis=-1), present[:, a:b]))
    return out


def split(values: Ints, present: Bools, cum: Ints, driver: int) -> Block | None:
    """Every leaf's vector split into ``n`` parts at once, exactly as ``SyntheticSource._split`` splits one.

    ``values[leaf, atom]`` and ``present[leaf]`` are a day, ``cum[leaf, n + 1]`` each leaf's cumulative weights
    (from 0 up to their total). The driver atom is split first (``r * cum // total``); every atom ``c`` of part
    ``k`` is ``c * hi // r - c * lo // r`` between the part's driver bounds; a part whose bounds meet is absent, and
    a leaf with no driver count keeps its whole vector in the first part. Returns ``(parts[n, leaf, atom],
    present[n, leaf])``; ``None`` where an intermediate product could leave int64 (the per-leaf rule answers).
    """
    leaves = np.flatnonzero(present)  # only leaves that are there have parts
    values, cum = values[leaves], cum[leaves]
    r = values[:, driver]
    total = cum[:, -1]
    rmax = int(np.abs(r).max(initial=0))  # a bound lies between 0 and r: products stay below rmax times these
    if rmax * max(int(np.abs(values).max(initial=0)), int(np.abs(cum).max(initial=0))) >= _INT64:
        return None
    bounds = r[:, None] * cum // total[:, None]
    # c * hi // r - c * lo // r, with each part's hi the next part's lo: one product and division per bound
    divisor = np.where(r == 0, 1, r)[:, None, None]
    parts = np.diff(values[:, None, :] * bounds[:, :, None] // divisor, axis=1)  # [leaf there, part, atom]
    live = bounds[:, :-1] != bounds[:, 1:]
    idle = r == 0
    if idle.any():
        parts[idle, 0, :] = values[idle]
        live[idle, 0] = True
    parts[~live] = 0
    n = cum.shape[1] - 1
    out = np.zeros((n, len(present), values.shape[1]), dtype=np.int64)
    out[:, leaves] = parts.transpose(1, 0, 2)
    there = np.zeros((n, len(present)), dtype=np.bool_)
    there[:, leaves] = live.T
    return out, there
