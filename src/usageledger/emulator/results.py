"""From per-leaf activity to result rows: filters, grouping and cost line items, all with exact sums.

Usage rows sum integer atom vectors per group; cost rows sum Decimal amounts that were quantized per leaf and
line item first, so a grouped bucket always adds up to the ungrouped one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from usageledger import catalogue
from usageledger.catalogue import Endpoint
from usageledger.emulator.activity import FAMILIES, ActivitySource, Family, accumulate, interval
from usageledger.emulator.prices import line_items
from usageledger.rules import FilterValue

__all__ = ["ResultBuilder", "filters_key"]

FiltersKey = tuple[tuple[str, FilterValue], ...]
Row = dict[str, Any]

_COSTS: Final = catalogue.get("costs")
_COST_DIMS: Final = _COSTS.group_by
_CURRENCY: Final = "usd"


def filters_key(filters: Mapping[str, FilterValue]) -> FiltersKey:
    """A canonical, hashable form of the filters: names sorted, list values sorted and de-duplicated."""
    return tuple(sorted((name, v if isinstance(v, bool) else tuple(sorted(set(v)))) for name, v in filters.items()))


def _sort_key(values: tuple[object, ...]) -> tuple[tuple[int, str], ...]:
    return tuple((0, "") if v is None else (1, str(v)) for v in values)


def _tidy(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation."""
    tidy = value.normalize()
    exponent = tidy.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        tidy = tidy.quantize(Decimal(1))
    return tidy


class ResultBuilder:
    """Builds the ``results`` of one bucket for any endpoint, from one activity source."""

    def __init__(self, source: ActivitySource) -> None:
        self.source = source
        self._allowed: dict[tuple[str, FiltersKey], list[bool]] = {}
        self._keys: dict[tuple[str, tuple[str, ...]], list[tuple[object, ...]]] = {}
        self._dims: dict[str, list[dict[str, object]]] = {}
        self._lock = threading.Lock()

    # --- usage ----------------------------------------------------------------------------------------------

    def _leaf_dims(self, family: Family) -> list[dict[str, object]]:
        dims = self._dims.get(family.name)
        if dims is None:
            dims = [dict(zip(family.dims, leaf, strict=True)) for leaf in self.source.leaves(family)]
            self._dims[family.name] = dims
        return dims

    def _allowed_leaves(self, family: Family, fkey: FiltersKey) -> list[bool]:
        key = (family.name, fkey)
        hit = self._allowed.get(key)
        if hit is not None:
            return hit
        endpoint = family.endpoint
        tests = [(endpoint.filter(name).field, value) for name, value in fkey]
        allowed = [
            all((d.get(fld) is value) if isinstance(value, bool) else (d.get(fld) in value) for fld, value in tests)
            for d in self._leaf_dims(family)
        ]
        with self._lock:
            self._allowed[key] = allowed
        return allowed

    def _group_keys(self, family: Family, group_by: tuple[str, ...]) -> list[tuple[object, ...]]:
        key = (family.name, group_by)
        hit = self._keys.get(key)
        if hit is not None:
            return hit
        keys = [tuple(d.get(g) for g in group_by) for d in self._leaf_dims(family)]
        with self._lock:
            self._keys[key] = keys
        return keys

    def usage(
        self, endpoint: Endpoint, a: int, b: int, group_by: tuple[str, ...], fkey: FiltersKey, now: int
    ) -> list[Row]:
        """Result rows of a usage endpoint for the activity in ``[a, b)``; ``group_by`` in catalogue order."""
        family = FAMILIES[endpoint.name]
        vectors = interval(self.source, family, a, b, now)
        if not vectors:
            return []
        allowed = self._allowed_leaves(family, fkey)
        keys = self._group_keys(family, group_by)
        groups: dict[tuple[object, ...], list[int]] = {}
        for leaf, vec in vectors.items():
            if not allowed[leaf]:
                continue
            accumulate(groups, keys[leaf], vec)
        tag = endpoint.result_object
        rows = []
        for k in sorted(groups, key=_sort_key):
            row: Row = {"object": tag}
            row.update(family.metrics(groups[k]))
            values = dict(zip(group_by, k, strict=True))
            for g in endpoint.group_by:
                row[g] = values.get(g)
            rows.append(row)
        return rows

    # --- costs ----------------------------------------------------------------------------------------------

    def cost_leaves(self, a: int, b: int, now: int) -> tuple[dict[tuple[object, ...], list[Decimal]], dict[str, str]]:
        """Per cost leaf (project, line item, key, user, api source) in ``[a, b)``: [quantity, amount]; and units."""
        out: dict[tuple[object, ...], list[Decimal]] = {}
        units: dict[str, str] = {}
        seconds = max(0, min(b, now) - a)
        for family in FAMILIES.values():
            vectors = interval(self.source, family, a, b, now)
            if not vectors:
                continue
            dims = self._leaf_dims(family)
            for leaf, vec in vectors.items():
                d = dims[leaf]
                for item in line_items(family, d, tuple(vec), seconds):
                    units[item.name] = item.unit
                    values = {
                        "project_id": d.get("project_id"),
                        "line_item": item.name,
                        "api_key_id": d.get("api_key_id"),
                        "user_id": d.get("user_id"),
                        "api_source": d.get("api_source") or "unlabeled",
                    }
                    key = tuple(values.get(g) for g in _COST_DIMS)
                    acc = out.get(key)
                    if acc is None:
                        out[key] = [item.quantity, item.amount]
                    else:
                        acc[0] += item.quantity
                        acc[1] += item.amount
        return out, units

    def costs(self, a: int, b: int, group_by: tuple[str, ...], fkey: FiltersKey, now: int) -> list[Row]:
        leaves, units = self.cost_leaves(a, b, now)
        if not leaves:
            return []
        index = {g: i for i, g in enumerate(_COST_DIMS)}
        tests = [(index[_COSTS.filter(name).field], value) for name, value in fkey]
        positions = [index[g] for g in group_by]
        groups: dict[tuple[object, ...], list[Decimal]] = {}
        for key, (quantity, amount) in leaves.items():
            if not all(key[i] in value for i, value in tests if isinstance(value, Sequence)):
                continue
            k = tuple(key[i] for i in positions)
            acc = groups.get(k)
            if acc is None:
                groups[k] = [quantity, amount]
            else:
                acc[0] += quantity
                acc[1] += amount
        by_item = "line_item" in group_by
        rows = []
        for k in sorted(groups, key=_sort_key):
            quantity, amount = groups[k]
            values = dict(zip(group_by, k, strict=True))
            row: Row = {"object": _COSTS.result_object, "amount": {"value": _tidy(amount), "currency": _CURRENCY}}
            for g in _COST_DIMS:
                row[g] = values.get(g)
            item = values.get("line_item")
            row["quantity"] = _tidy(quantity) if by_item else None
            row["quantity_unit"] = units.get(str(item)) if by_item else None
            rows.append(row)
        return rows
