"""Atomic activity and exact roll-ups, shared by the synthetic organisation and replay.

Activity is kept as integer *atoms* per leaf (one combination of every grouping field of an endpoint) per minute,
hour or day. A result field is either an atom or a sum of atoms (reference §5 identities), so every identity
holds at every level by construction. An interval ``[a, b)`` is decomposed into whole days, whole hours and
single minutes; a source guarantees that a day equals the sum of its hours and an hour the sum of its minutes,
so any bucket of any width is the exact integer sum of the same atomic activity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from usageledger import catalogue
from usageledger.catalogue import Endpoint

__all__ = [
    "DAY",
    "DERIVED",
    "FAMILIES",
    "HOUR",
    "MINUTE",
    "ActivitySource",
    "Family",
    "LeafVectors",
    "accumulate",
    "add_into",
    "interval",
    "mix",
    "unit",
]

MINUTE: Final = 60
HOUR: Final = 3600
DAY: Final = 86400

K = TypeVar("K")

LeafVectors = dict[int, tuple[int, ...]]
"""Leaf index -> atom vector; only leaves with activity appear."""

# Result fields that are sums of atoms (reference §5). Everything else a family reports is an atom itself.
DERIVED: Final[Mapping[str, tuple[str, ...]]] = {
    "input_cached_tokens": ("input_cached_text_tokens", "input_cached_audio_tokens", "input_cached_image_tokens"),
    "input_cache_write_tokens": ("input_cache_write_30m_tokens", "input_cache_write_12h_tokens"),
    "input_uncached_tokens": ("input_text_tokens", "input_audio_tokens", "input_image_tokens"),
    "input_tokens": (
        "input_cached_text_tokens",
        "input_cached_audio_tokens",
        "input_cached_image_tokens",
        "input_cache_write_30m_tokens",
        "input_cache_write_12h_tokens",
        "input_text_tokens",
        "input_audio_tokens",
        "input_image_tokens",
    ),
    "output_tokens": ("output_text_tokens", "output_audio_tokens", "output_image_tokens"),
}

_DRIVERS: Final = ("num_model_requests", "num_sessions", "num_requests")


@dataclass(frozen=True, slots=True)
class Family:
    """How one usage endpoint's activity is stored: its leaf fields (the catalogue's ``group_by``) and atoms."""

    endpoint: Endpoint
    atoms: tuple[str, ...]
    fields: tuple[tuple[str, tuple[int, ...]], ...]
    """Every result metric in catalogue order, with the atom indices it sums."""
    driver: int
    """Index of the count atom that splits first (requests); other atoms follow it in proportion."""
    gauge: bool
    """A level (storage bytes), not a flow: a bucket reports the level at its end."""

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def dims(self) -> tuple[str, ...]:
        return self.endpoint.group_by

    def atom(self, name: str) -> int:
        return self.atoms.index(name)

    def metrics(self, vec: Sequence[int]) -> dict[str, int]:
        """The endpoint's result metrics from an atom vector."""
        out: dict[str, int] = {}
        for name, idx in self.fields:
            if len(idx) == 1:
                out[name] = vec[idx[0]]
            else:
                total = 0
                for i in idx:
                    total += vec[i]
                out[name] = total
        return out


def _family(endpoint: Endpoint) -> Family:
    metric_names = [c.name for c in endpoint.additive_metrics]
    derived = {n: parts for n, parts in DERIVED.items() if n in metric_names and set(parts) <= set(metric_names)}
    atoms = tuple(n for n in metric_names if n not in derived)
    fields = tuple((n, tuple(atoms.index(a) for a in derived.get(n, (n,)))) for n in metric_names)
    driver = next((atoms.index(d) for d in _DRIVERS if d in atoms), 0)
    gauge = any(c.level for c in endpoint.metrics)  # a level, not a count: the catalogue says which
    return Family(endpoint, atoms, fields, driver, gauge)


FAMILIES: Final[Mapping[str, Family]] = {e.name: _family(e) for e in catalogue.USAGE_ENDPOINTS}


class ActivitySource(Protocol):
    """Where activity comes from: the synthetic organisation or a replayed file.

    ``leaves(family)`` lists each leaf's field values in ``family.dims`` order; the index is the leaf's id. The
    vectors of a day must equal the sum of its 24 hours, and an hour the sum of its 60 minutes (for gauges: the
    level, the same at every width). ``now`` lets a source revise recent activity; the caller never asks for a
    whole day or hour that ends after ``now``.
    """

    def leaves(self, family: Family) -> Sequence[tuple[object, ...]]: ...

    def day(self, family: Family, start: int, now: int) -> LeafVectors: ...

    def hour(self, family: Family, start: int, now: int) -> LeafVectors: ...

    def minute(self, family: Family, start: int, now: int) -> LeafVectors: ...

    @property
    def first_time(self) -> int:
        """No activity before this Unix time."""
        ...


def accumulate(acc: dict[K, list[int]], key: K, vec: Sequence[int]) -> None:
    """Add one atom vector into ``acc[key]``, exactly; a new key starts from a copy of ``vec``.

    The one roll-up step: leaves into days and groups, replayed records into their buckets.
    """
    cur = acc.get(key)
    if cur is None:
        acc[key] = list(vec)
    else:
        for i, v in enumerate(vec):
            cur[i] += v


def add_into(acc: dict[int, list[int]], vectors: LeafVectors) -> None:
    """Add leaf vectors into an accumulator, exactly."""
    for leaf, vec in vectors.items():
        accumulate(acc, leaf, vec)


def interval(source: ActivitySource, family: Family, a: int, b: int, now: int) -> dict[int, list[int]]:
    """Per-leaf activity in ``[a, b)``: whole days, then whole hours, then minutes (a minute counts by its start).

    For a gauge family, the level at the interval's last moment.
    """
    acc: dict[int, list[int]] = {}
    b = min(b, now)
    a = max(a, source.first_time - source.first_time % MINUTE)
    if b <= a:
        return acc
    if family.gauge:
        add_into(acc, source.day(family, (b - 1) - (b - 1) % DAY, now))
        return acc
    t = -(-a // MINUTE) * MINUTE
    while t < b:
        if t % DAY == 0 and t + DAY <= b:
            add_into(acc, source.day(family, t, now))
            t += DAY
        elif t % HOUR == 0 and t + HOUR <= b:
            add_into(acc, source.hour(family, t, now))
            t += HOUR
        else:
            add_into(acc, source.minute(family, t, now))
            t += MINUTE
    return acc


_MASK: Final = (1 << 64) - 1


def mix(*parts: int) -> int:
    """A 64-bit hash of integers (splitmix64 steps): fast, stable across runs and platforms."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & _MASK
        h ^= h >> 29
    return h


def unit(*parts: int) -> float:
    """A deterministic number in [0, 1) from integers."""
    return (mix(*parts) >> 11) / float(1 << 53)
