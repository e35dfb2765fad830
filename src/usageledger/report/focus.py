"""The costs stream as FOCUS 1.2 rows (the FinOps Open Cost and Usage Specification), to CSV or Parquet.

One FOCUS row per stored costs row of each org's primary daily costs stream (the ``costs_daily`` view, so groupings
are never summed twice): a day, a project, a line item. ``docs/FOCUS.md`` has the mapping and the reason for each
column. Money stays exact: Parquet keeps ``decimal128(38,18)`` and CSV writes the decimal digits as text.

Currency: ``BilledCost`` is what OpenAI bills, in the invoice's currency (USD), so with ``--currency EUR --fx
rates.csv`` the FOCUS columns stay as billed and the converted figures go in ``x_`` columns (FOCUS's prefix for
columns outside the specification) with the day's rate beside them.

Files are written the way ``export`` writes them (:func:`usageledger.export.staged_file`): under a temporary name,
renamed into place only when the whole file is written, and never over the store or the config in use.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Final, Literal

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from usageledger._csv import plain_decimal
from usageledger._paths import naming_full_disk
from usageledger._text import FORMULA_START_PATTERN
from usageledger.errors import ParameterError, UsageLedgerError
from usageledger.export import bucket_filter, ordered_slices, staged_file, write_parquet
from usageledger.report.fx import MAX_RATE, FxRates
from usageledger.report.queries import line_item_model, utc_day
from usageledger.report.teams import UNASSIGNED
from usageledger.rows import DECIMAL_PRECISION, DECIMAL_SCALE
from usageledger.store import BaseStore, table_for
from usageledger.store.closes import month_bounds
from usageledger.store.directory import named_view
from usageledger.timeutil import iso

__all__ = [
    "FOCUS_COLUMNS",
    "FOCUS_VERSION",
    "FX_COLUMNS",
    "MANDATORY_COLUMNS",
    "SERVICE_CATEGORY",
    "SERVICE_SUBCATEGORY",
    "FocusFormat",
    "FocusResult",
    "focus_rows",
    "focus_unit",
    "write_focus",
]

FocusFormat = Literal["csv", "parquet"]
FOCUS_VERSION: Final = "1.2"
PROVIDER: Final = "OpenAI"
SERVICE_NAME: Final = "OpenAI API"
SERVICE_CATEGORY: Final = "AI and Machine Learning"
SERVICE_SUBCATEGORY: Final = "Generative AI"
UNITS: Final = {
    "tokens": "Tokens",
    "1000_tokens": "1000 Tokens",
    "characters": "Characters",
    "duration_seconds": "Seconds",
    "gibibyte_hours": "GiB-Hours",
}
"""The costs endpoint's ``quantity_unit`` in the FOCUS Unit Format; any other unit is title-cased (``calls`` ->
``Calls``, ``image_generations`` -> ``Image Generations``)."""
BATCH_ROWS: Final = 50_000

_MONEY: Final = pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE)
_TS: Final = pa.timestamp("s", tz="UTC")

MANDATORY_COLUMNS: Final[tuple[str, ...]] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
)
"""FOCUS 1.2's mandatory columns that this export fills (the issue's list of 21)."""

_MORE_COLUMNS: Final = (
    "ChargeFrequency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "InvoiceId",
    "ServiceSubcategory",
    "SubAccountId",
    "SubAccountName",
    "Tags",
)
"""The columns written beyond :data:`MANDATORY_COLUMNS`."""

_MONEY_COLUMNS: Final = (
    "BilledCost",
    "ConsumedQuantity",
    "ContractedCost",
    "EffectiveCost",
    "ListCost",
    "PricingQuantity",
)
_TIME_COLUMNS: Final = ("BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart")
_TYPES: Final[Mapping[str, pa.DataType]] = dict.fromkeys(_MONEY_COLUMNS, _MONEY) | dict.fromkeys(_TIME_COLUMNS, _TS)
"""The columns that are not strings, and their Parquet types."""

FOCUS_COLUMNS: Final[tuple[tuple[str, pa.DataType], ...]] = tuple(
    (name, _TYPES.get(name, pa.string())) for name in sorted((*MANDATORY_COLUMNS, *_MORE_COLUMNS))
)
"""Every FOCUS column written, with its Parquet type, in file order (by name)."""

FX_COLUMNS: Final[tuple[tuple[str, pa.DataType], ...]] = (
    ("x_DisplayCurrency", pa.string()),
    ("x_FxRate", _MONEY),
    ("x_BilledCostInDisplayCurrency", _MONEY),
    ("x_EffectiveCostInDisplayCurrency", _MONEY),
)
"""Added with ``--currency``/``--fx``: the converted costs and the day's rate (one USD in the display currency)."""

