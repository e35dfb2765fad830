"""From per-leaf activity to result rows: filters, grouping and cost line items, all with exact sums.

Usage rows sum integer atom vectors per group; cost rows sum Decimal amounts that were quantized per leaf and
line item first, so a grouped bucket always adds up to the ungrouped one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Protocol, runtime_checkable

import msgspec
import numpy as np
import numpy.typing as npt

from usageledger import catalogue
from usageledger.catalogue import Endpoint
from usageledger.emulator.activity import DAY, FAMILIES, HOUR, ActivitySource, Family, accumulate, interval
from usageledger.emulator.prices import STORAGE_ENDPOINT, billings, line_items
from usageledger.rules import FilterValue

__all__ = ["ResultBuilder", "filters_key"]

FiltersKey = tuple[tuple[str, FilterValue], ...]
Row = dict[str, Any]
Results = list[Row] | msgspec.Raw
"""A bucket's result rows, or (the numpy paths) the JSON array already encoded as the handler's encoder would."""

_COSTS: Final = catalogue.get("costs")
_COST_DIMS: Final = _COSTS.group_by
_CURRENCY: Final = "usd"
_AMOUNT_SCALE: Final = 10**12  # amounts are exact multiples of AMOUNT_QUANTUM
_SAFE: Final = 2**62
_PLAIN: Final = 10**6  # amounts from 1e-6 up print in plain notation (Decimal's rule); smaller ones in E notation
_COST_SUMS: Final = 16
"""Blocks of grouped daily cost sums kept (per grouping and filters), with their formatting arguments: 49 bytes a
group and day, 0.6 MiB for the 427 groups by ``project_id,line_item``."""
_HOUR_SUMS: Final = 64
"""Days of grouped hourly sums kept (per endpoint, grouping and filters): a few KiB to 100 KiB each."""
_ENCODE: Final = msgspec.json.Encoder(decimal_format="number").encode
_ROW_HEAD: Final = ('{"object":"' + _COSTS.result_object + '","amount":{"value":').encode().replace(b"%", b"%%")
_ROW_MID: Final = ',"currency":"' + _CURRENCY + '"},'
_STORAGE: Final = "vector store storage"
_WHOLE: Final = 1
_TEXT: Final = 2
_AMOUNT_FORMS: Final = (b"%d.%0*d", b"%d%.0a%.0a", b"%s%.0a%.0a")
"""How an amount prints from :func:`_amount_parts` (whole, width, digits), by its form: with a fraction, whole,
and as text (below 1e-6, or with storage added in Python: the whole part's slot takes :func:`_amount_text`'s
bytes)."""

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@runtime_checkable
class DayArrays(Protocol):
    """A source that can hand out a whole settled day or hour of every leaf as arrays (the synthetic organisation)."""

    def day_arrays(self, family: Family, start: int, now: int) -> tuple[Ints, Bools] | None: ...

    def hour_block(self, family: Family, start: int, now: int) -> tuple[int, Ints, Bools] | None:
        """The day holding the settled hour at ``start``: (the hour's index in it, values, present), arrays over
        ``[hour, leaf, ...]``; ``None`` while the hour is revised."""
        ...

    def revised(self, end: int, now: int) -> bool:
        """Whether activity up to ``end`` is still being revised at ``now``."""
        ...

    def day_block(
        self, family: Family, start: int, now: int, *, together: bool = False
    ) -> tuple[int, int, Ints, Bools] | None:
        """The block of days holding the settled day at ``start``: (block number, the day's offset, values,
        present), arrays over ``[day, leaf, ...]``; ``None`` while the day is revised. ``together``: every
        family will be asked for this block (costs), so compute them all at once."""
        ...


@dataclass(frozen=True, slots=True)
class _Grouping:
    """Leaves (or cost cells) mapped onto groups numbered in output order; ``members`` are each group's fields as
    JSON object members (``"project_id":"p","model":null``: every field in order, null where not grouped by)."""

    index: Ints
    members: list[bytes]
    values: list[tuple[object, ...]]
    order: Ints
    """The records sorted by group (stably), so group ``g`` is the run starting at ``starts[g]``."""
    starts: Ints


@dataclass(frozen=True, slots=True)
class _CostCells:
    """Every line item every leaf can bill, as cells: where each cell's quantity comes from and its price.

    ``gather[cell]`` are flat indices into the leaf-by-atom values of the cell's family (padded with the index of a
    zero); ``price`` is in units of AMOUNT_QUANTUM, so amounts are exact integers.
    """

    families: list[tuple[Family, int, int, Ints]]
    """(family, first cell, end cell, gather) of each billed family but storage."""
    keys: list[tuple[object, ...]]
    units: dict[str, str]
    price: Ints
    storage: tuple[Family, int] | None
    """The storage family and its first cell (one cell per leaf, priced by time with Decimal, its line items
    computed for a block's days at once)."""


@dataclass(frozen=True, slots=True)
class _CostRows:
    """A cost grouping's rows as JSON with ``%`` slots: the amount's (whole part, fraction width and digits, as
    :data:`_AMOUNT_FORMS` prints them), then (grouped by line item) the quantity: ``%d``, or ``%s`` for the storage
    groups (``stored``), whose quantity is a decimal. ``rows[g]`` is group ``g``'s row for an amount with a
    fraction (most rows); another form's row is ``_ROW_HEAD``, the form, and ``tails[g]``."""

    rows: list[bytes]
    tails: list[bytes]
    stored: Bools


@dataclass(frozen=True, slots=True)
class _CostDays:
    """The cost cells on consecutive days from Unix day number ``first``: every cell's quantity ``[cell, day]``
    (zero for storage); the storage cells' amounts ``[leaf, day]`` (AMOUNT_QUANTUMs), whether they have a line
    item, and its quantity (GiB-hours, by (leaf, day))."""

    first: int
    quantity: Ints
    storage: Ints
    storage_there: Bools
    storage_quantities: dict[tuple[int, int], Decimal]


@dataclass(frozen=True, slots=True)
class _GroupDays:
    """A grouping's cost sums on consecutive days from Unix day number ``first``, ``[day, group]``: amounts, the
    formatting arguments (``[..., (whole, width, digits, quantity)]``), the amounts' forms, whether a cell is
    there, and per day the storage groups' quantities as text (grouped by line item)."""

    first: int
    amounts: Ints
    columns: Ints
    forms: Ints
    there: Bools
    storage: list[dict[int, bytes]]


def filters_key(filters: Mapping[str, FilterValue]) -> FiltersKey:
    """A canonical, hashable form of the filters: names sorted, list values sorted and de-duplicated."""
    return tuple(sorted((name, v if isinstance(v, bool) else tuple(sorted(set(v)))) for name, v in filters.items()))


def _array(rows: list[bytes]) -> bytes:
    """``rows`` (at least one) as a JSON array, copied once: the brackets go on the first and last row, not
    around the joined text (each ``+`` of a bucket's 50 KiB would copy it again)."""
    rows[0] = b"[" + rows[0]
    rows[-1] += b"]"
    return b",".join(rows)


def _value_key(value: object) -> tuple[int, str]:
    return (0, "") if value is None else (1, str(value))


def _sort_key(values: tuple[object, ...]) -> tuple[tuple[int, str], ...]:
    return tuple(map(_value_key, values))


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
        self._arrays: DayArrays | None = source if isinstance(source, DayArrays) else None
        self._groupings: dict[tuple[str, tuple[str, ...]], _Grouping] = {}
        self._fields: dict[str, tuple[tuple[str, ...], Ints]] = {}
        self._cells: _CostCells | None = None
        self._cell_tests: dict[FiltersKey, Bools] = {}
        self._quantities: dict[int, _CostDays] = {}
        self._sums: OrderedDict[tuple[int, tuple[str, ...], FiltersKey], _GroupDays] = OrderedDict()
        self._row_forms: dict[tuple[str, ...], _CostRows] = {}
        self._templates: dict[tuple[str, tuple[str, ...]], list[bytes]] = {}
        self._masks: dict[tuple[str, FiltersKey], Bools] = {}
        self._hours: OrderedDict[tuple[str, int, tuple[str, ...], FiltersKey], tuple[Ints, list[int], list[int]]] = (
            OrderedDict()
        )
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
    ) -> Results:
        """Result rows of a usage endpoint for the activity in ``[a, b)``; ``group_by`` in catalogue order."""
        family = FAMILIES[endpoint.name]
        day = self._whole_day(family, a, b, now)
        if day is not None:
            metrics, hit = self._group_sums(family, *day, group_by, fkey)
            there = np.flatnonzero(hit)
            return self._usage_rows(endpoint, family, there.tolist(), metrics[there], group_by)
        if a % HOUR == 0 and b - a == HOUR and b <= now and self._arrays is not None:
            hours = self._hour_sums(family, a, group_by, fkey, now)
            if hours is not None:
                return self._usage_rows(endpoint, family, *hours, group_by)
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

    def _whole_day(self, family: Family, a: int, b: int, now: int) -> tuple[Ints, Bools] | None:
        """A settled whole day of the source as arrays, when ``[a, b)`` is one and the source has them."""
        if a % DAY or b - a != DAY or b > now or self._arrays is None:
            return None
        return self._arrays.day_arrays(family, a, now)

    def _grouping(
        self, name: str, records: Sequence[tuple[object, ...]], fields: Sequence[str], group_by: tuple[str, ...]
    ) -> _Grouping:
        """``records`` (leaves or cost cells, their ``fields`` in order) numbered by group, groups in output order.

        Each grouped field's distinct values are ranked in :func:`_sort_key` order once, so the groups' order is
        the lexicographic order of the records' ranks (one ``lexsort``), not a sort of Python key tuples."""
        key = (name, group_by)
        hit = self._groupings.get(key)
        if hit is not None:
            return hit
        positions = [fields.index(g) for g in group_by]  # (a group_by name outside ``fields`` fails here)
        n = len(records)
        distinct: list[list[object]] = []
        ranks = np.zeros((len(positions), n), dtype=np.int64)
        for row, i in enumerate(positions):
            column = [r[i] for r in records]
            values = sorted(set(column), key=_value_key)
            distinct.append(values)
            rank = {v: j for j, v in enumerate(values)}
            ranks[row] = np.fromiter(map(rank.__getitem__, column), dtype=np.int64, count=n)
        # stable: a group's records keep their order; the first grouped field is the primary key
        order = np.lexsort(ranks[::-1]) if len(positions) else np.arange(n, dtype=np.int64)
        ranked = ranks[:, order]
        new = np.ones(n, dtype=np.bool_)
        new[1:] = (ranked[:, 1:] != ranked[:, :-1]).any(axis=0)
        starts = np.flatnonzero(new)
        index = np.empty(n, dtype=np.int64)
        index[order] = np.cumsum(new) - 1
        firsts = ranked[:, starts].tolist()  # each group's ranks, field by field
        keys = [[col[j] for j in js] for col, js in zip(distinct, firsts, strict=True)]  # field by field
        ordered: list[tuple[object, ...]] = list(zip(*keys, strict=True))
        if not positions and n:
            ordered = [()]
        # each group's fields as JSON object members, every field in order, null where it is not grouped by
        members: list[list[bytes]] = []
        for f in fields:
            label = _ENCODE(f) + b":"
            if f in group_by:
                row = group_by.index(f)
                texts = [label + _ENCODE(v) for v in distinct[row]]
                members.append([texts[j] for j in firsts[row]])
            else:
                members.append([label + b"null"] * len(ordered))
        encoded = [b",".join(m) for m in zip(*members, strict=True)] if members else [b""] * len(ordered)
        made = _Grouping(index, encoded, ordered, order, starts)
        with self._lock:
            self._groupings[key] = made
        return made

    def _leaf_grouping(self, family: Family, group_by: tuple[str, ...]) -> _Grouping:
        hit = self._groupings.get((family.name, group_by))
        return hit or self._grouping(family.name, self.source.leaves(family), family.dims, group_by)

    def _leaf_mask(self, family: Family, fkey: FiltersKey) -> Bools:
        """:meth:`_allowed_leaves` as an array."""
        key = (family.name, fkey)
        hit = self._masks.get(key)
        if hit is None:
            hit = np.array(self._allowed_leaves(family, fkey), dtype=np.bool_)
            with self._lock:
                self._masks[key] = hit
        return hit

    def _group_sums(
        self, family: Family, values: Ints, present: Bools, group_by: tuple[str, ...], fkey: FiltersKey
    ) -> tuple[Ints, Bools]:
        """The result metrics of each group (``[..., group, field]``) over ``values[..., leaf, atom]``, and whether
        a leaf of the group is there (``[..., group]``); the leading axes (hours of a day) are kept."""
        grouping = self._leaf_grouping(family, group_by)
        _, matrix = self._field_matrix(family)
        mask = present & self._leaf_mask(family, fkey)
        if not len(grouping.starts):  # no leaves at all
            return np.zeros((*mask.shape, matrix.shape[1]), dtype=np.int64), mask
        lead = values.ndim - 2
        kept = np.where(mask[..., None], values, 0).take(grouping.order, axis=lead)
        sums = np.add.reduceat(kept, grouping.starts, axis=lead)
        return sums @ matrix, np.logical_or.reduceat(mask.take(grouping.order, axis=lead), grouping.starts, axis=lead)

    def _hour_sums(
        self, family: Family, a: int, group_by: tuple[str, ...], fkey: FiltersKey, now: int
    ) -> tuple[list[int], Ints] | None:
        """The settled hour at ``a``: the groups that are there and their metrics (:meth:`_group_sums`), computed
        for all 24 hours of its day at once and kept as the rows that are there, hour after hour."""
        assert self._arrays is not None
        if self._arrays.revised(a + HOUR, now):
            return None
        key = (family.name, a - a % DAY, group_by, fkey)
        with self._lock:
            hit = self._hours.get(key)
            if hit is not None:
                self._hours.move_to_end(key)
        if hit is None:
            got = self._arrays.hour_block(family, a, now)
            if got is None:
                return None
            metrics, there = self._group_sums(family, got[1], got[2], group_by, fkey)
            hours, groups = np.nonzero(there)  # row-major: hour by hour, groups in order
            ends = np.searchsorted(hours, np.arange(25)).tolist()
            hit = (metrics[hours, groups], groups.tolist(), ends)
            with self._lock:
                self._hours[key] = hit
                if len(self._hours) > _HOUR_SUMS:
                    self._hours.popitem(last=False)
        rows, groups_of, ends = hit
        hour = (a % DAY) // HOUR
        lo, hi = ends[hour], ends[hour + 1]
        return groups_of[lo:hi], rows[lo:hi]

    def _usage_rows(
        self,
        endpoint: Endpoint,
        family: Family,
        groups: list[int],
        metrics: Ints,
        group_by: tuple[str, ...],
    ) -> Results:
        """The rows of ``groups`` (numbers in output order) with their ``metrics[row, field]``, printed from the
        groups' templates in one formatting: the bytes the handler's encoder writes for the per-leaf path's rows."""
        if not groups:
            return []
        templates = self._templates.get((family.name, group_by))
        if templates is None:
            templates = self._row_templates(endpoint, family, self._leaf_grouping(family, group_by), group_by)
        text = _array(list(map(templates.__getitem__, groups)))
        return msgspec.Raw(text % tuple(metrics.ravel().tolist()))  # bytes formatting: no str to encode after

    def _row_templates(
        self, endpoint: Endpoint, family: Family, grouping: _Grouping, group_by: tuple[str, ...]
    ) -> list[bytes]:
        """Per group, its row as JSON with a ``%d`` for each metric: ``{"object":...,"<metric>":%d,...,<fields>}``."""
        key = (family.name, group_by)
        hit = self._templates.get(key)
        if hit is None:
            names, _ = self._field_matrix(family)
            head = [b'"object":' + _ENCODE(endpoint.result_object).replace(b"%", b"%%")]
            head += [_ENCODE(name).replace(b"%", b"%%") + b":%d" for name in names]
            hit = []
            for members in grouping.members:
                fields = members.replace(b"%", b"%%")
                hit.append(b"{" + b",".join(head + ([fields] if fields else [])) + b"}")
            with self._lock:
                self._templates[key] = hit
        return hit

    def _field_matrix(self, family: Family) -> tuple[tuple[str, ...], Ints]:
        """The family's result fields and the 0/1 matrix that sums atoms into them."""
        hit = self._fields.get(family.name)
        if hit is None:
            matrix = np.zeros((len(family.atoms), len(family.fields)), dtype=np.int64)
            for j, (_, idx) in enumerate(family.fields):
                for i in idx:
                    matrix[i, j] += 1
            hit = (tuple(n for n, _ in family.fields), matrix)
            self._fields[family.name] = hit
        return hit

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

    def _cost_cells(self) -> _CostCells | None:
        """The cost cells of every family; ``None`` when a price is not a multiple of AMOUNT_QUANTUM."""
        if self._cells is not None:
            return self._cells
        keys: list[tuple[object, ...]] = []
        units: dict[str, str] = {_STORAGE: "gibibyte_hours"}
        # billing plans: a leaf's line items depend on its family, model, batch, size and context level alone
        plans: dict[tuple[object, ...], int] = {}
        names: list[list[str]] = []
        lines: list[tuple[int, tuple[int, ...]]] = []  # every plan's line items: (price, atoms)
        plan_first: list[int] = []
        used: list[int] = []  # each leaf's plan, family after family
        base: list[int] = []  # each leaf's first value in its family's flat leaf-by-atom values
        zero: list[int] = []  # and the index of the zero after its family's values
        spans: list[tuple[Family, int, int]] = []  # each family's leaves
        for family in FAMILIES.values():
            leaves = self.source.leaves(family)
            n = len(leaves)
            at = {name: i for i, name in enumerate(family.dims)}

            def column(
                name: str, leaves: Sequence[tuple[object, ...]] = leaves, at: dict[str, int] = at
            ) -> list[object]:
                i = at.get(name)
                return [None] * len(leaves) if i is None else [leaf[i] for leaf in leaves]

            projects, api_keys, users = column("project_id"), column("api_key_id"), column("user_id")
            sources = [s or "unlabeled" for s in column("api_source")]
            what: Iterator[tuple[object, ...]]
            stored = family.name == STORAGE_ENDPOINT  # not any level: another one bills nothing
            if stored:  # storage: one line item, priced by time (see _block_quantities)
                what = iter([(family.name,)] * n)
            else:
                what = zip(column("model"), column("batch"), column("size"), column("context_level"), strict=True)
            spans.append((family, len(used), len(used) + n))
            for leaf, plan in enumerate(what):
                plan = (family.name, *plan)
                number = plans.get(plan)
                if number is None:
                    number = plans[plan] = len(names)
                    plan_first.append(len(lines))
                    if stored:
                        names.append([_STORAGE])
                        lines.append((0, ()))
                    else:
                        bills = billings(family, dict(zip(family.dims, leaves[leaf], strict=True)))
                        for bill in bills:
                            units[bill.name] = bill.unit
                            scaled = bill.price * _AMOUNT_SCALE
                            if scaled != scaled.to_integral_value():
                                return None
                            lines.append((int(scaled), bill.atoms))
                        names.append([bill.name for bill in bills])
                used.append(number)
            width = len(family.atoms)
            base += range(0, n * width, width)
            zero += [n * width] * n
            keys += [
                (project, name, api_key, user, source)  # _COST_DIMS order
                for project, api_key, user, source, number in zip(
                    projects, api_keys, users, sources, used[-n:] if n else [], strict=True
                )
                for name in names[number]
            ]
        # each cell: its plan's line item, and its atoms offset by its leaf's first value; the padding (and
        # storage, which has no atoms) points at the zero after its family's values
        plan_of = np.array(used, dtype=np.int64)
        counts = np.array([len(x) for x in names], dtype=np.int64)[plan_of]
        leaf_of = np.repeat(np.arange(len(used), dtype=np.int64), counts)
        item = np.arange(len(leaf_of), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        line = np.array(plan_first, dtype=np.int64)[plan_of][leaf_of] + item
        pad = max((len(atoms) for _, atoms in lines), default=1) or 1
        atoms = np.array([[*x] + [-1] * (pad - len(x)) for _, x in lines], dtype=np.int64).reshape(-1, pad)[line]
        table = np.where(atoms < 0, np.array(zero)[leaf_of][:, None], atoms + np.array(base)[leaf_of][:, None])
        ends = np.searchsorted(leaf_of, [end for _, _, end in spans]).tolist()  # each family's end cell
        families: list[tuple[Family, int, int, Ints]] = []
        storage: tuple[Family, int] | None = None
        for (family, _, _), first, end in zip(spans, [0, *ends], ends, strict=False):
            if family.name == STORAGE_ENDPOINT:
                storage = (family, first)
            else:
                families.append((family, first, end, table[first:end]))
        prices = np.array([price for price, _ in lines], dtype=np.int64)[line]
        self._cells = _CostCells(families, keys, units, prices, storage)
        return self._cells

    def _costs_day(
        self, cells: _CostCells, a: int, group_by: tuple[str, ...], fkey: FiltersKey, now: int
    ) -> Results | None:
        """:meth:`costs` of one settled day with integer amounts; ``None`` when it cannot be done exactly."""
        sums = self._block_sums(cells, a, group_by, fkey, now)
        if sums is None:
            return None
        amounts, columns, forms, hit, storage = sums
        if not hit.any():
            return []
        grouping = self._grouping("costs", cells.keys, _COST_DIMS, group_by)
        templates = self._cost_templates(grouping, group_by, cells.units)
        groups = np.flatnonzero(hit)  # groups are numbered in output order
        step = 4 if "line_item" in group_by else 3  # whole, width, digits of the amount; the quantity
        args: list[Any] = columns[groups, :step].ravel().tolist()
        form = forms[groups]
        for i in np.flatnonzero(form == _TEXT).tolist():  # below 1e-6 (a few tokens at most): E notation
            args[i * step] = _amount_text(int(amounts[groups[i]])).encode()
        if step == 4:  # storage rows by line item: a GiB-hours quantity, a decimal
            for i in np.flatnonzero(templates.stored[groups]).tolist():
                args[i * step + 3] = storage[int(groups[i])]
        rows = list(map(templates.rows.__getitem__, groups.tolist()))
        for i in np.flatnonzero(form).tolist():  # whole amounts, E notation: their own forms (few rows)
            rows[i] = _ROW_HEAD + _AMOUNT_FORMS[int(form[i])] + templates.tails[int(groups[i])]
        text = _array(rows)
        return msgspec.Raw(text % tuple(args))  # one bytes formatting per bucket: no str to encode after

    def _block_sums(
        self, cells: _CostCells, a: int, group_by: tuple[str, ...], fkey: FiltersKey, now: int
    ) -> tuple[Ints, Ints, Ints, Bools, dict[int, bytes]] | None:
        """Per group, on the settled day at ``a``, of the billed, allowed cells: the amount, the formatting
        arguments ``[group, (whole, width, digits, quantity)]`` and form (:func:`_amount_parts`), whether one is
        there, and (grouped by line item) the storage groups' quantities as text: computed for the days the
        sources' block holds at once, kept for the next days."""
        arrays = self._arrays
        assert arrays is not None
        first = next(iter(cells.families), None)
        got = None if first is None else arrays.day_block(first[0], a, now, together=True)
        if got is None:  # revised, or nothing billed at all
            return None
        day = a // DAY
        key = (got[0], group_by, fkey)
        with self._lock:
            hit = self._sums.get(key)
            if hit is not None and not hit.first <= day < hit.first + len(hit.amounts):  # kept before it held the day
                hit = None
            if hit is not None:
                self._sums.move_to_end(key)
        if hit is None:
            hit = self._group_sums_of(cells, a, group_by, fkey, now)
            if hit is None:
                return None
            with self._lock:
                self._sums[key] = hit
                if len(self._sums) > _COST_SUMS:
                    self._sums.popitem(last=False)
        row = day - hit.first
        if not 0 <= row < len(hit.amounts):
            return None
        return hit.amounts[row], hit.columns[row], hit.forms[row], hit.there[row], hit.storage[row]

    def _group_sums_of(
        self, cells: _CostCells, a: int, group_by: tuple[str, ...], fkey: FiltersKey, now: int
    ) -> _GroupDays | None:
        """:meth:`_block_sums` of every day the block holding ``a`` holds."""
        block = self._block_quantities(cells, a, now)
        if block is None:
            return None
        grouping = self._grouping("costs", cells.keys, _COST_DIMS, group_by)
        if not len(grouping.starts):
            return None  # no cells at all: the per-leaf path answers (with nothing)
        # cells by group along the first axis (the days along the second): reduceat sums whole rows. One copy
        # of the block's quantities, worked on in place (each temporary the size of a block is fresh memory)
        order, starts = grouping.order, grouping.starts
        allowed = self._cell_filter(cells, fkey)
        kept = block.quantity.take(order, axis=0)
        mask = kept != 0
        mask &= allowed[order][:, None]
        storage: list[dict[int, bytes]] = [{} for _ in range(kept.shape[1])]
        at = np.zeros(0, dtype=np.int64)
        if cells.storage is not None:  # storage cells: amounts from the block's line items, quantities decimal
            _, s0 = cells.storage
            s1 = s0 + len(block.storage)
            position = np.empty_like(order)
            position[order] = np.arange(len(order))
            at = position[s0:s1]  # the storage cells' rows in group order
            mask[at] = block.storage_there & allowed[s0:s1, None]
            if "line_item" in group_by:
                sums: dict[tuple[int, int], Decimal] = {}
                for (leaf, d), q in block.storage_quantities.items():
                    if allowed[s0 + leaf]:
                        day_group = (d, int(grouping.index[s0 + leaf]))
                        sums[day_group] = sums.get(day_group, Decimal(0)) + q
                for (d, g), q in sums.items():
                    storage[d][g] = str(_tidy(q)).encode()
        kept *= mask
        quantities = np.add.reduceat(kept, starts, axis=0).T
        kept *= cells.price[order][:, None]  # the amounts
        if len(at):
            kept[at] = np.where(mask[at], block.storage, 0)
        amounts = np.add.reduceat(kept, starts, axis=0).T
        there = np.add.reduceat(mask.view(np.int8), starts, axis=0, dtype=np.int64).T > 0
        whole, width, digits, printed = _amount_parts(amounts[there])  # only the groups there are printed
        columns = np.zeros((*amounts.shape, 4), dtype=np.int64)
        columns[there, :3] = np.stack((whole, width, digits), axis=1)
        columns[..., 3] = quantities
        form = np.zeros(amounts.shape, dtype=np.int64)
        form[there] = printed
        return _GroupDays(block.first, amounts, columns, form, there, storage)

    def _block_quantities(self, cells: _CostCells, a: int, now: int) -> _CostDays | None:
        """Every cell's quantity, and the storage cells' line items, on the days around the settled day at ``a``
        that every family's block holds (a block holds the days from the first asked of it to the source's
        latest); computed once, again when the blocks hold days they did not."""
        arrays = self._arrays
        assert arrays is not None
        families = [family for family, _, _, _ in cells.families]
        if cells.storage is not None:
            families.append(cells.storage[0])
        got = [arrays.day_block(family, a, now, together=True) for family in families]
        if not got or any(g is None for g in got):
            return None
        blocks = [g for g in got if g is not None]
        day = a // DAY
        hit = self._quantities.get(blocks[0][0])
        if hit is not None and hit.first <= day < hit.first + hit.quantity.shape[1]:
            return hit
        firsts = [day - row for _, row, _, _ in blocks]  # each family's first day (blocks may differ)
        d0 = max(firsts)
        days = min(first + len(values) for first, (_, _, values, _) in zip(firsts, blocks, strict=True)) - d0
        quantity = np.zeros((len(cells.keys), days), dtype=np.int64)  # by cell: rows of days, gathered whole
        for (_, start, end, gather), first, block in zip(
            cells.families, firsts[: len(cells.families)], blocks[: len(cells.families)], strict=True
        ):
            values = block[2][d0 - first : d0 - first + days]
            rows = np.concatenate((values.reshape(days, -1).T, np.zeros((1, days), np.int64)))
            cell, gathered = quantity[start:end], np.empty((end - start, days), dtype=np.int64)
            for atoms in gather.T:  # the padding gathers the zero row
                cell += np.take(rows, atoms, axis=0, out=gathered)
        storage = np.zeros((0, days), dtype=np.int64)
        storage_there = np.zeros((0, days), dtype=np.bool_)
        storage_quantities: dict[tuple[int, int], Decimal] = {}
        if cells.storage is not None:  # priced by time, in Decimal: each leaf's line item on each day
            family = cells.storage[0]
            dims = self._leaf_dims(family)
            first, (_, _, values, present) = firsts[-1], blocks[-1]
            values, present = values[d0 - first : d0 - first + days], present[d0 - first : d0 - first + days]
            storage = np.zeros((len(dims), days), dtype=np.int64)
            storage_there = np.zeros((len(dims), days), dtype=np.bool_)
            for d, leaf in zip(*np.nonzero(present), strict=True):
                for item in line_items(family, dims[leaf], tuple(values[d, leaf].tolist()), DAY):
                    storage[leaf, d] = int(item.amount.scaleb(12))
                    storage_there[leaf, d] = True
                    storage_quantities[(int(leaf), int(d))] = item.quantity
        top = np.maximum(quantity.max(axis=1, initial=0), -quantity.min(axis=1, initial=0)).astype(np.float64)
        if float(top @ cells.price.astype(np.float64)) + float(np.abs(storage).sum(dtype=np.float64)) >= _SAFE:
            return None  # the sum of every amount could leave int64: the Decimal path answers
        hit = _CostDays(d0, quantity, storage, storage_there, storage_quantities)
        with self._lock:
            self._quantities[blocks[0][0]] = hit
        return hit

    def _cost_templates(self, grouping: _Grouping, group_by: tuple[str, ...], units: Mapping[str, str]) -> _CostRows:
        """Each cost group's row as JSON with ``%`` slots (see :class:`_CostRows`)."""
        hit = self._row_forms.get(group_by)
        if hit is None:
            by_item = "line_item" in group_by
            mid = _ROW_MID.encode().replace(b"%", b"%%")
            at = group_by.index("line_item") if by_item else None
            items = [None if at is None else v[at] for v in grouping.values]
            stored = np.array([by_item and item == _STORAGE for item in items], dtype=np.bool_)
            ends: dict[object, bytes] = {}  # by line item: the quantity slot and the unit
            tails = []
            for members, item, storage in zip(grouping.members, items, stored.tolist(), strict=True):
                end = ends.get(item)
                if end is None:
                    unit = _ENCODE(units.get(str(item)) if by_item else None).replace(b"%", b"%%")
                    quantity = (b"%s" if storage else b"%d") if by_item else b"null"
                    end = ends[item] = b',"quantity":' + quantity + b',"quantity_unit":' + unit + b"}"
                tails.append(mid + members.replace(b"%", b"%%") + end)
            hit = _CostRows([_ROW_HEAD + _AMOUNT_FORMS[0] + tail for tail in tails], tails, stored)
            with self._lock:
                self._row_forms[group_by] = hit
        return hit

    def _cell_filter(self, cells: _CostCells, fkey: FiltersKey) -> Bools:
        hit = self._cell_tests.get(fkey)
        if hit is None:
            index = {g: i for i, g in enumerate(_COST_DIMS)}
            tests = [(index[_COSTS.filter(name).field], value) for name, value in fkey]
            if tests:
                allowed = [
                    all(key[i] in value for i, value in tests if isinstance(value, Sequence)) for key in cells.keys
                ]
                hit = np.array(allowed, dtype=np.bool_)
            else:  # no filters (the common case): every cell
                hit = np.ones(len(cells.keys), dtype=np.bool_)
            with self._lock:
                self._cell_tests[fkey] = hit
        return hit

    def costs(self, a: int, b: int, group_by: tuple[str, ...], fkey: FiltersKey, now: int) -> Results:
        if a % DAY == 0 and b - a == DAY and b <= now and self._arrays is not None:
            cells = self._cost_cells()
            rows = None if cells is None else self._costs_day(cells, a, group_by, fkey, now)
            if rows is not None:
                return rows
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
        ordered = [(k, groups[k][0], groups[k][1]) for k in sorted(groups, key=_sort_key)]
        return self._cost_rows(ordered, group_by, units)

    @staticmethod
    def _cost_rows(
        groups: list[tuple[tuple[object, ...], Decimal, Decimal]], group_by: tuple[str, ...], units: Mapping[str, str]
    ) -> Results:
        by_item = "line_item" in group_by
        rows: list[Row] = []
        for k, quantity, amount in groups:
            values = dict(zip(group_by, k, strict=True))
            row: Row = {"object": _COSTS.result_object, "amount": {"value": _tidy(amount), "currency": _CURRENCY}}
            for g in _COST_DIMS:
                row[g] = values.get(g)
            item = values.get("line_item")
            row["quantity"] = _tidy(quantity) if by_item else None
            row["quantity_unit"] = units.get(str(item)) if by_item else None
            rows.append(row)
        return rows


assert _COST_DIMS == ("project_id", "line_item", "api_key_id", "user_id", "api_source"), "update _cost_cells"


def _cost_key(d: Mapping[str, object], item: str) -> tuple[object, ...]:
    """A cost leaf's fields in ``_COST_DIMS`` order, as :meth:`ResultBuilder.cost_leaves` keys them."""
    values = {
        "project_id": d.get("project_id"),
        "line_item": item,
        "api_key_id": d.get("api_key_id"),
        "user_id": d.get("user_id"),
        "api_source": d.get("api_source") or "unlabeled",
    }
    return tuple(values.get(g) for g in _COST_DIMS)


def _amount_parts(units: Ints) -> tuple[Ints, Ints, Ints, Ints]:
    """Amounts in AMOUNT_QUANTUMs as :func:`_amount_text` prints them, for ``%d.%0*d`` formatting: the whole part,
    the width and digits of the fraction without its trailing zeros, and the form: 0 with a fraction, ``_WHOLE``
    without one (``%d``), ``_TEXT`` below 1e-6 (E notation: printed by :func:`_amount_text`)."""
    whole = units // _AMOUNT_SCALE  # integer division by a scalar (libdivide): several times faster than ``%``
    fraction = units - whole * _AMOUNT_SCALE
    digits = fraction.copy()
    width = np.full(units.shape, 12, dtype=np.int64)
    for zeros in (8, 4, 2, 1):  # strip the trailing zeros, at most 11 of them: 8 + 2 + 1 at worst
        scale = 10**zeros
        shorter = digits // scale
        strip = shorter * scale == digits
        np.copyto(digits, shorter, where=strip)
        width -= strip * zeros
    form = np.where(fraction == 0, _WHOLE, 0)
    form[(units < _PLAIN) & (units != 0)] = _TEXT
    return whole, width, digits, form


def _amount_text(units: int) -> str:
    """An amount of ``units`` AMOUNT_QUANTUMs as JSON, exactly as the encoder writes ``_tidy`` of its Decimal."""
    if units == 0 or units >= _PLAIN:  # 1e-6 and up: plain notation, trailing zeros dropped
        whole, fraction = divmod(units, _AMOUNT_SCALE)
        return str(whole) if fraction == 0 else f"{whole}.{fraction:012d}".rstrip("0")
    return str(_tidy(Decimal(units).scaleb(-12)))
