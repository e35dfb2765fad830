"""Replay: serve usage records from a JSON Lines or CSV file instead of the synthetic organisation.

Record format (one JSON object per line, or one CSV row under a header with the same names):

* ``endpoint`` (required): a usage endpoint name from the catalogue, e.g. ``completions``, ``images``.
* ``time`` (or ``start_time``; required): Unix seconds or ISO 8601. The record counts in the minute that holds it,
  so a record of a whole day shows up in that day's first minute and hour.
* grouping fields of that endpoint (``project_id``, ``user_id``, ``api_key_id``, ``model``, ``batch``,
  ``service_tier``, ``api_source``, ``size``, ``source``, ``vector_store_id``, ``context_level``): missing or
  empty means null. ``batch`` is ``true``/``false``.
* metric fields: the endpoint's result fields (``num_model_requests``, ``input_tokens``, ``images``, ...). For
  completions and decisions the per-modality breakdown may be given; totals that exceed their given parts are
  attributed to text (``input_tokens`` without a breakdown becomes ``input_text_tokens``). Missing means 0.
* ``vector_stores`` records give ``usage_bytes``: the level from that day on, until a later record.

Costs are priced from the emulator's price table (models it does not know get a default price).
"""

from __future__ import annotations

import bisect
import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

from usageledger import catalogue, timeutil
from usageledger._paths import read_user_text
from usageledger.emulator.activity import DAY, DERIVED, FAMILIES, HOUR, MINUTE, Family, LeafVectors, accumulate
from usageledger.errors import ConfigError, ReplayError

__all__ = ["ReplayError", "ReplaySource"]

_REMAINDER: Final[Mapping[str, str]] = {
    "input_cached_tokens": "input_cached_text_tokens",
    "input_cache_write_tokens": "input_cache_write_30m_tokens",
    "input_uncached_tokens": "input_text_tokens",
    "input_tokens": "input_text_tokens",
    "output_tokens": "output_text_tokens",
}


def _records(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    try:
        text = read_user_text(path)
    except ConfigError as exc:  # not UTF-8
        raise ReplayError(str(exc)) from None
    with io.StringIO(text, newline="") as fh:
        if path.suffix.lower() == ".csv":
            for n, row in enumerate(csv.DictReader(fh), start=2):
                yield n, {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        else:
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        value = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ReplayError(f"{path}:{n}: not JSON: {exc}") from None
                    if not isinstance(value, dict):
                        raise ReplayError(f"{path}:{n}: expected a JSON object")
                    yield n, value


def _int(value: object, where: str) -> int:
    if isinstance(value, bool):
        raise ReplayError(f"{where}: expected an integer, got {value!r}")
    try:
        return int(str(value)) if not isinstance(value, int) else value
    except ValueError:
        raise ReplayError(f"{where}: expected an integer, got {value!r}") from None


def _dim(name: str, value: object) -> object:
    if value is None:
        return None
    if name == "batch":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return str(value)


def _atoms(family: Family, record: Mapping[str, object], where: str) -> tuple[int, ...]:
    values = {a: _int(record[a], f"{where}: {a}") if a in record else 0 for a in family.atoms}
    for total, parts in DERIVED.items():
        target = _REMAINDER[total]
        if total not in record or target not in values or not set(parts) <= set(values):
            continue
        missing = _int(record[total], f"{where}: {total}") - sum(values[p] for p in parts)
        if missing < 0:
            raise ReplayError(f"{where}: {total} is smaller than the sum of its parts")
        values[target] += missing
    return tuple(values[a] for a in family.atoms)


class ReplaySource:
    """Activity loaded from records, indexed by minute, hour and day (exact sums of the minutes)."""

    def __init__(self) -> None:
        self._leaves: dict[str, list[tuple[object, ...]]] = {name: [] for name in FAMILIES}
        self._index: dict[str, dict[tuple[object, ...], int]] = {name: {} for name in FAMILIES}
        self._units: dict[int, dict[tuple[str, int], dict[int, list[int]]]] = {MINUTE: {}, HOUR: {}, DAY: {}}
        self._levels: dict[str, dict[int, list[tuple[int, int]]]] = {}
        self._first = 0

    @classmethod
    def load(cls, path: Path) -> ReplaySource:
        source = cls()
        first: int | None = None
        for n, record in _records(path):
            where = f"{path}:{n}"
            name = str(record.get("endpoint", ""))
            family = FAMILIES.get(name)
            if family is None:
                choices = ", ".join(e.name for e in catalogue.USAGE_ENDPOINTS)
                raise ReplayError(f"{where}: unknown endpoint {name!r}; use one of: {choices}")
            raw_time = record.get("time", record.get("start_time"))
            if raw_time is None:
                raise ReplayError(f"{where}: a record needs `time` (Unix seconds or ISO 8601)")
            when = timeutil.to_unix(raw_time if isinstance(raw_time, int) else str(raw_time), param="time")
            first = when if first is None else min(first, when)
            source._add(family, when, tuple(_dim(d, record.get(d)) for d in family.dims), _atoms(family, record, where))
        source._first = 0 if first is None else first - first % DAY
        for per_leaf in source._levels.values():
            for series in per_leaf.values():
                series.sort()
        return source

    def _add(self, family: Family, when: int, dims: tuple[object, ...], vec: tuple[int, ...]) -> None:
        index = self._index[family.name]
        leaf = index.get(dims)
        if leaf is None:
            leaf = index[dims] = len(self._leaves[family.name])
            self._leaves[family.name].append(dims)
        if family.gauge:
            self._levels.setdefault(family.name, {}).setdefault(leaf, []).append((when - when % DAY, vec[0]))
            return
        for width, units in self._units.items():
            accumulate(units.setdefault((family.name, when - when % width), {}), leaf, vec)

    @property
    def first_time(self) -> int:
        return self._first

    def leaves(self, family: Family) -> Sequence[tuple[object, ...]]:
        return self._leaves[family.name]

    def _get(self, family: Family, width: int, start: int) -> LeafVectors:
        if family.gauge:
            out: LeafVectors = {}
            day = start - start % DAY
            for leaf, series in self._levels.get(family.name, {}).items():
                i = bisect.bisect_right(series, (day, float("inf")))
                if i:
                    out[leaf] = (series[i - 1][1],)
            return out
        unit = self._units[width].get((family.name, start), {})
        return {leaf: tuple(vec) for leaf, vec in unit.items()}

    def day(self, family: Family, start: int, now: int) -> LeafVectors:
        return self._get(family, DAY, start)

    def hour(self, family: Family, start: int, now: int) -> LeafVectors:
        return self._get(family, HOUR, start)

    def minute(self, family: Family, start: int, now: int) -> LeafVectors:
        return self._get(family, MINUTE, start)