_JSON: Final = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class FocusResult:
    rows: int
    path: Path | None
    rates: tuple[tuple[date, Decimal], ...] = ()
    """The ``(day, rate)`` pairs used, when converted."""


def focus_unit(unit: str) -> str:
    """``quantity_unit`` as a FOCUS unit (see :data:`UNITS`)."""
    return UNITS.get(unit) or " ".join(w.capitalize() for w in unit.replace("_", " ").split())


_ORDER: Final = " ORDER BY t.org, t.bucket_start, t.project_id NULLS FIRST, t.line_item NULLS FIRST"


def _select(since: int | None, until: int | None, orgs: Sequence[str]) -> tuple[str, list[str], list[Any], pa.Schema]:
    """The SELECT of the costs (to add a WHERE and :data:`_ORDER` to), the conditions on ``t`` that keep the
    period and orgs, their parameters, and the rows' schema."""
    spec = table_for("costs")
    wanted = ["org", "bucket_start", "bucket_end", "project_id", "line_item", "amount_value", "currency"]
    wanted += ["quantity", "quantity_unit", "project_name"]
    where, params = bucket_filter(since, until, orgs, alias="t")
    # A costs stream synced without project_id or line_item grouping has NULL there: every grouping field is a
    # column of the table, so the query never misses one.
    sql = f"SELECT {', '.join(f't.{c}' for c in wanted)} FROM {named_view(spec)} AS t"
    full = spec.arrow_schema()
    fields = [
        pa.field("org", pa.string()),
        pa.field("bucket_start", _TS),
        pa.field("bucket_end", _TS),
        full.field("project_id"),
        full.field("line_item"),
        full.field("amount_value"),
        full.field("currency"),
        full.field("quantity"),
        full.field("quantity_unit"),
        pa.field("project_name", pa.string()),
    ]
    return sql, where, params, pa.schema(fields)


def focus_rows(
    store: BaseStore,
    *,
    teams: Mapping[str, str],
    since: int | None = None,
    until: int | None = None,
    orgs: Sequence[str] = (),
    fx: FxRates | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.Table]:
    """The FOCUS rows in batches (see the module's docstring); ``teams`` maps project IDs to teams for ``Tags``.
    The store sorts one batch of rows at a time (:func:`~usageledger.export.ordered_slices`)."""
    select, where, params, schema = _select(since, until, orgs)
    out_fields = [pa.field(n, t) for n, t in FOCUS_COLUMNS]
    if fx is not None:
        out_fields += [pa.field(n, t) for n, t in FX_COLUMNS]
    out_schema = pa.schema(out_fields)
    view = named_view(table_for("costs"))
    for part, values in ordered_slices(store, view, where, params, ("org",), batch_rows):
        sql = f"{select} WHERE {' AND '.join([*where, *part])}{_ORDER}"
        yield from _focus_batches(
            store.iter_batches(sql, [*params, *values], schema, batch_rows), teams, fx, out_schema
        )


def _focus_batches(
    batches: Iterator[pa.Table], teams: Mapping[str, str], fx: FxRates | None, out_schema: pa.Schema
) -> Iterator[pa.Table]:
    for batch in batches:
        yield _focus_table(batch, teams, fx, out_schema)


def _focus_table(batch: pa.Table, teams: Mapping[str, str], fx: FxRates | None, out_schema: pa.Schema) -> pa.Table:
    """One batch of costs rows as FOCUS rows, made column by column in Arrow, with no Python object a row (a dict of
    29 fields a row took nearly all of a 626k-row export's time). What follows from one column's value alone (a
    day's billing period and rate, a line item's description and tags, a project's team, a unit, a currency) is
    worked out in Python once per distinct value and taken to the rows (:func:`_distinct`); the rest is Arrow's."""
    rows = batch.num_rows
    start, project, org = batch.column("bucket_start"), batch.column("project_id"), batch.column("org")
    amount = pc.fill_null(batch.column("amount_value"), pa.scalar(Decimal(0), _MONEY))
    starts, of_start = _distinct(start)
    days = [utc_day(s) for s in starts]
    periods = [month_bounds(d) for d in days]  # the billing period: OpenAI invoices a calendar month
    items, of_item = _distinct(batch.column("line_item"))
    units, of_unit = _distinct(batch.column("quantity_unit"))
    unit_names = [focus_unit(u) if u else None for u in units]
    unit = _taken(unit_names, of_unit, pa.string())
    quantity = pc.if_else(_taken([bool(u) for u in unit_names], of_unit, pa.bool_()), batch.column("quantity"), None)
    currencies, of_currency = _distinct(batch.column("currency"))
    projects, of_project = _distinct(project)
    teams_of = [teams.get(p, UNASSIGNED) if p is not None else UNASSIGNED for p in projects]
    name = batch.column("project_name")
    named = pc.if_else(pc.fill_null(pc.not_equal(name, ""), False), name, project)  # the directory's, else the ID

    def constant(value: str) -> pa.Array:
        return pa.repeat(pa.scalar(value, pa.string()), rows)

    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "BilledCost": amount,
        "BillingAccountId": org,
        "BillingAccountName": org,
        "BillingCurrency": _taken([(c or "usd").upper() for c in currencies], of_currency, pa.string()),
        "BillingPeriodEnd": _taken([end for _, end in periods], of_start, _TS),
        "BillingPeriodStart": _taken([begin for begin, _ in periods], of_start, _TS),
        "ChargeCategory": pc.if_else(pc.less(amount, pa.scalar(Decimal(0), _MONEY)), "Credit", "Usage"),
        "ChargeClass": pa.nulls(rows, pa.string()),
        "ChargeDescription": _taken([i or "OpenAI API usage" for i in items], of_item, pa.string()),
        "ChargeFrequency": constant("Usage-Based"),
        "ChargePeriodEnd": batch.column("bucket_end"),
        "ChargePeriodStart": start,
        "ConsumedQuantity": quantity,
        "ConsumedUnit": unit,
        "ContractedCost": amount,
        "EffectiveCost": amount,
        "InvoiceId": pa.nulls(rows, pa.string()),
        "InvoiceIssuerName": constant(PROVIDER),
        "ListCost": amount,
        "PricingQuantity": quantity,
        "PricingUnit": unit,
        "ProviderName": constant(PROVIDER),
        "PublisherName": constant(PROVIDER),
        "ServiceCategory": constant(SERVICE_CATEGORY),
        "ServiceName": constant(SERVICE_NAME),
        "ServiceSubcategory": constant(SERVICE_SUBCATEGORY),
        "SubAccountId": project,
        "SubAccountName": pc.if_else(pc.is_null(project), None, named),
        "Tags": pc.binary_join_element_wise(
            _taken([_tags_head(i) for i in items], of_item, pa.string()),
            _taken([_tags_tail(t) for t in teams_of], of_project, pa.string()),
            "",
        ),
    }
    if fx is not None:
        fx.require(days)
        rate = _taken([fx.rate(d) for d in days], of_start, _MONEY)
        converted = _converted(amount, rate)
        columns["x_DisplayCurrency"] = constant(fx.currency)
        columns["x_FxRate"] = rate
        columns["x_BilledCostInDisplayCurrency"] = converted
        columns["x_EffectiveCostInDisplayCurrency"] = converted
    return pa.Table.from_arrays([columns[n] for n in out_schema.names], schema=out_schema)


def _distinct(column: pa.ChunkedArray) -> tuple[list[Any], pa.Array]:
    """The distinct values of ``column`` (null among them where it holds one), and each row's index into them: what
    :func:`_taken` takes a value per distinct value to the rows by."""
    encoded = column.combine_chunks().dictionary_encode(null_encoding="encode")
    return encoded.dictionary.to_pylist(), encoded.indices


def _taken(values: Sequence[Any], indices: pa.Array, kind: pa.DataType) -> pa.Array:
    """``values`` (one per distinct value of a column, in :func:`_distinct`'s order) as a column of ``kind``, a value
    a row."""
    return pc.take(pa.array(values, kind), indices)


def _tags_head(line_item: str | None) -> str:
    """The JSON of ``Tags`` up to the team: the line item's model (absent when it names none) and the line item
    (absent when null), ``{"model":"gpt-4o","line_item":"gpt-4o, input",`` or ``{``; :func:`_tags_tail` ends it."""
    tags = {"model": line_item_model(line_item), "line_item": line_item}
    head = _JSON.encode({k: v for k, v in tags.items() if v is not None}).decode()[:-1]  # without its "}"
    return f"{head}," if line_item is not None else head


def _tags_tail(team: str) -> str:
    """The end of ``Tags`` after :func:`_tags_head`: ``"team":"..."}``, as the JSON encoder writes an object."""
    return f'"team":{_JSON.encode(team).decode()}}}'


_RATE: Final = pa.decimal256(MAX_RATE.adjusted() + 1 + DECIMAL_SCALE, DECIMAL_SCALE)
"""Every rate :class:`~usageledger.report.fx.FxRates` takes (up to :data:`~usageledger.report.fx.MAX_RATE`, at
most 18 places), narrow enough that a ``_MONEY`` amount times it has an exact 256-bit product (64 digits, 36
places)."""


def _converted(amount: pa.Array | pa.ChunkedArray, rate: pa.Array) -> pa.Array | pa.ChunkedArray:
    """``amount × rate`` rounded half-even to ``_MONEY``'s 18 places: the exact product has the amount's 18 places
    and the rate's, more than the column keeps (Arrow refuses to drop places in a cast). It is rounded once, from
    the exact product: Python's :class:`~decimal.Decimal` had rounded it to 28 digits first, so the 18th place was
    one off where amount and rate have more than 28 digits together ($1,234,567.123456789012345678 at 158.1234575
    yen), and a product past 10**10 stopped the export with an ``InvalidOperation`` traceback."""
    product = pc.multiply(amount.cast(pa.decimal256(DECIMAL_PRECISION, DECIMAL_SCALE)), rate.cast(_RATE))
    rounded = pc.round(product, ndigits=DECIMAL_SCALE, round_mode="half_to_even")
    try:
        return rounded.cast(_MONEY)
    except pa.ArrowInvalid:
        biggest = pc.max(pc.abs(rounded)).as_py()
        raise UsageLedgerError(
            f"a cost converted with --fx comes to {biggest:,.2f}, more than the {DECIMAL_PRECISION - DECIMAL_SCALE} "
            "digits before the point that FOCUS's money columns hold; no real day's spend is that large: check "
            "the store's amounts"
        ) from None


def _write(batches: Iterator[pa.Table], fmt: FocusFormat, out: IO[bytes], schema: pa.Schema) -> int:
    return write_parquet(out, schema, batches) if fmt == "parquet" else _write_csv(out, schema.names, batches)


_QUOTED: Final = r'[,"\r\n]'
"""A cell the ``csv`` module quotes (:class:`usageledger._csv.CsvWriter`): the delimiter, the quote, a line break."""


def _write_csv(out: IO[bytes], columns: Sequence[str], batches: Iterator[pa.Table]) -> int:
    """The FOCUS rows as CSV, byte for byte what :func:`usageledger.export.write_csv` writes of them, each batch
    made text column by column in Arrow (the whole cell of a row at a time in Python took 50-90 s for 626k rows);
    the number of rows written. A batch's lines, each ended by its line break, are written from the bytes Arrow
    holds them in: no Python string a line."""
    out.write((",".join(columns) + "\n").encode())  # the column names are ours: none is quoted
    count = 0
    for batch in batches:
        cells = (_cells(batch.column(n)) for n in columns)  # (none is null: no line is)
        lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*cells, ","), "\n", "")
        # A string array's values lie one after another in its data buffer, from its first offset to its last.
        _, offsets, data = lines.buffers()
        bounds = pa.Array.from_buffers(pa.int32(), len(lines) + 1, [None, offsets], offset=lines.offset)
        if data is not None and len(lines):
            out.write(memoryview(data)[bounds[0].as_py() : bounds[-1].as_py()])
        count += batch.num_rows
    return count


def _cells(column: pa.ChunkedArray) -> pa.Array:
    """A FOCUS column as the text of its CSV cells, as :class:`usageledger._csv.CsvWriter` writes each value: a
    decimal's exact digits without trailing zeros, a time as ``2026-11-20T00:00:00Z``, text that a spreadsheet
    would run after an apostrophe, quoted where it holds ``,``, ``"`` or a line break; null is empty. Times and
    text repeat (a batch's few days, its projects and line items, the constants): each distinct value is made text
    once and taken to its rows (each row's took half a 626k-row file's time)."""
    kind = column.type
    if pa.types.is_decimal(kind):
        # Arrow writes every one of the scale's places ("0.060000000000000000"), and under 1E-6 an exponent
        # ("0E-18", "1E-7"): those few are written by Python, as the other CSV files write them.
        arrow = pc.cast(column, pa.string()).combine_chunks()
        text = pc.replace_substring_regex(pc.replace_substring_regex(arrow, r"0+$", ""), r"\.$", "")
        exponent = pc.fill_null(pc.match_substring(arrow, "E"), False)
        if pc.any(exponent).as_py():
            exact = [plain_decimal(Decimal(v)) for v in pc.filter(arrow, exponent).to_pylist()]
            text = pc.replace_with_mask(text, exponent, pa.array(exact, pa.string()))
        return pc.fill_null(text, "")
    encoded = column.combine_chunks().dictionary_encode()  # a null row's index is null: its cell is empty
    return pc.fill_null(pc.take(_distinct_cells(encoded.dictionary), encoded.indices), "")


def _distinct_cells(values: pa.Array) -> pa.Array:
    """:func:`_cells` of a column's distinct times or strings."""
    if pa.types.is_timestamp(values.type):  # the UTC values read without their zone: no time-zone database needed
        return pc.strftime(values.cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%SZ")
    if pa.types.is_string(values.type):
        text = pc.replace_substring_regex(values, FORMULA_START_PATTERN, r"'\1")
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
        return pc.if_else(pc.match_substring_regex(text, _QUOTED), quoted, text)
    raise TypeError(f"no FOCUS column is {values.type}")


def _refuse_no_rows(store: BaseStore, since: int | None, until: int | None, orgs: Sequence[str]) -> None:
    """Refuse an export that would hold no rows: a FOCUS file of none, headers only, fails the FinOps Foundation's
    validator (its allowed-values checks of ChargeCategory, ChargeFrequency, ServiceCategory and ServiceSubcategory
    fail on an empty column, CSV and Parquet alike), and a user who asked for a period's costs wants to hear that
    it holds none. The error names the period and the days the store holds (``ParameterError`` on
    ``--since/--until``), or says the store holds no costs at all and how to get them."""
    view = named_view(table_for("costs"))
    where, params = bucket_filter(since, until, orgs)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    if store.query(f"SELECT 1 FROM {view}{clause} LIMIT 1", params):
        return
    of = "" if not orgs else f" of org {orgs[0]}" if len(orgs) == 1 else f" of orgs {', '.join(orgs)}"
    why = "a FOCUS file of no rows fails FOCUS validation, so none is written"
    held_where, held_params = bucket_filter(None, None, orgs)
    held_clause = f" WHERE {' AND '.join(held_where)}" if held_where else ""
    first, last = store.query(f"SELECT MIN(bucket_start), MAX(bucket_start) FROM {view}{held_clause}", held_params)[0]
    if first is None:
        raise UsageLedgerError(
            f"the store holds no costs{of}, so there is nothing to export as FOCUS ({why}); "
            "run `usageledger sync` first (costs come in 1d buckets only)"
        )
    if since is None:
        span = f"before {iso(until)}" if until is not None else "at all"  # (no period: the first branch)
    else:
        span = f"from {iso(since)} on" if until is None else f"from {iso(since)} to {iso(until)}"
    raise ParameterError(
        "--since/--until",
        f"no costs {span}{of} to export ({why}); the store's costs run from {utc_day(first)} to "
        f"{utc_day(last)}: give a period that holds some",
    )


def write_focus(
    store: BaseStore,
    fmt: FocusFormat,
    output: str | Path | IO[bytes],
    *,
    teams: Mapping[str, str],
    since: int | None = None,
    until: int | None = None,
    orgs: Sequence[str] = (),
    fx: FxRates | None = None,
    protect: Mapping[str, str | Path] | None = None,
) -> FocusResult:
    """Write the FOCUS rows to ``output`` (a file, or the caller's binary stream); files are staged as ``export``
    stages them and never replace the store or a ``protect``-ed path."""
    names = [n for n, _ in FOCUS_COLUMNS] + ([n for n, _ in FX_COLUMNS] if fx is not None else [])
    types = dict(FOCUS_COLUMNS) | dict(FX_COLUMNS)
    schema = pa.schema([pa.field(n, types[n]) for n in names])
    days: set[date] = set()

    def batches() -> Iterator[pa.Table]:
        for table in focus_rows(store, teams=teams, since=since, until=until, orgs=orgs, fx=fx):
            if fx is not None:
                days.update(utc_day(v) for v in pc.unique(table.column("ChargePeriodStart")).to_pylist())
            yield table

    if isinstance(output, str | Path):
        with staged_file(store, output, protect or {}) as fh:  # (the output's own mistakes are said first)
            _refuse_no_rows(store, since, until, orgs)  # the staged file goes, an old one is left as it was
            count = _write(batches(), fmt, fh, schema)
        path: Path | None = Path(output)
    else:
        _refuse_no_rows(store, since, until, orgs)  # before a byte is written
        with naming_full_disk(output):
            count = _write(batches(), fmt, output, schema)
            output.flush()
        path = None
    rates = tuple(fx.used(days)) if fx is not None else ()
    return FocusResult(count, path, rates)
